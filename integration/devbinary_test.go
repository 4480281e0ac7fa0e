package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// builtBinariesDir holds the binaries built by go build (the fallback
// below), removed when the package's tests end.
var builtBinariesDir string

// devBinary is the dev binary (./dev: `relink dev`, `relink
// dev-server`, and every command of the production `relink`).
var devBinary = sync.OnceValues(func() (string, error) { return cachedBinary("github.com/relink-dev/relink/dev") })

// workerBinary is the production worker, relink-worker (./worker/relink-worker).
var workerBinary = sync.OnceValues(func() (string, error) { return cachedBinary("github.com/relink-dev/relink/worker/relink-worker") })

// cachedBinary is pkg's program, as `go run` builds it. `go run` keeps the
// linked program in the build cache, so a warm run finds it in a second
// where linking the dev binary's Temporal server afresh takes 15-20 s;
// -exec echo prints its path instead of running it. Right after a fresh
// link it prints a temporary path, gone once `go run` returns, so it is
// asked once more (a cache hit by then). Should that still not give a
// program (a Go release that caches no more, no echo), the binary is
// built into a directory of the package's tests.
//
// On a fresh machine `go test ./...` has compiled the server's packages
// before this runs (it builds ./dev and ./devstack, which have no
// tests), so only the link happens within the test binary's time.
func cachedBinary(pkg string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go command is needed to build %s: %w", pkg, err)
	}
	for range 2 {
		out, err := exec.Command(goTool, "run", "-exec", "echo", pkg).Output()
		if path := strings.TrimSpace(string(out)); err == nil && fileExists(path) {
			return path, nil
		}
	}
	builtBinaries.Lock()
	defer builtBinaries.Unlock()
	if builtBinariesDir == "" {
		if builtBinariesDir, err = os.MkdirTemp("", "relink-binaries-"); err != nil {
			return "", err
		}
	}
	path := filepath.Join(builtBinariesDir, filepath.Base(pkg))
	if out, err := exec.Command(goTool, "build", "-buildvcs=false", "-o", path, pkg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return path, nil
}

var builtBinaries sync.Mutex

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// devProcess is the dev binary running one command.
type devProcess struct {
	cmd    *exec.Cmd
	output *lockedBuffer
	exited chan struct{}
	err    error // the exit status, once exited is closed
}

// startDevBinary runs the dev binary with args, in an environment of its
// own (see startProcess), and returns once it has printed ready.
func startDevBinary(dir string, env map[string]string, ready string, args ...string) (*devProcess, error) {
	bin, err := devBinary()
	if err != nil {
		return nil, err
	}
	p, sawReady, err := launch(bin, dir, env, ready, args...)
	if err != nil {
		return nil, err
	}
	name := strings.Join(append([]string{filepath.Base(bin)}, args...), " ")
	select {
	case <-sawReady:
		return p, nil
	case <-p.exited:
		// The embedded server logs (and dies of a fatal error) to its
		// own file, not to stderr.
		serverLog, _ := os.ReadFile(filepath.Join(env["RELINK_DATA_DIR"], "temporal.log"))
		serverLog = serverLog[max(0, len(serverLog)-4000):]
		return nil, fmt.Errorf("%s exited before it was ready (%v):\n%s\ntemporal.log, its end:\n%s", name, p.err, p.output, serverLog)
	case <-time.After(2 * time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return nil, fmt.Errorf("%s was not ready in 2 minutes:\n%s", name, p.output)
	}
}

// startProcess runs bin with args and returns at once; its output (stdout
// and stderr) collects in the process's output.
func startProcess(bin, dir string, env map[string]string, args ...string) (*devProcess, error) {
	p, _, err := launch(bin, dir, env, "", args...)
	return p, err
}

// launch starts bin with args in an environment of its own (PATH, HOME,
// TMPDIR and GO* only: none of the developer's Relink, Temporal or
// provider settings, nor their Temporal profile; GOGC is gcPercent unless
// set; then env), and closes sawReady when a line of its stdout begins
// with ready (never if ready is empty).
func launch(bin, dir string, env map[string]string, ready string, args ...string) (p *devProcess, sawReady chan struct{}, err error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "PATH" || name == "HOME" || name == "TMPDIR" || strings.HasPrefix(name, "GO") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "TEMPORAL_CONFIG_FILE="+os.DevNull, "RELINK_LOG_LEVEL=error")
	if os.Getenv("GOGC") == "" {
		cmd.Env = append(cmd.Env, "GOGC="+strconv.Itoa(gcPercent))
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v) // the last of a name wins
	}
	cmd.SysProcAttr = dieWithParent()
	p = &devProcess{cmd: cmd, output: &lockedBuffer{}, exited: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	cmd.Stderr = p.output
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	sawReady = make(chan struct{})
	go func() {
		lines := bufio.NewScanner(stdout)
		for ready != "" && lines.Scan() {
			fmt.Fprintln(p.output, lines.Text())
			if strings.HasPrefix(lines.Text(), ready) {
				close(sawReady)
				break
			}
		}
		_, _ = io.Copy(p.output, stdout)
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, sawReady, nil
}

// stop interrupts the process, as Ctrl-C does, and waits for a clean exit.
func (p *devProcess) stop() error {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("did not stop within a minute of Ctrl-C:\n%s", p.output)
	}
	if p.err != nil {
		return fmt.Errorf("%v:\n%s", p.err, p.output)
	}
	return nil
}

// lockedBuffer collects a process's output, written by one goroutine and
// read by the test's.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
