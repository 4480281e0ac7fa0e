package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/metrics"
)

// exits is the repair's state diagram, the README's (TestTheREADMEDiagramIsTheCode
// holds them together): the statuses each status may move to. Each status
// has one function below that waits in it and decides its exits; the
// messages that can end any of them (a cancel, a disconnect, a confirming
// webhook) are applied by the inbox (applyEvent, applyCancel).
var exits = map[Status][]Status{
	StatusPending:      {StatusAwaitingUser, StatusRepaired, StatusExpired, StatusUnrepairable, StatusCanceled},
	StatusAwaitingUser: {StatusCompleting, StatusRepaired, StatusExpired, StatusUnrepairable, StatusCanceled},
	StatusCompleting:   {StatusVerifying, StatusAwaitingUser, StatusRepaired, StatusExpired, StatusUnrepairable, StatusCanceled},
	StatusVerifying:    {StatusAwaitingUser, StatusRepaired, StatusExpired, StatusUnrepairable, StatusCanceled},
}

// PENDING: probe. Exits: AWAITING_USER (ACTION_REQUIRED); REPAIRED
// (CONTINUE); UNREPAIRABLE (not found, conflict, invalid); EXPIRED (the
// provider down until the window ends).

// probe calls initialize: CONTINUE needs no user, ACTION_REQUIRED does. A
// provider outage is retried until the window ends.
func (r *repair) probe(ctx workflow.Context) {
	var s aggregator.Session
	req := activities.InitializeRequest{ConnectionRef: r.ref()}
	if !r.probedLocally {
		// One quick attempt inside this workflow task. An answer, or the
		// provider's final word (not found, conflict), is acted on as the
		// activity's would be; a failure that may pass falls through to
		// the retried activity below.
		// With it goes the event that will ask the app to bring the user
		// back, should initialize say ACTION_REQUIRED: one local activity,
		// one billable action, for what is most repairs' first step.
		r.probedLocally = true
		ask := r.event(ctx, activities.EventActionRequired, StatusAwaitingUser, ReasonUserActionRequired, noteUserActionRequired)
		var res activities.ProbeResult
		err := r.tryLocally(ctx, a.Probe, activities.ProbeRequest{InitializeRequest: req, Ask: ask}, &res,
			"initialize, and ask for the user if needed (first attempt)")
		if res.Asked {
			r.asked = &ask
		}
		// Messages that came with the run (a cancel, a confirming
		// webhook) come first, as they would while the activity ran.
		r.drain(ctx)
		if r.State.Status.Terminal() {
			return
		}
		switch {
		case err == nil:
			r.useSession(ctx, res.Session)
			return
		case classify(err) != failureUnavailable:
			r.providerFailed(ctx, "initialize", err)
			return
		}
	}
	interrupted, err := r.runProviderActivity(ctx, r.initializeOptions(r.untilDeadline(ctx), "probe"),
		a.Initialize, req, &s)
	switch {
	case interrupted:
	case err == nil:
		r.useSession(ctx, s)
	case r.providerFailed(ctx, "initialize", err):
		r.pauseAfterOutage(ctx)
	}
}

// useSession moves on according to an initialize answer.
func (r *repair) useSession(ctx workflow.Context, s aggregator.Session) {
	r.State.ConnectorStatus = s.ConnectorStatus
	if s.ConnectorStatus == aggregator.ConnectorContinue {
		r.clearSession()
		switch {
		case r.State.Status == StatusAwaitingUser:
			r.end(ctx, StatusRepaired, ReasonRepairedWithoutUser, "the provider needs no user action any more (CONTINUE)")
		case s.Healthy && r.State.EventsSent == 0:
			// Nothing was broken (a redelivered break, or one fixed before
			// the probe) and nobody was told anything: end without a word.
			r.State.Quiet = true
			r.end(ctx, StatusRepaired, ReasonNothingToRepair, "the provider reports the connection healthy: nothing to repair")
		default:
			r.end(ctx, StatusRepaired, ReasonRepairedWithoutUser, "the provider repaired the connection without the user (CONTINUE)")
		}
		return
	}
	r.Session = s
	r.SessionIssuedAt = workflow.Now(ctx)
	r.IssuedTokens = keepLast(append(r.IssuedTokens, s.ConnectorToken), tokensKept)
	r.State.SessionsIssued++
	r.State.SessionExpiresAt = s.ExpiresAt
	if r.State.Status == StatusAwaitingUser {
		r.describe(ctx) // a fresh session for the same wait
		return
	}
	r.transition(ctx, StatusAwaitingUser, ReasonUserActionRequired, noteUserActionRequired)
}

func (r *repair) clearSession() {
	r.Session = aggregator.Session{}
	r.State.SessionExpiresAt = time.Time{}
}

// AWAITING_USER: awaitUser. Exits: COMPLETING (the complete update);
// REPAIRED (a refresh answers CONTINUE, or a synced or repaired-elsewhere
// webhook); EXPIRED (the window ends); UNREPAIRABLE (a refresh's final
// error, a disconnect); CANCELED.

// awaitUser waits for the widget's success, sending reminders and minting
// new sessions on request, until the window ends. One timer serves the
// whole wait for the next reminder or the window's end: refreshes and
// messages do not restart it, and it is canceled when the wait ends early.
func (r *repair) awaitUser(ctx workflow.Context) {
	if r.completion != nil {
		r.CompletingAt = workflow.Now(ctx)
		r.closeOutages = 0
		r.closeTriedInTask = false
		r.State.VerifyUntil = r.verifyDeadline()
		r.transition(ctx, StatusCompleting, ReasonUserFinished, "the user finished in the widget")
		return
	}
	if r.refreshRequested {
		r.refreshSession(ctx)
		return
	}
	now := workflow.Now(ctx)
	if !now.Before(r.Deadline) {
		r.end(ctx, StatusExpired, ReasonWindowEnded, "the repair window ended before the user reconnected")
		return
	}
	wake, why := r.Deadline, "wait for the user until the repair window ends"
	if next, ok := r.nextReminder(); ok {
		if !now.Before(next) {
			r.State.RemindersSent++
			r.notify(ctx, activities.EventReminder)
			r.describe(ctx)
			return
		}
		wake, why = next, "wait for the user until the next reminder"
	}
	t := r.startTimer(ctx, wake, why)
	defer t.stop()
	for !t.fired() {
		err := r.await(ctx, t, func() bool {
			return r.State.Status != StatusAwaitingUser || r.completion != nil || r.refreshRequested || r.continueDue(ctx)
		})
		if err != nil || r.State.Status != StatusAwaitingUser || r.completion != nil || r.continueDue(ctx) {
			return
		}
		if r.refreshRequested {
			r.refreshSession(ctx) // the timer keeps running
		}
	}
}

// wakeTimer is the one timer of a wait.
type wakeTimer struct {
	f      workflow.Future
	cancel workflow.CancelFunc
}

func (r *repair) startTimer(ctx workflow.Context, wake time.Time, why string) wakeTimer {
	tctx, cancel := workflow.WithCancel(ctx)
	f := workflow.NewTimerWithOptions(tctx, max(wake.Sub(workflow.Now(ctx)), time.Millisecond),
		workflow.TimerOptions{Summary: why})
	return wakeTimer{f: f, cancel: cancel}
}

func (t wakeTimer) fired() bool { return t.f.IsReady() }

// stop cancels the timer if the wait ended before it fired.
func (t wakeTimer) stop() {
	if !t.fired() {
		t.cancel()
	}
}

// await blocks until the timer fires, the inbox fills (it is applied here)
// or cond holds.
func (r *repair) await(ctx workflow.Context, t wakeTimer, cond func() bool) error {
	err := workflow.Await(ctx, func() bool { return t.fired() || r.hasMessages() || cond() })
	r.drain(ctx)
	return err
}

// nextReminder is when the next reminder of this wait is due, if any is left
// before the window ends.
func (r *repair) nextReminder() (time.Time, bool) {
	sent := r.remindersThisWait()
	if sent >= len(r.opts.ReminderOffsets) {
		return time.Time{}, false
	}
	at := r.AwaitingSince.Add(r.opts.ReminderOffsets[sent])
	if !r.State.LastAskedAt.IsZero() {
		// Offsets that config did not check (a run's own options) still
		// keep the spacing.
		at = later(at, r.State.LastAskedAt.Add(MinAskSpacing))
	}
	return at, at.Before(r.Deadline)
}

// remindersThisWait counts reminders sent since the repair last entered
// AWAITING_USER; each wait gets the full reminder schedule.
func (r *repair) remindersThisWait() int {
	return r.State.RemindersSent - r.RemindersBeforeWait
}

// refreshSession mints a new session because a reconnect update asked for
// one; the updates waiting on it are released by r.RefreshRounds.
func (r *repair) refreshSession(ctx workflow.Context) {
	r.refreshRequested = false
	r.refreshing = true
	var s aggregator.Session
	interrupted, err := r.runProviderActivity(ctx, r.initializeOptions(refreshTimeout, "new session"),
		a.Initialize, activities.InitializeRequest{ConnectionRef: r.ref()}, &s)
	r.refreshing = false
	r.RefreshRounds++
	r.RefreshErr = ""
	switch {
	case interrupted:
		r.RefreshErr = "the repair is ending"
	case err == nil:
		r.useSession(ctx, s)
	case classify(err) == failureUnavailable:
		// The user can try again shortly; the repair keeps waiting.
		r.RefreshErr = "provider unavailable, try again: " + rootMessage(err)
		r.RefreshFailedAt = workflow.Now(ctx)
		r.State.LastError = r.RefreshErr
		r.describe(ctx)
	default:
		r.RefreshErr = "initialize: " + rootMessage(err)
		r.providerFailed(ctx, "initialize", err)
	}
}

// COMPLETING: finishReconnect. Exits: REPAIRED (healthy straight after
// close); VERIFYING (accepted, not yet healthy); AWAITING_USER (close
// rejected: attempt + 1); UNREPAIRABLE (not found, conflict, attempts used
// up); EXPIRED (the provider down until the verification deadline).

// verifyDeadline is how long close and verification may run once the user
// has finished: the window, or the completion plus the grace if later.
func (r *repair) verifyDeadline() time.Time {
	return later(r.Deadline, r.CompletingAt.Add(r.opts.VerifyGrace))
}

// finishReconnect runs close (where the provider has one) for the completed
// session and reads the status straight after: a healthy connection is
// repaired at once; otherwise verification waits for the provider. A
// provider outage is retried until the verification deadline; a retry
// first checks whether the earlier close took effect.
func (r *repair) finishReconnect(ctx workflow.Context) {
	c := r.completion
	req := aggregator.CloseRequest{
		ConnectionRef:  r.ref(),
		ConnectorToken: c.ConnectorToken,
		PublicToken:    c.PublicToken,
		Metadata:       c.Metadata,
		Resumed:        r.closeOutages > 0,
	}
	var st aggregator.ConnectionStatus
	if r.Session.CloseInTask && r.Session.ConnectorToken == c.ConnectorToken && !r.closeTriedInTask {
		// A close that makes no call at the provider is tried inside this
		// task, the one that took the completion: the user's answer is
		// one persisted step away, not three. A failure that may pass
		// falls through to the retried activity, as a first attempt:
		// such a close is safe to repeat.
		r.closeTriedInTask = true
		r.localCloseTask = workflow.GetInfo(ctx).GetCurrentHistoryLength()
		err := r.tryLocally(ctx, a.FinishReconnect, req, &st,
			fmt.Sprintf("close %s connection %s and read its status (first attempt)", r.in.Provider, r.in.ConnectionID))
		// Messages that came meanwhile come first, as they would while
		// the activity ran.
		r.drain(ctx)
		switch {
		case r.State.Status.Terminal():
			return
		case err == nil:
			r.closed(ctx, st)
			return
		case classify(err) != failureUnavailable:
			r.providerFailed(ctx, "close", err)
			return
		}
	}
	interrupted, err := r.runProviderActivity(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: max(r.untilDeadline(ctx), time.Second),
		RetryPolicy:            providerRetryPolicy(),
		Summary:                fmt.Sprintf("close %s connection %s and read its status", r.in.Provider, r.in.ConnectionID),
		// The user has just finished in the widget and waits for the answer.
		Priority: userPriority,
	}, a.FinishReconnect, req, &st)
	switch {
	case interrupted:
		return
	case err == nil:
		r.closed(ctx, st)
		return
	}
	if r.providerFailed(ctx, "close", err) {
		r.closeOutages++
		r.pauseAfterOutage(ctx)
	}
}

// closed moves on from an accepted close: REPAIRED if the provider reports
// the connection healthy straight after, else VERIFYING.
func (r *repair) closed(ctx workflow.Context, st aggregator.ConnectionStatus) {
	r.completion = nil
	r.clearSession()
	if st.ProviderStatus != "" {
		r.State.LastProviderStatus = st.ProviderStatus
	}
	if st.Health == aggregator.HealthHealthy {
		r.end(ctx, StatusRepaired, ReasonConfirmedOnClose, "close accepted and the provider reports the connection healthy")
		return
	}
	r.NextPollAt = workflow.Now(ctx).Add(r.opts.VerifyQuietPeriod)
	r.PollInterval = r.opts.VerifyPollInterval
	r.transition(ctx, StatusVerifying, ReasonCloseAccepted, "close accepted; waiting for the provider to confirm")
}

// VERIFYING: verify. Exits: REPAIRED (the confirming webhook, or a status
// poll); AWAITING_USER (still broken: attempt + 1); UNREPAIRABLE
// (disconnected, attempts used up); EXPIRED (no confirmation by the
// verification deadline).

// verify waits for the confirming webhook, then polls the provider's
// status with backoff, so a lost webhook cannot strand the repair.
func (r *repair) verify(ctx workflow.Context) {
	now := workflow.Now(ctx)
	if !now.Before(r.State.VerifyUntil) {
		r.end(ctx, StatusExpired, ReasonNotConfirmed, "the provider did not confirm the repair before the verification deadline")
		return
	}
	if r.verifyNow || !now.Before(r.NextPollAt) {
		r.verifyNow = false
		r.pollStatus(ctx)
		r.NextPollAt = workflow.Now(ctx).Add(r.PollInterval)
		r.PollInterval = min(2*r.PollInterval, r.opts.VerifyPollMaxInterval)
		return
	}
	why := "wait before polling the provider's status again"
	if r.PollInterval == r.opts.VerifyPollInterval {
		why = "wait for the provider's confirming webhook"
	}
	t := r.startTimer(ctx, earlier(r.NextPollAt, r.State.VerifyUntil), why)
	defer t.stop()
	for !t.fired() {
		err := r.await(ctx, t, func() bool {
			return r.State.Status != StatusVerifying || r.verifyNow || r.continueDue(ctx)
		})
		if err != nil || r.State.Status != StatusVerifying || r.verifyNow || r.continueDue(ctx) {
			return
		}
	}
}

// pollStatus reads the connection status once and acts on it.
func (r *repair) pollStatus(ctx workflow.Context) {
	opts := workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: statusPollTimeout,
		RetryPolicy:            providerRetryPolicy(),
		Summary:                fmt.Sprintf("status of %s connection %s", r.in.Provider, r.in.ConnectionID),
	}
	var st aggregator.ConnectionStatus
	interrupted, err := r.runProviderActivity(ctx, opts, a.ConnectionStatus, r.ref(), &st)
	if interrupted {
		return
	}
	if err != nil {
		if activities.ErrorType(err) == aggregator.ErrTypeConnectionNotFound {
			r.end(ctx, StatusUnrepairable, ReasonConnectionNotFound, "connection not found at the provider: "+rootMessage(err))
			return
		}
		// A failed poll is not a failed repair: poll again later.
		r.State.LastError = "status poll: " + rootMessage(err)
		r.describe(ctx)
		return
	}
	r.State.LastProviderStatus = st.ProviderStatus
	switch st.Health {
	case aggregator.HealthHealthy:
		r.end(ctx, StatusRepaired, ReasonConfirmedByStatus, "confirmed by the provider's connection status")
	case aggregator.HealthRepairable:
		r.failAttempt(ctx, ReasonStillBroken, "the provider still reports the connection broken ("+st.ProviderStatus+")")
	case aggregator.HealthDisconnected:
		r.end(ctx, StatusUnrepairable, ReasonDisconnected, "the connection was disconnected at the provider ("+st.ProviderStatus+")")
	case aggregator.HealthDegraded:
		r.State.LastError = "provider reports " + st.ProviderStatus
		r.describe(ctx)
	}
}

// failAttempt counts a reconnect that failed at the provider: back to the
// user for another try, or UNREPAIRABLE once the attempts are used up.
func (r *repair) failAttempt(ctx workflow.Context, code ReasonCode, reason string) {
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"provider": r.in.Provider}).Counter(metrics.FailedAttempts).Inc(1)
	r.State.LastError = reason
	r.completion = nil
	r.clearSession() // the old session was used up by its close
	switch {
	case r.State.Attempt >= r.opts.MaxAttempts:
		r.end(ctx, StatusUnrepairable, ReasonAttemptsExhausted,
			fmt.Sprintf("gave up after %d failed reconnect attempts; last: %s", r.State.Attempt, reason))
	case !workflow.Now(ctx).Before(r.Deadline):
		r.end(ctx, StatusExpired, ReasonWindowEnded, fmt.Sprintf("attempt %d failed after the repair window ended: %s", r.State.Attempt, reason))
	default:
		r.State.Attempt++
		r.transition(ctx, StatusAwaitingUser, code, fmt.Sprintf("attempt %d failed: %s", r.State.Attempt-1, reason))
	}
}
