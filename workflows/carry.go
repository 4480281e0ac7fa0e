package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/aggregator"
)

// RepairCarry is the part of a repair's state that one run hands to the
// next when it continues as new, so callers cannot grow one run's history
// without bound; the repair holds it as it is (struct repair), so nothing
// can be left out of the hand-over. Tokens in it are as sensitive as the
// update results.
type RepairCarry struct {
	State    RepairState `json:"state"`
	Deadline time.Time   `json:"deadline"` // the repair window's end

	Session         aggregator.Session `json:"session"` // the current widget session, tokens included
	SessionIssuedAt time.Time          `json:"sessionIssuedAt,omitzero"`
	IssuedTokens    []string           `json:"issuedTokens,omitempty"` // the last sessions this repair handed out
	ClosedTokens    []string           `json:"closedTokens,omitempty"` // the last completed: close runs once each
	CompletingAt    time.Time          `json:"completingAt,omitzero"`  // when the user finished in the widget

	AwaitingSince       time.Time `json:"awaitingSince,omitzero"`
	RemindersBeforeWait int       `json:"remindersBeforeWait,omitempty"`

	RefreshRounds   int            `json:"refreshRounds,omitempty"` // finished refresh rounds, successful or not
	RefreshErr      string         `json:"refreshErr,omitempty"`
	RefreshFailedAt time.Time      `json:"refreshFailedAt,omitzero"`
	GatewayClocks   []gatewayClock `json:"gatewayClocks,omitempty"` // how far each gateway's clock runs ahead

	NextPollAt   time.Time     `json:"nextPollAt,omitzero"`
	PollInterval time.Duration `json:"pollInterval,omitempty"`

	Outbox []activities.Event `json:"outbox,omitempty"` // events to the app not yet delivered

	// EventAppliedAt[i] is when State.EventIDs[i] was applied (rememberEvent).
	EventAppliedAt []time.Time `json:"eventAppliedAt,omitempty"`
}

// continueDue reports that this run's history is long enough to hand over
// and the repair is at a quiet point: waiting, with nothing half done.
func (r *repair) continueDue(ctx workflow.Context) bool {
	if r.State.Status != StatusAwaitingUser && r.State.Status != StatusVerifying {
		return false
	}
	if r.completion != nil || r.refreshRequested || r.refreshing || r.verifyNow {
		return false
	}
	return r.historyFull(ctx)
}

// historyFull reports that this run should hand over to a new one.
func (r *repair) historyFull(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	return info.GetContinueAsNewSuggested() ||
		info.GetCurrentHistoryLength() >= r.opts.ContinueAsNewAfterEvents ||
		r.updates >= maxUpdatesPerRun
}

// prepareContinue stops admitting updates, lets running ones answer and
// builds the next run's input. It reports false if something arrived
// meanwhile; the main path applies it and asks again.
func (r *repair) prepareContinue(ctx workflow.Context) (RepairInput, bool) {
	r.moving = true
	_ = workflow.Await(ctx, func() bool { return r.hasMessages() || workflow.AllHandlersFinished(ctx) })
	if r.hasMessages() || !r.continueDue(ctx) {
		r.moving = false
		return RepairInput{}, false
	}
	workflow.GetLogger(ctx).Info("repair continues as new", "provider", r.in.Provider,
		"connectionId", r.in.ConnectionID, "historyLength", workflow.GetInfo(ctx).GetCurrentHistoryLength())
	next := r.in
	next.Undelivered = nil // this run's own, delivered or in the carry's outbox
	carry := r.RepairCarry
	next.Carry = &carry
	return next, true
}
