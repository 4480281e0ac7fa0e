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

func TestContinueNeedsNoUser(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{Initialize: sandbox.InitializeContinue})

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusRepaired, st.Status)
	assert.Equal(t, []Status{StatusPending, StatusRepaired}, statuses(st), "CONTINUE is the repair: nothing to wait for")
	assert.Equal(t, aggregator.ConnectorContinue, st.ConnectorStatus)
	assert.Zero(t, h.calls("close"), "CONTINUE must not close anything")
	assert.Equal(t, []string{activities.EventRepaired}, h.events.types(), "the user is never asked to act")
	assert.False(t, st.Quiet, "the app hears that Relink repaired it")
}

func TestActionRequiredReconnectCompletedConfirmed(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	// Still syncing when read right after close: the webhook confirms.
	h.script(sandbox.Script{SyncingPolls: 1})
	var first, second *updateOutcome
	h.at(10*time.Minute, func() { first = h.reconnect(ReconnectRequest{}) })
	h.at(11*time.Minute, func() { second = h.reconnect(ReconnectRequest{}) })
	h.at(15*time.Minute, func() { h.userCompletes() })
	var verifying RepairState
	h.at(16*time.Minute, func() { verifying = h.state() })
	h.at(18*time.Minute, func() { h.providerEvent("evt_synced", aggregator.EventKindSynced) })

	st := h.run(RepairOptions{})

	require.True(t, first.done)
	require.NoError(t, first.err)
	assert.Equal(t, aggregator.ConnectorActionRequired, first.result.ConnectorStatus)
	require.NotNil(t, first.result.Session)
	assert.NotEmpty(t, first.result.Session.ConnectorToken)
	assert.NotEmpty(t, first.result.Session.WidgetURL)
	assert.Equal(t, first.result.Session, second.result.Session, "a valid session is reused")
	assert.Equal(t, 1, h.calls("initialize"), "the probe's session serves both reconnects")

	assert.Equal(t, StatusVerifying, verifying.Status)
	assert.Equal(t, StatusRepaired, st.Status)
	assert.Equal(t, []Status{StatusPending, StatusAwaitingUser, StatusCompleting, StatusVerifying, StatusRepaired}, statuses(st))
	assert.Equal(t, 1, st.Attempt)
	assert.Equal(t, 1, h.calls("close"))
	assert.Equal(t, "confirmed by the provider's webhook", st.Reason)
	assert.Equal(t, []string{activities.EventActionRequired, activities.EventRepaired}, h.events.types(),
		"transient statuses are not sent")
	assert.Equal(t, 1, h.calls("status"), "only the read right after close: a prompt webhook needs no polling")
	ask := h.events.ofType(activities.EventActionRequired)[0].Repair
	assert.Equal(t, string(ReasonUserActionRequired), ask.ReasonCode, "the probe's ask says why, as the status does")
	assert.Equal(t, st.Steps[1].Note, ask.Reason)
	assert.Equal(t, string(ReasonConfirmedByWebhook), h.events.ofType(activities.EventRepaired)[0].Repair.ReasonCode)
}

func TestHealthyAfterCloseIsRepairedAtOnce(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.at(time.Minute, func() { h.reconnect(ReconnectRequest{}) })
	h.at(2*time.Minute, func() { h.userCompletes() })

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusRepaired, st.Status)
	assert.Equal(t, []Status{StatusPending, StatusAwaitingUser, StatusCompleting, StatusRepaired}, statuses(st))
	assert.Equal(t, "close accepted and the provider reports the connection healthy", st.Reason)
	assert.Equal(t, 2*time.Minute, st.ClosedAt.Sub(st.StartedAt).Round(time.Second), "no quiet period to sit out")
	assert.Equal(t, 1, h.calls("close"))
}

func TestLostConfirmationIsFoundByPolling(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{SuppressWebhooks: true, SyncingPolls: 1})
	h.at(time.Minute, func() { h.reconnect(ReconnectRequest{}) })
	h.at(2*time.Minute, func() { h.userCompletes() })
	// No webhook ever arrives.

	st := h.run(RepairOptions{VerifyQuietPeriod: 10 * time.Minute})

	assert.Equal(t, StatusRepaired, st.Status)
	assert.Equal(t, "confirmed by the provider's connection status", st.Reason)
	assert.Equal(t, 2, h.calls("status"), "the read after close, then one poll")
	verifyingAt := st.Steps[3].At
	assert.Equal(t, StatusVerifying, st.Steps[3].Status)
	assert.Equal(t, 10*time.Minute, st.ClosedAt.Sub(verifyingAt).Round(time.Second),
		"polling starts after the quiet period")
}

func TestPollingBacksOffWhileSyncing(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{SuppressWebhooks: true, SyncingPolls: 4})
	h.at(time.Minute, func() { h.reconnect(ReconnectRequest{}) })
	h.at(2*time.Minute, func() { h.userCompletes() })

	st := h.run(RepairOptions{VerifyQuietPeriod: 10 * time.Minute})

	assert.Equal(t, StatusRepaired, st.Status)
	assert.Equal(t, 5, h.calls("status"), "SYNCING after close and at three polls, then SYNCED")
	// Quiet period, then gaps of 1, 2 and 4 minutes.
	require.Equal(t, StatusVerifying, st.Steps[3].Status)
	assert.Equal(t, 17*time.Minute, st.ClosedAt.Sub(st.Steps[3].At).Round(time.Second))
}

// The first gap between polls is an option (the dev stack's is a second),
// and the gaps after it double up to the cap.
func TestPollingStartsAtTheConfiguredInterval(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{SuppressWebhooks: true, SyncingPolls: 4})
	h.at(time.Minute, func() { h.reconnect(ReconnectRequest{}) })
	h.at(2*time.Minute, func() { h.userCompletes() })

	st := h.run(RepairOptions{VerifyQuietPeriod: 5 * time.Second, VerifyPollInterval: time.Second, VerifyPollMaxInterval: 3 * time.Second})

	assert.Equal(t, StatusRepaired, st.Status)
	assert.Equal(t, 5, h.calls("status"), "SYNCING after close and at three polls, then SYNCED")
	// Quiet period, then gaps of 1, 2 and 3 (not 4) seconds.
	require.Equal(t, StatusVerifying, st.Steps[3].Status)
	assert.Equal(t, 11*time.Second, st.ClosedAt.Sub(st.Steps[3].At).Round(time.Second))
}

func TestExpiredSessionIsReplaced(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	var first, second, forced *updateOutcome
	h.at(time.Minute, func() { first = h.reconnect(ReconnectRequest{}) })
	// Sandbox sessions live 30 minutes, like Plaid link tokens.
	h.at(40*time.Minute, func() { second = h.reconnect(ReconnectRequest{}) })
	h.at(41*time.Minute, func() { forced = h.reconnect(ReconnectRequest{ForceNewSession: true}) })
	h.at(42*time.Minute, func() { h.userCompletes() })
	h.at(43*time.Minute, func() { h.providerEvent("evt_synced", aggregator.EventKindSynced) })

	st := h.run(RepairOptions{})

	require.NoError(t, first.err)
	require.NoError(t, second.err)
	require.NoError(t, forced.err)
	assert.NotEqual(t, first.result.Session.ConnectorToken, second.result.Session.ConnectorToken)
	assert.True(t, second.result.Session.ExpiresAt.After(first.result.Session.ExpiresAt))
	assert.NotEqual(t, second.result.Session.ConnectorToken, forced.result.Session.ConnectorToken)
	assert.Equal(t, 3, h.calls("initialize"), "probe, expiry refresh, forced refresh")
	assert.Equal(t, 3, st.SessionsIssued)
	assert.Equal(t, StatusRepaired, st.Status)
}

func TestDuplicateCompletedClosesOnce(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.at(time.Minute, func() { h.reconnect(ReconnectRequest{}) })
	var again []*updateOutcome
	h.at(2*time.Minute, func() {
		login := h.userCompletes()
		for range 4 {
			again = append(again, h.complete(ReconnectCompleted{ConnectorToken: login.ConnectorToken, PublicToken: login.PublicToken}))
		}
	})
	h.at(3*time.Minute, func() {
		// The closed session cannot be logged into again.
		_, err := h.sandbox.LoginUser(testConn)
		assert.ErrorIs(t, err, sandbox.ErrNoOpenSession)
	})
	h.at(4*time.Minute, func() { h.providerEvent("evt_synced", aggregator.EventKindSynced) })

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusRepaired, st.Status)
	assert.Equal(t, 1, h.calls("close"))
	require.Len(t, again, 4)
	for _, out := range again {
		require.True(t, out.done)
		assert.Equal(t, ErrTypeAlreadyCompleted, activities.ErrorType(out.err), "refused by the validator: no trace in history")
	}
}

func TestExitThenRetry(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.at(time.Minute, func() { h.reconnect(ReconnectRequest{}) })
	h.at(2*time.Minute, func() {
		h.exit(ReconnectExited{Reason: "user closed the widget", ErrorCode: "USER_ABORT", ProviderRequestID: "req_9"})
	})
	var afterExit RepairState
	h.at(3*time.Minute, func() { afterExit = h.state() })
	h.at(time.Hour, func() { h.reconnect(ReconnectRequest{}) })
	h.at(time.Hour+time.Minute, func() { h.userCompletes() })
	h.at(time.Hour+2*time.Minute, func() { h.providerEvent("evt_synced", aggregator.EventKindSynced) })

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusAwaitingUser, afterExit.Status, "an exit keeps the repair waiting")
	require.NotNil(t, afterExit.LastExit)
	assert.Equal(t, "USER_ABORT", afterExit.LastExit.ErrorCode)
	assert.Equal(t, "req_9", afterExit.LastExit.ProviderRequestID)
	assert.Equal(t, 1, st.Exits)
	assert.Equal(t, StatusRepaired, st.Status)
	assert.Equal(t, 1, st.Attempt, "an exit is not a provider-side failure")
}

func TestFailureAfterCloseWaitsAgainAndCountsTheAttempt(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{Close: sandbox.CloseFailsAfter})
	h.at(time.Minute, func() { h.reconnect(ReconnectRequest{}) })
	h.at(2*time.Minute, func() { h.userCompletes() })
	h.at(3*time.Minute, func() { h.providerEvent("evt_errored_again", aggregator.EventKindRepairable) })
	var waitingAgain RepairState
	var retry *updateOutcome
	h.at(4*time.Minute, func() {
		waitingAgain = h.state()
		h.script(sandbox.Script{}) // the second try works
		retry = h.reconnect(ReconnectRequest{})
	})
	h.at(5*time.Minute, func() { h.userCompletes() })
	h.at(6*time.Minute, func() { h.providerEvent("evt_synced", aggregator.EventKindSynced) })

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusAwaitingUser, waitingAgain.Status)
	assert.Equal(t, 2, waitingAgain.Attempt)
	assert.Contains(t, waitingAgain.LastError, "still reports the connection broken")
	require.NoError(t, retry.err)
	assert.Equal(t, aggregator.ConnectorActionRequired, retry.result.ConnectorStatus, "a new session for the new attempt")
	assert.Equal(t, StatusRepaired, st.Status)
	assert.Equal(t, 2, st.Attempt)
	assert.Equal(t, 2, h.calls("close"))
	// The user was asked minutes ago: the app hears of the second attempt,
	// but is not asked to message them again within MinAskSpacing.
	assert.Len(t, h.events.ofType(activities.EventActionRequired), 1, "one ask")
	again := h.events.ofType(activities.EventStatusChanged)
	require.Len(t, again, 1, "the app hears about the second attempt")
	assert.Equal(t, string(StatusAwaitingUser), again[0].Repair.Status)
	assert.Equal(t, 2, again[0].Repair.Attempt)
	assert.Equal(t, string(ReasonStillBroken), again[0].Repair.ReasonCode, "the app hears why the attempt failed")
	assert.Contains(t, again[0].Repair.Reason, "attempt 1 failed: the provider still reports the connection broken")
	assert.Equal(t, st.LastAskedAt, st.Steps[1].At, "the last ask is the first wait's")
}

// Two days after the last ask, a failed attempt asks again.
func TestAFailedAttemptAsksAgainOnlyAfterMinAskSpacing(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{Close: sandbox.CloseFailsAfter})
	h.at(MinAskSpacing+time.Hour, func() { h.reconnect(ReconnectRequest{}) })
	h.at(MinAskSpacing+time.Hour+time.Minute, func() { h.userCompletes() })
	h.at(MinAskSpacing+time.Hour+2*time.Minute, func() { h.providerEvent("evt_errored_again", aggregator.EventKindRepairable) })
	h.at(MinAskSpacing+4*time.Hour, func() { h.send(CancelRequest{}) })
	h.run(RepairOptions{ReminderOffsets: []time.Duration{200 * time.Hour}, RepairWindow: 300 * time.Hour})
	assert.Len(t, h.events.ofType(activities.EventActionRequired), 2, "asked again: the last ask was over 48h ago")
	assert.Empty(t, h.events.ofType(activities.EventStatusChanged))
}

func TestStatusPollFindsTheReconnectDidNotTake(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{Close: sandbox.CloseFailsAfter, SuppressWebhooks: true})
	h.at(time.Minute, func() { h.reconnect(ReconnectRequest{}) })
	h.at(2*time.Minute, func() { h.userCompletes() })
	var waitingAgain RepairState
	h.at(30*time.Minute, func() { waitingAgain = h.state() })
	h.at(31*time.Minute, func() { h.send(CancelRequest{Reason: "test over", RequestedBy: "ops"}) })

	st := h.run(RepairOptions{VerifyQuietPeriod: 10 * time.Minute})

	assert.Equal(t, StatusAwaitingUser, waitingAgain.Status)
	assert.Equal(t, 2, waitingAgain.Attempt)
	assert.Contains(t, waitingAgain.LastError, "ERROR_REPAIRABLE")
	assert.Equal(t, StatusCanceled, st.Status)
}

func TestAttemptsAreCapped(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{Close: sandbox.CloseRejects})
	for i := range 3 {
		base := time.Duration(i+1) * time.Hour
		h.at(base, func() { h.reconnect(ReconnectRequest{}) })
		h.at(base+time.Minute, func() { h.userCompletes() })
	}

	st := h.run(RepairOptions{MaxAttempts: 2})

	assert.Equal(t, StatusUnrepairable, st.Status)
	assert.Equal(t, 2, st.Attempt)
	assert.Contains(t, st.Reason, "gave up after 2 failed reconnect attempts")
	assert.Contains(t, st.Reason, "close rejected (scripted)")
	assert.Equal(t, ReasonAttemptsExhausted, st.ReasonCode)
	assert.Equal(t, []ReasonCode{ReasonBrokenAtProvider, ReasonUserActionRequired, ReasonUserFinished, ReasonReconnectRejected,
		ReasonUserFinished, ReasonAttemptsExhausted}, stepCodes(st))
	assert.Equal(t, 2, h.calls("close"))
}

func TestExpiresAfterTheWindow(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusExpired, st.Status)
	assert.Equal(t, DefaultRepairWindow, st.ClosedAt.Sub(st.StartedAt))
	assert.Equal(t, activities.EventExpired, h.events.types()[len(h.events.types())-1])
}

func TestExpiresWhileVerifying(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	// The provider never finishes syncing and never sends a webhook.
	h.script(sandbox.Script{SuppressWebhooks: true, SyncingPolls: 1000})
	h.at(time.Minute, func() { h.reconnect(ReconnectRequest{}) })
	h.at(2*time.Minute, func() { h.userCompletes() })
	h.at(3*time.Minute, func() {
		h.send(ProviderEvent{EventID: "e1", Kind: aggregator.EventKindErrored, Reason: "institution down"})
	})

	st := h.run(RepairOptions{RepairWindow: 6 * time.Hour, VerifyPollMaxInterval: 30 * time.Minute, VerifyGrace: time.Hour})

	assert.Equal(t, StatusExpired, st.Status)
	assert.Contains(t, st.Reason, "did not confirm the repair")
	assert.Equal(t, 6*time.Hour, st.ClosedAt.Sub(st.StartedAt))
	assert.Contains(t, st.LastError, "institution down", "an errored webhook is recorded")
	// 10m quiet, then 1,2,4,8,16 and 30-minute gaps until 6h: bounded polling.
	assert.Less(t, h.calls("status"), 20)
	assert.Greater(t, h.calls("status"), 8)
}

func TestNonRetryableErrorsAreUnrepairable(t *testing.T) {
	for _, tc := range []struct {
		behavior sandbox.InitializeBehavior
		reason   string
		code     ReasonCode
	}{
		{sandbox.InitializeNotFound, "not found", ReasonConnectionNotFound},
		{sandbox.InitializeConflict, "start a new connection", ReasonNotRepairable},
	} {
		t.Run(string(tc.behavior), func(t *testing.T) {
			h := newHarness(t)
			h.breakConnection()
			h.script(sandbox.Script{Initialize: tc.behavior})

			st := h.run(RepairOptions{})

			assert.Equal(t, StatusUnrepairable, st.Status)
			assert.Contains(t, st.Reason, tc.reason)
			assert.NotContains(t, st.Reason, "retryable", "a sentence, not Temporal's error string")
			assert.Equal(t, tc.code, st.ReasonCode)
			assert.Equal(t, string(tc.code), h.events.ofType(activities.EventUnrepairable)[0].Repair.ReasonCode)
			assert.Equal(t, 1, h.calls("initialize"), "not retried")
			assert.Equal(t, []string{activities.EventUnrepairable}, h.events.types())
		})
	}
}

func TestUnknownProviderIsUnrepairable(t *testing.T) {
	h := newHarness(t)
	in := h.input(RepairOptions{})
	in.Provider = "nosuch"
	h.env.ExecuteWorkflow(ConnectionRepair, in)
	st := h.finalState()
	assert.Equal(t, StatusUnrepairable, st.Status)
	assert.Contains(t, st.Reason, `unknown provider "nosuch"`)
}

func TestFlakyProviderIsRetried(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{FailCalls: 3})
	var got *updateOutcome
	h.at(10*time.Minute, func() { got = h.reconnect(ReconnectRequest{}) })
	h.at(2*time.Hour, func() { h.send(CancelRequest{}) })

	st := h.run(RepairOptions{})

	require.NoError(t, got.err)
	assert.Equal(t, aggregator.ConnectorActionRequired, got.result.ConnectorStatus)
	assert.Equal(t, 4, h.calls("initialize"), "three 503s, then success")
	assert.Equal(t, StatusCanceled, st.Status)
}

func TestRepairedElsewhereStopsReminders(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.at(60*time.Hour, func() { h.providerEvent("evt_login_repaired", aggregator.EventKindRepairedElsewhere) })

	st := h.run(RepairOptions{ReminderOffsets: []time.Duration{48 * time.Hour, 120 * time.Hour}})

	assert.Equal(t, StatusRepaired, st.Status)
	assert.Contains(t, st.Reason, "outside Relink")
	assert.Len(t, h.events.ofType(activities.EventReminder), 1, "the 120h reminder never goes out")
	assert.Equal(t, 60*time.Hour, st.ClosedAt.Sub(st.StartedAt).Round(time.Minute))
}

func TestCancel(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.at(time.Hour, func() {
		h.send(CancelRequest{Reason: "customer closed account", RequestedBy: "ops@example.com"})
	})

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusCanceled, st.Status)
	assert.Equal(t, "canceled by ops@example.com: customer closed account", st.Reason)
	assert.Equal(t, activities.EventCanceled, h.events.types()[len(h.events.types())-1])
}

func TestReconnectValidatorRejectsTerminalStatuses(t *testing.T) {
	// The gateway test drives the same rejection end to end (HTTP 409).
	r := &repair{RepairCarry: RepairCarry{State: RepairState{Status: StatusRepaired}}}
	err := r.validateReconnect(nil, ReconnectRequest{})
	require.Error(t, err)
	assert.Equal(t, ErrTypeRepairClosed, activities.ErrorType(err))
	r.State.Status = StatusAwaitingUser
	assert.NoError(t, r.validateReconnect(nil, ReconnectRequest{}))
}

func TestRemindersAtTheirOffsets(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()

	st := h.run(RepairOptions{ReminderOffsets: []time.Duration{48 * time.Hour, 120 * time.Hour}})

	reminders := h.events.ofType(activities.EventReminder)
	require.Len(t, reminders, 2)
	awaitingSince := st.Steps[1].At
	assert.Equal(t, 48*time.Hour, reminders[0].OccurredAt.Sub(awaitingSince))
	assert.Equal(t, 120*time.Hour, reminders[1].OccurredAt.Sub(awaitingSince))
	assert.Equal(t, 1, reminders[0].Repair.Reminder)
	assert.Equal(t, 2, reminders[1].Repair.Reminder)
	assert.Equal(t, 2, st.RemindersSent)
	assert.Equal(t, StatusExpired, st.Status)
}

func TestRemindersNeverPastTheWindow(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()

	h.run(RepairOptions{RepairWindow: 100 * time.Hour, ReminderOffsets: []time.Duration{48 * time.Hour, 120 * time.Hour}})

	assert.Len(t, h.events.ofType(activities.EventReminder), 1)
}

// Offsets closer than MinAskSpacing (a run's own options, or inputs from
// before config checked them) are pushed apart: the user is asked at most
// once per 48 hours whatever the options say.
func TestRemindersKeepMinAskSpacingWhateverTheOffsets(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()

	st := h.run(RepairOptions{ReminderOffsets: []time.Duration{time.Hour, 24 * time.Hour, 72 * time.Hour}})

	reminders := h.events.ofType(activities.EventReminder)
	require.Len(t, reminders, 3)
	asks := append([]time.Time{st.Steps[1].At}, reminders[0].OccurredAt, reminders[1].OccurredAt, reminders[2].OccurredAt)
	for i := 1; i < len(asks); i++ {
		assert.GreaterOrEqual(t, asks[i].Sub(asks[i-1]), MinAskSpacing, "ask %d", i)
	}
}

func TestDuplicateAndStaleProviderEventsAreIgnored(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.script(sandbox.Script{Close: sandbox.CloseFailsAfter, SuppressWebhooks: true})
	h.at(time.Minute, func() { h.reconnect(ReconnectRequest{}) })
	h.at(2*time.Minute, func() { h.userCompletes() })
	h.at(3*time.Minute, func() {
		// The original break, redelivered: already seen.
		h.send(ProviderEvent{EventID: "evt_trigger", Kind: aggregator.EventKindRepairable})
		// A synced event from before the break: stale.
		h.send(ProviderEvent{EventID: "evt_old", Kind: aggregator.EventKindSynced, At: h.start.Add(-time.Hour)})
	})
	var verifying RepairState
	h.at(4*time.Minute, func() { verifying = h.state() })
	h.at(5*time.Minute, func() { h.send(CancelRequest{}) })

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusVerifying, verifying.Status)
	assert.Equal(t, 1, verifying.Attempt)
	assert.Equal(t, StatusCanceled, st.Status)
}

func TestMalformedSignalDoesNotWedgeTheRepair(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.at(time.Minute, func() { h.env.SignalWorkflow(SignalMessage, "not an object") })
	h.at(2*time.Minute, func() { h.send(CancelRequest{Reason: "real"}) })

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusCanceled, st.Status)
	assert.Equal(t, "canceled: real", st.Reason)
	assert.Equal(t, 1, st.IgnoredEvents, "the malformed message is counted")
}

func TestDisconnectedAndDeleted(t *testing.T) {
	for kind, want := range map[aggregator.EventKind]Status{
		aggregator.EventKindDisconnected: StatusUnrepairable,
		aggregator.EventKindDeleted:      StatusCanceled,
	} {
		t.Run(string(kind), func(t *testing.T) {
			h := newHarness(t)
			h.breakConnection()
			h.at(time.Hour, func() { h.providerEvent("evt_end", kind) })
			st := h.run(RepairOptions{})
			assert.Equal(t, want, st.Status)
		})
	}
}

func TestWorkflowCancelIsRecorded(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.at(time.Hour, func() { h.env.CancelWorkflow() })

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusCanceled, st.Status)
	assert.Equal(t, "workflow canceled in Temporal", st.Reason)
	assert.Equal(t, activities.EventCanceled, h.events.types()[len(h.events.types())-1])
}

// An ask still being delivered when the repair ends is withdrawn: the app
// never gets a reminder after the outcome.
func TestAsksStillInFlightAreWithdrawnWhenTheRepairEnds(t *testing.T) {
	h := newHarness(t)
	h.breakConnection()
	h.at(47*time.Hour, func() { h.setFailing(true) }) // the app's endpoint goes down
	h.at(48*time.Hour+2*time.Minute, func() { h.send(CancelRequest{Reason: "user left"}) })
	h.at(48*time.Hour+3*time.Minute, func() { h.setFailing(false) }) // and is back while the reminder retries
	st := h.run(RepairOptions{ReminderOffsets: []time.Duration{48 * time.Hour}, NotifyTimeout: 24 * time.Hour})
	assert.Equal(t, StatusCanceled, st.Status)
	var delivered []string
	for _, ev := range h.events.events {
		delivered = append(delivered, ev.Type)
	}
	assert.Equal(t, []string{activities.EventActionRequired, activities.EventCanceled}, delivered,
		"the 48h reminder, undelivered when the repair ended, never goes out")
}
