package integration

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// One Temporal server serves the whole package, as a real cluster serves
// many apps: each test's stack gets a namespace of its own on it (workflow
// ids, task queues and visibility are per namespace), so tests stay as
// isolated as with a server each, without starting dozens of servers.
//
// The server is the dev binary's `relink dev-server` (the embedded server
// of `relink dev`), run as a process of its own like a real cluster. The
// package's test binary then links only Relink and the SDK: linking the
// server into it would cost every `go test` run 15-20 s on two cores,
// while the dev binary's link is kept by the build cache (devbinary_test.go).
var shared struct {
	address string
	next    atomic.Int32
}

// namespaces is how many stacks the package may create: enough for one
// run of every test (about 70 stacks), times -count.
var namespaces = 96

func TestMain(m *testing.M) {
	flag.Parse()
	moreParallelByDefault()
	lessGC()
	if count, err := strconv.Atoi(flag.Lookup("test.count").Value.String()); err == nil && count > 1 {
		namespaces *= count
	}
	os.Exit(runWithServer(m))
}

// gcPercent is the GOGC of the package's test process and of its dev
// servers unless GOGC says otherwise: they allocate much and keep little,
// and with the default (100) collecting took about a tenth of their CPU.
// With 400, three paired runs of the package took 30-31 CPU-seconds
// against 34-35, on a machine with memory to spare.
const gcPercent = 400

func lessGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}

// moreParallelByDefault runs four tests per CPU unless -parallel says
// otherwise: the tests spend most of their time waiting on the server
// (timers, polls, workflow tasks), so the default of one per CPU leaves
// the CPUs half idle.
func moreParallelByDefault() {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", strconv.Itoa(4*runtime.GOMAXPROCS(0)))
	}
}

func runWithServer(m *testing.M) int {
	dir, err := os.MkdirTemp("", "relink-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	defer func() {
		if builtBinariesDir != "" {
			_ = os.RemoveAll(builtBinariesDir)
		}
	}()
	port, err := freeTCPPort()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	args := []string{"dev-server", "-in-memory"}
	for i := 1; i < namespaces; i++ {
		args = append(args, "-namespace", fmt.Sprintf("it-%d", i))
	}
	server, err := startDevBinary(dir, map[string]string{
		"RELINK_DATA_DIR":          dir,
		"RELINK_DEV_TEMPORAL_PORT": fmt.Sprint(port),
		"RELINK_DEV_UI_PORT":       "0",
		"TEMPORAL_NAMESPACE":       "it-0",
	}, "relink dev-server ready", args...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start the shared Temporal server:", err)
		return 1
	}
	defer func() {
		if err := server.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop the shared Temporal server:", err)
		}
	}()
	shared.address = fmt.Sprintf("127.0.0.1:%d", port)
	return m.Run()
}

// newNamespace hands a test a namespace no other test uses.
func newNamespace(t *testing.T) string {
	t.Helper()
	n := shared.next.Add(1) - 1
	if int(n) >= namespaces {
		t.Fatalf("more than %d stacks in the package: raise namespaces in main_test.go", namespaces)
	}
	return fmt.Sprintf("it-%d", n)
}

// freeTCPPort is a loopback port free at the time of asking, chosen below
// the kernel's ephemeral range (32768 and up on Linux, 49152 on macOS):
// ports taken there by the many outgoing connections of the tests, or by
// servers bound to port 0, can't collide with it before it is bound.
// A port is handed out once per test process, so two tests never get the
// same one.
func freeTCPPort() (int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		if handedOut.ports[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		_ = l.Close()
		handedOut.ports[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("no free port between 20000 and 32000")
}

var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}
