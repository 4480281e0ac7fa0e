package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/sandbox"
)

// These tests pin down failure paths: provider outages, outcomes that
// arrive while an activity is still retrying, and reports that must not
// cost the user an attempt.

func TestProbeOutageExpiresInsteadOfUnrepairable(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{FailCalls: 1_000_000})

	st := h.run(RepairOptions{RepairWindow: time.Hour})

	assert.Equal(t, StatusExpired, st.Status, "an outage is not a verdict on the connection")
	assert.Contains(t, st.Reason, "provider was unavailable")
	assert.Equal(t, time.Hour, st.ClosedAt.Sub(st.StartedAt).Round(time.Minute))
	assert.Greater(t, h.calls("initialize"), 5, "retried throughout the window")
}

func TestCancelDuringProbeOutageAppliesAtOnce(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{FailCalls: 1_000_000})
	h.at(10*time.Minute, func() { h.send(CancelRequest{Reason: "ops"}) })

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusCanceled, st.Status)
	assert.Equal(t, 10*time.Minute, st.ClosedAt.Sub(st.StartedAt).Round(time.Minute))
}

func TestConfirmationDuringProbeOutageNeverAsksTheUser(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{FailCalls: 1_000_000})
	h.at(2*time.Minute, func() { h.providerEvent("evt_synced", aggregator.EventKindSynced) })

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusRepaired, st.Status)
	assert.Equal(t, []string{activities.EventRepaired}, h.events.types(), "no action_required for a repaired connection")
}

func TestRefreshOutageAnswersUnavailableAndKeepsWaiting(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	var got *updateOutcome
	var after RepairState
	h.at(40*time.Minute, func() {
		h.script(sandbox.Script{FailCalls: 1_000_000})
		got = h.reconnect(ReconnectRequest{}) // the probe's session has expired
	})
	h.at(50*time.Minute, func() { after = h.state() })
	h.at(time.Hour, func() { h.send(CancelRequest{}) })

	st := h.run(RepairOptions{})

	require.True(t, got.done)
	require.Error(t, got.err)
	assert.Equal(t, ErrTypeProviderUnavailable, activities.ErrorType(got.err))
	assert.Equal(t, StatusAwaitingUser, after.Status)
	assert.Contains(t, after.LastError, "provider unavailable")
	assert.Equal(t, StatusCanceled, st.Status)
}

func TestRepairableEventFromBeforeTheReconnectCostsNoAttempt(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{SuppressWebhooks: true, SyncingPolls: 1000})
	h.at(time.Minute, func() { h.reconnect(ReconnectRequest{}) })
	h.at(2*time.Minute, func() { h.userCompletes() })
	h.at(3*time.Minute, func() {
		// Redelivered late: it describes the break before the user's reconnect.
		h.send(ProviderEvent{EventID: "evt_late", Kind: aggregator.EventKindRepairable, At: h.start.Add(time.Minute)})
	})
	h.at(4*time.Minute, func() { h.providerEvent("evt_synced", aggregator.EventKindSynced) })

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusRepaired, st.Status)
	assert.Equal(t, 1, st.Attempt)
}

func TestFailedCloseCountsOnce(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	// A slow, rejected close, with the provider also reporting the break
	// while it runs: one failed reconnect.
	h.script(sandbox.Script{Close: sandbox.CloseRejects, LatencyMillis: 300})
	h.at(time.Minute, func() { h.reconnect(ReconnectRequest{}) })
	h.at(2*time.Minute, func() {
		h.userCompletes()
		h.env.RegisterDelayedCallback(func() {
			h.providerEvent("evt_broken_again", aggregator.EventKindRepairable)
		}, time.Millisecond)
	})
	h.at(time.Hour, func() { h.send(CancelRequest{}) })

	st := h.run(RepairOptions{})

	assert.Equal(t, 2, st.Attempt)
	assert.Equal(t, StatusCanceled, st.Status)
}

func TestCompletionWithAStrayTokenIsIgnored(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	var stray *updateOutcome
	h.at(time.Minute, func() {
		stray = h.complete(ReconnectCompleted{ConnectorToken: "not-ours", PublicToken: "x"})
	})
	var after RepairState
	h.at(2*time.Minute, func() { after = h.state() })
	h.at(3*time.Minute, func() { h.send(CancelRequest{}) })

	h.run(RepairOptions{})

	assert.Equal(t, ErrTypeSessionUnknown, activities.ErrorType(stray.err))
	assert.Equal(t, StatusAwaitingUser, after.Status)
	assert.Equal(t, 1, after.Attempt)
	assert.Zero(t, h.calls("close"))
}

func TestConcurrentReconnectsShareOneRefresh(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	var first, second *updateOutcome
	h.at(40*time.Minute, func() {
		h.script(sandbox.Script{LatencyMillis: 100})
		first = h.reconnect(ReconnectRequest{})
		second = h.reconnect(ReconnectRequest{})
	})
	h.at(time.Hour, func() { h.send(CancelRequest{}) })

	st := h.run(RepairOptions{})

	require.NoError(t, first.err)
	require.NoError(t, second.err)
	assert.Equal(t, first.result.Session.ConnectorToken, second.result.Session.ConnectorToken)
	assert.Equal(t, 2, h.calls("initialize"), "the probe and one shared refresh")
	assert.Equal(t, 2, st.SessionsIssued)
}

func TestNextRunInputForABreakAfterClose(t *testing.T) {
	for name, send := range map[string]func(h *harness){
		"webhook": func(h *harness) { h.providerEvent("evt_second_break", aggregator.EventKindRepairable) },
		"manual": func(h *harness) {
			h.send(RepairRequest{Reason: "manual: ticket 7", At: h.env.Now()})
		},
		"proactive": func(h *harness) { h.providerEvent("evt_expiring", aggregator.EventKindProactive) },
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.breakConnection()
			h.script(sandbox.Script{SyncingPolls: 1})
			h.at(time.Minute, func() { h.reconnect(ReconnectRequest{}) })
			h.at(2*time.Minute, func() { h.userCompletes() })
			// The confirmation and a new break arrive in the same step: the
			// break is not lost behind the outcome.
			h.at(3*time.Minute, func() {
				h.providerEvent("evt_synced", aggregator.EventKindSynced)
				send(h)
			})

			h.env.ExecuteWorkflow(ConnectionRepair, h.input(RepairOptions{}))

			next := h.continuedAs()
			assert.Equal(t, testConn, next.ConnectionID)
			assert.Equal(t, testProfile, next.ProfileID)
			assert.Nil(t, next.Carry, "a new break is a new repair")
			switch name {
			case "webhook":
				assert.Equal(t, "evt_second_break", next.TriggerEventID)
			case "manual":
				assert.Equal(t, "manual: ticket 7", next.TriggerReason)
			case "proactive":
				assert.True(t, next.Proactive)
			}
		})
	}
}

func TestStaleBreakAfterCloseStartsNothing(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{SyncingPolls: 1})
	h.at(time.Minute, func() { h.reconnect(ReconnectRequest{}) })
	h.at(2*time.Minute, func() { h.userCompletes() })
	h.at(3*time.Minute, func() {
		h.providerEvent("evt_synced", aggregator.EventKindSynced)
		// Dated before the break this repair handled: nothing new.
		h.send(ProviderEvent{EventID: "evt_old_break", Kind: aggregator.EventKindRepairable, At: h.start.Add(-time.Minute)})
		// The trigger itself, redelivered.
		h.send(ProviderEvent{EventID: "evt_trigger", Kind: aggregator.EventKindRepairable, At: h.start})
	})

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusRepaired, st.Status, "completed, not continued as new")
	assert.Equal(t, 1, st.DuplicateEvents)
	assert.Equal(t, 1, st.IgnoredEvents)
	assert.Contains(t, st.LastIgnored, "dated before the break")
}

func TestProactiveRepair(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{SyncingPolls: 1})
	h.at(time.Minute, func() { h.reconnect(ReconnectRequest{}) })
	h.at(2*time.Minute, func() { h.userCompletes() })
	// Another "expiring soon" while verifying is not a failed reconnect.
	h.at(3*time.Minute, func() { h.providerEvent("evt_expiring_again", aggregator.EventKindProactive) })
	var verifying RepairState
	h.at(4*time.Minute, func() { verifying = h.state() })
	h.at(5*time.Minute, func() { h.providerEvent("evt_synced", aggregator.EventKindSynced) })

	in := h.input(RepairOptions{})
	in.Proactive = true
	h.env.ExecuteWorkflow(ConnectionRepair, in)
	var st RepairState
	require.NoError(t, h.env.GetWorkflowResult(&st))

	assert.Equal(t, StatusVerifying, verifying.Status)
	assert.Equal(t, 1, verifying.Attempt)
	assert.True(t, st.Proactive)
	assert.Equal(t, StatusRepaired, st.Status)
	for _, ev := range h.events.ofType(activities.EventActionRequired) {
		assert.True(t, ev.Repair.Proactive, "the app is told nothing is broken yet")
	}
}

func TestBreakDuringProactiveRepairMakesItAnOrdinaryOne(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.at(time.Hour, func() { h.providerEvent("evt_broke", aggregator.EventKindRepairable) })
	var after RepairState
	h.at(2*time.Hour, func() { after = h.state() })
	h.at(3*time.Hour, func() { h.send(CancelRequest{}) })

	in := h.input(RepairOptions{})
	in.Proactive = true
	h.env.ExecuteWorkflow(ConnectionRepair, in)
	assert.Equal(t, StatusCanceled, h.finalState().Status)

	assert.False(t, after.Proactive)
	assert.Equal(t, StatusAwaitingUser, after.Status)
}
