package integration

import (
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"testing"

	"github.com/relink-dev/relink/devstack"
)

// One Temporal server serves the whole package, as a real cluster serves
// many apps: each test's stack gets a namespace of its own on it (workflow
// ids, task queues and visibility are per namespace), so tests stay as
// isolated as with a server each, without starting dozens of servers.
var shared struct {
	address string
	next    atomic.Int32
}

// namespaces is how many stacks the package may create.
const namespaces = 200

func TestMain(m *testing.M) {
	os.Exit(runWithServer(m))
}

func runWithServer(m *testing.M) int {
	dir, err := os.MkdirTemp("", "relink-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	more := make([]string, namespaces-1)
	for i := range more {
		more[i] = fmt.Sprintf("it-%d", i+1)
	}
	server, err := devstack.StartTemporal(devstack.Options{DataDir: dir, Namespace: "it-0", MoreNamespaces: more, FrontendPort: port})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start the shared Temporal server:", err)
		return 1
	}
	defer server.Stop()
	shared.address = server.Address
	return m.Run()
}

// newNamespace hands a test a namespace no other test uses.
func newNamespace(t *testing.T) string {
	t.Helper()
	n := shared.next.Add(1) - 1
	if n >= namespaces {
		t.Fatalf("more than %d stacks in the package: raise namespaces in main_test.go", namespaces)
	}
	return fmt.Sprintf("it-%d", n)
}
