package integration

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/activities/quiltt/quilttfake"
)

// The production binaries started before their Temporal server (a
// container that comes up first) wait for it: relink-worker, `relink
// gateway` and `relink setup` each log every failed try at WARN and keep
// trying; meanwhile the gateway listens, /healthz answers 200 and /readyz
// and the API 503. Once the server is up on that address, setup finishes,
// the gateway is ready and a repair runs through gateway and worker.
func TestTheProductionBinariesStartedBeforeTemporalWaitForIt(t *testing.T) {
	t.Parallel()
	temporalPort, err := freeTCPPort()
	require.NoError(t, err)
	gatewayPort, err := freeTCPPort()
	require.NoError(t, err)
	address := fmt.Sprintf("127.0.0.1:%d", temporalPort)
	base := fmt.Sprintf("http://127.0.0.1:%d", gatewayPort)
	const namespace = "relink-waits"
	fake := quilttfake.New(quilttSecret)
	t.Cleanup(fake.Close)
	env := merged(quilttSettings(fake), map[string]string{
		"TEMPORAL_ADDRESS":   address,
		"TEMPORAL_NAMESPACE": namespace,
		"RELINK_API_KEY":     gatewayKey,
		"RELINK_LISTEN_ADDR": fmt.Sprintf("127.0.0.1:%d", gatewayPort),
		"RELINK_UNVERSIONED": "true",
		"RELINK_LOG_LEVEL":   "warn",
	})
	dev, err := devBinary()
	require.NoError(t, err)
	workerBin, err := workerBinary()
	require.NoError(t, err)
	dir := t.TempDir()
	worker := startWaiting(t, workerBin, dir, env)
	gateway := startWaiting(t, dev, dir, env, "gateway")
	setup := startWaiting(t, dev, dir, env, "setup")

	knocked := fmt.Sprintf(`level=WARN msg="Temporal is not reachable yet; retrying" address=%s namespace=%s attempt=1 retryIn=`, address, namespace)
	waitForOutput(t, worker, knocked)
	waitForOutput(t, gateway, knocked)
	waitForOutput(t, setup, fmt.Sprintf(`level=WARN msg="Temporal or the namespace is not ready yet; retrying" address=%s namespace=%s attempt=1 retryIn=`, address, namespace))
	for _, p := range []*devProcess{worker, gateway, setup} {
		assert.NotContains(t, p.output.String(), gatewayKey)
		assert.NotContains(t, p.output.String(), quilttSecret)
	}
	status, _, _ := httpGet(t, base+"/healthz")
	assert.Equal(t, http.StatusOK, status, "the gateway listens while it waits")
	status, _, body := httpGet(t, base+"/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Equal(t, "unavailable", errorCodeOf(t, body), "%s", body)
	status, header, body := httpGet(t, base+"/v1/repairs")
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Equal(t, "unavailable", errorCodeOf(t, body), "%s", body)
	assert.NotEmpty(t, header.Get("Retry-After"))

	// The server comes up on that address, its namespace with Relink's
	// search attributes (as a cluster that setup ran on).
	serverDir := t.TempDir()
	server, err := startDevBinary(serverDir, map[string]string{
		"RELINK_DATA_DIR":          serverDir,
		"RELINK_DEV_TEMPORAL_PORT": fmt.Sprint(temporalPort),
		"RELINK_DEV_UI_PORT":       "0",
		"TEMPORAL_NAMESPACE":       namespace,
	}, "relink dev-server ready", "dev-server", "-in-memory")
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, server.stop()) })

	waitForExit(t, setup, 2*time.Minute)
	require.NoError(t, setup.err, "%s", setup.output)
	assert.Contains(t, setup.output.String(), "search attributes registered in namespace "+namespace)
	require.Eventually(t, func() bool {
		status, _, _ := httpGet(t, base+"/readyz")
		return status == http.StatusOK
	}, time.Minute, 100*time.Millisecond, "the gateway is ready once Temporal answers:\n%s", gateway.output)

	// A repair through both: the gateway starts it, the worker probes Quiltt.
	conn := quilttfake.Connection{ID: "conn_waited", ProfileID: "p_waited", Provider: "PLAID", Status: quiltt.StatusErrorRepairable}
	fake.Put(conn)
	ev := quiltt.Event{ID: "evt_waited", Type: quiltt.EventRepairable, At: time.Now().UTC(),
		Profile: &quiltt.Profile{ID: conn.ProfileID}, Record: &quiltt.Record{ID: conn.ID, Provider: conn.Provider, Status: conn.Status}}
	require.NoError(t, quiltt.PostWebhook(context.Background(), http.DefaultClient, base+"/webhooks/quiltt", quilttWebhookSecret, time.Now(), ev))
	require.Eventually(t, func() bool {
		_, _, body := httpGet(t, base+"/v1/repairs/quiltt/conn_waited")
		return strings.Contains(string(body), `"status":"AWAITING_USER"`)
	}, time.Minute, 100*time.Millisecond, "the worker runs the repair:\nworker:\n%s\ngateway:\n%s", worker.output, gateway.output)

	for name, p := range map[string]*devProcess{"worker": worker, "gateway": gateway} {
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
		waitForExit(t, p, 30*time.Second)
		assert.NoError(t, p.err, "%s stops cleanly on SIGTERM:\n%s", name, p.output)
	}
}

// Signaled while it waits for Temporal, a worker or gateway stops at once
// and cleanly (exit 0), as it does once connected.
func TestTheProductionBinariesStopPromptlyWhileWaitingForTemporal(t *testing.T) {
	t.Parallel()
	temporalPort, err := freeTCPPort()
	require.NoError(t, err)
	gatewayPort, err := freeTCPPort()
	require.NoError(t, err)
	env := map[string]string{
		"TEMPORAL_ADDRESS":      fmt.Sprintf("127.0.0.1:%d", temporalPort),
		"RELINK_API_KEY":        gatewayKey,
		"RELINK_LISTEN_ADDR":    fmt.Sprintf("127.0.0.1:%d", gatewayPort),
		"RELINK_UNVERSIONED":    "true",
		"RELINK_LOG_LEVEL":      "warn",
		"QUILTT_API_SECRET":     quilttSecret,
		"QUILTT_WEBHOOK_SECRET": quilttWebhookSecret,
	}
	dev, err := devBinary()
	require.NoError(t, err)
	workerBin, err := workerBinary()
	require.NoError(t, err)
	dir := t.TempDir()
	for name, p := range map[string]*devProcess{
		"worker":  startWaiting(t, workerBin, dir, env),
		"gateway": startWaiting(t, dev, dir, env, "gateway"),
	} {
		waitForOutput(t, p, `msg="Temporal is not reachable yet; retrying"`)
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
		waitForExit(t, p, 5*time.Second)
		assert.NoError(t, p.err, "%s exits 0:\n%s", name, p.output)
	}
}

// A worker whose namespace does not exist yet waits for it; once it exists
// without Relink's search attributes, the worker refuses to start, as it
// does on any namespace `relink setup` has not prepared.
func TestTheWorkerWaitsForItsNamespaceThenRefusesOneWithoutSearchAttributes(t *testing.T) {
	t.Parallel()
	namespace := fmt.Sprintf("relink-late-%d", time.Now().UnixNano())
	workerBin, err := workerBinary()
	require.NoError(t, err)
	worker := startWaiting(t, workerBin, t.TempDir(), map[string]string{
		"TEMPORAL_ADDRESS":      shared.address,
		"TEMPORAL_NAMESPACE":    namespace,
		"RELINK_UNVERSIONED":    "true",
		"RELINK_LOG_LEVEL":      "warn",
		"QUILTT_API_SECRET":     quilttSecret,
		"QUILTT_WEBHOOK_SECRET": quilttWebhookSecret,
	})
	waitForOutput(t, worker, fmt.Sprintf(`msg="the namespace is not found yet, or Temporal does not answer; retrying" address=%s namespace=%s attempt=1 `, shared.address, namespace))
	registerNamespace(t, namespace)
	waitForExit(t, worker, time.Minute)
	require.Error(t, worker.err, "%s", worker.output)
	assert.Contains(t, worker.output.String(), "namespace "+namespace+" lacks the search attributes")
	assert.Contains(t, worker.output.String(), "run `relink setup`")
}

// `relink setup` for a namespace not created yet waits for it, and
// prepares it once it is visible.
func TestSetupWaitsForANewNamespace(t *testing.T) {
	t.Parallel()
	namespace := fmt.Sprintf("relink-new-%d", time.Now().UnixNano())
	dev, err := devBinary()
	require.NoError(t, err)
	setup := startWaiting(t, dev, t.TempDir(), map[string]string{
		"TEMPORAL_ADDRESS":   shared.address,
		"TEMPORAL_NAMESPACE": namespace,
		"RELINK_LOG_LEVEL":   "warn",
	}, "setup")
	waitForOutput(t, setup, fmt.Sprintf(`msg="Temporal or the namespace is not ready yet; retrying" address=%s namespace=%s attempt=1 `, shared.address, namespace))
	registerNamespace(t, namespace)
	waitForExit(t, setup, 2*time.Minute)
	require.NoError(t, setup.err, "%s", setup.output)
	assert.Contains(t, setup.output.String(), "search attributes registered in namespace "+namespace)
}

// The wait is bounded (-wait): a namespace that never comes ends it with
// an error that says what was waited for and how to create it.
func TestSetupGivesUpOnANamespaceThatNeverComes(t *testing.T) {
	t.Parallel()
	dev, err := devBinary()
	require.NoError(t, err)
	setup := startWaiting(t, dev, t.TempDir(), map[string]string{
		"TEMPORAL_ADDRESS":   shared.address,
		"TEMPORAL_NAMESPACE": "relink-never",
	}, "setup", "-wait", "2s")
	waitForExit(t, setup, time.Minute)
	require.Error(t, setup.err)
	for _, want := range []string{"namespace relink-never, was still not ready after 2s (-wait)",
		"temporal operator namespace create --namespace relink-never"} {
		assert.Contains(t, setup.output.String(), want)
	}
}

// gatewayKey is the API key of the production gateways here: random and
// long, as production requires of its keys.
var gatewayKey = rand.Text() + rand.Text()

// startWaiting starts bin with args and stops it (SIGKILL) if it still
// runs when the test ends.
func startWaiting(t *testing.T, bin, dir string, env map[string]string, args ...string) *devProcess {
	t.Helper()
	p, err := startProcess(bin, dir, env, args...)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// waitForOutput waits until p has printed want.
func waitForOutput(t *testing.T, p *devProcess, want string) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(p.output.String(), want) }, 30*time.Second, 20*time.Millisecond,
		"waiting for %q in:\n%s", want, p.output)
}

// waitForExit waits until p has exited (p.err is then its status).
func waitForExit(t *testing.T, p *devProcess, within time.Duration) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(within):
		t.Fatalf("%s did not exit within %s:\n%s", p.cmd.Path, within, p.output)
	}
}

// registerNamespace creates a namespace on the shared server, as
// `temporal operator namespace create` does.
func registerNamespace(t *testing.T, namespace string) {
	t.Helper()
	nc, err := client.NewNamespaceClient(client.Options{HostPort: shared.address})
	require.NoError(t, err)
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, nc.Register(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace: namespace, WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour)}))
}

func httpGet(t *testing.T, url string) (status int, header http.Header, body []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+gatewayKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, body
}

func errorCodeOf(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error struct{ Code string }
	}
	require.NoError(t, json.Unmarshal(body, &e), "%s", body)
	return e.Error.Code
}
