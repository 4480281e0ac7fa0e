package integration

// These tests hold Relink to its promises where production hurts: a worker
// dying mid-call, a frontend calling in a loop or sending megabytes, two
// gateways and two workers on one server, redeliveries after a repair
// closed, a provider down, no worker at all, and what a repair costs.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/proto"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/cost"
	"github.com/relink-dev/relink/workflows"
)

// closeThenHang is the sandbox with a close that takes effect at the
// provider and then never answers: the worker dies before it can report.
type closeThenHang struct {
	*sandbox.Provider
	once    sync.Once
	blocked chan struct{}
}

func (p *closeThenHang) Close(ctx context.Context, req aggregator.CloseRequest) error {
	if err := p.Provider.Close(ctx, req); err != nil {
		return err
	}
	p.once.Do(func() { close(p.blocked) })
	<-ctx.Done()
	return ctx.Err()
}

func TestWorkerKilledMidCloseDoesNotAskTheUserAgain(t *testing.T) {
	s := newBareStack(t, nil)
	hang := &closeThenHang{Provider: s.sandbox, blocked: make(chan struct{})}
	first := s.startWorker(hang)
	// No confirming webhook: only the retried close can settle the repair.
	_, err := s.sandbox.SetScript("conn_crash", sandbox.Script{SuppressWebhooks: true})
	require.NoError(t, err)

	s.breakConnection("conn_crash", "profile_crash")
	s.waitForStatus("conn_crash", workflows.StatusAwaitingUser)
	s.repairConnection("conn_crash")
	select {
	case <-hang.blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("close never reached the provider")
	}
	first.Stop() // mid-close: the provider applied it, Temporal never heard
	s.startWorker(s.sandbox)

	var st workflows.RepairState
	require.Eventually(t, func() bool {
		var out struct{ Repair workflows.RepairState }
		s.call(http.MethodGet, "/v1/repairs/sandbox/conn_crash", nil, &out)
		st = out.Repair
		return st.Status.Terminal() || st.Attempt > 1
	}, 90*time.Second, 100*time.Millisecond)

	assert.Equal(t, workflows.StatusRepaired, st.Status)
	assert.Equal(t, 1, st.Attempt, "the reconnect that worked is not a failed attempt")
	conn, err := s.sandbox.Get("conn_crash")
	require.NoError(t, err)
	assert.Equal(t, 1, conn.Calls["close"], "the retry found the close had taken effect and did not close again")
	// A task handed to the stopped worker's last poll is lost until its
	// start-to-close timeout (30s), so the event may take that long.
	require.Eventually(t, func() bool {
		types := s.app.typesFor("conn_crash")
		return len(types) > 0 && types[len(types)-1] == activities.EventRepaired
	}, 90*time.Second, 100*time.Millisecond, "the app hears the outcome")
	assert.Len(t, filter(s.app.typesFor("conn_crash"), activities.EventActionRequired), 1, "the user is asked once")
}

func TestReconnectInALoopNeverLocksTheRepair(t *testing.T) {
	s := newStack(t)
	s.breakConnection("conn_loop", "profile_loop")
	s.waitForStatus("conn_loop", workflows.StatusAwaitingUser)
	id := workflows.WorkflowID(sandbox.Name, "conn_loop")
	before := len(s.history(id, ""))

	// 3,000 calls from 8 loops at once, as a page open in several tabs
	// would make them; every tenth forces a new session.
	var next atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < 3000; i = int(next.Add(1)) - 1 {
				// (assert, not require: this is not the test's goroutine)
				var rec workflows.ReconnectResult
				body := fmt.Sprintf(`{"forceNewSession":%t}`, i%10 == 9)
				req, _ := http.NewRequest(http.MethodPost, s.gateway.URL+"/v1/repairs/sandbox/conn_loop/reconnect", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+apiKey)
				resp, err := http.DefaultClient.Do(req)
				if !assert.NoError(t, err, "call %d", i) {
					return
				}
				err = json.NewDecoder(resp.Body).Decode(&rec)
				resp.Body.Close()
				if !assert.Equal(t, http.StatusOK, resp.StatusCode, "call %d", i) || !assert.NoError(t, err, "call %d", i) ||
					!assert.NotNil(t, rec.Session, "call %d", i) || !assert.NotEmpty(t, rec.Session.ConnectorToken, "call %d", i) {
					return
				}
			}
		}()
	}
	wg.Wait()
	require.False(t, t.Failed())
	st := s.state("conn_loop")
	assert.LessOrEqual(t, st.SessionsIssued, 3, "forcing again within a few seconds serves the fresh session")
	assert.Less(t, len(s.history(id, ""))-before, 100, "3,000 calls wrote almost nothing to history")

	s.repairConnection("conn_loop")
	s.waitForStatus("conn_loop", workflows.StatusRepaired)
	for _, run := range s.runs(id) {
		assert.LessOrEqual(t, len(s.history(id, run)), 4096)
	}
}

func TestForcedRefreshesContinueAsNewCarryingTheState(t *testing.T) {
	s := newStack(t)
	s.breakQuietly("conn_can")
	id := s.startDirect("conn_can", workflows.RepairOptions{MinRefreshInterval: time.Nanosecond, ContinueAsNewAfterEvents: 120})
	s.waitForStatus("conn_can", workflows.StatusAwaitingUser)

	seen := map[string]bool{}
	for i := range 40 {
		var rec workflows.ReconnectResult
		require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_can/reconnect",
			map[string]bool{"forceNewSession": true}, &rec), "call %d", i)
		require.NotNil(t, rec.Session)
		assert.False(t, seen[rec.Session.ConnectorToken], "call %d got a new session", i)
		seen[rec.Session.ConnectorToken] = true
	}
	s.repairConnection("conn_can")
	st := s.waitForStatus("conn_can", workflows.StatusRepaired)

	runs := s.runs(id)
	require.GreaterOrEqual(t, len(runs), 3, "the run continued as new")
	assert.Equal(t, len(runs), st.Runs)
	assert.Equal(t, 41, st.SessionsIssued, "the count went on across runs")
	assert.Equal(t, runs[0], st.RepairRunID, "events keep the run that began the repair")
	for _, run := range runs {
		events := s.history(id, run)
		assert.LessOrEqual(t, len(events), 200, "run %s", run)
		assert.LessOrEqual(t, countEvents(events, enums.EVENT_TYPE_TIMER_STARTED), 1,
			"one timer serves the wait, whatever the refreshes")
	}
	s.waitFor("the app to hear the outcome", func() bool {
		types := s.app.typesFor("conn_can")
		return len(types) > 0 && types[len(types)-1] == activities.EventRepaired
	})
	assert.Equal(t, []string{activities.EventActionRequired, activities.EventRepaired}, s.app.typesFor("conn_can"))
	s.recordRun(id, runs[0], "refresh-continued-as-new")
	s.recordRun(id, runs[len(runs)-1], "carried-to-repaired")
}

func TestCompleteIsBoundedAndAnswersWhatHappened(t *testing.T) {
	s := newStack(t)
	s.breakConnection("conn_big", "profile_big")
	s.waitForStatus("conn_big", workflows.StatusAwaitingUser)
	var rec workflows.ReconnectResult
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_big/reconnect", nil, &rec))
	path := "/v1/repairs/sandbox/conn_big/complete"

	var errBody struct {
		Error struct{ Code, Message string }
	}
	megabyte := strings.Repeat("x", 1_000_000)
	for i := range 53 {
		require.Equal(t, http.StatusRequestEntityTooLarge, s.call(http.MethodPost, path, map[string]any{
			"connectorToken": rec.Session.ConnectorToken, "metadata": map[string]string{"blob": megabyte}}, &errBody), "call %d", i)
	}
	assert.Equal(t, "payload_too_large", errBody.Error.Code)
	assert.Equal(t, http.StatusRequestEntityTooLarge, s.call(http.MethodPost, path, map[string]any{
		"connectorToken": rec.Session.ConnectorToken, "metadata": map[string]string{"blob": strings.Repeat("x", 70<<10)}}, nil))
	assert.Equal(t, http.StatusRequestEntityTooLarge, s.call(http.MethodPost, path, map[string]any{
		"connectorToken": rec.Session.ConnectorToken, "metadata": strings.Repeat("x", 2<<20)}, nil))
	assert.Equal(t, http.StatusBadRequest, s.call(http.MethodPost, path, nil, &errBody), "an empty body")
	assert.Equal(t, http.StatusUnprocessableEntity, s.call(http.MethodPost, path, map[string]string{"connectorToken": "sbx_ct_999"}, &errBody))
	assert.Equal(t, "session_unknown", errBody.Error.Code)

	var login sandbox.Login
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/sandbox/connections/conn_big/login", nil, &login))
	var accepted struct{ Duplicate bool }
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, path, login, &accepted))
	assert.False(t, accepted.Duplicate)
	assert.Equal(t, http.StatusAccepted, s.call(http.MethodPost, path, login, nil), "the widget's success reported twice")
	st := s.waitForStatus("conn_big", workflows.StatusRepaired)
	assert.Equal(t, 1, st.Attempt)
	assert.Equal(t, http.StatusConflict, s.call(http.MethodPost, path, map[string]string{"connectorToken": "sbx_ct_998"}, &errBody),
		"not waiting for the user any more")

	size := 0
	for _, ev := range s.history(workflows.WorkflowID(sandbox.Name, "conn_big"), "") {
		size += proto.Size(ev)
	}
	assert.Less(t, size, 64<<10, "nothing the caller sent in bulk reached history")
}

func TestTwoGatewaysAndTwoWorkersActAsOne(t *testing.T) {
	s := newStack(t)
	s.startWorker(s.sandbox)
	other := s.newGateway()
	const conn = "conn_twin"

	s.breakConnection(conn, "profile_twin")
	s.waitForStatus(conn, workflows.StatusAwaitingUser)
	trigger := s.state(conn)
	require.NotEmpty(t, trigger.EventIDs)

	// The frontend's calls land on either replica.
	var rec workflows.ReconnectResult
	require.Equal(t, http.StatusOK, s.callAt(other, http.MethodPost, "/v1/repairs/sandbox/"+conn+"/reconnect", nil, &rec))
	var login sandbox.Login
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/sandbox/connections/"+conn+"/login", nil, &login))
	require.Equal(t, http.StatusAccepted, s.callAt(other, http.MethodPost, "/v1/repairs/sandbox/"+conn+"/complete", login, nil))
	s.waitForStatus(conn, workflows.StatusRepaired)
	id := workflows.WorkflowID(sandbox.Name, conn)
	s.waitFor("the repair to close", func() bool { return !s.running(id) })

	// The break, redelivered after the repair closed, to either replica.
	redelivery := quiltt.Event{ID: trigger.EventIDs[0], Type: quiltt.EventRepairable, At: trigger.DetectedAt,
		Profile: &quiltt.Profile{ID: "profile_twin"}, Record: &quiltt.Record{ID: conn, Status: quiltt.StatusErrorRepairable}}
	for _, gw := range []*httptest.Server{other, s.gateway} {
		assert.Equal(t, webhookSummary{Received: 1, Duplicates: 1}, s.postSandboxEventAt(gw, redelivery))
	}
	older := redelivery
	older.ID, older.At = "evt_older_break", trigger.DetectedAt.Add(-time.Minute)
	assert.Equal(t, webhookSummary{Received: 1, Duplicates: 1}, s.postSandboxEventAt(other, older), "dated before the break it repaired")
	assert.Len(t, s.runs(id), 1, "no new repair")

	// A new break is a new repair, whichever replica hears of it.
	_, err := s.sandbox.Break(context.Background(), conn, "", "")
	require.NoError(t, err)
	s.waitForStatus(conn, workflows.StatusAwaitingUser)
	assert.Len(t, s.runs(id), 2)
}

func TestPlaidRetryAfterTheRepairEndsQuietly(t *testing.T) {
	s, fake := newPlaidStack(t)
	hook := map[string]any{"webhook_type": "ITEM", "webhook_code": "ERROR", "item_id": "item_p1",
		"error": map[string]any{"error_code": "ITEM_LOGIN_REQUIRED"}, "environment": "sandbox"}
	s.postPlaid(fake, hook)
	s.waitForStatusOf("plaid", "item_p1", workflows.StatusAwaitingUser)
	var rec workflows.ReconnectResult
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/plaid/item_p1/reconnect", nil, &rec))
	fake.SetError("item_p1", "") // the user re-authenticated in Link
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/plaid/item_p1/complete", map[string]any{
		"connectorToken": rec.Session.LinkToken, "publicToken": "public-sandbox-p1"}, nil))
	s.waitForStatusOf("plaid", "item_p1", workflows.StatusRepaired)
	id := workflows.WorkflowID("plaid", "item_p1")
	s.waitFor("the repair to close", func() bool { return !s.running(id) })

	// Plaid's retry of the old ITEM_LOGIN_REQUIRED reaches another replica,
	// which has never seen it: a fresh JWT, no event id.
	body, err := json.Marshal(hook)
	require.NoError(t, err)
	s.postWebhookAt(s.newGateway(), "plaid", body, map[string]string{"Plaid-Verification": fake.SignAt(body, time.Now().Add(2*time.Second))})

	s.waitFor("the retry's run to end", func() bool { return len(s.runs(id)) == 2 && !s.running(id) })
	st := s.stateOf("plaid", "item_p1")
	assert.Equal(t, workflows.StatusRepaired, st.Status)
	assert.True(t, st.Quiet)
	assert.Contains(t, st.Reason, "nothing to repair")
	assert.Zero(t, st.SessionsIssued, "no link token, so nobody is asked")
	assert.Len(t, filter(s.app.typesFor("item_p1"), activities.EventActionRequired), 1, "the user was asked once")
}

func TestReconnectAnswersFastWhileTheProviderIsDown(t *testing.T) {
	s := newStack(t)
	require.Equal(t, http.StatusOK, s.call(http.MethodPut, "/sandbox/connections/conn_down/script", map[string]any{"failCalls": 1_000_000}, nil))
	s.breakConnection("conn_down", "profile_down")
	s.waitFor("the probe to be failing", func() bool { return s.sandboxCalls("conn_down", "initialize") >= 2 })

	started := time.Now()
	resp := s.raw(http.MethodPost, "/v1/repairs/sandbox/conn_down/reconnect", nil)
	elapsed := time.Since(started)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(body))
	assert.Less(t, elapsed, 5*time.Second)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	assert.Contains(t, string(body), "503 Service Unavailable", "the provider's failure, not Temporal's")
	assert.Contains(t, s.state("conn_down").LastError, "503", "and in lastError")
}

func TestReadingARepairNeedsNoWorker(t *testing.T) {
	s := newBareStack(t, nil)
	w := s.startWorker(s.sandbox)
	s.breakConnection("conn_idle", "profile_idle")
	s.waitForStatus("conn_idle", workflows.StatusAwaitingUser)
	w.Stop()

	started := time.Now()
	var out struct {
		Repair struct {
			workflows.RepairState
			Source string
		}
	}
	resp := s.raw(http.MethodGet, "/v1/repairs/sandbox/conn_idle", nil)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	require.NoError(t, json.Unmarshal(b, &out))
	assert.Less(t, time.Since(started), 5*time.Second)
	assert.Equal(t, "visibility", out.Repair.Source, "marked as what Temporal knows without a query")
	assert.Equal(t, workflows.StatusAwaitingUser, out.Repair.Status)

	w = s.startWorker(s.sandbox)
	// A query handed to the stopped worker's last poll is lost; once a
	// worker answers again, the frontend's calls go through.
	s.waitFor("a worker to answer queries again", func() bool {
		s.call(http.MethodGet, "/v1/repairs/sandbox/conn_idle", nil, &out)
		return out.Repair.Source == "workflow"
	})
	s.repairConnection("conn_idle")
	s.waitForStatus("conn_idle", workflows.StatusRepaired)
	s.waitFor("the repair to close", func() bool { return !s.running(workflows.WorkflowID(sandbox.Name, "conn_idle")) })
	w.Stop()
	require.Equal(t, http.StatusOK, s.call(http.MethodGet, "/v1/repairs/sandbox/conn_idle", nil, &out))
	assert.Equal(t, "result", out.Repair.Source)
	assert.Equal(t, workflows.StatusRepaired, out.Repair.Status)
	assert.NotEmpty(t, out.Repair.Steps, "the whole final state, read from history")
}

func TestBillableActionsOfATypicalRepair(t *testing.T) {
	// The provider's confirming webhook comes a second after its sync, as
	// real ones do, when the repair has already read the healthy status.
	s := newStackWith(t, map[string]string{"RELINK_SANDBOX_SYNC_DELAY": "1s"})
	s.breakConnection("conn_bill", "profile_bill")
	s.waitForStatus("conn_bill", workflows.StatusAwaitingUser)

	// Redeliveries cost nothing: the break's own webhook again (answered
	// from the run's memo), and another event five times (the server drops
	// all but the first by its request id).
	id := workflows.WorkflowID(sandbox.Name, "conn_bill")
	s.waitForIdle(id)
	trigger := s.state("conn_bill").EventIDs[0]
	before := billableActions(s.history(id, ""))
	for range 5 {
		assert.Equal(t, webhookSummary{Received: 1, Duplicates: 1}, s.postSandboxEventAt(s.gateway, quiltt.Event{ID: trigger,
			Type: quiltt.EventRepairable, At: time.Now().UTC(), Record: &quiltt.Record{ID: "conn_bill", Status: quiltt.StatusErrorRepairable}}))
	}
	assert.Equal(t, before, billableActions(s.history(id, "")), "a redelivered break costs nothing")
	for range 5 {
		s.postSandboxEventAt(s.gateway, quiltt.Event{ID: "evt_bill_errored", Type: quiltt.EventErroredInstitution, At: time.Now().UTC(),
			Record: &quiltt.Record{ID: "conn_bill", Status: "ERROR_INSTITUTION"}})
	}
	assert.Equal(t, 1, countEvents(s.history(id, ""), enums.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED), "one signal for five deliveries")

	s.repairConnection("conn_bill")
	s.waitForStatus("conn_bill", workflows.StatusRepaired)

	require.Equal(t, http.StatusOK, s.call(http.MethodPut, "/sandbox/connections/conn_cont/script", map[string]any{"initialize": "continue"}, nil))
	s.breakConnection("conn_cont", "profile_cont")
	s.waitForStatus("conn_cont", workflows.StatusRepaired)

	for _, tc := range []struct {
		conn, history string
		most          int
	}{{"conn_bill", "user-completed", 8 + 1}, {"conn_cont", "continue", 4}} {
		id := workflows.WorkflowID(sandbox.Name, tc.conn)
		s.waitFor("the repair to close", func() bool { return !s.running(id) })
		actions := cost.Actions(s.history(id, ""))
		t.Logf("%s repair: %d billable actions %v", tc.history, actions.Total(), actions)
		assert.LessOrEqual(t, actions.Total(), tc.most, "%s (the user-completed one had one new event): %v", tc.history, actions)
		s.recordHistory(id, tc.history)
	}
}

func TestMoreHistories(t *testing.T) {
	s := newStack(t)

	// EXPIRED: nobody comes within the window (checked at the end, while
	// the other paths run).
	s.breakQuietly("conn_exp")
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs",
		map[string]any{"provider": "sandbox", "connectionId": "conn_exp", "repairWindow": "2s"}, nil))

	// A failed attempt, then success.
	require.Equal(t, http.StatusOK, s.call(http.MethodPut, "/sandbox/connections/conn_retry/script", map[string]any{"close": "reject"}, nil))
	s.breakConnection("conn_retry", "profile_retry")
	s.waitForStatus("conn_retry", workflows.StatusAwaitingUser)
	s.repairConnection("conn_retry")
	s.waitFor("the attempt to fail", func() bool { return s.state("conn_retry").Attempt == 2 })
	require.Equal(t, http.StatusOK, s.call(http.MethodPut, "/sandbox/connections/conn_retry/script", map[string]any{}, nil))
	s.repairConnection("conn_retry")
	s.waitForStatus("conn_retry", workflows.StatusRepaired)

	// Polling: the confirming webhook is lost.
	_, err := s.sandbox.SetScript("conn_poll", sandbox.Script{SuppressWebhooks: true, SyncingPolls: 1})
	require.NoError(t, err)
	s.breakQuietly("conn_poll")
	s.startDirect("conn_poll", workflows.RepairOptions{VerifyQuietPeriod: time.Second})
	s.waitForStatus("conn_poll", workflows.StatusAwaitingUser)
	s.repairConnection("conn_poll")
	st := s.waitForStatus("conn_poll", workflows.StatusRepaired)
	assert.Equal(t, "confirmed by the provider's connection status", st.Reason)

	// A break reported while close runs: checked by a status read once
	// verifying, not taken as a failed attempt.
	_, err = s.sandbox.SetScript("conn_during", sandbox.Script{SyncingPolls: 1, SuppressWebhooks: true})
	require.NoError(t, err)
	s.breakConnection("conn_during", "profile_during")
	s.waitForStatus("conn_during", workflows.StatusAwaitingUser)
	var rec workflows.ReconnectResult
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_during/reconnect", nil, &rec))
	var login sandbox.Login
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/sandbox/connections/conn_during/login", nil, &login))
	_, err = s.sandbox.SetScript("conn_during", sandbox.Script{SyncingPolls: 1, SuppressWebhooks: true, LatencyMillis: 1500})
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_during/complete", login, nil))
	s.waitFor("close to be running", func() bool { return s.sandboxCalls("conn_during", "close") == 1 })
	s.postSandboxEventAt(s.gateway, quiltt.Event{ID: "evt_during", Type: quiltt.EventRepairable, At: time.Now().Add(time.Second).UTC(),
		Record: &quiltt.Record{ID: "conn_during", Status: quiltt.StatusErrorRepairable}})
	st = s.waitForStatus("conn_during", workflows.StatusRepaired)
	assert.Equal(t, 1, st.Attempt)
	assert.Equal(t, "confirmed by the provider's connection status", st.Reason, "read at once, not after the quiet period")

	s.waitForStatus("conn_exp", workflows.StatusExpired)
	// Listed as failed in the Temporal UI, not completed.
	assert.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_FAILED, s.waitClosed(workflows.WorkflowID(sandbox.Name, "conn_exp")))
	for conn, name := range map[string]string{"conn_exp": "expired", "conn_retry": "failed-attempt", "conn_poll": "polling",
		"conn_during": "break-during-close"} {
		id := workflows.WorkflowID(sandbox.Name, conn)
		s.waitFor(conn+" to close", func() bool { return !s.running(id) })
		s.recordHistory(id, name)
	}
}

// startDirect starts a sandbox repair with options the API does not
// expose, as the gateway would start it.
func (s *stack) startDirect(conn string, opts workflows.RepairOptions) string {
	s.t.Helper()
	return s.startDirectFor(sandbox.Name, conn, "profile_"+conn, opts)
}

// startDirectFor is startDirect for any provider's connection.
func (s *stack) startDirectFor(provider, conn, profile string, opts workflows.RepairOptions) string {
	s.t.Helper()
	in := workflows.RepairInput{Provider: provider, ConnectionID: conn, ProfileID: profile,
		TriggerEventID: "evt_direct_" + conn, TriggerReason: "test", DetectedAt: time.Now().UTC(), Options: opts}
	id := workflows.WorkflowID(provider, conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.temporal.SignalWithStartWorkflow(ctx, id, workflows.SignalMessage,
		workflows.Message{Event: &workflows.ProviderEvent{EventID: in.TriggerEventID, Kind: aggregator.EventKindRepairable, At: in.DetectedAt}},
		client.StartWorkflowOptions{ID: id, TaskQueue: s.cfg.Temporal.TaskQueue,
			WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
			TypedSearchAttributes:    workflows.InitialSearchAttributes(in, time.Now())},
		workflows.WorkflowName, in)
	require.NoError(s.t, err)
	return id
}

// breakQuietly breaks a sandbox connection without its repairable webhook
// (the send is canceled), so a test can start the repair itself.
func (s *stack) breakQuietly(conn string) {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.sandbox.Break(ctx, conn, "profile_"+conn, "")
	require.ErrorIs(s.t, err, context.Canceled)
}

// runs lists a workflow id's runs, oldest first.
func (s *stack) runs(id string) []string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowId = '%s'", id), PageSize: 1000})
	require.NoError(s.t, err)
	var runs []string
	for i := len(resp.GetExecutions()) - 1; i >= 0; i-- {
		runs = append(runs, resp.GetExecutions()[i].GetExecution().GetRunId())
	}
	return runs
}

// running reports whether the latest run of id is still open.
func (s *stack) running(id string) bool {
	s.t.Helper()
	desc, err := s.temporal.DescribeWorkflowExecution(context.Background(), id, "")
	require.NoError(s.t, err)
	return desc.GetWorkflowExecutionInfo().GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING
}

// postSandboxEventAt posts one sandbox (Quiltt-format) event to a replica.
func (s *stack) postSandboxEventAt(gw *httptest.Server, ev quiltt.Event) webhookSummary {
	s.t.Helper()
	body, err := json.Marshal(quiltt.Envelope{EventTypes: []string{ev.Type}, Events: []quiltt.Event{ev}})
	require.NoError(s.t, err)
	return s.postSandboxWebhookAt(gw, body)
}

func (s *stack) sandboxCalls(conn, name string) int {
	c, err := s.sandbox.Get(conn)
	if err != nil {
		return 0
	}
	return c.Calls[name]
}

// waitForIdle waits until a run has no activity in flight and no
// workflow task pending, so its history length holds still.
func (s *stack) waitForIdle(id string) {
	s.t.Helper()
	s.waitFor(id+" to be idle", func() bool {
		desc, err := s.temporal.DescribeWorkflowExecution(context.Background(), id, "")
		return err == nil && len(desc.GetPendingActivities()) == 0 && desc.GetPendingWorkflowTask() == nil
	})
}

// raw sends an authenticated request and returns the response as it is.
func (s *stack) raw(method, path string, body io.Reader) *http.Response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.gateway.URL+path, body)
	require.NoError(s.t, err)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	return resp
}

func TestRepeatedManualStartsOnAnOpenRepairRecordNothing(t *testing.T) {
	s := newStack(t)
	// Repeated manual starts on an open repair record nothing.
	s.breakQuietly("conn_old2")
	s.startDirect("conn_old2", workflows.RepairOptions{})
	s.waitForStatus("conn_old2", workflows.StatusAwaitingUser)
	id := workflows.WorkflowID(sandbox.Name, "conn_old2")
	s.waitForIdle(id) // the action_required event delivered: history at rest
	before := len(s.history(id, ""))
	for range 20 {
		require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs",
			map[string]string{"provider": "sandbox", "connectionId": "conn_old2", "reason": "ticket 7"}, nil))
	}
	assert.Equal(t, before, len(s.history(id, "")))
	assert.Equal(t, http.StatusRequestEntityTooLarge, s.call(http.MethodPost, "/v1/repairs",
		map[string]string{"provider": "sandbox", "connectionId": "conn_old2", "reason": strings.Repeat("x", 600)}, nil))
}

func TestConcurrentTriggersOnTwoGatewaysAreBothKept(t *testing.T) {
	s := newStack(t)
	other := s.newGateway()
	var wg sync.WaitGroup
	for i := range 8 {
		conn := fmt.Sprintf("conn_race_%d", i)
		s.breakQuietly(conn)
		for j, gw := range []*httptest.Server{s.gateway, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.postSandboxEventAt(gw, quiltt.Event{ID: fmt.Sprintf("evt_%s_%d", conn, j), Type: quiltt.EventRepairable,
					At: time.Now().UTC(), Record: &quiltt.Record{ID: conn, Status: quiltt.StatusErrorRepairable}})
			}()
		}
	}
	wg.Wait()
	for i := range 8 {
		conn := fmt.Sprintf("conn_race_%d", i)
		s.waitFor(conn+" to have both events", func() bool {
			ids := s.state(conn).EventIDs
			return slices.Contains(ids, "evt_"+conn+"_0") && slices.Contains(ids, "evt_"+conn+"_1")
		})
	}
}

func TestMessagesBeforeTheFirstTaskKeepTheirOrder(t *testing.T) {
	s := newBareStack(t, nil) // no worker yet: the run has not begun
	_, err := s.sandbox.SetScript("conn_early", sandbox.Script{})
	require.NoError(t, err)
	s.breakQuietly("conn_early")
	s.postSandboxEventAt(s.gateway, quiltt.Event{ID: "evt_early_break", Type: quiltt.EventRepairable, At: time.Now().UTC(),
		Record: &quiltt.Record{ID: "conn_early", Status: quiltt.StatusErrorRepairable}})
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_early/cancel", map[string]string{"reason": "first"}, nil))
	s.postSandboxEventAt(s.gateway, quiltt.Event{ID: "evt_early_synced", Type: quiltt.EventSyncedSuccessful, At: time.Now().UTC(),
		Record: &quiltt.Record{ID: "conn_early", Status: quiltt.StatusSynced}})

	s.startWorker(s.sandbox)
	st := s.waitForStatus("conn_early", workflows.StatusCanceled)
	assert.Equal(t, "canceled: first", st.Reason)
}

// A validly signed webhook dated a year ahead does not make the real
// confirmation look older than the break: it is taken as happening now, and
// the confirming webhook repairs at once instead of after the quiet period.
func TestAnEventDatedAheadDoesNotMakeRealOnesStale(t *testing.T) {
	s := newStack(t)
	_, err := s.sandbox.SetScript("conn_ahead", sandbox.Script{SyncingPolls: 1})
	require.NoError(t, err)
	s.breakQuietly("conn_ahead")
	s.postSandboxEventAt(s.gateway, quiltt.Event{ID: "evt_ahead", Type: quiltt.EventRepairable,
		At: time.Now().Add(365 * 24 * time.Hour).UTC(), Record: &quiltt.Record{ID: "conn_ahead", Status: quiltt.StatusErrorRepairable}})
	s.waitForStatus("conn_ahead", workflows.StatusAwaitingUser)
	s.repairConnection("conn_ahead")
	st := s.waitForStatus("conn_ahead", workflows.StatusRepaired)
	assert.Equal(t, "confirmed by the provider's webhook", st.Reason)
	assert.WithinDuration(t, time.Now(), st.DetectedAt, time.Minute)
}

// A message sent while a run is continuing as new is applied, every time:
// 50 repairs each get a forced new session, which makes their run continue
// as new, and a cancel right behind it.
func TestAMessageSentAsTheRunContinuesIsNeverLost(t *testing.T) {
	s := newStack(t)
	const tries = 50
	conns := make([]string, tries)
	for i := range conns {
		conns[i] = fmt.Sprintf("conn_can_%d", i)
		s.breakQuietly(conns[i])
		s.startDirect(conns[i], workflows.RepairOptions{MinRefreshInterval: time.Nanosecond, ContinueAsNewAfterEvents: 15})
	}
	for _, conn := range conns {
		s.waitForStatus(conn, workflows.StatusAwaitingUser)
	}
	var wg sync.WaitGroup
	for i, conn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The update answers in the task in which the run decides to
			// continue as new; the cancel follows it, spread around the
			// hand-over.
			s.call(http.MethodPost, "/v1/repairs/sandbox/"+conn+"/reconnect", map[string]any{"forceNewSession": true}, nil)
			time.Sleep(time.Duration(i%5) * time.Millisecond)
			assert.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/sandbox/"+conn+"/cancel",
				map[string]string{"reason": "try " + conn}, nil))
		}()
	}
	wg.Wait()
	continued := 0
	for _, conn := range conns {
		st := s.waitForStatus(conn, workflows.StatusCanceled)
		assert.Contains(t, st.Reason, "try "+conn)
		if st.Runs > 1 {
			continued++
		}
	}
	t.Logf("%d of %d repairs continued as new around their cancel", continued, tries)
	assert.Positive(t, continued, "the runs did continue as new")
}

// A break that arrives while a repair is closing starts the next run, which
// is open to messages at once: it does not look like the last repair's
// outcome to the gateway, even while its probe keeps failing.
func TestTheNextBreaksRunTakesMessagesAtOnce(t *testing.T) {
	s := newStack(t)
	id := workflows.WorkflowID(sandbox.Name, "conn_next")
	s.breakConnection("conn_next", "profile_next")
	s.waitForStatus("conn_next", workflows.StatusAwaitingUser)
	s.app.setDown(true) // the outcome's event waits: the repair is closing
	s.repairConnection("conn_next")
	s.waitForStatus("conn_next", workflows.StatusRepaired)
	first := len(s.runs(id))
	s.breakConnection("conn_next", "profile_next")
	_, err := s.sandbox.SetScript("conn_next", sandbox.Script{FailCalls: 1000}) // the next probe keeps failing
	require.NoError(t, err)
	s.app.setDown(false)
	s.waitFor("the next break's run", func() bool { return len(s.runs(id)) == first+1 })

	var list listResponse
	s.waitFor("visibility to list the new run as PENDING", func() bool {
		s.call(http.MethodGet, "/v1/repairs?status=PENDING&connectionId=conn_next", nil, &list)
		return len(list.Repairs) == 1
	})
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_next/cancel",
		map[string]string{"reason": "closed account"}, nil))
	st := s.waitForStatus("conn_next", workflows.StatusCanceled)
	assert.Equal(t, workflows.ReasonCanceled, st.ReasonCode)
	s.waitFor("the repair to close", func() bool { return !s.running(id) })
	runs := s.runs(id)
	s.recordRun(id, runs[len(runs)-2], "ended-then-broke")
	s.recordRun(id, runs[len(runs)-1], "next-break")
}
