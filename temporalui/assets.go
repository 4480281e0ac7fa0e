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
)

// The dev stack's Web UI lists each repair with its outcome and reason
// from a browser's first visit, and has Relink's saved views: its page
// runs Seed before the UI starts. The UI server serves its files from a
// folder when given one, so the dev stack writes them there (once per UI
// build and namespace), the page with the seed script, whose hash joins
// the page's own Content-Security-Policy.

// WriteAssets writes the UI's files (ui: the folder holding its
// index.html) with the seeded page under dataDir/ui/<digest> and returns
// that folder; other builds' folders go.
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
	root := filepath.Join(dataDir, "ui")
	dir := filepath.Join(root, hex.EncodeToString(sum[:8]))
	if b, err := os.ReadFile(filepath.Join(dir, "index.html")); err == nil && bytes.Equal(b, page) {
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
	old, _ := os.ReadDir(root)
	for _, e := range old {
		if p := filepath.Join(root, e.Name()); p != tmp {
			_ = os.RemoveAll(p)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// uiPolicy is the UI page's Content-Security-Policy, in a meta element:
// scripts by hash, and what they load ('strict-dynamic').
var uiPolicy = regexp.MustCompile(`(?i)(<meta http-equiv="content-security-policy" content="script-src [^"]*)("\s*/?>)`)

// seededPage puts script first in the UI's page, right after the policy
// that allows it by its hash.
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
