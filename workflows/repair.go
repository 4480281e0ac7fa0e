package workflows

import (
	"errors"
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
	// A task on the user's path runs one: the task that takes the user's
	// complete and closes locally sends its events as activities.
	localAttemptTimeout = 2 * time.Second
	// refreshTimeout bounds a re-initialize a user is waiting on.
	refreshTimeout = time.Minute
	// refreshRetryPause: after a failed refresh, callers are told to retry
	// later rather than each starting another round against a provider
	// that just failed.
	refreshRetryPause = 30 * time.Second
	// statusPollTimeout bounds one status poll, retries included.
	statusPollTimeout = 2 * time.Minute
	// eventDedupeWindow is how long a provider event id is remembered:
	// longer than any provider redelivers an event (Meld retries for 3
	// days, Plaid for 24 hours).
	eventDedupeWindow = 4 * 24 * time.Hour
	// eventIDsKept bounds the provider event ids remembered, whatever
	// their age: far more than one connection sees in a window.
	eventIDsKept = 1000
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
	// RepairCarry is what the next run takes over when this one continues
	// as new: the state, the session, the waits' clocks, the outbox.
	RepairCarry
	in   RepairInput
	opts RepairOptions

	completion       *ReconnectCompleted
	closeOutages     int  // close rounds for this completion that ended unanswered
	closeTriedInTask bool // this completion's close was tried in a workflow task
	// localCloseTask is the history length at the start of the task that
	// closed locally: that task sends its events as activities (notify.go).
	localCloseTask int

	messages workflow.ReceiveChannel // SignalMessage, received on the main path only
	inbox    []inboxItem

	pendingAsks   []pendingAsk      // asks being delivered, withdrawn if the repair ends first
	probedLocally bool              // this run has tried its local first initialize
	asked         *activities.Event // the ask the probe delivered, not yet numbered

	// Reconnect: handlers ask, the main path mints.
	refreshRequested bool
	refreshing       bool

	verifyNow bool // a webhook said the connection broke again: look now

	updates     int // updates accepted by this run
	exits       int // exits recorded by this run
	moving      bool
	nextBreak   *ProviderEvent
	nextOptions *RepairOptions // the next run's, from a manual start
}

// ConnectionRepair repairs one broken connection. See the package doc and
// the README's state diagram.
func ConnectionRepair(ctx workflow.Context, in RepairInput) (RepairState, error) {
	r := newRepair(ctx, in)
	if err := r.registerHandlers(ctx); err != nil {
		return r.State, err
	}
	if in.AfterEnded {
		// Until now visibility says the last repair's outcome, and the
		// gateway would take this run for an ended one.
		r.syncSearchAttributes(ctx, "")
		if err := workflow.UpsertMemo(ctx, map[string]any{MemoTrigger: in.TriggerEventID}); err != nil {
			workflow.GetLogger(ctx).Warn("memo upsert failed", "error", err)
		}
	}
	r.describe(ctx)
	r.resendOutbox(ctx)

	ctx, next := r.run(ctx)
	if next != nil {
		return r.State, workflow.NewContinueAsNewError(ctx, ConnectionRepair, *next)
	}

	// Deliver what is still in flight, and let running updates answer,
	// before the run ends; a new break meanwhile starts the next run,
	// at once (taking the undelivered events along) if the wait has made
	// the history long. An operator's cancel arriving now changes
	// nothing: the outcome is decided and its event still goes out.
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	for {
		_ = workflow.Await(ctx, func() bool {
			return r.hasMessages() || (len(r.Outbox) == 0 && workflow.AllHandlersFinished(ctx)) ||
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
		return r.State, workflow.NewContinueAsNewErrorWithOptions(ctx,
			workflow.ContinueAsNewErrorOptions{InitialVersioningBehavior: workflow.ContinueAsNewVersioningBehaviorAutoUpgrade},
			ConnectionRepair, r.nextInput())
	}
	return r.State, closeError(r.State)
}

func newRepair(ctx workflow.Context, in RepairInput) *repair {
	opts := in.Options.withDefaults()
	now := workflow.Now(ctx)
	info := workflow.GetInfo(ctx)
	messages := workflow.GetSignalChannel(ctx, SignalMessage)
	if c := in.Carry; c != nil {
		in.Carry = nil
		r := &repair{RepairCarry: *c, in: in, opts: opts, messages: messages}
		r.State.Runs++
		return r
	}
	r := &repair{RepairCarry: RepairCarry{Deadline: now.Add(opts.RepairWindow), Outbox: in.Undelivered},
		in: in, opts: opts, messages: messages}
	r.State = RepairState{
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
		ExpiresAt:     r.Deadline,
		Reason:        in.TriggerReason,
		ReasonCode:    in.reasonCode(),
		Steps:         []Step{{Status: StatusPending, At: now, Code: in.reasonCode(), Note: in.TriggerReason}},
		RepairRunID:   info.WorkflowExecution.RunID,
		Runs:          1,
	}
	if in.TriggerEventID != "" {
		r.rememberEvent(workflow.Now(ctx), in.TriggerEventID)
	}
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"provider": in.Provider, "trigger": in.trigger()}).
		Counter(metrics.RepairsStarted).Inc(1)
	return r
}

// run drives the repair to a terminal status, or to a quiet point where it
// should continue as new (next is then the next run's input). It returns
// the context to finish with: a disconnected one if the workflow itself
// was canceled.
//
// Each turn applies what arrived (the inbox), then runs the current
// status's step until something changes. The steps, and the exits each may
// take, are in statuses.go, in the order of the state diagram.
func (r *repair) run(ctx workflow.Context) (workflow.Context, *RepairInput) {
	for {
		if ctx.Err() != nil && !r.State.Status.Terminal() {
			// Canceled from the Temporal UI or CLI: record it as an
			// operator cancel and still tell the app.
			ctx, _ = workflow.NewDisconnectedContext(ctx)
			r.end(ctx, StatusCanceled, ReasonCanceledInTemporal, "workflow canceled in Temporal")
		}
		r.drain(ctx)
		if r.State.Status.Terminal() {
			return ctx, nil
		}
		if r.continueDue(ctx) {
			if next, ok := r.prepareContinue(ctx); ok {
				return ctx, &next
			}
			continue
		}
		switch r.State.Status {
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

// nextInput starts the next run for a break that arrived as this one
// closed; events this run could not deliver yet go with it.
func (r *repair) nextInput() RepairInput {
	next := r.in
	next.Carry = nil
	next.Undelivered = r.Outbox
	next.TriggerEventID = r.nextBreak.EventID
	next.TriggerReason = r.nextBreak.Reason
	next.DetectedAt = r.nextBreak.At
	next.Proactive = r.nextBreak.Kind == aggregator.EventKindProactive
	next.AfterEnded = true
	if r.nextOptions != nil {
		next.Options = *r.nextOptions
	}
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
