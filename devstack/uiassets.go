package devstack

import (
	"io/fs"

	"github.com/temporalio/ui-server/v2/ui"

	"github.com/relink-dev/relink/temporalui"
)

// uiAssets writes the embedded Web UI's files, its page seeded with
// Relink's columns and saved views (temporalui.WriteAssets), under
// dataDir and returns their folder for the UI server.
func uiAssets(dataDir, namespace string) (string, error) {
	all, err := ui.Assets()
	if err != nil {
		return "", err
	}
	local, err := fs.Sub(all, "local")
	if err != nil {
		return "", err
	}
	return temporalui.WriteAssets(dataDir, local, namespace)
}
