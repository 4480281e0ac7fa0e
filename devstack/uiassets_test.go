package devstack

import (
	"crypto/sha256"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTheDevUIPageRunsTheSeedUnderItsOwnPolicy(t *testing.T) {
	data := t.TempDir()
	stale := filepath.Join(data, "ui", "older-build")
	require.NoError(t, os.MkdirAll(stale, 0o700))

	dir, err := uiAssets(data, "default")
	require.NoError(t, err)
	page, err := os.ReadFile(filepath.Join(dir, "index.html"))
	require.NoError(t, err)
	html := string(page)
	start := strings.Index(html, "<script>") + len("<script>")
	script := html[start : start+strings.Index(html[start:], "</script>")]
	assert.Contains(t, script, "namespace-workflow-table-columns")
	sum := sha256.Sum256([]byte(script))
	policy := html[strings.Index(html, `content="script-src`):]
	policy = policy[:strings.Index(policy, `">`)]
	assert.Contains(t, policy, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'", "the seed is allowed by its hash")
	assert.Less(t, strings.Index(html, `http-equiv="content-security-policy"`), start, "and runs after the policy")
	assert.FileExists(t, filepath.Join(dir, "_app", "version.json"), "the UI's other files are there")
	assert.NoDirExists(t, stale, "another build's files are gone")

	again, err := uiAssets(data, "default")
	require.NoError(t, err)
	assert.Equal(t, dir, again)
	other, err := uiAssets(data, "relink")
	require.NoError(t, err)
	assert.NotEqual(t, dir, other, "a namespace of its own")
}

func TestAPageWithoutTheExpectedPolicyIsRefused(t *testing.T) {
	_, err := seededPage([]byte("<html><head></head></html>"), "x()")
	assert.Error(t, err)
}
