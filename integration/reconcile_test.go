package integration

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/inventory"
	"github.com/relink-dev/relink/activities/inventory/inventoryfake"
	"github.com/relink-dev/relink/activities/meld"
	"github.com/relink-dev/relink/activities/meld/meldfake"
	"github.com/relink-dev/relink/activities/plaid"
	"github.com/relink-dev/relink/activities/plaid/plaidfake"
	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/activities/quiltt/quilttfake"
	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/app"
	"github.com/relink-dev/relink/cli"
	"github.com/relink-dev/relink/cost"
	"github.com/relink-dev/relink/workflows"
)

// sweepResult is one sweep as GET /v1/reconcile/{provider} shows it.
type sweepResult struct {
	ID, RunID, Status, Error string
	Running                  bool
	workflows.SweepTotals
}

// sweep asks for a sweep of provider (POST /v1/reconcile/{provider}) and
// waits for it to end.
func (s *stack) sweep(provider string) sweepResult {
	s.t.Helper()
	var started struct{ ID, RunID string }
	require.Equal(s.t, http.StatusAccepted, s.call(http.MethodPost, "/v1/reconcile/"+provider, nil, &started))
	// Started by its Schedule, at the background priority: its own tasks
	// wait behind users' work.
	desc, err := s.temporal.DescribeWorkflowExecution(context.Background(), started.ID, started.RunID)
	require.NoError(s.t, err)
	assert.EqualValues(s.t, workflows.PriorityBackground, desc.GetWorkflowExecutionInfo().GetPriority().GetPriorityKey())
	return s.sweepEnded(provider, started.RunID)
}

// sweepEnded waits for the sweep run runID to end and returns it.
func (s *stack) sweepEnded(provider, runID string) sweepResult {
	s.t.Helper()
	var found sweepResult
	s.waitFor("the sweep to end", func() bool {
		var out struct{ Sweeps []sweepResult }
		require.Equal(s.t, http.StatusOK, s.call(http.MethodGet, "/v1/reconcile/"+provider, nil, &out))
		for _, sw := range out.Sweeps {
			if sw.RunID == runID && !sw.Running {
				found = sw
				return true
			}
		}
		return false
	})
	return found
}

// actionsRequired counts the repair.action_required events the app got
// for a connection.
func (s *stack) actionsRequired(conn string) int {
	n := 0
	for _, typ := range s.app.typesFor(conn) {
		if typ == activities.EventActionRequired {
			n++
		}
	}
	return n
}

// Breaks whose webhook was lost are found by a sweep (the sandbox lists
// its broken connections, as Meld and Quiltt do) and repaired; one whose
// webhook came is left to its repair; a late webhook joins the repair the
// sweep started; a second sweep finds nothing new; an operator's script
// that asks again at once is told to wait.
func TestSweepFindsTheBreaksWhoseWebhookWasLost(t *testing.T) {
	// Payloads encrypted, as in production: the Schedule's sealed
	// arguments reach the runs it starts.
	s := newStackWith(t, map[string]string{"RELINK_PAYLOAD_KEYS": newKey(t, "sweep")})
	s.sandbox.BreakLosingWebhook("lost_1", "profile_r", "First Sandbox Bank")
	s.sandbox.BreakLosingWebhook("lost_2", "profile_r", "First Sandbox Bank")
	s.breakConnection("heard", "profile_r")
	s.waitForStatus("heard", workflows.StatusAwaitingUser)
	_, err := s.sandbox.SetScript("healthy", sandbox.Script{})
	require.NoError(t, err)

	sw := s.sweep(sandbox.Name)
	assert.Equal(t, "Completed", sw.Status, sw.Error)
	assert.Equal(t, 3, sw.Checked, "the listing holds the three broken connections")
	assert.Equal(t, 3, sw.NeedUser)
	assert.Equal(t, 2, sw.Found, "the two whose webhook was lost")
	assert.Zero(t, sw.Errors)
	assert.False(t, sw.FinishedAt.Before(sw.StartedAt))
	for _, conn := range []string{"lost_1", "lost_2", "heard"} {
		st := s.waitForStatus(conn, workflows.StatusAwaitingUser)
		assert.Len(t, s.runs(workflows.WorkflowID(sandbox.Name, conn)), 1, conn)
		if conn != "heard" {
			assert.True(t, strings.HasPrefix(st.TriggerReason, "reconcile:"), "%s: %s", conn, st.TriggerReason)
		}
	}
	s.waitFor("the asks", func() bool { return s.actionsRequired("lost_1") == 1 && s.actionsRequired("lost_2") == 1 })

	// The webhook turns up late (Plaid retries for a day): it joins.
	_, err = s.sandbox.Break(context.Background(), "lost_2", "profile_r", "First Sandbox Bank")
	require.NoError(t, err)
	s.repairConnection("lost_1")
	s.waitForStatus("lost_1", workflows.StatusRepaired)

	var tooSoon struct{ Error struct{ Code string } }
	require.Equal(t, http.StatusTooManyRequests, s.call(http.MethodPost, "/v1/reconcile/sandbox", nil, &tooSoon),
		"a sweep asked for right after the last one ended")
	assert.Equal(t, "too_many_requests", tooSoon.Error.Code)

	// The next sweep finds nothing new.
	second := s.startSweepBeside(sandbox.Name)
	assert.Equal(t, 2, second.Checked, "lost_2 and heard still need their users")
	assert.Zero(t, second.Found)
	assert.Len(t, s.runs(workflows.WorkflowID(sandbox.Name, "lost_2")), 1)
	assert.Equal(t, 1, s.actionsRequired("lost_2"), "the user was asked once")
	assert.Equal(t, 1, s.actionsRequired("heard"))

	// Operators see it in the metrics: each found break a lost webhook.
	m := s.scrape()
	assert.Equal(t, 2.0, sample(m, "relink_reconcile_found_total", map[string]string{"provider": "sandbox"}))
	assert.Equal(t, 5.0, sample(m, "relink_reconcile_checked_total", map[string]string{"provider": "sandbox", "result": "needs_user"}))
}

// startSweepBeside runs a sweep of provider directly, not through its
// Schedule (which would run one at a time), and waits for it to end.
func (s *stack) startSweepBeside(provider string) sweepResult {
	s.t.Helper()
	var in workflows.SweepInput
	for _, plan := range app.SweepPlans(s.cfg, s.providers) {
		if plan.Provider == provider {
			in = plan.Input()
		}
	}
	require.NotEmpty(s.t, in.Provider, "%s is not swept", provider)
	run, err := s.temporal.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID: "beside-" + workflows.ScheduleID(provider) + "-" + time.Now().UTC().Format(time.RFC3339Nano), TaskQueue: s.cfg.Temporal.TaskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(workflows.SearchAttrProvider.ValueSet(provider)),
	}, workflows.SweepWorkflowName, in)
	require.NoError(s.t, err)
	return s.sweepEnded(provider, run.GetRunID())
}

// Sweeps and webhooks racing for the same breaks: two sweeps at once (an
// operator's, and one beside it: the Schedule runs one at a time, but a
// second must still start nothing twice) while every break's late webhook
// arrives. Each break is one repair and one ask of its user.
func TestRacingSweepsAndWebhooksStartEachRepairOnce(t *testing.T) {
	s := newStackWith(t, map[string]string{"RELINK_RECONCILE_PAGE_SIZE": "4", "RELINK_RECONCILE_RATE": "sandbox:200"})
	const n = 12
	for i := range n {
		s.sandbox.BreakLosingWebhook(fmt.Sprintf("race_%02d", i), "profile_race", "")
	}
	var wg sync.WaitGroup
	var manual, beside sweepResult
	wg.Go(func() { manual = s.sweep(sandbox.Name) })
	wg.Go(func() { beside = s.startSweepBeside(sandbox.Name) })
	for i := range n {
		wg.Go(func() {
			_, err := s.sandbox.Break(context.Background(), fmt.Sprintf("race_%02d", i), "profile_race", "")
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	assert.Equal(t, "Completed", manual.Status, manual.Error)
	assert.Equal(t, "Completed", beside.Status, beside.Error)
	assert.LessOrEqual(t, manual.Found+beside.Found, n, "no break found twice")
	for i := range n {
		conn := fmt.Sprintf("race_%02d", i)
		s.waitForStatus(conn, workflows.StatusAwaitingUser)
		assert.Len(t, s.runs(workflows.WorkflowID(sandbox.Name, conn)), 1, conn)
		s.waitFor(conn+"'s ask", func() bool { return s.actionsRequired(conn) >= 1 })
		assert.Equal(t, 1, s.actionsRequired(conn), conn)
	}
}

// newInventory serves an app inventory for the stack's sweeps.
func newInventory(t *testing.T) (*inventoryfake.Inventory, map[string]string) {
	inv := &inventoryfake.Inventory{Token: strings.Repeat("i", 40)}
	srv := httptest.NewServer(inv)
	t.Cleanup(srv.Close)
	return inv, map[string]string{
		"RELINK_INVENTORY_URL":    srv.URL,
		"RELINK_INVENTORY_TOKEN":  inv.Token,
		"RELINK_RECONCILE_SOURCE": "sandbox:inventory",
	}
}

// A provider swept from the app's inventory: each connection's status is
// read, the broken ones repaired, the unknown one counted as an error; a
// page that fails (the app mid-deploy) is retried, and the sweep goes on
// from that page's cursor, reading no page twice.
func TestSweepPagesTheAppsInventory(t *testing.T) {
	inv, settings := newInventory(t)
	settings["RELINK_RECONCILE_PAGE_SIZE"] = "2"
	s := newStackWith(t, settings)
	var entries []inventory.Entry
	for _, id := range []string{"inv_ok_1", "inv_broken_1", "inv_ok_2", "inv_gone", "inv_broken_2"} {
		entries = append(entries, inventory.Entry{ConnectionID: id, ProfileID: "profile_i", Institution: "Inventory Bank"})
		switch {
		case strings.Contains(id, "broken"):
			s.sandbox.BreakLosingWebhook(id, "profile_i", "Inventory Bank")
		case strings.Contains(id, "ok"):
			_, err := s.sandbox.SetScript(id, sandbox.Script{})
			require.NoError(t, err)
		}
	}
	inv.Set(sandbox.Name, entries...)
	inv.FailAt("2", 2)

	sw := s.sweep(sandbox.Name)
	assert.Equal(t, "Completed", sw.Status, sw.Error)
	assert.Equal(t, 3, sw.Pages)
	assert.Equal(t, 5, sw.Checked)
	assert.Equal(t, 2, sw.NeedUser)
	assert.Equal(t, 2, sw.Found)
	assert.Equal(t, 1, sw.Errors, "inv_gone is unknown to the provider")
	assert.Equal(t, []string{"", "2", "2", "2", "4"}, inv.Cursors(), "the failed page retried at its cursor, no page read twice")
	s.recordRun(sw.ID, sw.RunID, "sweep")
	for _, conn := range []string{"inv_broken_1", "inv_broken_2"} {
		s.waitForStatus(conn, workflows.StatusAwaitingUser)
	}
	for _, conn := range []string{"inv_ok_1", "inv_ok_2"} {
		assert.Empty(t, s.runs(workflows.WorkflowID(sandbox.Name, conn)), "a healthy connection costs no repair")
	}
}

// An inventory that refuses the token fails the sweep at once, saying why.
func TestSweepWithARefusedInventoryTokenFailsSayingWhy(t *testing.T) {
	inv, settings := newInventory(t)
	inv.Token = strings.Repeat("x", 40)
	s := newStackWith(t, settings)
	sw := s.sweep(sandbox.Name)
	assert.Equal(t, "Failed", sw.Status)
	assert.Contains(t, sw.Error, "inventory refused RELINK_INVENTORY_TOKEN")
	assert.WithinDuration(t, time.Now(), sw.StartedAt, time.Minute, "a failed sweep still says when it ran")
	assert.False(t, sw.FinishedAt.Before(sw.StartedAt))
	assert.Equal(t, []string{""}, inv.Cursors(), "not retried: retrying cannot help")
	var out, errOut bytes.Buffer
	require.Zero(t, cli.Run([]string{"reconcile", "-url", s.gateway.URL, "-api-key", apiKey, "-list", "-provider", "sandbox"}, &out, &errOut), errOut.String())
	assert.Contains(t, out.String(), "Failed")
	assert.Contains(t, out.String(), "inventory refused RELINK_INVENTORY_TOKEN", "the CLI says why")
	s.recordRun(sw.ID, sw.RunID, "sweep-refused")
}

// A sweep of 1,000 healthy connections costs a handful of billable
// actions: its start and one activity per page of 500.
func TestSweepCostsAFewActionsPerThousandConnections(t *testing.T) {
	inv, settings := newInventory(t)
	settings["RELINK_RECONCILE_RATE"] = "sandbox:2000"
	s := newStackWith(t, settings)
	entries := make([]inventory.Entry, 1000)
	for i := range entries {
		entries[i] = inventory.Entry{ConnectionID: fmt.Sprintf("cost_%04d", i)}
		_, err := s.sandbox.SetScript(entries[i].ConnectionID, sandbox.Script{})
		require.NoError(t, err)
	}
	inv.Set(sandbox.Name, entries...)
	sw := s.sweep(sandbox.Name)
	require.Equal(t, "Completed", sw.Status, sw.Error)
	require.Equal(t, 1000, sw.Checked)
	actions := cost.Actions(s.history(sw.ID, sw.RunID))
	t.Logf("a sweep of 1,000 connections: %d actions %v", actions.Total(), actions)
	assert.LessOrEqual(t, actions.Total(), 5, "at most 5 billable actions per 1,000 connections checked")
}

// Consent expiries in the inventory arrange proactive repairs at expiry
// minus RELINK_EXPIRY_LEAD, with no timer while they wait: arranged once
// per expiry, moved when the date moves (the pending one cancelled), and
// started at once when the date is already close.
func TestExpiryTimedProactiveRepairs(t *testing.T) {
	inv, settings := newInventory(t)
	settings["RELINK_EXPIRY_LEAD"] = "336h"
	s := newStackWith(t, settings)
	for _, id := range []string{"exp_far", "exp_close"} {
		_, err := s.sandbox.SetScript(id, sandbox.Script{})
		require.NoError(t, err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	far := now.Add(90 * 24 * time.Hour)
	inv.Set(sandbox.Name,
		inventory.Entry{ConnectionID: "exp_far", ProfileID: "profile_e", ConsentExpiresAt: far},
		inventory.Entry{ConnectionID: "exp_close", ProfileID: "profile_e", ConsentExpiresAt: now.Add(3 * 24 * time.Hour)},
	)
	first := s.sweep(sandbox.Name)
	assert.Equal(t, 2, first.ExpiryArranged)

	// The close one starts now: a proactive repair, which the healthy
	// sandbox connection finishes without its user.
	st := s.waitForStatus("exp_close", workflows.StatusRepaired)
	assert.True(t, st.Proactive)
	assert.Contains(t, st.TriggerReason, "consent expires")
	s.recordHistory(workflows.ExpiryWorkflowID(sandbox.Name, "exp_close"), "expiry-start")

	// The far one waits as a delayed start (no timer, no task yet).
	farID := workflows.ExpiryWorkflowID(sandbox.Name, "exp_far")
	pending := s.expiryArrangement(farID)
	assert.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_RUNNING, pending.status)
	assert.True(t, far.Equal(pending.expiresAt), "arranged for %s, not %s", far, pending.expiresAt)
	for _, ev := range s.history(farID, "") {
		assert.NotEqual(t, enums.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, ev.GetEventType(), "a delayed start runs nothing until it is due")
	}
	assert.Empty(t, s.runs(workflows.WorkflowID(sandbox.Name, "exp_far")))

	// The same expiry seen again: nothing new.
	again := s.startSweepBeside(sandbox.Name)
	assert.Zero(t, again.ExpiryArranged)
	assert.Len(t, s.runs(farID), 1)

	// The consent is renewed: a later date moves the arrangement, and the
	// pending start for the old date is cancelled.
	later := far.Add(90 * 24 * time.Hour)
	inv.Set(sandbox.Name, inventory.Entry{ConnectionID: "exp_far", ProfileID: "profile_e", ConsentExpiresAt: later})
	moved := s.startSweepBeside(sandbox.Name)
	assert.Equal(t, 1, moved.ExpiryArranged)
	runs := s.runs(farID)
	require.Len(t, runs, 2)
	assert.True(t, later.Equal(s.expiryArrangement(farID).expiresAt))
	old, err := s.temporal.DescribeWorkflowExecution(context.Background(), farID, runs[0])
	require.NoError(t, err)
	assert.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_TERMINATED, old.GetWorkflowExecutionInfo().GetStatus())
	assert.Empty(t, s.runs(workflows.WorkflowID(sandbox.Name, "exp_far")), "no repair before its time")
}

type arrangement struct {
	status    enums.WorkflowExecutionStatus
	expiresAt time.Time
}

func (s *stack) expiryArrangement(id string) arrangement {
	s.t.Helper()
	desc, err := s.temporal.DescribeWorkflowExecution(context.Background(), id, "")
	require.NoError(s.t, err)
	a := arrangement{status: desc.GetWorkflowExecutionInfo().GetStatus()}
	p := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()[workflows.SearchAttrConsentExpiresAt.GetName()]
	require.NotNil(s.t, p)
	require.NoError(s.t, converter.GetDefaultDataConverter().FromPayload(p, &a.expiresAt))
	return a
}

// A provider that answers 429 slows the sweep down (it waits the
// provider's Retry-After, at half the pace) and loses nothing: the same
// connection is read again, and every connection is checked.
func TestSweepSlowsDownOn429AndLosesNothing(t *testing.T) {
	inv, settings := newInventory(t)
	s := newStackWith(t, settings)
	var entries []inventory.Entry
	for i := range 4 {
		id := fmt.Sprintf("limited_%d", i)
		entries = append(entries, inventory.Entry{ConnectionID: id})
		_, err := s.sandbox.SetScript(id, sandbox.Script{})
		require.NoError(t, err)
	}
	_, err := s.sandbox.SetScript("limited_1", sandbox.Script{RateLimitCalls: 2})
	require.NoError(t, err)
	s.sandbox.BreakLosingWebhook("limited_2", "", "")
	_, err = s.sandbox.SetScript("limited_2", sandbox.Script{RateLimitCalls: 1})
	require.NoError(t, err)
	inv.Set(sandbox.Name, entries...)

	sw := s.sweep(sandbox.Name)
	assert.Equal(t, "Completed", sw.Status, sw.Error)
	assert.Equal(t, 4, sw.Checked)
	assert.Zero(t, sw.Errors, "a 429 is waited out, not counted as an error")
	assert.Equal(t, 1, sw.Found)
	assert.GreaterOrEqual(t, sw.FinishedAt.Sub(sw.StartedAt), 3*time.Second, "three Retry-Afters of a second waited")
	for id, reads := range map[string]int{"limited_0": 1, "limited_1": 3, "limited_3": 1} {
		c, err := s.sandbox.Get(id)
		require.NoError(t, err)
		assert.Equal(t, reads, c.Calls["status"], id)
	}
	s.waitForStatus("limited_2", workflows.StatusAwaitingUser)
}

// A Meld connection that broke with its webhook lost is found in Meld's
// own listing (its connection search by status), repaired, and its late
// webhook joins; a healthy one is never read. A 429 from Meld is waited
// out.
func TestSweepFindsALostMeldBreakInMeldsListing(t *testing.T) {
	s, fake := newMeldStack(t)
	fake.Put(meldfake.Connection{ID: "conn_ml_ok", CustomerID: "cus_m", Status: meld.StatusActive})
	fake.Put(meldfake.Connection{ID: "conn_ml_lost", CustomerID: "cus_m", Status: meld.StatusReconnectRequired, StatusReason: "LOGIN_REQUIRED"})
	fake.RateLimitNext(1, "1")

	sw := s.sweep(meld.Name)
	assert.Equal(t, "Completed", sw.Status, sw.Error)
	assert.Equal(t, 1, sw.Checked, "the listing holds only what needs the user")
	assert.Equal(t, 1, sw.Found)
	s.waitForStatusOf(meld.Name, "conn_ml_lost", workflows.StatusAwaitingUser)
	assert.Equal(t, 1, s.postMeld("evt_ml_late", "conn_ml_lost", meld.StatusReconnectRequired, "LOGIN_REQUIRED").Received)
	assert.Len(t, s.runs(workflows.WorkflowID(meld.Name, "conn_ml_lost")), 1)

	var rec workflows.ReconnectResult
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/meld/conn_ml_lost/reconnect", nil, &rec))
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/meld/conn_ml_lost/complete",
		map[string]any{"connectorToken": rec.Session.ConnectorToken}, nil))
	fake.Set("conn_ml_lost", meld.StatusActive, "")
	s.postMeld("evt_ml_active", "conn_ml_lost", meld.StatusActive, "")
	s.waitForStatusOf(meld.Name, "conn_ml_lost", workflows.StatusRepaired)
	for _, r := range fake.Requests() {
		assert.NotContains(t, r.Path, "conn_ml_ok", "a healthy connection is never read")
	}
}

// Plaid cannot list its Items: the sweep pages the app's inventory and
// reads each Item with /item/get. The broken one is found and repaired;
// the healthy one's consent_expiration_time arranges its proactive
// repair; a 429 (RATE_LIMIT_EXCEEDED) is waited out.
func TestSweepFindsALostPlaidBreakInTheAppsInventory(t *testing.T) {
	inv, settings := newInventory(t)
	fake := plaidfake.New(plaidClientID, plaidSecret)
	t.Cleanup(fake.Close)
	expires := time.Now().UTC().Add(120 * 24 * time.Hour).Truncate(time.Second)
	fake.Put(plaidfake.Item{ID: "item_lost", AccessToken: plaidAccessToken, ErrorCode: plaid.CodeItemLoginRequired})
	fake.Put(plaidfake.Item{ID: "item_fine", AccessToken: plaidAccessToken + "-2", ConsentExpiresAt: expires})
	settings["RELINK_RECONCILE_SOURCE"] = "plaid:inventory"
	s := newStackWith(t, merged(settings, map[string]string{
		"PLAID_CLIENT_ID": plaidClientID, "PLAID_SECRET": plaidSecret, "PLAID_API_URL": fake.URL, "PLAID_CLIENT_NAME": "Acme",
		"PLAID_ACCESS_TOKENS": "item_lost:" + plaidAccessToken + ",item_fine:" + plaidAccessToken + "-2",
	}))
	inv.Set(plaid.Name, inventory.Entry{ConnectionID: "item_lost", ProfileID: "user_1"}, inventory.Entry{ConnectionID: "item_fine", ProfileID: "user_1"})
	fake.RateLimitNext(1)

	sw := s.sweep(plaid.Name)
	assert.Equal(t, "Completed", sw.Status, sw.Error)
	assert.Equal(t, 2, sw.Checked)
	assert.Equal(t, 1, sw.Found)
	assert.Zero(t, sw.Errors)
	assert.Equal(t, 1, sw.ExpiryArranged)
	assert.True(t, expires.Equal(s.expiryArrangement(workflows.ExpiryWorkflowID(plaid.Name, "item_fine")).expiresAt))

	s.waitForStatusOf(plaid.Name, "item_lost", workflows.StatusAwaitingUser)
	var rec workflows.ReconnectResult
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/plaid/item_lost/reconnect", nil, &rec))
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/plaid/item_lost/complete", map[string]any{
		"connectorToken": rec.Session.LinkToken, "publicToken": "public-sandbox-lost"}, nil))
	s.waitForStatusOf(plaid.Name, "item_lost", workflows.StatusVerifying)
	fake.SetError("item_lost", "")
	// (Within the second the sweep read the Item: Plaid dates its
	// webhooks to the second.)
	s.postPlaid(fake, map[string]any{"webhook_type": "ITEM", "webhook_code": "LOGIN_REPAIRED", "item_id": "item_lost", "environment": "sandbox"})
	s.waitForStatusOf(plaid.Name, "item_lost", workflows.StatusRepaired)
	assert.Empty(t, s.runs(workflows.WorkflowID(plaid.Name, "item_fine")))
}

// Quiltt, swept both ways: from its own listing (profile by profile) and,
// as an app may choose, from the inventory. Either finds the break whose
// webhook was lost, and the repair completes.
func TestSweepFindsALostQuilttBreak(t *testing.T) {
	for _, source := range []string{workflows.SourceProvider, workflows.SourceInventory} {
		t.Run(source, func(t *testing.T) {
			inv, settings := newInventory(t)
			settings["RELINK_RECONCILE_SOURCE"] = "quiltt:" + source
			fake := quilttfake.New(quilttSecret)
			t.Cleanup(fake.Close)
			s := newStackWith(t, merged(settings, quilttSettings(fake)))
			s.syncAfterClose(fake)
			lost := quilttfake.Connection{ID: "conn_q_lost", ProfileID: "p_q", Provider: "PLAID", Status: quiltt.StatusErrorRepairable}
			fake.Put(lost)
			fake.Put(quilttfake.Connection{ID: "conn_q_fine", ProfileID: "p_q", Provider: "PLAID", Status: quiltt.StatusSynced})
			inv.Set(quiltt.Name, inventory.Entry{ConnectionID: "conn_q_lost", ProfileID: "p_q"}, inventory.Entry{ConnectionID: "conn_q_fine", ProfileID: "p_q"})

			sw := s.sweep(quiltt.Name)
			assert.Equal(t, "Completed", sw.Status, sw.Error)
			assert.Equal(t, 1, sw.Found)
			s.waitForStatusOf(quiltt.Name, "conn_q_lost", workflows.StatusAwaitingUser)
			var rec workflows.ReconnectResult
			require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/quiltt/conn_q_lost/reconnect", nil, &rec))
			require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/quiltt/conn_q_lost/complete", map[string]any{
				"connectorToken": rec.Session.ConnectorToken, "publicToken": "public-sandbox-q"}, nil))
			s.waitForStatusOf(quiltt.Name, "conn_q_lost", workflows.StatusRepaired)
		})
	}
}

// `relink reconcile -wait` sweeps every swept provider and prints what
// each sweep did once it is over; -list starts nothing.
func TestRelinkReconcileSweepsAndWaits(t *testing.T) {
	s := newStack(t)
	s.sandbox.BreakLosingWebhook("cli_lost", "profile_cli", "")
	var out, errOut bytes.Buffer
	require.Zero(t, cli.Run([]string{"reconcile", "-url", s.gateway.URL, "-api-key", apiKey, "-wait"}, &out, &errOut), errOut.String())
	assert.Contains(t, out.String(), "sweeping sandbox: relink-reconcile-sandbox-")
	assert.Regexp(t, `(?m)^\S+ \S+\s+\S+ \S+\s+Completed\s+1\s+1\s+1\s+0\s+0\s*$`, out.String())
	s.waitForStatus("cli_lost", workflows.StatusAwaitingUser)

	out.Reset()
	require.Zero(t, cli.Run([]string{"reconcile", "-url", s.gateway.URL, "-api-key", apiKey, "-list"}, &out, &errOut), errOut.String())
	assert.NotContains(t, out.String(), "sweeping")
	assert.Contains(t, out.String(), "sandbox (from its provider):")
	assert.Equal(t, 1, strings.Count(out.String(), "Completed"), "the one sweep")
}
