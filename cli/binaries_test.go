package cli

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The production binaries (cmd/relink, cmd/relink-worker) stay slim:
// neither links the Temporal server or the Web UI server, which only the
// dev binary (./starter) embeds. The test lives with the commands, so the
// thin main packages need no test binary of their own.
func TestProductionBinariesLinkNoTemporalServer(t *testing.T) {
	for _, pkg := range []string{"github.com/relink-dev/relink/cmd/relink", "github.com/relink-dev/relink/cmd/relink-worker"} {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).Output()
		require.NoError(t, err)
		deps := strings.Fields(string(out))
		require.Contains(t, deps, "go.temporal.io/sdk/client", "%s: the listing is real", pkg)
		for _, dep := range deps {
			assert.False(t, strings.HasPrefix(dep, "go.temporal.io/server"), "%s links %s", pkg, dep)
			assert.False(t, strings.HasPrefix(dep, "github.com/temporalio/ui-server"), "%s links %s", pkg, dep)
		}
	}
}

// No test binary links the Temporal server either: linking it costs every
// `go test ./...` 15-20 s of two cores. The integration tests run the dev
// binary's `relink dev-server` instead (integration/devbinary_test.go).
func TestNoTestBinaryLinksTheTemporalServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}", "github.com/relink-dev/relink/...").Output()
	require.NoError(t, err)
	tested := strings.Fields(string(out))
	require.Contains(t, tested, "github.com/relink-dev/relink/integration", "the listing is real")
	out, err = exec.Command("go", append([]string{"list", "-deps", "-test", "-f", "{{.ImportPath}}"}, tested...)...).Output()
	require.NoError(t, err)
	for _, dep := range strings.Fields(string(out)) {
		assert.False(t, strings.HasPrefix(dep, "go.temporal.io/server"), "a test links %s", dep)
		assert.False(t, strings.HasPrefix(dep, "github.com/temporalio/ui-server"), "a test links %s", dep)
	}
}
