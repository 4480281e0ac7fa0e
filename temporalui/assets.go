package temporalui

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// The dev stack's Web UI lists each repair with its outcome and reason
// from a browser's first visit, and has Relink's saved views: its page
// runs Seed before the UI starts. The UI server serves its files from a
// folder when given one, so the dev stack writes them there (once per UI
// build and namespace), the page with the seed script, whose hash joins
// the page's own Content-Security-Policy.

// AssetsFolder is the folder under the data directory that holds the
// seeded copies of the UI's files: a name only Relink uses, since only
// what it wrote there is ever removed.
const AssetsFolder = "temporal-ui-assets"

// WriteAssets writes the UI's files (ui: the folder holding its
// index.html) with the seeded page under dataDir/temporal-ui-assets/<digest>
// and returns that folder; the copies it wrote for other UI builds or
// namespaces go (and only those: digest-named folders and its own
// unfinished ones).
func WriteAssets(dataDir string, ui fs.FS, namespace string) (string, error) {
	index, err := fs.ReadFile(ui, "index.html")
	if err != nil {
		return "", err
	}
	page, err := seededPage(index, Seed(namespace))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(page)
	root := filepath.Join(dataDir, AssetsFolder)
	name := hex.EncodeToString(sum[:8])
	dir := filepath.Join(root, name)
	written := func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "index.html"))
		return err == nil && bytes.Equal(b, page)
	}
	if written() {
		return dir, nil
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(root, "writing-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.CopyFS(tmp, ui); err != nil {
		return "", fmt.Errorf("write the Web UI's files: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "index.html"), page, 0o600); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if written() { // another start wrote the same meanwhile
			return dir, nil
		}
		return "", err
	}
	old, _ := os.ReadDir(root)
	for _, e := range old {
		if e.Name() != name && e.IsDir() && (digestName.MatchString(e.Name()) || strings.HasPrefix(e.Name(), "writing-")) &&
			time.Since(modTime(e)) > time.Hour {
			_ = os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
	return dir, nil
}

// digestName is the name of a folder WriteAssets wrote.
var digestName = regexp.MustCompile(`^[0-9a-f]{16}$`)

func modTime(e fs.DirEntry) time.Time {
	info, err := e.Info()
	if err != nil {
		return time.Time{}
	}
	return info.ModTime()
}

// uiPolicy is the UI page's Content-Security-Policy, in a meta element:
// scripts by hash, and what they load ('strict-dynamic').
var uiPolicy = regexp.MustCompile(`(?i)(<meta http-equiv="content-security-policy" content="[^"]*script-src)( [^"]*"\s*/?>)`)

// seededPage puts script first in the UI's page, right after the policy
// that allows it by its hash (added to the policy's script-src).
func seededPage(index []byte, script string) ([]byte, error) {
	if strings.Contains(strings.ToLower(script), "</script") {
		return nil, fmt.Errorf("the seed script must not close its element")
	}
	if len(uiPolicy.FindAllIndex(index, -1)) != 1 {
		return nil, fmt.Errorf("the Web UI's page has not the one script policy this build expects")
	}
	sum := sha256.Sum256([]byte(script))
	hash := " 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	return uiPolicy.ReplaceAll(index, []byte("${1}"+hash+"${2}<script>"+script+"</script>")), nil
}
