package workflows

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/sandbox"
)

// These tests pin down what callers can and cannot make a repair do.

func TestUserWhoFinishedInTimeIsNotExpired(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{SyncingPolls: 1, SuppressWebhooks: true})
	h.at(58*time.Minute, func() { h.reconnect(ReconnectRequest{}) })
	h.at(59*time.Minute, func() { h.userCompletes() })
	var afterWindow RepairState
	h.at(60*time.Minute+30*time.Second, func() { afterWindow = h.state() })
	h.at(61*time.Minute, func() { h.providerEvent("evt_synced", aggregator.EventKindSynced) })

	st := h.run(RepairOptions{RepairWindow: time.Hour, VerifyQuietPeriod: 10 * time.Minute})

	assert.Equal(t, StatusVerifying, afterWindow.Status, "the window ended, but the user had finished")
	assert.WithinDuration(t, h.start.Add(59*time.Minute+DefaultVerifyGrace), afterWindow.VerifyUntil, 0)
	assert.Equal(t, StatusRepaired, st.Status)
	assert.Equal(t, "confirmed by the provider's webhook", st.Reason)
}

func TestCompletionsTheRepairCannotUseAreRefused(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	outcomes := map[string]*updateOutcome{}
	h.at(time.Minute, func() {
		outcomes["no token"] = h.complete(ReconnectCompleted{PublicToken: "p"})
		outcomes["stray token"] = h.complete(ReconnectCompleted{ConnectorToken: "sbx_ct_999"})
		outcomes["huge metadata"] = h.complete(ReconnectCompleted{ConnectorToken: "sbx_ct_1",
			Metadata: json.RawMessage(`"` + strings.Repeat("x", MaxCompletionMetadataBytes) + `"`)})
	})
	h.at(2*time.Minute, func() { h.userCompletes() })

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusRepaired, st.Status)
	for name, want := range map[string]string{
		"no token":      ErrTypeInvalidMessage,
		"stray token":   ErrTypeSessionUnknown,
		"huge metadata": ErrTypeTooLarge,
	} {
		require.NotNil(t, outcomes[name], name)
		assert.Equal(t, want, activities.ErrorType(outcomes[name].err), name)
	}
	assert.Equal(t, 1, h.calls("close"))
}

func TestCompletionWhileVerifyingIsRefused(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{SyncingPolls: 1000, SuppressWebhooks: true})
	h.at(time.Minute, func() { h.reconnect(ReconnectRequest{}) })
	h.at(2*time.Minute, func() { h.userCompletes() })
	var late *updateOutcome
	h.at(3*time.Minute, func() { late = h.complete(ReconnectCompleted{ConnectorToken: "sbx_ct_other"}) })
	h.at(4*time.Minute, func() { h.send(CancelRequest{}) })

	h.run(RepairOptions{})

	assert.Equal(t, ErrTypeNotAwaitingUser, activities.ErrorType(late.err))
}

func TestExitsAreCappedPerRun(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	var outcomes []*updateOutcome
	h.at(time.Minute, func() {
		for range maxExitsPerRun + 5 {
			outcomes = append(outcomes, h.exit(ReconnectExited{Reason: "closed"}))
		}
	})
	h.at(2*time.Minute, func() { h.send(CancelRequest{}) })

	st := h.run(RepairOptions{})

	assert.Equal(t, maxExitsPerRun, st.Exits)
	refused := 0
	for _, out := range outcomes {
		if activities.ErrorType(out.err) == ErrTypeTooManyRequests {
			refused++
		}
	}
	assert.Equal(t, 5, refused, "a looping frontend gets 429s, the run keeps what it has")
}

func TestReconnectOfferUsesTheCallersClock(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	offers := map[string]ReconnectOffer{}
	query := func(name string, q ReconnectRequest) {
		v, err := h.env.QueryWorkflow(QueryReconnect, q)
		require.NoError(t, err)
		var o ReconnectOffer
		require.NoError(t, v.Get(&o))
		offers[name] = o
	}
	h.at(time.Second, func() {
		query("forced at once", ReconnectRequest{ForceNewSession: true, At: h.env.Now()})
	})
	h.at(time.Minute, func() {
		now := h.env.Now()
		query("now", ReconnectRequest{At: now})
		// The workflow's clock stands still between its tasks; the caller's
		// does not. A session expired by the caller's clock is not handed out.
		query("an hour later", ReconnectRequest{At: now.Add(time.Hour)})
		query("forced later", ReconnectRequest{ForceNewSession: true, At: now})
	})
	h.at(2*time.Minute, func() { h.send(CancelRequest{}) })

	h.run(RepairOptions{})

	require.NotNil(t, offers["now"].Result)
	assert.NotEmpty(t, offers["now"].Result.Session.ConnectorToken)
	assert.Nil(t, offers["an hour later"].Result)
	assert.NotEmpty(t, offers["an hour later"].UpdateID)
	assert.NotNil(t, offers["forced at once"].Result, "a session a second old serves a forced call too")
	assert.NotEmpty(t, offers["forced later"].UpdateID)
}

func TestReconnectDuringTheProbeSaysRetry(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{FailCalls: 1_000_000})
	var offer ReconnectOffer
	var update *updateOutcome
	h.at(10*time.Minute, func() {
		v, err := h.env.QueryWorkflow(QueryReconnect, ReconnectRequest{At: h.env.Now()})
		require.NoError(t, err)
		require.NoError(t, v.Get(&offer))
		update = h.reconnect(ReconnectRequest{})
	})
	h.at(11*time.Minute, func() { h.send(CancelRequest{}) })

	h.run(RepairOptions{})

	assert.NotEmpty(t, offer.Unavailable)
	assert.Positive(t, offer.RetryAfter)
	require.True(t, update.done)
	assert.Equal(t, ErrTypeProviderUnavailable, activities.ErrorType(update.err), "answered at once, not after the outage")
}

func TestSignalsApplyInArrivalOrderAcrossKinds(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.at(time.Minute, func() {
		// Sent together, the cancel first: the cancel wins.
		h.send(CancelRequest{Reason: "first"})
		h.providerEvent("evt_synced", aggregator.EventKindSynced)
	})

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusCanceled, st.Status)
	assert.Equal(t, "canceled: first", st.Reason)
	assert.Equal(t, 1, st.IgnoredEvents, "the synced event after it is counted, not lost silently")
}

func TestReconnectUpdateAlwaysMintsWhileWaiting(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	var first, second *updateOutcome
	// The query said a new session was needed; the update must not serve
	// the current one, or its id would answer from cache ever after.
	h.at(time.Minute, func() { first = h.update(UpdateReconnect, ReconnectRequest{}) })
	h.at(2*time.Minute, func() { second = h.update(UpdateReconnect, ReconnectRequest{}) })
	h.at(3*time.Minute, func() { h.send(CancelRequest{}) })

	st := h.run(RepairOptions{})

	require.NoError(t, first.err)
	require.NoError(t, second.err)
	assert.NotEqual(t, first.result.Session.ConnectorToken, second.result.Session.ConnectorToken)
	assert.Equal(t, 3, st.SessionsIssued)
}

func TestContinueAsNewWhenSuggestedCarriesTheWholeRepair(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.at(10*time.Minute, func() { h.exit(ReconnectExited{Reason: "closed"}) })
	h.at(11*time.Minute, func() {
		h.env.SetContinueAsNewSuggested(true)
		h.env.SetCurrentHistoryLength(40_000) // and wake it up, as a message would
		h.send(ProviderEvent{EventID: "evt_errored", Kind: aggregator.EventKindErrored})
	})

	h.env.ExecuteWorkflow(ConnectionRepair, h.input(RepairOptions{}))

	next := h.continuedAs()
	require.NotNil(t, next.Carry)
	c := next.Carry
	assert.Equal(t, StatusAwaitingUser, c.State.Status)
	assert.Equal(t, 1, c.State.Exits)
	assert.Contains(t, c.State.EventIDs, "evt_trigger")
	assert.NotEmpty(t, c.Session.ConnectorToken, "the user's session goes along")
	assert.Equal(t, []string{c.Session.ConnectorToken}, c.IssuedTokens)

	// The next run picks up where this one stopped: same session, same
	// window, no second action_required.
	h2 := newHarnessWith(t, h.sandbox)
	h2.at(time.Minute, func() { h2.userCompletes() })
	h2.env.ExecuteWorkflow(ConnectionRepair, next)
	var st RepairState
	require.NoError(t, h2.env.GetWorkflowResult(&st))
	assert.Equal(t, StatusRepaired, st.Status)
	assert.Equal(t, 2, st.Runs)
	assert.Equal(t, 1, st.SessionsIssued)
	assert.Equal(t, c.State.ExpiresAt, st.ExpiresAt)
	require.Len(t, h2.events.events, 1)
	assert.Equal(t, activities.EventRepaired, h2.events.events[0].Type)
	assert.Equal(t, 2, h2.events.events[0].Repair.Sequence, "the sequence goes on from the first run's events")
}

func TestNewBreakWhileTheAppIsDownContinuesAtOnceWithTheUndeliveredEvents(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{Initialize: sandbox.InitializeContinue})
	h.events.failing = true
	h.at(time.Minute, func() {
		h.providerEvent("evt_new_break", aggregator.EventKindRepairable)
		h.env.SetContinueAsNewSuggested(true)
	})

	h.env.ExecuteWorkflow(ConnectionRepair, h.input(RepairOptions{}))

	next := h.continuedAs()
	assert.Nil(t, next.Carry)
	assert.Equal(t, "evt_new_break", next.TriggerEventID)
	require.Len(t, next.Undelivered, 1, "the repaired event the app has not had yet goes along")
	assert.Equal(t, activities.EventRepaired, next.Undelivered[0].Type)
}

// A message that arrives in the very workflow task in which the run decides
// to continue as new is applied before it does. Here the message is
// delivered without a task of its own, and Temporal's suggestion to
// continue wakes the run in the next one: both reach the run in one task,
// as they do on a busy server.
func TestAMessageArrivingAsTheRunContinuesIsApplied(t *testing.T) {
	for name, msg := range map[string]Message{
		"cancel":  {Cancel: &CancelRequest{Reason: "ops"}},
		"synced":  {Event: &ProviderEvent{EventID: "evt_synced", Kind: aggregator.EventKindSynced}},
		"deleted": {Event: &ProviderEvent{EventID: "evt_deleted", Kind: aggregator.EventKindDeleted}},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.breakConnection()
			h.at(time.Hour, func() { h.env.SignalWorkflowSkippingWorkflowTask(SignalMessage, msg) })
			h.at(time.Hour+time.Minute, func() { h.env.SetContinueAsNewSuggested(true) })

			st := h.run(RepairOptions{})

			assert.True(t, st.Status.Terminal(), "the %s was applied, not left behind by continue-as-new", name)
		})
	}
}

// An operator's cancel of the workflow while a finished repair is still
// delivering its outcome does not drop the outcome's event.
func TestATemporalCancelWhileTheOutcomeIsDeliveredKeepsTheEvent(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.at(time.Minute, func() {
		h.setFailing(true)
		h.send(ProviderEvent{EventID: "evt_synced", Kind: aggregator.EventKindRepairedElsewhere})
	})
	h.at(5*time.Minute, func() { h.env.CancelWorkflow() })
	h.at(8*time.Minute, func() { h.setFailing(false) })

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusRepaired, st.Status)
	assert.Len(t, h.events.ofType(activities.EventRepaired), 1, "the outcome reached the app after the endpoint came back")
}

// A frontend that forces a new session again and again for hours does not
// grow what the repair carries into its next run.
func TestTheCarryIsBoundedWhateverTheFrontendDoes(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	const refreshes = 3 * tokensKept
	for i := range refreshes {
		h.at(time.Duration(i+1)*time.Minute, func() { h.reconnect(ReconnectRequest{ForceNewSession: true}) })
	}
	h.at(time.Duration(refreshes+5)*time.Minute, func() {
		h.env.SetContinueAsNewSuggested(true)
		h.send(ProviderEvent{EventID: "evt_errored", Kind: aggregator.EventKindErrored})
	})

	h.env.ExecuteWorkflow(ConnectionRepair, h.input(RepairOptions{}))

	c := h.continuedAs().Carry
	require.NotNil(t, c)
	assert.Equal(t, refreshes+1, c.State.SessionsIssued, "every forced refresh minted a session")
	assert.Len(t, c.IssuedTokens, tokensKept)
	assert.Equal(t, c.Session.ConnectorToken, c.IssuedTokens[tokensKept-1], "the current session is kept")
}

// A gateway whose clock runs an hour ahead of Temporal's (its sessions all
// look expired to it) makes the repair mint one new session, not one per
// reconnect: the repair learns its skew from that update.
func TestAGatewayWhoseClockRunsAheadMintsOnce(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	ahead := func() ReconnectRequest {
		return ReconnectRequest{Gateway: "gw-ahead", At: h.env.Now().Add(time.Hour)}
	}
	var outcomes []*updateOutcome
	for i := range 6 {
		h.at(time.Duration(i+1)*time.Minute, func() { outcomes = append(outcomes, h.reconnect(ahead())) })
	}
	// Another gateway, on time, is not corrected by the first one's skew.
	h.at(7*time.Minute, func() { outcomes = append(outcomes, h.reconnect(ReconnectRequest{Gateway: "gw-on-time"})) })
	h.at(10*time.Minute, func() { h.send(CancelRequest{}) })

	st := h.run(RepairOptions{})

	require.Len(t, outcomes, 7)
	for i, o := range outcomes {
		require.True(t, o.done, "call %d", i)
		require.NoError(t, o.err, "call %d", i)
		assert.Equal(t, outcomes[0].result.Session.ConnectorToken, o.result.Session.ConnectorToken, "call %d gets the session minted for the first", i)
	}
	assert.Equal(t, 2, st.SessionsIssued, "the probe's session, and one for the gateway ahead")
}

// Events reach the app in the order they were sent, whatever the retries'
// timing: here the outcome, sent last, would otherwise be retried first
// when the app's endpoint comes back.
func TestEventsReachTheAppInOrder(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{SyncingPolls: 1, SuppressWebhooks: true})
	h.setFailing(true)
	h.at(30*time.Second, func() { h.reconnect(ReconnectRequest{}) })
	h.at(time.Minute, func() { h.userCompletes() })
	h.at(4*time.Minute, func() { h.providerEvent("evt_synced", aggregator.EventKindSynced) })
	h.at(4*time.Minute+45*time.Second, func() { h.setFailing(false) })

	st := h.run(RepairOptions{ReportTransientStatuses: true})

	require.Equal(t, StatusRepaired, st.Status)
	var got []int
	for _, ev := range h.events.events {
		got = append(got, ev.Repair.Sequence)
	}
	assert.Equal(t, []int{2, 3, 4}, got, "COMPLETING, VERIFYING, REPAIRED in order (the ask was withdrawn)")
}

// The app's endpoint down for two hours, through the whole repair, then
// back: every event still to deliver reaches it, in order, the outcome
// last (each is retried for RELINK_NOTIFY_TIMEOUT, 72 hours).
func TestEventsOutliveAnAppDownForHours(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{SyncingPolls: 1, SuppressWebhooks: true})
	h.setFailing(true)
	h.at(10*time.Minute, func() { h.reconnect(ReconnectRequest{}) })
	h.at(20*time.Minute, func() { h.userCompletes() })
	h.at(30*time.Minute, func() { h.providerEvent("evt_synced", aggregator.EventKindSynced) })
	h.at(2*time.Hour, func() { h.setFailing(false) })

	st := h.run(RepairOptions{ReportTransientStatuses: true})

	require.Equal(t, StatusRepaired, st.Status)
	var got []int
	for _, ev := range h.events.events {
		got = append(got, ev.Repair.Sequence)
	}
	require.NotEmpty(t, got)
	assert.IsIncreasing(t, got, "in order")
	assert.Equal(t, []int{2, 3, 4}, got, "COMPLETING, VERIFYING, REPAIRED (the ask, never delivered, was withdrawn once the user had come)")
	assert.Equal(t, activities.EventRepaired, h.events.events[len(got)-1].Type)
	assert.GreaterOrEqual(t, h.events.events[0].deliveredAt.Sub(h.start), 2*time.Hour, "delivered once the app was back")
}
