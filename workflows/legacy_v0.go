// Code frozen at commit 10228d7: ConnectionRepair as it ran before the
// ordered-inbox rewrite (version marker "relink-inbox"). Histories begun by
// that code have no version marker and still replay through here; no new run
// takes this path. Do not change it: every edit risks a non-determinism error
// on a run that began before the upgrade. Names carry a v0 prefix.

package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/aggregator"
)

// Timings that are not worth a setting.
const (
	// v0SessionRefreshMargin: a session this close to expiry is replaced
	// rather than handed to a user who still has to finish the widget.
	v0SessionRefreshMargin = 2 * time.Minute
	// v0RefreshTimeout bounds a re-initialize a user is waiting on.
	v0RefreshTimeout = time.Minute
	// v0VerifyPollInitialInterval is the first gap between status polls.
	v0VerifyPollInitialInterval = time.Minute
	// v0StatusPollTimeout bounds one status poll, retries included.
	v0StatusPollTimeout = 2 * time.Minute
	// v0SeenEventsKept bounds the event ids remembered for deduplication.
	v0SeenEventsKept = 100
	// v0ProviderRetryPause separates rounds of retries against a provider
	// that stays unavailable.
	v0ProviderRetryPause = 5 * time.Minute
)

// outcome is a terminal status a message handler asks the main path for.
type v0Outcome struct {
	status Status
	reason string
}

// repair is one run's state. Message handlers only record what arrived
// (completion, outcome, failure, refresh requests); the main path in run
// acts on it, so every status change, activity and notification happens in
// one place and in one order.
type v0Repair struct {
	in       RepairInput
	opts     RepairOptions
	deadline time.Time
	st       RepairState

	session      aggregator.Session // current widget session, tokens included
	issuedTokens []string           // sessions this repair handed out
	closedTokens []string           // sessions already closed: close runs once each
	seenEvents   []string           // provider event ids already applied
	completingAt time.Time          // when the user last finished in the widget

	// Written by handlers, consumed by the main path.
	completion       *ReconnectCompleted
	pending          *v0Outcome
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

// ConnectionRepairV0 is ConnectionRepair before the inbox. Nothing registers
// it: runs without the version marker reach it through ConnectionRepair, and
// tests register it to run a repair of that version. See the package doc and
// the README's state diagram.
func ConnectionRepairV0(ctx workflow.Context, in RepairInput) (RepairState, error) {
	r := v0NewRepair(ctx, in)
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

func v0NewRepair(ctx workflow.Context, in RepairInput) *v0Repair {
	opts := in.Options.withDefaults()
	now := workflow.Now(ctx)
	r := &v0Repair{in: in, opts: opts, deadline: now.Add(opts.RepairWindow)}
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
func (r *v0Repair) run(ctx workflow.Context) workflow.Context {
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
func (r *v0Repair) probe(ctx workflow.Context) {
	for r.pending == nil && ctx.Err() == nil {
		var s aggregator.Session
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
func (r *v0Repair) useSession(ctx workflow.Context, s aggregator.Session) {
	if r.pending != nil {
		return // a handler already decided the outcome
	}
	r.st.ConnectorStatus = s.ConnectorStatus
	if s.ConnectorStatus == aggregator.ConnectorContinue {
		r.session = aggregator.Session{}
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
func (r *v0Repair) awaitUser(ctx workflow.Context) {
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
		_, _ = v0AwaitUntil(ctx, wake.Sub(now), why, func() bool {
			return r.completion != nil || r.refreshRequested || r.pending != nil
		})
	}
}

// nextReminder is when the next reminder of this wait is due, if any is left
// before the window ends.
func (r *v0Repair) nextReminder() (time.Time, bool) {
	sent := r.remindersThisWait()
	if sent >= len(r.opts.ReminderOffsets) {
		return time.Time{}, false
	}
	at := r.awaitingSince.Add(r.opts.ReminderOffsets[sent])
	return at, at.Before(r.deadline)
}

// remindersThisWait counts reminders sent since the repair last entered
// AWAITING_USER; each wait gets the full reminder schedule.
func (r *v0Repair) remindersThisWait() int {
	return r.st.RemindersSent - r.remindersBeforeWait
}

// refreshSession mints a new session because a reconnect update asked for
// one; the updates waiting on it are released by r.refreshes.
func (r *v0Repair) refreshSession(ctx workflow.Context) {
	r.refreshRequested = false
	r.refreshing = true
	var s aggregator.Session
	interrupted, err := r.runProviderActivity(ctx, r.initializeOptions(v0RefreshTimeout, "new session"),
		a.Initialize, activities.InitializeRequest{ConnectionRef: r.ref()}, &s)
	r.refreshing = false
	r.refreshes++
	r.refreshErr = ""
	switch {
	case interrupted:
		r.refreshErr = "the repair is ending"
	case err == nil:
		r.useSession(ctx, s)
	case v0Classify(err) == v0FailureUnavailable:
		// The user can try again shortly; the repair keeps waiting.
		r.refreshErr = "provider unavailable, try again: " + v0RootMessage(err)
		r.st.LastError = r.refreshErr
		r.describe(ctx)
	default:
		r.refreshErr = "initialize: " + v0RootMessage(err)
		r.providerFailed(ctx, "initialize", err)
	}
}

// closeSession runs close once for the completed session, retrying a
// provider outage until the window ends.
func (r *v0Repair) closeSession(ctx workflow.Context) {
	c := r.completion
	r.completion = nil
	r.closedTokens = append(r.closedTokens, c.ConnectorToken)
	req := aggregator.CloseRequest{
		ConnectionRef:  r.ref(),
		ConnectorToken: c.ConnectorToken,
		PublicToken:    c.PublicToken,
		Metadata:       c.Metadata,
	}
	for r.pending == nil && ctx.Err() == nil {
		interrupted, err := r.runProviderActivity(ctx, workflow.ActivityOptions{
			StartToCloseTimeout:    30 * time.Second,
			ScheduleToCloseTimeout: max(r.untilDeadline(ctx), time.Second),
			RetryPolicy:            v0ProviderRetryPolicy(),
			Summary:                fmt.Sprintf("close %s connection %s", r.in.Provider, r.in.ConnectionID),
		}, a.Close, req, nil)
		switch {
		case interrupted:
			return
		case err == nil:
			r.session = aggregator.Session{}
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
func (r *v0Repair) verify(ctx workflow.Context) {
	wait, why := r.opts.VerifyQuietPeriod, "wait for the provider's confirming webhook"
	interval := v0VerifyPollInitialInterval
	for r.st.Status == StatusVerifying && r.pending == nil && r.failure == "" && ctx.Err() == nil {
		remaining := r.deadline.Sub(workflow.Now(ctx))
		if remaining <= 0 {
			r.requestOutcome(StatusExpired, "the repair window ended before the provider confirmed the repair")
			return
		}
		if ok, _ := v0AwaitUntil(ctx, min(wait, remaining), why, func() bool {
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
func (r *v0Repair) pollStatus(ctx workflow.Context) {
	opts := workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: v0StatusPollTimeout,
		RetryPolicy:            v0ProviderRetryPolicy(),
		Summary:                fmt.Sprintf("status of %s connection %s", r.in.Provider, r.in.ConnectionID),
	}
	var st aggregator.ConnectionStatus
	interrupted, err := r.runProviderActivity(ctx, opts, a.ConnectionStatus, r.ref(), &st)
	if interrupted {
		return
	}
	if err != nil {
		if activities.ErrorType(err) == aggregator.ErrTypeConnectionNotFound {
			r.requestOutcome(StatusUnrepairable, "connection not found at the provider: "+v0RootMessage(err))
			return
		}
		// A failed poll is not a failed repair: poll again later.
		r.st.LastError = "status poll: " + v0RootMessage(err)
		return
	}
	r.st.LastProviderStatus = st.ProviderStatus
	switch st.Health {
	case aggregator.HealthHealthy:
		r.requestOutcome(StatusRepaired, "confirmed by the provider's connection status")
	case aggregator.HealthRepairable:
		r.failure = "the provider still reports the connection broken (" + st.ProviderStatus + ")"
	case aggregator.HealthDisconnected:
		r.requestOutcome(StatusUnrepairable, "the connection was disconnected at the provider ("+st.ProviderStatus+")")
	case aggregator.HealthDegraded:
		r.st.LastError = "provider reports " + st.ProviderStatus
	}
}

// failAttempt counts a reconnect that failed at the provider: back to the
// user for another try, or UNREPAIRABLE once the attempts are used up.
func (r *v0Repair) failAttempt(ctx workflow.Context, reason string) {
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
	r.session = aggregator.Session{}
	r.st.SessionExpiresAt = time.Time{}
	r.transition(ctx, StatusAwaitingUser, fmt.Sprintf("attempt %d failed: %s", r.st.Attempt-1, reason))
}

// v0FailureKind sorts a provider activity's final error.
type v0FailureKind int

const (
	// v0FailureUnavailable: retries ran out on errors that may pass (network,
	// timeouts, 5xx, 429). The repair tries again later.
	v0FailureUnavailable v0FailureKind = iota
	// v0FailureRejected: the provider refused the user's reconnect.
	v0FailureRejected
	// v0FailureUnrepairable: the provider says the connection cannot be
	// repaired (not found, conflict, invalid input).
	v0FailureUnrepairable
)

func v0Classify(err error) v0FailureKind {
	switch activities.ErrorType(err) {
	case aggregator.ErrTypeReconnectRejected:
		return v0FailureRejected
	case aggregator.ErrTypeConnectionNotFound, aggregator.ErrTypeNotRepairable, aggregator.ErrTypeInvalidInput:
		return v0FailureUnrepairable
	}
	return v0FailureUnavailable
}

// providerFailed records a provider activity's final error and acts on it.
// It reports true when the provider was only unavailable and the window is
// still open, so the caller should try again.
func (r *v0Repair) providerFailed(ctx workflow.Context, what string, err error) (retry bool) {
	if ctx.Err() != nil {
		return false // run records the cancel
	}
	msg := v0RootMessage(err)
	r.st.LastError = what + ": " + msg
	switch v0Classify(err) {
	case v0FailureRejected:
		r.failAttempt(ctx, what+" rejected by the provider: "+msg)
		return false
	case v0FailureUnrepairable:
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
func (r *v0Repair) pauseAfterOutage(ctx workflow.Context) {
	_, _ = v0AwaitUntil(ctx, max(min(v0ProviderRetryPause, r.untilDeadline(ctx)), time.Second),
		"wait before asking the provider again", func() bool { return r.pending != nil })
}

// runProviderActivity runs a provider activity and waits for it, unless a
// handler asks for a terminal outcome first (a cancel, a confirming
// webhook): then the activity is canceled and interrupted is true, so the
// outcome is not held up by a provider that keeps failing.
func (r *v0Repair) runProviderActivity(ctx workflow.Context, opts workflow.ActivityOptions, activity, arg, result any) (interrupted bool, err error) {
	actx, cancel := workflow.WithCancel(ctx)
	f := workflow.ExecuteActivity(workflow.WithActivityOptions(actx, opts), activity, arg)
	if werr := workflow.Await(ctx, func() bool { return f.IsReady() || r.pending != nil }); werr != nil || !f.IsReady() {
		cancel()
		return true, nil
	}
	return false, f.Get(ctx, result)
}

// initializeOptions retry initialize for at most timeout.
func (r *v0Repair) initializeOptions(timeout time.Duration, why string) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: max(timeout, time.Second),
		RetryPolicy:            v0ProviderRetryPolicy(),
		Summary:                fmt.Sprintf("initialize %s connection %s (%s)", r.in.Provider, r.in.ConnectionID, why),
	}
}

// v0AwaitUntil waits for cond for at most timeout, with a timer the UI
// labels with why.
func v0AwaitUntil(ctx workflow.Context, timeout time.Duration, why string, cond func() bool) (bool, error) {
	return workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{
		Timeout:      timeout,
		TimerOptions: workflow.TimerOptions{Summary: why},
	}, cond)
}

// v0ProviderRetryPolicy retries transient provider failures with backoff; the
// adapters' named errors are non-retryable and end the retries at once.
func v0ProviderRetryPolicy() *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval:    time.Second,
		BackoffCoefficient: 2,
		MaximumInterval:    5 * time.Minute,
	}
}

func (r *v0Repair) untilDeadline(ctx workflow.Context) time.Duration {
	return r.deadline.Sub(workflow.Now(ctx))
}

func (r *v0Repair) ref() aggregator.ConnectionRef {
	return aggregator.ConnectionRef{
		Provider:     r.in.Provider,
		ConnectionID: r.in.ConnectionID,
		ProfileID:    r.in.ProfileID,
		Connector:    r.in.Connector,
	}
}

// requestOutcome records a terminal status for the main path; the first
// request wins.
func (r *v0Repair) requestOutcome(status Status, reason string) {
	if r.pending == nil {
		r.pending = &v0Outcome{status: status, reason: reason}
	}
}

// nextInput starts the next run for a break that arrived as this one closed.
func (r *v0Repair) nextInput() RepairInput {
	next := r.in
	next.TriggerEventID = r.nextBreak.EventID
	next.TriggerReason = r.nextBreak.Reason
	next.DetectedAt = r.nextBreak.At
	next.Proactive = false
	return next
}

// v0RootMessage is the innermost error's message, without Temporal's wrapping.
func v0RootMessage(err error) string {
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
func v0Decode[T any](ctx workflow.Context, name string, raw json.RawMessage) (T, bool) {
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

func (r *v0Repair) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandlerWithOptions(ctx, QueryState, func() (RepairState, error) {
		return r.st, nil
	}, workflow.QueryHandlerOptions{Description: "The whole repair state"}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateReconnect, r.onReconnect, workflow.UpdateHandlerOptions{
		Validator:   r.validateReconnect,
		Description: "Start or resume the user's reconnect; returns the widget session",
	}); err != nil {
		return err
	}
	// Signal receivers outlive a workflow cancel, so the run can still
	// record what arrives while it winds down.
	listenCtx, _ := workflow.NewDisconnectedContext(ctx)
	v0Listen(listenCtx, SignalReconnectCompleted, r.onCompleted)
	v0Listen(listenCtx, SignalReconnectExited, r.onExited)
	v0Listen(listenCtx, SignalProviderEvent, r.onProviderEvent)
	v0Listen(listenCtx, SignalCancel, r.onCancel)
	v0Listen(listenCtx, SignalRepairRequested, r.onRepairRequested)
	return nil
}

// listen applies every signal of one name, in arrival order.
func v0Listen[T any](ctx workflow.Context, name string, apply func(workflow.Context, T)) {
	ch := workflow.GetSignalChannel(ctx, name)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var raw json.RawMessage
			ch.Receive(ctx, &raw)
			if v, ok := v0Decode[T](ctx, name, raw); ok {
				apply(ctx, v)
			}
		}
	})
}

func (r *v0Repair) validateReconnect(ctx workflow.Context, _ ReconnectRequest) error {
	if r.st.Status.Terminal() {
		return v0RepairClosedError(r.st.Status)
	}
	return nil
}

func v0RepairClosedError(s Status) error {
	return temporal.NewApplicationError(fmt.Sprintf("the repair is %s", s), ErrTypeRepairClosed)
}

// onReconnect answers with a session the user can use now: the current one
// while it is valid, else one the main path mints for it.
func (r *v0Repair) onReconnect(ctx workflow.Context, req ReconnectRequest) (ReconnectResult, error) {
	// While the probe runs there is nothing to hand out yet.
	if err := workflow.Await(ctx, func() bool { return r.st.Status != StatusPending }); err != nil {
		return ReconnectResult{}, err
	}
	force := req.ForceNewSession
	for {
		switch r.st.Status {
		case StatusCompleting, StatusVerifying:
			// The user already did their part: never send them back.
			return ReconnectResult{Status: r.st.Status, ConnectorStatus: aggregator.ConnectorContinue}, nil
		case StatusAwaitingUser:
			if !force && r.sessionUsable(ctx) {
				return r.sessionResult(), nil
			}
			force = false
			round := r.refreshes
			// Join a refresh already asked for or running: its session is
			// as fresh as a new one would be.
			if !r.refreshing {
				r.refreshRequested = true
			}
			if err := workflow.Await(ctx, func() bool {
				return r.refreshes != round || r.st.Status != StatusAwaitingUser
			}); err != nil {
				return ReconnectResult{}, err
			}
			if r.st.Status == StatusAwaitingUser {
				if r.refreshErr != "" {
					return ReconnectResult{}, temporal.NewApplicationError(r.refreshErr, ErrTypeProviderUnavailable)
				}
				return r.sessionResult(), nil
			}
		default:
			return ReconnectResult{}, v0RepairClosedError(r.st.Status)
		}
	}
}

func (r *v0Repair) sessionResult() ReconnectResult {
	s := r.session
	return ReconnectResult{Status: r.st.Status, ConnectorStatus: aggregator.ConnectorActionRequired, Session: &s}
}

// sessionUsable: issued, not yet closed, and not about to expire.
func (r *v0Repair) sessionUsable(ctx workflow.Context) bool {
	s := r.session
	if s.ConnectorToken == "" && s.LinkToken == "" && s.WidgetURL == "" {
		return false
	}
	if slices.Contains(r.closedTokens, s.ConnectorToken) {
		return false
	}
	return s.ExpiresAt.IsZero() || workflow.Now(ctx).Add(v0SessionRefreshMargin).Before(s.ExpiresAt)
}

// onCompleted queues close for a session, once per session however often
// the widget's success is reported.
func (r *v0Repair) onCompleted(ctx workflow.Context, c ReconnectCompleted) {
	log := workflow.GetLogger(ctx)
	if c.ConnectorToken == "" {
		c.ConnectorToken = r.session.ConnectorToken
	}
	switch {
	case r.st.Status != StatusAwaitingUser:
		log.Info("reconnect-completed ignored", "status", r.st.Status)
	case r.completion != nil || slices.Contains(r.closedTokens, c.ConnectorToken):
		log.Info("duplicate reconnect-completed ignored")
	case c.ConnectorToken == "":
		log.Warn("reconnect-completed without a session ignored; call reconnect first")
	case !slices.Contains(r.issuedTokens, c.ConnectorToken):
		// Only this repair's sessions are closed, so a stray token cannot
		// cost the user an attempt.
		log.Warn("reconnect-completed for a session this repair did not issue ignored")
	default:
		r.completion = &c
	}
}

func (r *v0Repair) onExited(ctx workflow.Context, e ReconnectExited) {
	r.st.Exits++
	r.st.LastExit = &ExitRecord{ReconnectExited: e, ReceivedAt: workflow.Now(ctx)}
	r.describe(ctx)
}

func (r *v0Repair) onCancel(ctx workflow.Context, c CancelRequest) {
	reason := "canceled"
	if c.RequestedBy != "" {
		reason += " by " + c.RequestedBy
	}
	if c.Reason != "" {
		reason += ": " + c.Reason
	}
	r.requestOutcome(StatusCanceled, reason)
}

// onRepairRequested joins a manual start to this repair, or, if this run
// has already ended and is only finishing its notifications, starts the
// next run when it closes.
func (r *v0Repair) onRepairRequested(ctx workflow.Context, req RepairRequest) {
	if r.st.Status.Terminal() && r.nextBreak == nil {
		r.nextBreak = &ProviderEvent{Kind: aggregator.EventKindRepairable, Reason: req.Reason, At: req.At}
		return
	}
	workflow.GetLogger(ctx).Info("repair request joined the open repair", "reason", req.Reason)
}

// onProviderEvent applies a webhook event once, ignoring stale ones.
func (r *v0Repair) onProviderEvent(ctx workflow.Context, ev ProviderEvent) {
	log := workflow.GetLogger(ctx)
	if ev.EventID != "" {
		if slices.Contains(r.seenEvents, ev.EventID) {
			log.Info("duplicate provider event ignored", "eventId", ev.EventID)
			return
		}
		r.seenEvents = append(r.seenEvents, ev.EventID)
		if len(r.seenEvents) > v0SeenEventsKept {
			r.seenEvents = r.seenEvents[1:]
		}
	}
	if !ev.At.IsZero() && !r.in.DetectedAt.IsZero() && ev.At.Before(r.in.DetectedAt) {
		log.Info("stale provider event ignored", "eventId", ev.EventID, "kind", ev.Kind, "at", ev.At)
		return
	}
	if ev.ProviderStatus != "" {
		r.st.LastProviderStatus = ev.ProviderStatus
	}
	if r.st.Status.Terminal() {
		// A break reported after this repair closed is a new break.
		if ev.Kind == aggregator.EventKindRepairable && r.nextBreak == nil &&
			(ev.At.IsZero() || !ev.At.Before(r.st.ClosedAt)) {
			r.nextBreak = &ev
		}
		return
	}
	reconnecting := r.st.Status == StatusCompleting || r.st.Status == StatusVerifying
	switch ev.Kind {
	case aggregator.EventKindSynced:
		r.requestOutcome(StatusRepaired, "confirmed by the provider's webhook")
	case aggregator.EventKindRepairedElsewhere:
		// After the user's reconnect it is the confirmation (Plaid's
		// LOGIN_REPAIRED); before it, the user fixed it some other way.
		if reconnecting {
			r.requestOutcome(StatusRepaired, "confirmed by the provider's webhook")
		} else {
			r.requestOutcome(StatusRepaired, "the provider reports the connection repaired outside Relink")
		}
	case aggregator.EventKindProactive:
		// Joins the open repair; nothing is broken.
	case aggregator.EventKindRepairable:
		// The connection is broken now, whatever started the repair. While
		// waiting for the user this is the same break again; after the
		// user's reconnect it means the reconnect did not take, unless it
		// is dated before the reconnect (the old break, redelivered).
		r.st.Proactive = false
		if reconnecting && (ev.At.IsZero() || !ev.At.Before(r.completingAt)) {
			r.failure = "the provider reports the connection broken again" + v0Suffix(ev.Reason)
		}
	case aggregator.EventKindErrored:
		r.st.LastError = "provider error" + v0Suffix(ev.Reason)
		r.describe(ctx)
	case aggregator.EventKindDisconnected:
		r.requestOutcome(StatusUnrepairable, "the connection was disconnected at the provider")
	case aggregator.EventKindDeleted:
		r.requestOutcome(StatusCanceled, "the connection was deleted")
	default:
		log.Warn("unknown provider event kind ignored", "kind", ev.Kind)
	}
}

func v0Suffix(reason string) string {
	if reason == "" {
		return ""
	}
	return " (" + reason + ")"
}

// transition is the only place the status changes. It records the step,
// upserts the search attributes that changed, refreshes the UI's current
// details and tells the app.
func (r *v0Repair) transition(ctx workflow.Context, to Status, note string) {
	if r.st.Status == to {
		return
	}
	now := workflow.Now(ctx)
	r.st.Status = to
	r.st.UpdatedAt = now
	r.st.Steps = append(r.st.Steps, Step{Status: to, At: now, Note: note})
	if to != StatusCompleting {
		// A completion or a refresh asked for in one wait must not carry
		// over into another.
		r.completion = nil
		r.refreshRequested = false
	}
	switch {
	case to.Terminal():
		r.st.Reason = note
		r.st.ClosedAt = now
		r.session = aggregator.Session{}
		r.st.SessionExpiresAt = time.Time{}
	case to == StatusAwaitingUser:
		r.awaitingSince = now
		r.remindersBeforeWait = r.st.RemindersSent
	}
	workflow.GetLogger(ctx).Info("repair status changed", "status", to, "note", note,
		"provider", r.in.Provider, "connectionId", r.in.ConnectionID, "attempt", r.st.Attempt)
	r.syncSearchAttributes(ctx)
	r.describe(ctx)
	r.notify(ctx, v0EventTypeFor(to))
}

func v0EventTypeFor(s Status) string {
	switch s {
	case StatusAwaitingUser:
		return activities.EventActionRequired
	case StatusRepaired:
		return activities.EventRepaired
	case StatusExpired:
		return activities.EventExpired
	case StatusUnrepairable:
		return activities.EventUnrepairable
	case StatusCanceled:
		return activities.EventCanceled
	}
	return activities.EventStatusChanged
}

// syncSearchAttributes upserts only the attributes whose value changed, so
// the history carries one upsert per real change.
func (r *v0Repair) syncSearchAttributes(ctx workflow.Context) {
	current := workflow.GetTypedSearchAttributes(ctx)
	var updates []temporal.SearchAttributeUpdate
	keyword := func(key temporal.SearchAttributeKeyKeyword, value string) {
		got, ok := current.GetKeyword(key)
		if (ok && got != value) || (!ok && value != "") {
			updates = append(updates, key.ValueSet(value))
		}
	}
	keyword(SearchAttrStatus, string(r.st.Status))
	keyword(SearchAttrProvider, r.in.Provider)
	keyword(SearchAttrConnectionID, r.in.ConnectionID)
	keyword(SearchAttrProfileID, r.in.ProfileID)
	if got, ok := current.GetInt64(SearchAttrAttempts); !ok || got != int64(r.st.Attempt) {
		updates = append(updates, SearchAttrAttempts.ValueSet(int64(r.st.Attempt)))
	}
	if len(updates) == 0 {
		return
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, updates...); err != nil {
		workflow.GetLogger(ctx).Warn("search attribute upsert failed", "error", err)
	}
}

var v0StatusWords = map[Status]string{
	StatusPending:      "Checking with the provider (initialize)",
	StatusAwaitingUser: "Waiting for the user to reconnect in the provider's widget",
	StatusCompleting:   "The user finished; closing the reconnect with the provider",
	StatusVerifying:    "Waiting for the provider to confirm the repair",
	StatusRepaired:     "Repaired",
	StatusExpired:      "Expired",
	StatusUnrepairable: "Cannot be repaired",
	StatusCanceled:     "Canceled",
}

// describe sets the Temporal UI's "current details" to the status in words.
func (r *v0Repair) describe(ctx workflow.Context) {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s** — %s\n\n", r.st.Status, v0StatusWords[r.st.Status])
	fmt.Fprintf(&b, "- %s connection `%s`", r.in.Provider, r.in.ConnectionID)
	if r.in.ProfileID != "" {
		fmt.Fprintf(&b, ", profile `%s`", r.in.ProfileID)
	}
	if r.in.Institution != "" {
		fmt.Fprintf(&b, ", %s", r.in.Institution)
	}
	fmt.Fprintf(&b, "\n- attempt %d of %d\n", r.st.Attempt, r.opts.MaxAttempts)
	if r.st.Status.Terminal() {
		fmt.Fprintf(&b, "- reason: %s\n", r.st.Reason)
	} else {
		fmt.Fprintf(&b, "- repair window ends %s\n", r.deadline.UTC().Format(time.RFC3339))
	}
	if r.st.Status == StatusAwaitingUser {
		if !r.st.SessionExpiresAt.IsZero() {
			fmt.Fprintf(&b, "- widget session expires %s\n", r.st.SessionExpiresAt.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(&b, "- reminders sent: %d; widget exits: %d\n", r.st.RemindersSent, r.st.Exits)
	}
	if r.st.LastError != "" {
		fmt.Fprintf(&b, "- last error: %s\n", r.st.LastError)
	}
	workflow.SetCurrentDetails(ctx, b.String())
}

// notify sends an event to the app without holding up the repair: a slow or
// failing app endpoint is retried in the background, and the run waits for
// every notification before it ends.
func (r *v0Repair) notify(ctx workflow.Context, eventType string) {
	r.notifications++
	info := workflow.GetInfo(ctx)
	ev := activities.Event{
		ID:         fmt.Sprintf("%s/%s/%d", info.WorkflowExecution.ID, info.WorkflowExecution.RunID, r.notifications),
		Type:       eventType,
		OccurredAt: workflow.Now(ctx),
		Repair: activities.RepairSummary{
			ID:           info.WorkflowExecution.ID,
			RunID:        info.WorkflowExecution.RunID,
			Provider:     r.in.Provider,
			ConnectionID: r.in.ConnectionID,
			ProfileID:    r.in.ProfileID,
			Institution:  r.in.Institution,
			Status:       string(r.st.Status),
			Attempt:      r.st.Attempt,
			Reason:       r.st.Reason,
			Sequence:     r.notifications,
			Proactive:    r.st.Proactive,
			ExpiresAt:    r.deadline,
		},
	}
	if eventType == activities.EventReminder {
		ev.Repair.Reminder = r.remindersThisWait()
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: r.opts.NotifyTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    10 * time.Minute,
		},
		Summary: fmt.Sprintf("notify app: %s (%s)", eventType, r.st.Status),
	})
	f := workflow.ExecuteActivity(actx, a.Notify, ev)
	r.pendingNotifications++
	workflow.Go(ctx, func(ctx workflow.Context) {
		if err := f.Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("notification not delivered", "eventId", ev.ID, "error", err)
		}
		r.pendingNotifications--
	})
}
