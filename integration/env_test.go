// Package integration runs Relink end to end: a real Temporal server
// in-process (the dev stack's, one for the package, a namespace for each
// test; see main_test.go), the real worker, the real gateway over HTTP,
// the sandbox provider sending signed webhooks, and an app endpoint that
// checks the signatures of the events Relink sends it.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/app"
	relinkapi "github.com/relink-dev/relink/client"
	"github.com/relink-dev/relink/config"
	"github.com/relink-dev/relink/metrics"
	"github.com/relink-dev/relink/workflows"
)

const (
	apiKey       = "integration-api-key"
	notifySecret = "whsec_aW50ZWdyYXRpb24tbm90aWZ5LXNlY3JldC0zMmJ5dGVz"
)

// stack is one Relink, wired as `relink dev` wires it, on a test server.
type stack struct {
	t         *testing.T
	temporal  client.Client
	gateway   *httptest.Server
	sandbox   *sandbox.Provider
	app       *appEndpoint
	cfg       config.Config
	logger    *slog.Logger
	providers app.Providers
	metrics   *metrics.Registry
	// api is the Go client generated from the OpenAPI document, with the
	// stack's API key: the helpers that name a /v1 or /sandbox route call
	// it, as an app's Go backend would; s.call stays for the requests a
	// client would not send (bad paths, bodies, credentials).
	api *relinkapi.ClientWithResponses
}

func newStack(t *testing.T) *stack {
	t.Helper()
	return newStackWith(t, nil)
}

// newStackWith adds settings (a provider's, say) to the stack's environment.
func newStackWith(t *testing.T, settings map[string]string) *stack {
	t.Helper()
	s := newBareStack(t, settings)
	s.startWorker(s.providers.APIs...)
	return s
}

// startWorker runs one more worker on the stack's task queue over the
// given provider APIs; stop it with Stop (the test's end stops it too).
func (s *stack) startWorker(apis ...aggregator.Provider) worker.Worker {
	s.t.Helper()
	providers := s.providers
	providers.APIs = apis
	w, err := app.NewWorker(s.temporal, s.cfg, s.logger, providers, s.activities(providers))
	require.NoError(s.t, err)
	require.NoError(s.t, w.Start())
	var once sync.Once
	s.t.Cleanup(func() { once.Do(w.Stop) })
	return stoppable{Worker: w, once: &once}
}

// activities builds the worker's activities as the worker binary does.
func (s *stack) activities(providers app.Providers) *activities.Activities {
	s.t.Helper()
	acts, err := app.NewActivities(s.cfg, s.logger, providers)
	require.NoError(s.t, err)
	return acts
}

// stoppable makes Stop safe to call twice (the test, then its cleanup).
type stoppable struct {
	worker.Worker
	once *sync.Once
}

func (w stoppable) Stop() { w.once.Do(w.Worker.Stop) }

// newGateway serves another gateway replica over the same Temporal, with
// webhook receivers of its own (nothing in memory shared with the first).
func (s *stack) newGateway() *httptest.Server {
	s.t.Helper()
	gw, err := app.NewGateway(s.cfg, s.temporal, s.logger, app.NewProviders(s.cfg, s.sandbox), s.sandbox)
	require.NoError(s.t, err)
	srv := httptest.NewServer(validatedByOpenAPI(s.t, gw.Handler()))
	s.t.Cleanup(srv.Close)
	return srv
}

// merged is a's settings with b's over them.
func merged(a, b map[string]string) map[string]string {
	for k, v := range b {
		a[k] = v
	}
	return a
}

// newBareStack is a stack with no worker: tests start their own.
func newBareStack(t *testing.T, settings map[string]string) *stack {
	t.Helper()
	// Stacks share nothing but the server (a namespace each), so tests run
	// side by side, as many at once as -parallel allows.
	t.Parallel()
	return buildStack(t, settings)
}

// buildStack is newBareStack for a test already running in parallel.
func buildStack(t *testing.T, settings map[string]string) *stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	appSrv := newAppEndpoint(t)
	env := map[string]string{
		"TEMPORAL_ADDRESS":     shared.address,
		"TEMPORAL_CONFIG_FILE": os.DevNull,
		// A test's Stop is a crash: running activities are cut off.
		"RELINK_WORKER_STOP_TIMEOUT": "0s",
		"RELINK_API_KEY":             apiKey,
		"RELINK_NOTIFY_URL":          appSrv.URL,
		"RELINK_NOTIFY_SECRET":       notifySecret,
		"RELINK_SANDBOX_SYNC_DELAY":  "0s",
		"RELINK_TASK_QUEUE":          "relink-it",
		// Sweeps run when a test asks (their Schedules exist, paused).
		"RELINK_RECONCILE_INTERVAL": "off",
		// The server shares the host, as the dev stack's does: requests go
		// uncompressed (TestSignedWebhookToRepaired keeps the default).
		"RELINK_TEMPORAL_COMPRESSION": config.CompressionNone,
	}
	for k, v := range settings {
		env[k] = v
	}
	if _, ok := env["TEMPORAL_NAMESPACE"]; !ok {
		env["TEMPORAL_NAMESPACE"] = newNamespace(t)
	}
	cfg, err := config.LoadFrom(ctx, envconfig.MapLookuper(env))
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The client (and so every worker and gateway of the stack) is dialed
	// as production dials it: with the payload codec when keys are set.
	reg, err := metrics.New()
	require.NoError(t, err)
	tc, err := app.Dial(ctx, cfg.Temporal, logger, reg.Handler)
	require.NoError(t, err)
	t.Cleanup(tc.Close)
	require.NoError(t, app.EnsureSearchAttributes(ctx, tc, cfg.Temporal.Namespace))

	sb := app.NewSandbox(cfg, logger)
	providers := app.NewProviders(cfg, sb)
	// As `relink setup` does: each swept provider's Schedule, through which
	// operators' sweeps run too.
	require.NoError(t, app.EnsureSweepSchedules(ctx, tc, cfg, app.SweepPlans(cfg, providers), logger))
	gw, err := app.NewGateway(cfg, tc, logger, providers, sb)
	require.NoError(t, err)
	gw.Metrics = reg
	srv := httptest.NewServer(validatedByOpenAPI(t, gw.Handler()))
	t.Cleanup(srv.Close)
	t.Cleanup(sb.Wait)
	sb.Webhooks.URL = srv.URL + "/webhooks/sandbox"
	sb.WidgetURL = srv.URL + "/sandbox/widget"
	// Reconnect links point at this gateway (the worker's events too).
	cfg.Gateway.PublicURL = srv.URL
	if gw.Links != nil {
		gw.Links.PublicURL = srv.URL
	}
	return &stack{t: t, temporal: tc, gateway: srv, sandbox: sb, app: appSrv, cfg: cfg, logger: logger, providers: providers, metrics: reg,
		api: newAPIClient(t, srv.URL, apiKey)}
}

// newAPIClient is the generated client of the gateway at base, sending
// credential (an API key or a client token) as its bearer.
func newAPIClient(t *testing.T, base, credential string) *relinkapi.ClientWithResponses {
	t.Helper()
	api, err := relinkapi.NewClientWithResponses(base, relinkapi.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+credential)
		return nil
	}))
	require.NoError(t, err)
	return api
}

// repairOf decodes a GetRepair answer's repair as the workflow's state,
// whose fields the tests read; the generated types decoded it too.
func (s *stack) repairOf(res *relinkapi.GetRepairResponse) workflows.RepairState {
	s.t.Helper()
	require.NotNil(s.t, res.JSON200, "%d %s", res.StatusCode(), res.Body)
	var out struct{ Repair workflows.RepairState }
	require.NoError(s.t, json.Unmarshal(res.Body, &out))
	return out.Repair
}

// call sends an authenticated JSON request to the gateway and decodes the
// answer into out (if not nil); it returns the status code.
func (s *stack) call(method, path string, body, out any) int {
	s.t.Helper()
	return s.callAt(s.gateway, method, path, body, out)
}

// callAt is call against a given gateway replica.
func (s *stack) callAt(gw *httptest.Server, method, path string, body, out any) int {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(s.t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, gw.URL+path, rd)
	require.NoError(s.t, err)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	if out != nil {
		require.NoError(s.t, json.Unmarshal(raw, out), string(raw))
	}
	return resp.StatusCode
}

// state reads a sandbox repair through GET /v1/repairs/sandbox/{id}.
func (s *stack) state(conn string) workflows.RepairState {
	s.t.Helper()
	return s.stateOf("sandbox", conn)
}

// stateOf reads a repair through GET /v1/repairs/{provider}/{id}.
func (s *stack) stateOf(provider, conn string) workflows.RepairState {
	s.t.Helper()
	res, err := s.api.GetRepairWithResponse(context.Background(), relinkapi.Provider(provider), conn, nil)
	require.NoError(s.t, err)
	require.Equal(s.t, http.StatusOK, res.StatusCode(), "%s", res.Body)
	return s.repairOf(res)
}

// waitFor polls until cond holds, failing the test after the deadline.
func (s *stack) waitFor(what string, cond func() bool) {
	s.t.Helper()
	require.Eventually(s.t, cond, 30*time.Second, 50*time.Millisecond, "waiting for %s", what)
}

func (s *stack) waitForStatus(conn string, want workflows.Status) workflows.RepairState {
	s.t.Helper()
	return s.waitForStatusOf("sandbox", conn, want)
}

func (s *stack) waitForStatusOf(provider, conn string, want workflows.Status) workflows.RepairState {
	s.t.Helper()
	var st workflows.RepairState
	s.waitFor(conn+" to be "+string(want), func() bool {
		res, err := s.api.GetRepairWithResponse(context.Background(), relinkapi.Provider(provider), conn, nil)
		require.NoError(s.t, err)
		// The whole state: on a loaded machine a query may miss the
		// gateway's budget, and the answer then comes from visibility,
		// which has the status but no reason or steps.
		if res.StatusCode() != http.StatusOK || res.JSON200.Repair.Source == relinkapi.Visibility {
			return false
		}
		st = s.repairOf(res)
		return st.Status == want
	})
	return st
}

// waitClosed waits for the latest run of workflowID to close and returns
// how it closed: for a repair, the way its outcome reads in the Temporal
// UI's list (workflows/outcome.go).
func (s *stack) waitClosed(workflowID string) enums.WorkflowExecutionStatus {
	s.t.Helper()
	var status enums.WorkflowExecutionStatus
	s.waitFor(workflowID+" to close", func() bool {
		desc, err := s.temporal.DescribeWorkflowExecution(context.Background(), workflowID, "")
		require.NoError(s.t, err)
		status = desc.GetWorkflowExecutionInfo().GetStatus()
		return status != enums.WORKFLOW_EXECUTION_STATUS_RUNNING
	})
	return status
}

// breakConnection breaks a sandbox connection through the gateway, which
// makes the sandbox send the signed repairable webhook.
func (s *stack) breakConnection(conn, profile string) {
	s.t.Helper()
	institution := "First Sandbox Bank"
	res, err := s.api.SandboxBreakWithResponse(context.Background(), conn, nil,
		relinkapi.SandboxBreakRequest{ProfileId: &profile, Institution: &institution})
	require.NoError(s.t, err)
	require.Equal(s.t, http.StatusOK, res.StatusCode(), "%s", res.Body)
}

// postSandboxWebhook posts body to /webhooks/sandbox signed as the sandbox
// signs, and returns the gateway's summary.
func (s *stack) postSandboxWebhook(body []byte) webhookSummary {
	s.t.Helper()
	return s.postSandboxWebhookAt(s.gateway, body)
}

// postSandboxWebhookAt is postSandboxWebhook to a given gateway replica.
func (s *stack) postSandboxWebhookAt(gw *httptest.Server, body []byte) webhookSummary {
	s.t.Helper()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	return s.postWebhookAt(gw, "sandbox", body, map[string]string{
		quiltt.HeaderTimestamp: ts,
		quiltt.HeaderSignature: quiltt.Sign(s.sandbox.Webhooks.Secret, ts, body),
	})
}

// postWebhook posts a signed webhook body to /webhooks/{provider} and
// returns the gateway's summary.
func (s *stack) postWebhook(provider string, body []byte, headers map[string]string) webhookSummary {
	s.t.Helper()
	return s.postWebhookAt(s.gateway, provider, body, headers)
}

func (s *stack) postWebhookAt(gw *httptest.Server, provider string, body []byte, headers map[string]string) webhookSummary {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, gw.URL+"/webhooks/"+provider, bytes.NewReader(body))
	require.NoError(s.t, err)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	require.Equal(s.t, http.StatusOK, resp.StatusCode)
	var out webhookSummary
	require.NoError(s.t, json.NewDecoder(resp.Body).Decode(&out))
	return out
}

type webhookSummary struct {
	Received, Applied, Duplicates, Ignored int
}

// repairConnection plays the frontend and the user through one reconnect.
func (s *stack) repairConnection(conn string) {
	s.t.Helper()
	done, err := s.api.CompleteWithResponse(context.Background(), sandbox.Name, conn, nil, s.userSignsIn(conn))
	require.NoError(s.t, err)
	require.Equal(s.t, http.StatusAccepted, done.StatusCode(), "%s", done.Body)
}

// userSignsIn opens the widget (reconnect) and signs in at the sandbox:
// what the frontend then completes with.
func (s *stack) userSignsIn(conn string) relinkapi.CompleteRequest {
	s.t.Helper()
	ctx := context.Background()
	rec, err := s.api.ReconnectWithResponse(ctx, sandbox.Name, conn, nil, relinkapi.ReconnectRequest{})
	require.NoError(s.t, err)
	require.NotNil(s.t, rec.JSON200, "%d %s", rec.StatusCode(), rec.Body)
	require.Equal(s.t, relinkapi.ConnectorStatus(aggregator.ConnectorActionRequired), rec.JSON200.ConnectorStatus)
	require.NotNil(s.t, rec.JSON200.Session)
	login, err := s.api.SandboxLoginWithResponse(ctx, conn, nil)
	require.NoError(s.t, err)
	require.NotNil(s.t, login.JSON200, "%d %s", login.StatusCode(), login.Body)
	require.Equal(s.t, *rec.JSON200.Session.ConnectorToken, login.JSON200.ConnectorToken)
	return relinkapi.CompleteRequest{
		ConnectorToken: login.JSON200.ConnectorToken, PublicToken: &login.JSON200.PublicToken, Metadata: login.JSON200.Metadata,
	}
}

// appEndpoint is the app's notification endpoint: it accepts only events
// whose Relink-Signature verifies, as the README tells apps to check.
type appEndpoint struct {
	*httptest.Server
	mu     sync.Mutex
	events []activities.Event
	bad    int
	down   bool // answer 503, as an app in an outage does
}

// setDown takes the app's endpoint down or brings it back.
func (a *appEndpoint) setDown(down bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.down = down
}

func newAppEndpoint(t *testing.T) *appEndpoint {
	a := &appEndpoint{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.down {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if !verifySignature(r.Header, body) {
			a.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev activities.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		a.events = append(a.events, ev)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(a.Close)
	return a
}

// verifySignature is the README's recipe: the official Standard Webhooks
// library, with the app's secret.
func verifySignature(header http.Header, body []byte) bool {
	wh, err := standardwebhooks.NewWebhook(notifySecret)
	return err == nil && wh.Verify(body, header) == nil
}

// lastEvent is the event of the highest number delivered for a connection.
func (a *appEndpoint) lastEvent(conn string) activities.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	var last activities.Event
	for _, ev := range a.events {
		if ev.Repair.ConnectionID == conn && ev.Repair.Sequence > last.Repair.Sequence {
			last = ev
		}
	}
	return last
}

// deliveries lists the types of every event the app took for a
// connection, redeliveries included, in arrival order.
func (a *appEndpoint) deliveries(conn string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, ev := range a.events {
		if ev.Repair.ConnectionID == conn {
			out = append(out, ev.Type)
		}
	}
	return out
}

// typesFor lists the event types delivered for a connection, in sequence
// (a redelivery counts once).
func (a *appEndpoint) typesFor(conn string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	bySeq := map[int]string{}
	for _, ev := range a.events {
		if ev.Repair.ConnectionID == conn {
			bySeq[ev.Repair.Sequence] = ev.Type
		}
	}
	out := make([]string, 0, len(bySeq))
	for i := 1; i <= len(bySeq); i++ {
		out = append(out, bySeq[i])
	}
	return out
}
