package cli

import (
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/providers"
)

// linked lists every package of the module and every test binary (named
// "<package>.test") with what it links, from one `go list` (each costs
// about a CPU-second of loading the module's 1,800 packages).
var linked = sync.OnceValues(func() (map[string][]string, error) {
	out, err := exec.Command("go", "list", "-test", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", "github.com/relink-dev/relink/...").Output()
	if err != nil {
		return nil, err
	}
	deps := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) > 0 {
			deps[fields[0]] = fields[1:]
		}
	}
	return deps, nil
})

// linksNoTemporalServer fails t for each Temporal server or Web UI server
// package that binary links.
func linksNoTemporalServer(t *testing.T, binary string, deps []string) {
	t.Helper()
	for _, dep := range deps {
		assert.False(t, strings.HasPrefix(dep, "go.temporal.io/server"), "%s links %s", binary, dep)
		assert.False(t, strings.HasPrefix(dep, "github.com/temporalio/ui-server"), "%s links %s", binary, dep)
	}
}

// The production binaries (./starter/relink, built as relink, and ./worker/relink-worker,
// built as relink-worker) stay slim: neither links the Temporal server or
// the Web UI server, which only the dev binary (./dev) embeds. The test
// lives with the commands, so the thin main packages need no test binary
// of their own.
func TestProductionBinariesLinkNoTemporalServer(t *testing.T) {
	all, err := linked()
	require.NoError(t, err)
	for _, pkg := range []string{"github.com/relink-dev/relink/starter/relink", "github.com/relink-dev/relink/worker/relink-worker"} {
		require.Contains(t, all[pkg], "go.temporal.io/sdk/client", "%s: the listing is real", pkg)
		linksNoTemporalServer(t, pkg, all[pkg])
	}
	require.Contains(t, all["github.com/relink-dev/relink/dev"], "go.temporal.io/server/temporal", "the check would see the server")
}

// No test binary links the Temporal server either: linking it costs every
// `go test ./...` 15-20 s of two cores. The integration tests run the dev
// binary's `relink dev-server` instead (integration/devbinary_test.go).
func TestNoTestBinaryLinksTheTemporalServer(t *testing.T) {
	all, err := linked()
	require.NoError(t, err)
	require.Contains(t, all, "github.com/relink-dev/relink/integration.test", "the listing is real")
	for binary, deps := range all {
		if strings.HasSuffix(binary, ".test") {
			linksNoTemporalServer(t, binary, deps)
		}
	}
}

// The providers' adapters and their tests link no Temporal SDK: they
// speak activities/aggregator, and each warm `go test ./...` links their
// test binaries at a third of the size. The adapters are every registered
// provider's package (where its settings type lives), the contract and
// the provider list.
func TestAdaptersLinkNoTemporalSDK(t *testing.T) {
	all, err := linked()
	require.NoError(t, err)
	binaries := []string{"github.com/relink-dev/relink/activities/aggregator", "github.com/relink-dev/relink/activities/providers"}
	for _, reg := range providers.All {
		binaries = append(binaries, reflect.TypeOf(reg.NewSettings()).Elem().PkgPath())
	}
	require.Contains(t, binaries, "github.com/relink-dev/relink/activities/quiltt", "the listing is real")
	for _, binary := range binaries {
		binary += ".test"
		require.Contains(t, all, binary, "the listing is real")
		for _, dep := range all[binary] {
			assert.False(t, strings.HasPrefix(dep, "go.temporal.io/"), "%s links %s", binary, dep)
		}
	}
}

// However it is built or installed (`go build` in its folder, `go install
// ./starter/relink`, `go install github.com/relink-dev/relink/...`), the
// production program's binary is named relink: Go names it after the
// package's folder, so no -o is needed.
func TestTheProductionBinariesAreNamedRelinkAndRelinkWorker(t *testing.T) {
	for pkg, binary := range map[string]string{
		"github.com/relink-dev/relink/starter/relink":       "relink",
		"github.com/relink-dev/relink/worker/relink-worker": "relink-worker",
	} {
		out, err := exec.Command("go", "list", "-f", "{{.Name}} {{.Target}}", pkg).Output()
		require.NoError(t, err)
		name, target, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
		assert.Equal(t, "main", name, pkg)
		assert.Equal(t, binary, strings.TrimSuffix(filepath.Base(target), ".exe"), pkg)
	}
}
