package temporalui

import (
	"crypto/sha256"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// uiFiles stand in for the Web UI's build: its page carries the script
// policy ui-server v2.55's does (a hash, 'strict-dynamic'); the dev
// stack's browser test (integration/temporalui_browser_test.go) runs the
// real one.
var uiFiles = fstest.MapFS{
	"index.html": {Data: []byte(`<!doctype html><html><head><style>html{}</style>
<meta http-equiv="content-security-policy" content="script-src 'strict-dynamic' 'sha256-b5z8I2qE95uFcs3PIfdlrgDi1MMXC2oAUAUMdoJx+a0='">
<link href="/_app/immutable/entry/start.js" rel="modulepreload"></head><body><script>start()</script></body></html>`)},
	"_app/version.json": {Data: []byte(`{"version":"1"}`)},
}

func TestTheDevUIPageRunsTheSeedUnderItsOwnPolicy(t *testing.T) {
	data := t.TempDir()
	// What WriteAssets wrote for an older UI build, and a while ago; one
	// written just now (another start's); and a folder of the user's.
	stale := filepath.Join(data, AssetsFolder, "00112233445566ff")
	fresh := filepath.Join(data, AssetsFolder, "00112233445566aa")
	theirs := filepath.Join(data, AssetsFolder, "my-project")
	for _, d := range []string{stale, fresh, theirs} {
		require.NoError(t, os.MkdirAll(d, 0o700))
	}
	long := time.Now().Add(-2 * time.Hour)
	require.NoError(t, os.Chtimes(stale, long, long))
	require.NoError(t, os.Chtimes(theirs, long, long))

	dir, err := WriteAssets(data, uiFiles, "default")
	require.NoError(t, err)
	page, err := os.ReadFile(filepath.Join(dir, "index.html"))
	require.NoError(t, err)
	html := string(page)
	start := strings.Index(html, "<script>") + len("<script>")
	script := html[start : start+strings.Index(html[start:], "</script>")]
	assert.Equal(t, Seed("default"), script, "the seed runs first")
	sum := sha256.Sum256([]byte(script))
	policy := html[strings.Index(html, `content="script-src`):]
	policy = policy[:strings.Index(policy, `">`)]
	assert.Contains(t, policy, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'", "allowed by its hash")
	assert.Contains(t, policy, "'sha256-b5z8I2qE95uFcs3PIfdlrgDi1MMXC2oAUAUMdoJx+a0='", "the UI's own script still allowed")
	assert.Less(t, strings.Index(html, `http-equiv="content-security-policy"`), start, "and after the policy")
	assert.FileExists(t, filepath.Join(dir, "_app", "version.json"), "the UI's other files are there")
	assert.NoDirExists(t, stale, "another build's files are gone")
	assert.DirExists(t, fresh, "not those another start may be serving")
	assert.DirExists(t, theirs, "nor what Relink did not write")
	assert.True(t, strings.HasPrefix(policy, `content="script-src 'sha256-`), "the hash is in script-src: %s", policy)

	again, err := WriteAssets(data, uiFiles, "default")
	require.NoError(t, err)
	assert.Equal(t, dir, again)
	other, err := WriteAssets(data, uiFiles, "relink")
	require.NoError(t, err)
	assert.NotEqual(t, dir, other, "a namespace of its own")
}

func TestAPageWithoutTheExpectedPolicyIsRefused(t *testing.T) {
	_, err := WriteAssets(t.TempDir(), fstest.MapFS{"index.html": {Data: []byte("<html><head></head></html>")}}, "default")
	assert.ErrorContains(t, err, "script policy")
}
