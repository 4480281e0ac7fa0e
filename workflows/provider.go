package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/aggregator"
)

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
	r.State.LastError = what + ": " + msg
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
	status := r.State.Status
	t := r.startTimer(ctx, workflow.Now(ctx).Add(max(min(providerRetryPause, r.untilDeadline(ctx)), time.Second)),
		"wait before asking the provider again")
	defer t.stop()
	for !t.fired() {
		if err := r.await(ctx, t, func() bool { return r.State.Status != status }); err != nil || r.State.Status != status {
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
		if werr != nil || r.State.Status.Terminal() {
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
	deadline := r.Deadline
	if r.State.Status == StatusCompleting || r.State.Status == StatusVerifying {
		deadline = r.State.VerifyUntil
	}
	return deadline.Sub(workflow.Now(ctx))
}

func (r *repair) ref() aggregator.ConnectionRef {
	return aggregator.ConnectionRef{
		Provider:     r.in.Provider,
		ConnectionID: r.in.ConnectionID,
		ProfileID:    r.in.ProfileID,
		Connector:    r.in.Connector,
		Proactive:    r.State.Proactive,
	}
}
