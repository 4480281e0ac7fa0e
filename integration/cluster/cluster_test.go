//go:build cluster

// Package cluster runs Relink the way production runs it, every part in a
// process of its own: the official Temporal CLI's dev server (`temporal
// server start-dev`), `relink setup`, the production worker and gateway
// binaries, built from this checkout, and Quiltt through its local fake.
// It needs the `temporal` CLI on PATH (or TEMPORAL_CLI): `task
// cluster-test` installs it and runs this; so does CI.
package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/activities/quiltt/quilttfake"
)

// apiKey is the gateway's, made by `relink keygen -kind api-key`.
var apiKey string

const (
	quilttSecret  = "quiltt_sk_cluster"
	webhookSecret = "quiltt_wh_cluster"
)

func TestProductionTopologyOnTheTemporalCLIsServer(t *testing.T) {
	cli := os.Getenv("TEMPORAL_CLI")
	if cli == "" {
		var err error
		cli, err = exec.LookPath("temporal")
		require.NoError(t, err, "the Temporal CLI: go install github.com/temporalio/cli/cmd/temporal@v1.5.1")
	}
	dir := t.TempDir()
	// Every process here reads the Temporal connection as the CLI does:
	// not from the developer's own config file.
	t.Setenv("TEMPORAL_CONFIG_FILE", os.DevNull)
	frontend := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	start(t, dir, "temporal", cli, []string{"server", "start-dev", "--ip", "127.0.0.1", "--port", portOf(frontend),
		"--headless", "--log-level", "warn", "--db-filename", filepath.Join(dir, "temporal.db"),
		// Task priority and fairness, as the README tells (off by default
		// in the CLI's server 1.29).
		"--dynamic-config-value", "matching.useNewMatcher=true", "--dynamic-config-value", "matching.enableFairness=true"}, nil)
	waitForTemporal(t, frontend)

	bin := filepath.Join(dir, "bin")
	for cmd, pkg := range map[string]string{"relink": "./starter/relink", "relink-worker": "./worker/relink-worker"} {
		build := exec.Command("go", "build", "-o", filepath.Join(bin, cmd), pkg)
		build.Dir = "../.."
		out, err := build.CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	relink := filepath.Join(bin, "relink")
	key, err := exec.Command(relink, "keygen").Output()
	require.NoError(t, err)
	newAPIKey, err := exec.Command(relink, "keygen", "-kind", "api-key").Output()
	require.NoError(t, err)
	apiKey = strings.TrimSpace(string(newAPIKey))

	fake := quilttfake.New(quilttSecret)
	t.Cleanup(fake.Close)
	gateway := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := []string{
		"TEMPORAL_ADDRESS=" + frontend,
		"TEMPORAL_NAMESPACE=default",
		"RELINK_PAYLOAD_KEYS=" + strings.TrimSpace(string(key)),
		"RELINK_API_KEY=" + apiKey,
		"RELINK_LISTEN_ADDR=" + gateway,
		"RELINK_PUBLIC_URL=http://" + gateway,
		"QUILTT_API_SECRET=" + quilttSecret,
		"QUILTT_WEBHOOK_SECRET=" + webhookSecret,
		"QUILTT_API_URL=" + fake.URL,
		"QUILTT_AUTH_URL=" + fake.URL,
		"RELINK_LOG_LEVEL=warn",
	}
	setup := exec.Command(relink, "setup")
	setup.Env = append(os.Environ(), env...)
	out, err := setup.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "search attributes registered in namespace default")

	// The production worker refuses to start unversioned unless told to;
	// this test's one build runs unversioned, by the operator's choice
	// (integration/versioning_test.go covers pinned builds).
	refuse := exec.Command(filepath.Join(bin, "relink-worker"))
	refuse.Env = append(os.Environ(), append(env, "RELINK_UNVERSIONED=false", "RELINK_DEPLOYMENT_NAME=", "RELINK_BUILD_ID=")...)
	refused, err := refuse.CombinedOutput()
	require.Error(t, err, "%s", refused)
	assert.Contains(t, string(refused), "RELINK_UNVERSIONED=true")
	start(t, dir, "worker", filepath.Join(bin, "relink-worker"), nil, append(env, "RELINK_UNVERSIONED=true"))
	// The production gateway refuses the dev stack's published key.
	devKeyed := exec.Command(relink, "gateway")
	devKeyed.Env = append(os.Environ(), append(env, "RELINK_API_KEY=dev-api-key")...)
	refused, err = devKeyed.CombinedOutput()
	require.Error(t, err, "%s", refused)
	assert.Contains(t, string(refused), "published dev key")
	start(t, dir, "gateway", relink, []string{"gateway"}, env)
	base := "http://" + gateway
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, time.Minute, 100*time.Millisecond, "the gateway is ready")

	// A broken Quiltt connection, repaired by the user: the signed webhook,
	// the frontend's reconnect and complete, Quiltt's confirmation.
	conn := quilttfake.Connection{ID: "conn_cluster", ProfileID: "p_cluster", Provider: "PLAID", Status: quiltt.StatusErrorRepairable}
	fake.Put(conn)
	post := func(eventType, id string, c quilttfake.Connection) {
		ev := quiltt.Event{ID: id, Type: eventType, At: time.Now().UTC(),
			Profile: &quiltt.Profile{ID: c.ProfileID}, Record: &quiltt.Record{ID: c.ID, Provider: c.Provider, Status: c.Status}}
		require.NoError(t, quiltt.PostWebhook(context.Background(), http.DefaultClient, base+"/webhooks/quiltt", webhookSecret, time.Now(), ev))
	}
	fake.OnClose = func(c quilttfake.Connection) {
		c.Status = quiltt.StatusSynced
		post(quiltt.EventSyncedSuccessful, "evt_synced", c)
		fake.Put(c)
	}
	post(quiltt.EventRepairable, "evt_break", conn)
	waitStatus(t, base, "AWAITING_USER")
	var rec struct {
		Session struct{ ConnectorToken string }
	}
	require.NoError(t, json.Unmarshal(call(t, base, http.MethodPost, "/v1/repairs/quiltt/conn_cluster/reconnect", ""), &rec))
	require.NotEmpty(t, rec.Session.ConnectorToken)
	call(t, base, http.MethodPost, "/v1/repairs/quiltt/conn_cluster/complete",
		fmt.Sprintf(`{"connectorToken":%q,"publicToken":"public-cluster"}`, rec.Session.ConnectorToken))
	waitStatus(t, base, "REPAIRED")

	// The Temporal CLI finds it by its search attributes, and reads its
	// encrypted history through the gateway's codec.
	list, err := exec.Command(cli, "workflow", "list", "--address", frontend,
		"--query", "RelinkStatus = 'REPAIRED' AND RelinkConnectionId = 'conn_cluster'", "-o", "json").Output()
	require.NoError(t, err)
	assert.Contains(t, string(list), "repair:quiltt:conn_cluster")
	show := func(codec ...string) string {
		args := append([]string{"workflow", "show", "--address", frontend, "-w", "repair:quiltt:conn_cluster", "-o", "json"}, codec...)
		out, err := exec.Command(cli, args...).Output()
		require.NoError(t, err)
		return payloadText(t, out)
	}
	plain := show()
	assert.Contains(t, plain, "binary/encrypted")
	assert.NotContains(t, plain, "public-cluster", "history is encrypted")
	decoded := show("--codec-endpoint", base+"/codec", "--codec-auth", "Bearer "+apiKey)
	assert.NotContains(t, decoded, "binary/encrypted")
	assert.Contains(t, decoded, "public-cluster", "the codec endpoint decodes it for the CLI")
}

// payloadText is the history the CLI printed as JSON with every payload's
// metadata and data decoded from base64, so a test can search it.
func payloadText(t *testing.T, out []byte) string {
	t.Helper()
	var history any
	require.NoError(t, json.Unmarshal(out, &history), "%s", out)
	var b strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		case string:
			if raw, err := base64.StdEncoding.DecodeString(v); err == nil {
				b.Write(raw)
			} else {
				b.WriteString(v)
			}
			b.WriteByte('\n')
		}
	}
	walk(history)
	return b.String()
}

// start runs a process until the test ends (SIGTERM, then its log is
// shown if the test failed).
func start(t *testing.T, dir, name, path string, args, env []string) {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	require.NoError(t, cmd.Start(), name)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", name, b)
		}
	})
}

func waitForTemporal(t *testing.T, address string) {
	t.Helper()
	require.Eventually(t, func() bool {
		c, err := client.Dial(client.Options{HostPort: address})
		if err != nil {
			return false
		}
		defer c.Close()
		_, err = c.CheckHealth(context.Background(), nil)
		return err == nil
	}, 2*time.Minute, 200*time.Millisecond, "the Temporal CLI's server at %s", address)
}

func call(t *testing.T, base, method, path, body string) []byte {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Less(t, resp.StatusCode, 300, "%s %s: %s", method, path, raw)
	return raw
}

func waitStatus(t *testing.T, base, want string) {
	t.Helper()
	require.Eventually(t, func() bool {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/repairs/quiltt/conn_cluster", nil)
		req.Header.Set("Authorization", "Bearer "+apiKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return bytes.Contains(raw, []byte(`"status":"`+want+`"`))
	}, time.Minute, 100*time.Millisecond, "waiting for %s", want)
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func portOf(hostport string) string {
	_, port, _ := net.SplitHostPort(hostport)
	return port
}
