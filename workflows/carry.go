package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/aggregator"
)

// RepairCarry is the whole state of a repair handed from one run to the
// next when it continues as new, so callers cannot grow one run's history
// without bound. Tokens in it are as sensitive as the update results.
type RepairCarry struct {
	State               RepairState        `json:"state"`
	Deadline            time.Time          `json:"deadline"`
	Session             aggregator.Session `json:"session"`
	SessionIssuedAt     time.Time          `json:"sessionIssuedAt,omitzero"`
	IssuedTokens        []string           `json:"issuedTokens,omitempty"`
	ClosedTokens        []string           `json:"closedTokens,omitempty"`
	CompletingAt        time.Time          `json:"completingAt,omitzero"`
	AwaitingSince       time.Time          `json:"awaitingSince,omitzero"`
	RemindersBeforeWait int                `json:"remindersBeforeWait,omitempty"`
	RefreshRounds       int                `json:"refreshRounds,omitempty"`
	RefreshErr          string             `json:"refreshErr,omitempty"`
	RefreshFailedAt     time.Time          `json:"refreshFailedAt,omitzero"`
	NextPollAt          time.Time          `json:"nextPollAt,omitzero"`
	PollInterval        time.Duration      `json:"pollInterval,omitempty"`
	Outbox              []activities.Event `json:"outbox,omitempty"`
	GatewayClocks       []gatewayClock     `json:"gatewayClocks,omitempty"`
}

// continueDue reports that this run's history is long enough to hand over
// and the repair is at a quiet point: waiting, with nothing half done.
func (r *repair) continueDue(ctx workflow.Context) bool {
	if r.st.Status != StatusAwaitingUser && r.st.Status != StatusVerifying {
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
	next.Carry = r.carry()
	return next, true
}

// carry is what the next run needs of this one.
func (r *repair) carry() *RepairCarry {
	return &RepairCarry{
		State:               r.st,
		Deadline:            r.deadline,
		Session:             r.session,
		SessionIssuedAt:     r.sessionIssuedAt,
		IssuedTokens:        r.issuedTokens,
		ClosedTokens:        r.closedTokens,
		CompletingAt:        r.completingAt,
		AwaitingSince:       r.awaitingSince,
		RemindersBeforeWait: r.remindersBeforeWait,
		RefreshRounds:       r.refreshRounds,
		RefreshErr:          r.refreshErr,
		RefreshFailedAt:     r.refreshFailedAt,
		NextPollAt:          r.nextPollAt,
		PollInterval:        r.pollInterval,
		Outbox:              r.outbox,
		GatewayClocks:       r.gatewayClocks,
	}
}

// restore rebuilds a repair from the previous run's carry.
func (c *RepairCarry) restore(in RepairInput, opts RepairOptions) *repair {
	in.Carry = nil
	return &repair{
		in:                  in,
		opts:                opts,
		deadline:            c.Deadline,
		st:                  c.State,
		session:             c.Session,
		sessionIssuedAt:     c.SessionIssuedAt,
		issuedTokens:        c.IssuedTokens,
		closedTokens:        c.ClosedTokens,
		completingAt:        c.CompletingAt,
		awaitingSince:       c.AwaitingSince,
		remindersBeforeWait: c.RemindersBeforeWait,
		refreshRounds:       c.RefreshRounds,
		refreshErr:          c.RefreshErr,
		refreshFailedAt:     c.RefreshFailedAt,
		nextPollAt:          c.NextPollAt,
		pollInterval:        c.PollInterval,
		outbox:              c.Outbox,
		gatewayClocks:       c.GatewayClocks,
	}
}
