package integration

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/relink-dev/relink/cli"
	"github.com/relink-dev/relink/workflows"
)

// TestDevStackResumesOpenRepairsAfterRestart runs the README's first
// command as a user would (on free ports): the stack comes up with the UI,
// a repair starts from the sandbox's webhook, the stack stops, and after a
// restart on the same data directory the repair carries on to REPAIRED.
func TestDevStackResumesOpenRepairsAfterRestart(t *testing.T) {
	t.Parallel()
	gatewayPort, temporalPort, uiPort := freePort(t), freePort(t), freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", gatewayPort)
	dataDir := filepath.Join(t.TempDir(), "relink")
	env := map[string]string{
		"RELINK_DATA_DIR":           dataDir,
		"RELINK_DEV_TEMPORAL_PORT":  fmt.Sprint(temporalPort),
		"RELINK_DEV_UI_PORT":        fmt.Sprint(uiPort),
		"RELINK_LISTEN_ADDR":        fmt.Sprintf("127.0.0.1:%d", gatewayPort),
		"RELINK_PUBLIC_URL":         base,
		"RELINK_SANDBOX_SYNC_DELAY": "0s",
	}
	api := apiClient{base: base, key: cli.DevAPIKey}

	stop := startDev(t, env, "dev")
	ui, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/namespaces/default/workflows", uiPort))
	require.NoError(t, err)
	ui.Body.Close()
	assert.Equal(t, http.StatusOK, ui.StatusCode, "the Web UI is up")

	call(t, api, http.MethodPost, "/sandbox/connections/conn_dev/break", `{"profileId":"p_dev"}`)
	waitStatus(t, api, "AWAITING_USER")
	session := call(t, api, http.MethodPost, "/v1/repairs/sandbox/conn_dev/reconnect", "")
	assert.Contains(t, session, `"connectorStatus":"ACTION_REQUIRED"`)
	assertPrivate(t, dataDir)
	assertUIDecodes(t, base, uiPort)
	stop()

	// After the restart (as `go run ./dev`: the dev binary's default is
	// `relink dev`) the same keys open the old payloads, and the page
	// completes with a client token, as in the README's walkthrough.
	stop = startDev(t, env) // no command
	defer stop()
	var minted struct{ Token string }
	require.NoError(t, json.Unmarshal([]byte(call(t, api, http.MethodPost, "/v1/repairs/sandbox/conn_dev/client-token", "")), &minted))
	page := apiClient{base: base, key: minted.Token}
	login := call(t, api, http.MethodPost, "/sandbox/connections/conn_dev/login", "")
	call(t, page, http.MethodPost, "/v1/repairs/sandbox/conn_dev/complete", login)
	waitStatus(t, api, "REPAIRED")
	status, _ := page.send(t, http.MethodGet, "/v1/repairs", "")
	assert.Equal(t, http.StatusForbidden, status, "the token is for one connection")
}

// The walkthrough's lost-confirmation row ({"suppressWebhooks":true,
// "syncingPolls":3}: the confirming webhook is lost, SYNCING after close,
// then status polling confirms after two more SYNCING reads) on `relink
// dev` as the README starts it, with none of its timing set: its own
// defaults finish it in seconds, where production's (a 10-minute quiet
// period, then polls 1 and 2 minutes apart) take 13 minutes.
func TestDevStackConfirmsALostWebhookInSeconds(t *testing.T) {
	t.Parallel()
	gatewayPort := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", gatewayPort)
	env := map[string]string{
		"RELINK_DATA_DIR":          filepath.Join(t.TempDir(), "relink"),
		"RELINK_DEV_TEMPORAL_PORT": fmt.Sprint(freePort(t)),
		"RELINK_DEV_UI_PORT":       "0",
		"RELINK_LISTEN_ADDR":       fmt.Sprintf("127.0.0.1:%d", gatewayPort),
		"RELINK_PUBLIC_URL":        base,
	}
	api := apiClient{base: base, key: cli.DevAPIKey}
	stop := startDev(t, env)
	defer stop()

	call(t, api, http.MethodPut, "/sandbox/connections/conn_dev/script", `{"suppressWebhooks":true,"syncingPolls":3}`)
	call(t, api, http.MethodPost, "/sandbox/connections/conn_dev/break", `{"profileId":"profile_1","institution":"First Sandbox Bank"}`)
	waitStatus(t, api, "AWAITING_USER")
	call(t, api, http.MethodPost, "/v1/repairs/sandbox/conn_dev/reconnect", "")
	login := call(t, api, http.MethodPost, "/sandbox/connections/conn_dev/login", "")
	completed := time.Now()
	call(t, api, http.MethodPost, "/v1/repairs/sandbox/conn_dev/complete", login)

	waitStatus(t, api, "REPAIRED") // a minute at most
	took := time.Since(completed)
	_, out := api.send(t, http.MethodGet, "/v1/repairs/sandbox/conn_dev", "")
	assert.Contains(t, out, "confirmed by the provider's connection status", "polling confirmed it, not a webhook")
	// 5 s quiet, then polls 1 and 2 s apart: 8 s, with room for a busy machine.
	assert.Less(t, took, 30*time.Second, "from the user's complete to REPAIRED")
	t.Logf("REPAIRED %.1fs after complete", took.Seconds())
}

// `relink dev` says it is starting the moment it runs, then each slow
// step as it begins it, before it is ready: after a first build that
// printed nothing for minutes, the terminal is never silent again.
func TestDevStackSaysWhatItIsDoingAsItStarts(t *testing.T) {
	t.Parallel()
	gatewayPort := freePort(t)
	env := map[string]string{
		"RELINK_DATA_DIR":          filepath.Join(t.TempDir(), "relink"),
		"RELINK_DEV_TEMPORAL_PORT": fmt.Sprint(freePort(t)),
		"RELINK_DEV_UI_PORT":       fmt.Sprint(freePort(t)),
		"RELINK_LISTEN_ADDR":       fmt.Sprintf("127.0.0.1:%d", gatewayPort),
		"RELINK_PUBLIC_URL":        fmt.Sprintf("http://127.0.0.1:%d", gatewayPort),
	}
	p, err := startDevBinary(t.TempDir(), env, "relink dev ready")
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	require.NoError(t, p.stop())

	out := p.output.String()
	assert.True(t, strings.HasPrefix(out, "relink dev starting"), "the first line, before anything slow:\n%s", out)
	last := 0
	for _, step := range []string{
		"relink dev starting",
		"  setting up Temporal's databases in", // a fresh data directory
		"  starting the embedded Temporal server on",
		"  starting the Temporal Web UI on",
		"  connecting to Temporal at",
		"  replaying the open repairs",
		"  starting the worker",
		"  starting the gateway on",
		"relink dev ready",
	} {
		i := strings.Index(out[last:], step)
		if !assert.GreaterOrEqual(t, i, 0, "%q after the steps before it:\n%s", step, out) {
			return
		}
		last += i + len(step)
	}
}

// assertPrivate checks the data directory and every file and folder in it
// (database, its WAL, logs, keys, sandbox state, the Web UI's files) are
// the user's alone.
func assertPrivate(t *testing.T, dir string) {
	t.Helper()
	st, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), st.Mode().Perm(), dir)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		info, err := e.Info()
		require.NoError(t, err)
		names = append(names, e.Name())
		if e.IsDir() { // the Web UI's seeded files (temporalui.AssetsFolder)
			assert.Equal(t, os.FileMode(0o700), info.Mode().Perm(), e.Name())
			continue
		}
		assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), e.Name())
	}
	for _, want := range []string{"temporal.db", "temporal-visibility.db", "temporal.log", "payload-keys", "client-token-keys"} {
		assert.Contains(t, names, want)
	}
}

// assertUIDecodes checks the embedded Web UI is pointed at the gateway's
// codec, and that the codec answers the UI's origin.
func assertUIDecodes(t *testing.T, base string, uiPort int) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/settings", uiPort))
	require.NoError(t, err)
	settings, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(settings), base+"/codec")

	req, err := http.NewRequest(http.MethodPost, base+"/codec/decode", strings.NewReader(`{"payloads":[]}`))
	require.NoError(t, err)
	req.Header.Set("Origin", fmt.Sprintf("http://localhost:%d", uiPort))
	req.Header.Set("X-Namespace", "default")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, fmt.Sprintf("http://localhost:%d", uiPort), resp.Header.Get("Access-Control-Allow-Origin"))
}

// startDev runs `relink dev` (the dev binary with args: "dev", or none, as
// the README's first command runs it) until the returned stop is called.
func startDev(t *testing.T, env map[string]string, args ...string) (stop func()) {
	t.Helper()
	p, err := startDevBinary(t.TempDir(), env, "relink dev ready", args...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	return func() { require.NoError(t, p.stop(), "relink dev stops cleanly on Ctrl-C") }
}

// apiClient calls the dev stack's gateway with a bearer key or token.
type apiClient struct{ base, key string }

func (c apiClient) send(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+c.key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(raw)
}

// call sends a request that must succeed and returns the answer.
func call(t *testing.T, api apiClient, method, path, body string) string {
	t.Helper()
	status, out := api.send(t, method, path, body)
	require.Less(t, status, 300, "%s %s: %s", method, path, out)
	return out
}

func waitStatus(t *testing.T, api apiClient, want string) {
	t.Helper()
	require.Eventually(t, func() bool {
		status, out := api.send(t, http.MethodGet, "/v1/repairs/sandbox/conn_dev", "")
		return status == http.StatusOK && strings.Contains(out, `"status":"`+want+`"`)
	}, time.Minute, 100*time.Millisecond, "waiting for %s", want)
}

func freePort(t *testing.T) int {
	port, err := freeTCPPort()
	require.NoError(t, err)
	return port
}

// A data directory from an older Relink: testdata/older-temporal.db.gz is
// the temporal.db that commit 35fc664's `relink dev` left in namespace
// "older" with one repair (conn_fixture) waiting for its user, its
// visibility inside (there was no temporal-visibility.db then), and
// RelinkStatus removed, as a Relink from before that search attribute
// would lack it. The dev server adds the attribute before anything runs,
// and starts again so that no service holds the old list in its cache
// (for up to a minute, rejecting every repair's status); it keeps the
// single database, so the old repair stays listed.
func TestTheDevServerBringsAnOlderDatabaseUpToDate(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "relink")
	require.NoError(t, os.MkdirAll(dataDir, 0o700))
	writeFixture(t, "testdata/older-temporal.db.gz", filepath.Join(dataDir, "temporal.db"))
	server, s, _ := devServerWithARepair(t, dataDir, "older", "conn_older")
	t.Cleanup(func() { assert.NoError(t, server.stop()) })
	count := func(query string) int64 {
		resp, err := s.temporal.CountWorkflow(context.Background(), &workflowservice.CountWorkflowExecutionsRequest{Query: query})
		if err != nil {
			return -1
		}
		return resp.GetCount()
	}
	require.Eventually(t, func() bool {
		return count("WorkflowId = 'repair:sandbox:conn_older' AND "+workflows.SearchAttrStatus.GetName()+" = 'AWAITING_USER'") == 1
	}, time.Minute, 50*time.Millisecond, "the new repair is listed with its status")
	assert.Equal(t, int64(1), count("WorkflowId = 'repair:sandbox:conn_fixture' AND ExecutionStatus = 'Running'"), "the older repair is still listed")
	assert.NoFileExists(t, filepath.Join(dataDir, "temporal-visibility.db"), "an older data directory keeps its layout")
	assert.Contains(t, server.output.String(), "added Relink's newer search attributes: starting the Temporal server again",
		"the second start of the server is said, not silent")
}

// A data directory of this version whose temporal-visibility.db went
// missing: starting would list none of its repairs, so the dev server
// refuses, and says what to do.
func TestTheDevServerRefusesADataDirectoryThatLostItsVisibility(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "relink")
	server, _, env := devServerWithARepair(t, dataDir, "lost", "conn_lost")
	require.NoError(t, server.stop())

	visibility := filepath.Join(dataDir, "temporal-visibility.db")
	require.FileExists(t, visibility, "a new data directory keeps visibility apart")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		require.NoError(t, ignoreNotExist(os.Remove(visibility+suffix)))
	}
	_, err := startDevBinary(t.TempDir(), env, "relink dev-server ready", "dev-server")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "temporal-visibility.db is missing while")
	assert.NoFileExists(t, visibility, "nothing was started on an empty list")

	// An empty file in its place (created, never set up) is no better.
	require.NoError(t, os.WriteFile(visibility, nil, 0o600))
	_, err = startDevBinary(t.TempDir(), env, "relink dev-server ready", "dev-server")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "temporal-visibility.db is missing while")
}

// A data directory that lost its visibility file, and holds no workflows
// but the server's own, has nothing to list: it is set up again, not
// refused.
func TestALostVisibilityWithNothingToListIsSetUpAgain(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "relink")
	env := map[string]string{
		"RELINK_DATA_DIR":          dataDir,
		"RELINK_DEV_TEMPORAL_PORT": fmt.Sprint(freePort(t)),
		"RELINK_DEV_UI_PORT":       "0",
	}
	server, err := startDevBinary(t.TempDir(), env, "relink dev-server ready", "dev-server")
	require.NoError(t, err)
	require.NoError(t, server.stop())
	visibility := filepath.Join(dataDir, "temporal-visibility.db")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		require.NoError(t, ignoreNotExist(os.Remove(visibility+suffix)))
	}

	server, err = startDevBinary(t.TempDir(), env, "relink dev-server ready", "dev-server")
	require.NoError(t, err, "the server's own scanners are no workflows to lose")
	require.NoError(t, server.stop())
	assert.FileExists(t, visibility)
}

// devServerWithARepair runs `relink dev-server` on dataDir, with namespace
// ns, and a repair of conn waiting for its user on it: the server, the
// stack the repair runs on, and the server's environment.
func devServerWithARepair(t *testing.T, dataDir, ns, conn string) (*devProcess, *stack, map[string]string) {
	t.Helper()
	port := freePort(t)
	env := map[string]string{
		"RELINK_DATA_DIR":          dataDir,
		"RELINK_DEV_TEMPORAL_PORT": fmt.Sprint(port),
		"RELINK_DEV_UI_PORT":       "0",
		"TEMPORAL_NAMESPACE":       ns,
	}
	server, err := startDevBinary(t.TempDir(), env, "relink dev-server ready", "dev-server")
	require.NoError(t, err)
	t.Cleanup(func() { _ = server.cmd.Process.Kill() }) // should a check fail before the test stops it
	s := buildStack(t, map[string]string{"TEMPORAL_ADDRESS": fmt.Sprintf("127.0.0.1:%d", port), "TEMPORAL_NAMESPACE": ns})
	s.startWorker(s.providers.APIs...)
	s.breakConnection(conn, "profile_"+ns)
	s.waitForStatus(conn, workflows.StatusAwaitingUser)
	return server, s, env
}

// writeFixture unzips a gzipped fixture to path, 0600.
func writeFixture(t *testing.T, fixture, path string) {
	t.Helper()
	f, err := os.Open(fixture)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	require.NoError(t, err)
	_, err = io.Copy(out, zr)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}

func ignoreNotExist(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
