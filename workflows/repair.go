package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/metrics"
)

// MinAskSpacing is the least time between two asks of the user about one
// repair (action_required, reminders): RELINK_REMINDER_OFFSETS must keep
// it, and a failed attempt's new ask within it is sent as status_changed.
const MinAskSpacing = 48 * time.Hour

// Timings that are not worth a setting.
const (
	// sessionRefreshMargin: a session this close to expiry is replaced
	// rather than handed to a user who still has to finish the widget.
	sessionRefreshMargin = 2 * time.Minute
	// localAttemptTimeout bounds a local first attempt. It holds the
	// workflow task open, and queries and updates wait for that task, so
	// it stays under the gateway's 3-second budget: a slow provider or app
	// falls back to the retried activity instead of holding up the user.
	localAttemptTimeout = 2 * time.Second
	// refreshTimeout bounds a re-initialize a user is waiting on.
	refreshTimeout = time.Minute
	// refreshRetryPause: after a failed refresh, callers are told to retry
	// later rather than each starting another round against a provider
	// that just failed.
	refreshRetryPause = 30 * time.Second
	// verifyPollInitialInterval is the first gap between status polls.
	verifyPollInitialInterval = time.Minute
	// statusPollTimeout bounds one status poll, retries included.
	statusPollTimeout = 2 * time.Minute
	// eventIDsKept bounds the provider event ids remembered for dedupe.
	eventIDsKept = 100
	// providerRetryPause separates rounds of retries against a provider
	// that stays unavailable.
	providerRetryPause = 5 * time.Minute
	// maxUpdatesPerRun keeps a run well below the server's limit on
	// updates per run (2,000 by default).
	maxUpdatesPerRun = 1000
	// maxExitsPerRun bounds the widget exits one run records.
	maxExitsPerRun = 50
	// tokensKept bounds the issued and closed sessions a repair remembers
	// (and carries to its next run): a frontend forcing new sessions in a
	// loop for days must not grow the carry. An older session's widget is
	// long expired; completing it is answered session_unknown.
	tokensKept = 20
)

// a is only used for method references; the worker registers the real one.
var a *activities.Activities

// repair is one run's state. Message handlers only validate and append to
// the inbox (or, for reconnect, ask for a session and wait); the main path
// applies the inbox in arrival order and does everything else, so every
// status change, activity and notification happens in one place.
type repair struct {
	in       RepairInput
	opts     RepairOptions
	deadline time.Time
	st       RepairState

	session         aggregator.Session // current widget session, tokens included
	sessionIssuedAt time.Time
	issuedTokens    []string // sessions this repair handed out
	closedTokens    []string // sessions completed: close runs once each
	completion      *ReconnectCompleted
	completingAt    time.Time // when the user finished in the widget
	closeOutages    int       // close rounds for this completion that ended unanswered

	messages workflow.ReceiveChannel // SignalMessage, received on the main path only
	inbox    []inboxItem
	outbox   []activities.Event // events to the app not yet delivered

	pendingAsks   []pendingAsk      // asks being delivered, withdrawn if the repair ends first
	probedLocally bool              // this run has tried its local first initialize
	asked         *activities.Event // the ask the probe delivered, not yet numbered

	// Reconnect: handlers ask, the main path mints.
	refreshRequested bool
	refreshing       bool
	refreshRounds    int // finished refresh rounds, successful or not
	refreshErr       string
	refreshFailedAt  time.Time
	gatewayClocks    []gatewayClock // how far each gateway's clock runs ahead

	verifyNow    bool // a webhook said the connection broke again: look now
	nextPollAt   time.Time
	pollInterval time.Duration

	awaitingSince       time.Time
	remindersBeforeWait int
	updates             int // updates accepted by this run
	exits               int // exits recorded by this run
	moving              bool
	nextBreak           *ProviderEvent
}

// ConnectionRepair repairs one broken connection. See the package doc and
// the README's state diagram.
func ConnectionRepair(ctx workflow.Context, in RepairInput) (RepairState, error) {
	r := newRepair(ctx, in)
	if err := r.registerHandlers(ctx); err != nil {
		return r.st, err
	}
	r.describe(ctx)
	r.resendOutbox(ctx)

	ctx, next := r.run(ctx)
	if next != nil {
		return r.st, workflow.NewContinueAsNewError(ctx, ConnectionRepair, *next)
	}

	// Deliver what is still in flight, and let running updates answer,
	// before the run ends; a new break meanwhile starts the next run,
	// at once (taking the undelivered events along) if the wait has made
	// the history long. An operator's cancel arriving now changes
	// nothing: the outcome is decided and its event still goes out.
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	for {
		_ = workflow.Await(ctx, func() bool {
			return r.hasMessages() || (len(r.outbox) == 0 && workflow.AllHandlersFinished(ctx)) ||
				(r.nextBreak != nil && r.historyFull(ctx))
		})
		if !r.hasMessages() {
			break
		}
		r.drain(ctx)
	}
	if r.nextBreak != nil {
		// The connection broke again while this repair was closing: a new
		// break gets a fresh run under the same workflow id, on the build
		// that is current now rather than the one this run was pinned to
		// (a new break is a new repair).
		return r.st, workflow.NewContinueAsNewErrorWithOptions(ctx,
			workflow.ContinueAsNewErrorOptions{InitialVersioningBehavior: workflow.ContinueAsNewVersioningBehaviorAutoUpgrade},
			ConnectionRepair, r.nextInput())
	}
	return r.st, nil
}

func newRepair(ctx workflow.Context, in RepairInput) *repair {
	opts := in.Options.withDefaults()
	now := workflow.Now(ctx)
	info := workflow.GetInfo(ctx)
	if c := in.Carry; c != nil {
		r := c.restore(in, opts)
		r.messages = workflow.GetSignalChannel(ctx, SignalMessage)
		r.st.Runs++
		return r
	}
	r := &repair{in: in, opts: opts, deadline: now.Add(opts.RepairWindow), outbox: in.Undelivered,
		messages: workflow.GetSignalChannel(ctx, SignalMessage)}
	r.st = RepairState{
		Provider:      in.Provider,
		ConnectionID:  in.ConnectionID,
		ProfileID:     in.ProfileID,
		Institution:   in.Institution,
		TriggerReason: in.TriggerReason,
		Proactive:     in.Proactive,
		DetectedAt:    in.DetectedAt,
		Status:        StatusPending,
		Attempt:       1,
		MaxAttempts:   opts.MaxAttempts,
		StartedAt:     now,
		UpdatedAt:     now,
		ExpiresAt:     r.deadline,
		Reason:        in.TriggerReason,
		ReasonCode:    in.reasonCode(),
		Steps:         []Step{{Status: StatusPending, At: now, Code: in.reasonCode(), Note: in.TriggerReason}},
		RepairRunID:   info.WorkflowExecution.RunID,
		Runs:          1,
	}
	if in.TriggerEventID != "" {
		r.rememberEvent(in.TriggerEventID)
	}
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"provider": in.Provider, "trigger": in.trigger()}).
		Counter(metrics.RepairsStarted).Inc(1)
	return r
}

// run drives the repair to a terminal status, or to a quiet point where it
// should continue as new (next is then the next run's input). It returns
// the context to finish with: a disconnected one if the workflow itself
// was canceled.
func (r *repair) run(ctx workflow.Context) (workflow.Context, *RepairInput) {
	for {
		if ctx.Err() != nil && !r.st.Status.Terminal() {
			// Canceled from the Temporal UI or CLI: record it as an
			// operator cancel and still tell the app.
			ctx, _ = workflow.NewDisconnectedContext(ctx)
			r.end(ctx, StatusCanceled, ReasonCanceledInTemporal, "workflow canceled in Temporal")
		}
		r.drain(ctx)
		if r.st.Status.Terminal() {
			return ctx, nil
		}
		if r.continueDue(ctx) {
			if next, ok := r.prepareContinue(ctx); ok {
				return ctx, &next
			}
			continue
		}
		switch r.st.Status {
		case StatusPending:
			r.probe(ctx)
		case StatusAwaitingUser:
			r.awaitUser(ctx)
		case StatusCompleting:
			r.finishReconnect(ctx)
		case StatusVerifying:
			r.verify(ctx)
		}
	}
}

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
		ask := r.event(ctx, activities.EventActionRequired, StatusAwaitingUser)
		var res activities.ProbeResult
		err := r.tryLocally(ctx, a.Probe, activities.ProbeRequest{InitializeRequest: req, Ask: ask}, &res,
			"initialize, and ask for the user if needed (first attempt)")
		if res.Asked {
			r.asked = &ask
		}
		// Messages that came with the run (a cancel, a confirming
		// webhook) come first, as they would while the activity ran.
		r.drain(ctx)
		if r.st.Status.Terminal() {
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
	r.st.ConnectorStatus = s.ConnectorStatus
	if s.ConnectorStatus == aggregator.ConnectorContinue {
		r.clearSession()
		switch {
		case r.st.Status == StatusAwaitingUser:
			r.end(ctx, StatusRepaired, ReasonRepairedWithoutUser, "the provider needs no user action any more (CONTINUE)")
		case s.Healthy && r.st.EventsSent == 0:
			// Nothing was broken (a redelivered break, or one fixed before
			// the probe) and nobody was told anything: end without a word.
			r.st.Quiet = true
			r.end(ctx, StatusRepaired, ReasonNothingToRepair, "the provider reports the connection healthy: nothing to repair")
		default:
			r.end(ctx, StatusRepaired, ReasonRepairedWithoutUser, "the provider repaired the connection without the user (CONTINUE)")
		}
		return
	}
	r.session = s
	r.sessionIssuedAt = workflow.Now(ctx)
	r.issuedTokens = keepLast(append(r.issuedTokens, s.ConnectorToken), tokensKept)
	r.st.SessionsIssued++
	r.st.SessionExpiresAt = s.ExpiresAt
	if r.st.Status == StatusAwaitingUser {
		r.describe(ctx) // a fresh session for the same wait
		return
	}
	r.transition(ctx, StatusAwaitingUser, ReasonUserActionRequired, "the user must reconnect in the provider's widget")
}

func (r *repair) clearSession() {
	r.session = aggregator.Session{}
	r.st.SessionExpiresAt = time.Time{}
}

// awaitUser waits for the widget's success, sending reminders and minting
// new sessions on request, until the window ends. One timer serves the
// whole wait for the next reminder or the window's end: refreshes and
// messages do not restart it, and it is canceled when the wait ends early.
func (r *repair) awaitUser(ctx workflow.Context) {
	if r.completion != nil {
		r.completingAt = workflow.Now(ctx)
		r.closeOutages = 0
		r.st.VerifyUntil = r.verifyDeadline()
		r.transition(ctx, StatusCompleting, ReasonUserFinished, "the user finished in the widget")
		return
	}
	if r.refreshRequested {
		r.refreshSession(ctx)
		return
	}
	now := workflow.Now(ctx)
	if !now.Before(r.deadline) {
		r.end(ctx, StatusExpired, ReasonWindowEnded, "the repair window ended before the user reconnected")
		return
	}
	wake, why := r.deadline, "wait for the user until the repair window ends"
	if next, ok := r.nextReminder(); ok {
		if !now.Before(next) {
			r.st.RemindersSent++
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
			return r.st.Status != StatusAwaitingUser || r.completion != nil || r.refreshRequested || r.continueDue(ctx)
		})
		if err != nil || r.st.Status != StatusAwaitingUser || r.completion != nil || r.continueDue(ctx) {
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
	at := r.awaitingSince.Add(r.opts.ReminderOffsets[sent])
	if !r.st.LastAskedAt.IsZero() {
		// Offsets that config did not check (a run's own options) still
		// keep the spacing.
		at = latest(at, r.st.LastAskedAt.Add(MinAskSpacing))
	}
	return at, at.Before(r.deadline)
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// remindersThisWait counts reminders sent since the repair last entered
// AWAITING_USER; each wait gets the full reminder schedule.
func (r *repair) remindersThisWait() int {
	return r.st.RemindersSent - r.remindersBeforeWait
}

// refreshSession mints a new session because a reconnect update asked for
// one; the updates waiting on it are released by r.refreshRounds.
func (r *repair) refreshSession(ctx workflow.Context) {
	r.refreshRequested = false
	r.refreshing = true
	var s aggregator.Session
	interrupted, err := r.runProviderActivity(ctx, r.initializeOptions(refreshTimeout, "new session"),
		a.Initialize, activities.InitializeRequest{ConnectionRef: r.ref()}, &s)
	r.refreshing = false
	r.refreshRounds++
	r.refreshErr = ""
	switch {
	case interrupted:
		r.refreshErr = "the repair is ending"
	case err == nil:
		r.useSession(ctx, s)
	case classify(err) == failureUnavailable:
		// The user can try again shortly; the repair keeps waiting.
		r.refreshErr = "provider unavailable, try again: " + rootMessage(err)
		r.refreshFailedAt = workflow.Now(ctx)
		r.st.LastError = r.refreshErr
		r.describe(ctx)
	default:
		r.refreshErr = "initialize: " + rootMessage(err)
		r.providerFailed(ctx, "initialize", err)
	}
}

// verifyDeadline is how long close and verification may run once the user
// has finished: the window, or the completion plus the grace if later.
func (r *repair) verifyDeadline() time.Time {
	return later(r.deadline, r.completingAt.Add(r.opts.VerifyGrace))
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
	interrupted, err := r.runProviderActivity(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: max(r.untilDeadline(ctx), time.Second),
		RetryPolicy:            providerRetryPolicy(),
		Summary:                fmt.Sprintf("close %s connection %s and read its status", r.in.Provider, r.in.ConnectionID),
	}, a.FinishReconnect, req, &st)
	switch {
	case interrupted:
		return
	case err == nil:
		r.completion = nil
		r.clearSession()
		if st.ProviderStatus != "" {
			r.st.LastProviderStatus = st.ProviderStatus
		}
		if st.Health == aggregator.HealthHealthy {
			r.end(ctx, StatusRepaired, ReasonConfirmedOnClose, "close accepted and the provider reports the connection healthy")
			return
		}
		r.nextPollAt = workflow.Now(ctx).Add(r.opts.VerifyQuietPeriod)
		r.pollInterval = verifyPollInitialInterval
		r.transition(ctx, StatusVerifying, ReasonCloseAccepted, "close accepted; waiting for the provider to confirm")
		return
	}
	if r.providerFailed(ctx, "close", err) {
		r.closeOutages++
		r.pauseAfterOutage(ctx)
	}
}

// verify waits for the confirming webhook, then polls the provider's
// status with backoff, so a lost webhook cannot strand the repair.
func (r *repair) verify(ctx workflow.Context) {
	now := workflow.Now(ctx)
	if !now.Before(r.st.VerifyUntil) {
		r.end(ctx, StatusExpired, ReasonNotConfirmed, "the provider did not confirm the repair before the verification deadline")
		return
	}
	if r.verifyNow || !now.Before(r.nextPollAt) {
		r.verifyNow = false
		r.pollStatus(ctx)
		r.nextPollAt = workflow.Now(ctx).Add(r.pollInterval)
		r.pollInterval = min(2*r.pollInterval, r.opts.VerifyPollMaxInterval)
		return
	}
	why := "wait before polling the provider's status again"
	if r.pollInterval == verifyPollInitialInterval {
		why = "wait for the provider's confirming webhook"
	}
	t := r.startTimer(ctx, earlier(r.nextPollAt, r.st.VerifyUntil), why)
	defer t.stop()
	for !t.fired() {
		err := r.await(ctx, t, func() bool {
			return r.st.Status != StatusVerifying || r.verifyNow || r.continueDue(ctx)
		})
		if err != nil || r.st.Status != StatusVerifying || r.verifyNow || r.continueDue(ctx) {
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
		r.st.LastError = "status poll: " + rootMessage(err)
		r.describe(ctx)
		return
	}
	r.st.LastProviderStatus = st.ProviderStatus
	switch st.Health {
	case aggregator.HealthHealthy:
		r.end(ctx, StatusRepaired, ReasonConfirmedByStatus, "confirmed by the provider's connection status")
	case aggregator.HealthRepairable:
		r.failAttempt(ctx, ReasonStillBroken, "the provider still reports the connection broken ("+st.ProviderStatus+")")
	case aggregator.HealthDisconnected:
		r.end(ctx, StatusUnrepairable, ReasonDisconnected, "the connection was disconnected at the provider ("+st.ProviderStatus+")")
	case aggregator.HealthDegraded:
		r.st.LastError = "provider reports " + st.ProviderStatus
		r.describe(ctx)
	}
}

// failAttempt counts a reconnect that failed at the provider: back to the
// user for another try, or UNREPAIRABLE once the attempts are used up.
func (r *repair) failAttempt(ctx workflow.Context, code ReasonCode, reason string) {
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"provider": r.in.Provider}).Counter(metrics.FailedAttempts).Inc(1)
	r.st.LastError = reason
	r.completion = nil
	r.clearSession() // the old session was used up by its close
	switch {
	case r.st.Attempt >= r.opts.MaxAttempts:
		r.end(ctx, StatusUnrepairable, ReasonAttemptsExhausted,
			fmt.Sprintf("gave up after %d failed reconnect attempts; last: %s", r.st.Attempt, reason))
	case !workflow.Now(ctx).Before(r.deadline):
		r.end(ctx, StatusExpired, ReasonWindowEnded, fmt.Sprintf("attempt %d failed after the repair window ended: %s", r.st.Attempt, reason))
	default:
		r.st.Attempt++
		r.transition(ctx, StatusAwaitingUser, code, fmt.Sprintf("attempt %d failed: %s", r.st.Attempt-1, reason))
	}
}

// failureKind sorts a provider activity's final error.
type failureKind int

const (
	// failureUnavailable: retries ran out on errors that may pass (network,
	// timeouts, 5xx, 429). The repair tries again later.
	failureUnavailable failureKind = iota
	// failureRejected: the provider refused the user's reconnect.
	failureRejected
	// failureUnrepairable: the provider says the connection cannot be
	// repaired (not found, conflict, invalid input).
	failureUnrepairable
)

func classify(err error) failureKind {
	switch activities.ErrorType(err) {
	case aggregator.ErrTypeReconnectRejected:
		return failureRejected
	case aggregator.ErrTypeConnectionNotFound, aggregator.ErrTypeNotRepairable, aggregator.ErrTypeInvalidInput:
		return failureUnrepairable
	}
	return failureUnavailable
}

// unrepairableReason names the provider's final word on a connection.
func unrepairableReason(err error) ReasonCode {
	switch activities.ErrorType(err) {
	case aggregator.ErrTypeConnectionNotFound:
		return ReasonConnectionNotFound
	case aggregator.ErrTypeInvalidInput:
		return ReasonInvalidInput
	}
	return ReasonNotRepairable
}

// providerFailed records a provider activity's final error and acts on it.
// It reports true when the provider was only unavailable and the deadline
// has not passed, so the caller should try again.
func (r *repair) providerFailed(ctx workflow.Context, what string, err error) (retry bool) {
	if ctx.Err() != nil {
		return false // run records the cancel
	}
	msg := rootMessage(err)
	r.st.LastError = what + ": " + msg
	switch classify(err) {
	case failureRejected:
		r.failAttempt(ctx, ReasonReconnectRejected, what+" rejected by the provider: "+msg)
		return false
	case failureUnrepairable:
		r.end(ctx, StatusUnrepairable, unrepairableReason(err), what+": "+msg)
		return false
	}
	if r.untilDeadline(ctx) <= 0 {
		r.end(ctx, StatusExpired, ReasonProviderUnavailable, "the repair window ended while the provider was unavailable ("+what+": "+msg+")")
		return false
	}
	r.describe(ctx)
	return true
}

// pauseAfterOutage waits a little before asking an unavailable provider
// again; an outcome from the inbox ends the pause.
func (r *repair) pauseAfterOutage(ctx workflow.Context) {
	status := r.st.Status
	t := r.startTimer(ctx, workflow.Now(ctx).Add(max(min(providerRetryPause, r.untilDeadline(ctx)), time.Second)),
		"wait before asking the provider again")
	defer t.stop()
	for !t.fired() {
		if err := r.await(ctx, t, func() bool { return r.st.Status != status }); err != nil || r.st.Status != status {
			return
		}
	}
}

// runProviderActivity runs a provider activity and waits for it, applying
// the inbox as it fills. If that ends the repair (a cancel, a confirming
// webhook) the activity is canceled and interrupted is true, so the
// outcome is not held up by a provider that keeps failing.
func (r *repair) runProviderActivity(ctx workflow.Context, opts workflow.ActivityOptions, activity, arg, result any) (interrupted bool, err error) {
	actx, cancel := workflow.WithCancel(ctx)
	f := workflow.ExecuteActivity(workflow.WithActivityOptions(actx, opts), activity, arg)
	for {
		werr := workflow.Await(ctx, func() bool { return f.IsReady() || r.hasMessages() })
		if werr == nil && f.IsReady() {
			// An answer is acted on first; messages that came with it are
			// applied next, by the main path.
			return false, f.Get(ctx, result)
		}
		r.drain(ctx)
		if werr != nil || r.st.Status.Terminal() {
			cancel()
			return true, nil
		}
	}
}

// tryLocally runs one attempt of activity as a local activity and
// reports its error (or the workflow's, if it was canceled). A local attempt is recorded as a marker when the task
// completes, costs no extra workflow task, and is retried by the caller's
// fallback rather than by Temporal.
func (r *repair) tryLocally(ctx workflow.Context, activity, arg, result any, what string) error {
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: localAttemptTimeout,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
		Summary:             what,
	})
	return workflow.ExecuteLocalActivity(lctx, activity, arg).Get(ctx, result)
}

// initializeOptions retry initialize for at most timeout.
func (r *repair) initializeOptions(timeout time.Duration, why string) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: max(timeout, time.Second),
		RetryPolicy:            providerRetryPolicy(),
		Summary:                fmt.Sprintf("initialize %s connection %s (%s)", r.in.Provider, r.in.ConnectionID, why),
	}
}

// providerRetryPolicy retries transient provider failures with backoff; the
// adapters' named errors are non-retryable and end the retries at once.
func providerRetryPolicy() *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval:    time.Second,
		BackoffCoefficient: 2,
		MaximumInterval:    5 * time.Minute,
	}
}

// untilDeadline is the time left: to the repair window's end, or, once the
// user has finished (COMPLETING, VERIFYING), to the verification deadline.
func (r *repair) untilDeadline(ctx workflow.Context) time.Duration {
	deadline := r.deadline
	if r.st.Status == StatusCompleting || r.st.Status == StatusVerifying {
		deadline = r.st.VerifyUntil
	}
	return deadline.Sub(workflow.Now(ctx))
}

func (r *repair) ref() aggregator.ConnectionRef {
	return aggregator.ConnectionRef{
		Provider:     r.in.Provider,
		ConnectionID: r.in.ConnectionID,
		ProfileID:    r.in.ProfileID,
		Connector:    r.in.Connector,
		Proactive:    r.st.Proactive,
	}
}

// nextInput starts the next run for a break that arrived as this one
// closed; events this run could not deliver yet go with it.
func (r *repair) nextInput() RepairInput {
	next := r.in
	next.Carry = nil
	next.Undelivered = r.outbox
	next.TriggerEventID = r.nextBreak.EventID
	next.TriggerReason = r.nextBreak.Reason
	next.DetectedAt = r.nextBreak.At
	next.Proactive = r.nextBreak.Kind == aggregator.EventKindProactive
	return next
}

// rootMessage is the innermost error's message, without Temporal's wrapping
// ("(type: ConnectionNotFound, retryable: false)"): what a person reads.
func rootMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// keepLast is list without all but its last n entries.
func keepLast(list []string, n int) []string {
	if len(list) > n {
		return slices.Clone(list[len(list)-n:])
	}
	return list
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
