package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/activities"
)

// Timings that are not worth a setting.
const (
	// sessionRefreshMargin: a session this close to expiry is replaced
	// rather than handed to a user who still has to finish the widget.
	sessionRefreshMargin = 2 * time.Minute
	// refreshTimeout bounds a re-initialize a user is waiting on.
	refreshTimeout = time.Minute
	// verifyPollInitialInterval is the first gap between status polls.
	verifyPollInitialInterval = time.Minute
	// statusPollTimeout bounds one status poll, retries included.
	statusPollTimeout = 2 * time.Minute
	// seenEventsKept bounds the event ids remembered for deduplication.
	seenEventsKept = 100
	// providerRetryPause separates rounds of retries against a provider
	// that stays unavailable.
	providerRetryPause = 5 * time.Minute
)

// a is only used for method references; the worker registers the real one.
var a *activities.Activities

// outcome is a terminal status a message handler asks the main path for.
type outcome struct {
	status Status
	reason string
}

// repair is one run's state. Message handlers only record what arrived
// (completion, outcome, failure, refresh requests); the main path in run
// acts on it, so every status change, activity and notification happens in
// one place and in one order.
type repair struct {
	in       RepairInput
	opts     RepairOptions
	deadline time.Time
	st       RepairState

	session      activities.Session // current widget session, tokens included
	issuedTokens []string           // sessions this repair handed out
	closedTokens []string           // sessions already closed: close runs once each
	seenEvents   []string           // provider event ids already applied
	completingAt time.Time          // when the user last finished in the widget

	// Written by handlers, consumed by the main path.
	completion       *ReconnectCompleted
	pending          *outcome
	failure          string
	refreshRequested bool
	refreshing       bool   // a refresh round is running
	refreshes        int    // completed refresh rounds, for waiting updates
	refreshErr       string // last refresh round's error, if it failed
	nextBreak        *ProviderEvent

	awaitingSince        time.Time
	remindersBeforeWait  int // RemindersSent when the current wait began
	notifications        int // sequence of outbound events
	pendingNotifications int
}

// ConnectionRepair repairs one broken connection. See the package doc and
// the README's state diagram.
func ConnectionRepair(ctx workflow.Context, in RepairInput) (RepairState, error) {
	r := newRepair(ctx, in)
	if err := r.registerHandlers(ctx); err != nil {
		return r.st, err
	}
	r.syncSearchAttributes(ctx)
	r.describe(ctx)

	ctx = r.run(ctx)

	// Deliver what is still in flight, and let running updates answer,
	// before the run ends.
	_ = workflow.Await(ctx, func() bool {
		return r.pendingNotifications == 0 && workflow.AllHandlersFinished(ctx)
	})
	if r.nextBreak != nil {
		// The connection broke again while this repair was closing: that is
		// a new break, so it gets a fresh run under the same workflow id.
		return r.st, workflow.NewContinueAsNewError(ctx, ConnectionRepair, r.nextInput())
	}
	return r.st, nil
}

func newRepair(ctx workflow.Context, in RepairInput) *repair {
	opts := in.Options.withDefaults()
	now := workflow.Now(ctx)
	r := &repair{in: in, opts: opts, deadline: now.Add(opts.RepairWindow)}
	r.st = RepairState{
		Provider:      in.Provider,
		ConnectionID:  in.ConnectionID,
		ProfileID:     in.ProfileID,
		Institution:   in.Institution,
		TriggerReason: in.TriggerReason,
		Proactive:     in.Proactive,
		Status:        StatusPending,
		Attempt:       1,
		MaxAttempts:   opts.MaxAttempts,
		StartedAt:     now,
		UpdatedAt:     now,
		ExpiresAt:     r.deadline,
		Steps:         []Step{{Status: StatusPending, At: now, Note: in.TriggerReason}},
	}
	if in.TriggerEventID != "" {
		r.seenEvents = append(r.seenEvents, in.TriggerEventID)
	}
	return r
}

// run drives the repair to a terminal status. It returns the context to
// finish with: a disconnected one if the workflow itself was canceled.
func (r *repair) run(ctx workflow.Context) workflow.Context {
	for !r.st.Status.Terminal() {
		if ctx.Err() != nil {
			// Canceled from the Temporal UI or CLI: record it as an
			// operator cancel and still tell the app.
			ctx, _ = workflow.NewDisconnectedContext(ctx)
			r.requestOutcome(StatusCanceled, "workflow canceled in Temporal")
		}
		if r.pending != nil {
			r.transition(ctx, r.pending.status, r.pending.reason)
			break
		}
		if r.failure != "" {
			reason := r.failure
			r.failure = ""
			r.failAttempt(ctx, reason)
			continue
		}
		switch r.st.Status {
		case StatusPending:
			r.probe(ctx)
		case StatusAwaitingUser:
			r.awaitUser(ctx)
		case StatusCompleting:
			r.closeSession(ctx)
		case StatusVerifying:
			r.verify(ctx)
		}
	}
	return ctx
}

// probe calls initialize: CONTINUE needs no user, ACTION_REQUIRED does. A
// provider outage is retried until the window ends.
func (r *repair) probe(ctx workflow.Context) {
	for r.pending == nil && ctx.Err() == nil {
		var s activities.Session
		interrupted, err := r.runProviderActivity(ctx, r.initializeOptions(r.untilDeadline(ctx), "probe"),
			a.Initialize, activities.InitializeRequest{ConnectionRef: r.ref()}, &s)
		switch {
		case interrupted:
			return
		case err == nil:
			r.useSession(ctx, s)
			return
		case !r.providerFailed(ctx, "initialize", err):
			return
		}
		r.pauseAfterOutage(ctx)
	}
}

// useSession moves on according to an initialize answer.
func (r *repair) useSession(ctx workflow.Context, s activities.Session) {
	if r.pending != nil {
		return // a handler already decided the outcome
	}
	r.st.ConnectorStatus = s.ConnectorStatus
	if s.ConnectorStatus == activities.ConnectorContinue {
		r.session = activities.Session{}
		r.st.SessionExpiresAt = time.Time{}
		r.transition(ctx, StatusVerifying, "provider repaired the connection without the user (CONTINUE)")
		return
	}
	r.session = s
	r.issuedTokens = append(r.issuedTokens, s.ConnectorToken)
	r.st.SessionsIssued++
	r.st.SessionExpiresAt = s.ExpiresAt
	if r.st.Status == StatusAwaitingUser {
		r.describe(ctx) // a fresh session for the same wait
		return
	}
	r.transition(ctx, StatusAwaitingUser, "the user must reconnect in the provider's widget")
}

// awaitUser waits for the widget's success, sending reminders, minting new
// sessions on request, until the window ends.
func (r *repair) awaitUser(ctx workflow.Context) {
	for r.st.Status == StatusAwaitingUser && r.pending == nil && ctx.Err() == nil {
		if r.completion != nil {
			r.completingAt = workflow.Now(ctx)
			r.transition(ctx, StatusCompleting, "the user finished in the widget")
			return
		}
		if r.refreshRequested {
			r.refreshSession(ctx)
			continue
		}
		now := workflow.Now(ctx)
		if !now.Before(r.deadline) {
			r.requestOutcome(StatusExpired, "the repair window ended before the user reconnected")
			return
		}
		wake, why := r.deadline, "wait for the user until the repair window ends"
		if next, ok := r.nextReminder(); ok {
			if !now.Before(next) {
				r.st.RemindersSent++
				r.notify(ctx, activities.EventReminder)
				r.describe(ctx)
				continue
			}
			wake, why = next, "wait for the user until the next reminder"
		}
		_, _ = awaitUntil(ctx, wake.Sub(now), why, func() bool {
			return r.completion != nil || r.refreshRequested || r.pending != nil
		})
	}
}

// nextReminder is when the next reminder of this wait is due, if any is left
// before the window ends.
func (r *repair) nextReminder() (time.Time, bool) {
	sent := r.remindersThisWait()
	if sent >= len(r.opts.ReminderOffsets) {
		return time.Time{}, false
	}
	at := r.awaitingSince.Add(r.opts.ReminderOffsets[sent])
	return at, at.Before(r.deadline)
}

// remindersThisWait counts reminders sent since the repair last entered
// AWAITING_USER; each wait gets the full reminder schedule.
func (r *repair) remindersThisWait() int {
	return r.st.RemindersSent - r.remindersBeforeWait
}

// refreshSession mints a new session because a reconnect update asked for
// one; the updates waiting on it are released by r.refreshes.
func (r *repair) refreshSession(ctx workflow.Context) {
	r.refreshRequested = false
	r.refreshing = true
	var s activities.Session
	interrupted, err := r.runProviderActivity(ctx, r.initializeOptions(refreshTimeout, "new session"),
		a.Initialize, activities.InitializeRequest{ConnectionRef: r.ref()}, &s)
	r.refreshing = false
	r.refreshes++
	r.refreshErr = ""
	switch {
	case interrupted:
		r.refreshErr = "the repair is ending"
	case err == nil:
		r.useSession(ctx, s)
	case classify(err) == failureUnavailable:
		// The user can try again shortly; the repair keeps waiting.
		r.refreshErr = "provider unavailable, try again: " + rootMessage(err)
		r.st.LastError = r.refreshErr
		r.describe(ctx)
	default:
		r.refreshErr = "initialize: " + rootMessage(err)
		r.providerFailed(ctx, "initialize", err)
	}
}

// closeSession runs close once for the completed session, retrying a
// provider outage until the window ends.
func (r *repair) closeSession(ctx workflow.Context) {
	c := r.completion
	r.completion = nil
	r.closedTokens = append(r.closedTokens, c.ConnectorToken)
	req := activities.CloseRequest{
		ConnectionRef:  r.ref(),
		ConnectorToken: c.ConnectorToken,
		PublicToken:    c.PublicToken,
		Metadata:       c.Metadata,
	}
	for r.pending == nil && ctx.Err() == nil {
		interrupted, err := r.runProviderActivity(ctx, workflow.ActivityOptions{
			StartToCloseTimeout:    30 * time.Second,
			ScheduleToCloseTimeout: max(r.untilDeadline(ctx), time.Second),
			RetryPolicy:            providerRetryPolicy(),
			Summary:                fmt.Sprintf("close %s connection %s", r.in.Provider, r.in.ConnectionID),
		}, a.Close, req, nil)
		switch {
		case interrupted:
			return
		case err == nil:
			r.session = activities.Session{}
			r.st.SessionExpiresAt = time.Time{}
			r.transition(ctx, StatusVerifying, "close accepted; waiting for the provider to confirm")
			return
		case !r.providerFailed(ctx, "close", err):
			return
		}
		r.pauseAfterOutage(ctx)
	}
}

// verify waits for the confirming webhook, then polls the provider's
// status with backoff, so a lost webhook cannot strand the repair.
func (r *repair) verify(ctx workflow.Context) {
	wait, why := r.opts.VerifyQuietPeriod, "wait for the provider's confirming webhook"
	interval := verifyPollInitialInterval
	for r.st.Status == StatusVerifying && r.pending == nil && r.failure == "" && ctx.Err() == nil {
		remaining := r.deadline.Sub(workflow.Now(ctx))
		if remaining <= 0 {
			r.requestOutcome(StatusExpired, "the repair window ended before the provider confirmed the repair")
			return
		}
		if ok, _ := awaitUntil(ctx, min(wait, remaining), why, func() bool {
			return r.pending != nil || r.failure != ""
		}); ok || !workflow.Now(ctx).Before(r.deadline) {
			continue
		}
		r.pollStatus(ctx)
		wait, why = interval, "wait before polling the provider's status again"
		interval = min(2*interval, r.opts.VerifyPollMaxInterval)
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
	var st activities.ConnectionStatus
	interrupted, err := r.runProviderActivity(ctx, opts, a.ConnectionStatus, r.ref(), &st)
	if interrupted {
		return
	}
	if err != nil {
		if activities.ErrorType(err) == activities.ErrTypeConnectionNotFound {
			r.requestOutcome(StatusUnrepairable, "connection not found at the provider: "+rootMessage(err))
			return
		}
		// A failed poll is not a failed repair: poll again later.
		r.st.LastError = "status poll: " + rootMessage(err)
		return
	}
	r.st.LastProviderStatus = st.ProviderStatus
	switch st.Health {
	case activities.HealthHealthy:
		r.requestOutcome(StatusRepaired, "confirmed by the provider's connection status")
	case activities.HealthRepairable:
		r.failure = "the provider still reports the connection broken (" + st.ProviderStatus + ")"
	case activities.HealthDisconnected:
		r.requestOutcome(StatusUnrepairable, "the connection was disconnected at the provider ("+st.ProviderStatus+")")
	case activities.HealthDegraded:
		r.st.LastError = "provider reports " + st.ProviderStatus
	}
}

// failAttempt counts a reconnect that failed at the provider: back to the
// user for another try, or UNREPAIRABLE once the attempts are used up.
func (r *repair) failAttempt(ctx workflow.Context, reason string) {
	// One failed reconnect counts once, however many ways it was reported
	// (a rejected close and a repairable webhook, say).
	r.failure = ""
	r.st.LastError = reason
	if r.st.Attempt >= r.opts.MaxAttempts {
		r.transition(ctx, StatusUnrepairable,
			fmt.Sprintf("gave up after %d failed reconnect attempts; last: %s", r.st.Attempt, reason))
		return
	}
	r.st.Attempt++
	// The old session was used up by its close; the next reconnect mints one.
	r.session = activities.Session{}
	r.st.SessionExpiresAt = time.Time{}
	r.transition(ctx, StatusAwaitingUser, fmt.Sprintf("attempt %d failed: %s", r.st.Attempt-1, reason))
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
	case activities.ErrTypeReconnectRejected:
		return failureRejected
	case activities.ErrTypeConnectionNotFound, activities.ErrTypeNotRepairable, activities.ErrTypeInvalidInput:
		return failureUnrepairable
	}
	return failureUnavailable
}

// providerFailed records a provider activity's final error and acts on it.
// It reports true when the provider was only unavailable and the window is
// still open, so the caller should try again.
func (r *repair) providerFailed(ctx workflow.Context, what string, err error) (retry bool) {
	if ctx.Err() != nil {
		return false // run records the cancel
	}
	msg := rootMessage(err)
	r.st.LastError = what + ": " + msg
	switch classify(err) {
	case failureRejected:
		r.failAttempt(ctx, what+" rejected by the provider: "+msg)
		return false
	case failureUnrepairable:
		r.requestOutcome(StatusUnrepairable, what+": "+msg)
		return false
	}
	if !workflow.Now(ctx).Before(r.deadline) {
		r.requestOutcome(StatusExpired, "the repair window ended while the provider was unavailable ("+what+": "+msg+")")
		return false
	}
	r.describe(ctx)
	return true
}

// pauseAfterOutage waits a little before asking an unavailable provider
// again; a handler's outcome ends the pause.
func (r *repair) pauseAfterOutage(ctx workflow.Context) {
	_, _ = awaitUntil(ctx, max(min(providerRetryPause, r.untilDeadline(ctx)), time.Second),
		"wait before asking the provider again", func() bool { return r.pending != nil })
}

// runProviderActivity runs a provider activity and waits for it, unless a
// handler asks for a terminal outcome first (a cancel, a confirming
// webhook): then the activity is canceled and interrupted is true, so the
// outcome is not held up by a provider that keeps failing.
func (r *repair) runProviderActivity(ctx workflow.Context, opts workflow.ActivityOptions, activity, arg, result any) (interrupted bool, err error) {
	actx, cancel := workflow.WithCancel(ctx)
	f := workflow.ExecuteActivity(workflow.WithActivityOptions(actx, opts), activity, arg)
	if werr := workflow.Await(ctx, func() bool { return f.IsReady() || r.pending != nil }); werr != nil || !f.IsReady() {
		cancel()
		return true, nil
	}
	return false, f.Get(ctx, result)
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

// awaitUntil waits for cond for at most timeout, with a timer the UI
// labels with why.
func awaitUntil(ctx workflow.Context, timeout time.Duration, why string, cond func() bool) (bool, error) {
	return workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{
		Timeout:      timeout,
		TimerOptions: workflow.TimerOptions{Summary: why},
	}, cond)
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

func (r *repair) untilDeadline(ctx workflow.Context) time.Duration {
	return r.deadline.Sub(workflow.Now(ctx))
}

func (r *repair) ref() activities.ConnectionRef {
	return activities.ConnectionRef{
		Provider:     r.in.Provider,
		ConnectionID: r.in.ConnectionID,
		ProfileID:    r.in.ProfileID,
		Connector:    r.in.Connector,
	}
}

// requestOutcome records a terminal status for the main path; the first
// request wins.
func (r *repair) requestOutcome(status Status, reason string) {
	if r.pending == nil {
		r.pending = &outcome{status: status, reason: reason}
	}
}

// nextInput starts the next run for a break that arrived as this one closed.
func (r *repair) nextInput() RepairInput {
	next := r.in
	next.TriggerEventID = r.nextBreak.EventID
	next.TriggerReason = r.nextBreak.Reason
	next.DetectedAt = r.nextBreak.At
	next.Proactive = false
	return next
}

// rootMessage is the innermost error's message, without Temporal's wrapping.
func rootMessage(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// decode reads a signal payload received as raw JSON. A malformed payload is
// logged and dropped: it must not wedge the workflow.
func decode[T any](ctx workflow.Context, name string, raw json.RawMessage) (T, bool) {
	var v T
	if len(raw) == 0 || string(raw) == "null" {
		return v, true
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		workflow.GetLogger(ctx).Warn("dropping malformed signal", "signal", name, "error", err)
		return v, false
	}
	return v, true
}
