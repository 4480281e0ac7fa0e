package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/activities"
)

// notify sends an event to the app without holding up the repair: a slow or
// failing app endpoint is retried in the background, and the run delivers
// every event before it ends (or hands the undelivered ones to the run it
// continues as).
func (r *repair) notify(ctx workflow.Context, eventType string) {
	now := workflow.Now(ctx)
	typ, _, fresh := r.nextEvent(now, eventType)
	switch {
	case typ != eventType:
		// The user heard from us less than MinAskSpacing ago (a failed
		// attempt soon after they tried): tell the app, ask nothing.
		// (Reminders keep their spacing by RELINK_REMINDER_OFFSETS,
		// counted from the wait's start.)
	case isAsk(typ):
		r.State.LastAskedAt = now
	case r.State.Status.Terminal():
		r.withdrawAsks()
	}
	if r.asked != nil {
		// The probe delivered its ask under the next number (nextEvent).
		r.asked = nil
		r.State.EventsSent++
	}
	if !fresh {
		return
	}
	ev := r.event(ctx, typ, r.State.Status, r.State.ReasonCode, r.State.Reason)
	r.State.EventsSent++
	r.deliver(ctx, ev)
}

// nextEvent is what notify(eventType) tells the app of the status just
// entered: the event's type (an ask too soon after the last one is a
// status change) and number; fresh is false when the probe already
// delivered that very event. The probe delivers its ask under the next
// number: that was this event, or one the repair moved past (a cancel that
// came with the run), whose number stays taken.
func (r *repair) nextEvent(now time.Time, eventType string) (typ string, seq int, fresh bool) {
	if eventType == activities.EventActionRequired && !r.State.LastAskedAt.IsZero() && now.Sub(r.State.LastAskedAt) < MinAskSpacing {
		eventType = activities.EventStatusChanged
	}
	seq = r.State.EventsSent + 1
	if asked := r.asked; asked != nil {
		if asked.Type == eventType && asked.Repair.Status == string(r.State.Status) {
			return eventType, seq, false
		}
		seq++
	}
	return eventType, seq, true
}

// eventID is the id of the repair's event number seq: the webhook-id the
// app sees, the same on every retry.
func (r *repair) eventID(ctx workflow.Context, seq int) string {
	return fmt.Sprintf("%s/%s/%d", workflow.GetInfo(ctx).WorkflowExecution.ID, r.State.RepairRunID, seq)
}

// event is the repair's next event to the app, as it stands in status
// (entered for code and reason).
func (r *repair) event(ctx workflow.Context, eventType string, status Status, code ReasonCode, reason string) activities.Event {
	id := workflow.GetInfo(ctx).WorkflowExecution.ID
	seq := r.State.EventsSent + 1
	ev := activities.Event{
		ID:         r.eventID(ctx, seq),
		Type:       eventType,
		OccurredAt: workflow.Now(ctx),
		Repair: activities.RepairSummary{
			ID:           id,
			RunID:        r.State.RepairRunID,
			Provider:     r.in.Provider,
			ConnectionID: r.in.ConnectionID,
			ProfileID:    r.in.ProfileID,
			Institution:  r.in.Institution,
			Status:       string(status),
			Attempt:      r.State.Attempt,
			Reason:       reason,
			ReasonCode:   string(code),
			Sequence:     seq,
			Proactive:    r.State.Proactive,
			ExpiresAt:    r.Deadline,
		},
	}
	if eventType == activities.EventReminder {
		ev.Repair.Reminder = r.remindersThisWait()
	}
	return ev
}

// isAsk: the event asks the app to bring the user back.
func isAsk(eventType string) bool {
	return eventType == activities.EventActionRequired || eventType == activities.EventReminder
}

// withdrawAsks cancels the asks still being delivered:
// the repair has ended, and a reminder after its outcome would send the
// user to a finished repair. In the order they were sent (determinism).
func (r *repair) withdrawAsks() {
	for _, p := range r.pendingAsks {
		p.cancel()
		// Out of the outbox at once: a run continuing as new right after
		// must not hand a withdrawn ask to the next run.
		r.Outbox = slices.DeleteFunc(r.Outbox, func(e activities.Event) bool { return e.ID == p.id })
	}
	r.pendingAsks = nil
}

// pendingAsk is an ask being delivered, and how to withdraw it.
type pendingAsk struct {
	id     string
	cancel workflow.CancelFunc
}

// askContext lets an ask's delivery be withdrawn.
func (r *repair) askContext(ctx workflow.Context, ev activities.Event) (workflow.Context, func()) {
	if !isAsk(ev.Type) {
		return ctx, func() {}
	}
	ctx, cancel := workflow.WithCancel(ctx)
	r.pendingAsks = append(r.pendingAsks, pendingAsk{id: ev.ID, cancel: cancel})
	return ctx, func() {
		r.pendingAsks = slices.DeleteFunc(r.pendingAsks, func(p pendingAsk) bool { return p.id == ev.ID })
	}
}

// deliver sends ev to the app in the background, after the events before
// it: one quick local attempt, then the Notify activity retried for
// NotifyTimeout. ev stays in the outbox until it is delivered, its retries
// run out or (an ask) it is withdrawn.
func (r *repair) deliver(ctx workflow.Context, ev activities.Event) {
	// Deliveries outlive a cancel of the workflow: an operator's cancel
	// must not drop an event the repair has decided to send, its outcome
	// above all. Only a withdrawn ask is canceled (askContext).
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	ctx, delivered := r.askContext(ctx, ev)
	r.Outbox = append(r.Outbox, ev)
	workflow.Go(ctx, func(ctx workflow.Context) {
		defer delivered()
		// In order: an event goes once every event before it is delivered,
		// out of retries, or withdrawn (the outbox is in sequence order).
		_ = workflow.Await(ctx, func() bool { return len(r.Outbox) == 0 || r.Outbox[0].ID == ev.ID })
		err := errNoLocalAttempt
		switch {
		case ctx.Err() != nil:
			err = ctx.Err() // an ask withdrawn while it waited its turn
		case r.localCloseTask != 0 && r.localCloseTask == workflow.GetInfo(ctx).GetCurrentHistoryLength():
			// This task closed locally for a user waiting on its answer:
			// a second local attempt would hold it up to twice as long.
		case !Status(ev.Repair.Status).Terminal():
			// The outcome's event goes straight to the activity: the run
			// ends in the next task, a short one, so a message arriving
			// meanwhile does not make Temporal refuse the run's completion
			// and re-run the long task that reached the outcome (and count
			// it twice in the metrics).
			err = r.tryLocally(ctx, a.Notify, ev, nil, fmt.Sprintf("notify app: %s (first attempt)", ev.Type))
		}
		if err != nil && ctx.Err() == nil { // (canceled: the ask was withdrawn)
			err = workflow.ExecuteActivity(r.notifyOptions(ctx, ev), a.Notify, ev).Get(ctx, nil)
		}
		if err != nil {
			r.undelivered(ctx, ev, err)
		}
		r.Outbox = slices.DeleteFunc(r.Outbox, func(e activities.Event) bool { return e.ID == ev.ID })
	})
}

var errNoLocalAttempt = errors.New("no local attempt")

// undelivered logs an event the app did not get: withdrawn (the repair
// ended first), or out of retries.
func (r *repair) undelivered(ctx workflow.Context, ev activities.Event, err error) {
	if ctx.Err() != nil {
		workflow.GetLogger(ctx).Info("ask withdrawn: the repair ended before the app took it", "eventId", ev.ID,
			"provider", r.in.Provider, "connectionId", r.in.ConnectionID)
		return
	}
	workflow.GetLogger(ctx).Warn("notification not delivered", "eventId", ev.ID, "error", err,
		"provider", r.in.Provider, "connectionId", r.in.ConnectionID)
}

// notifyMaxInterval is the longest wait between two tries of an event.
const notifyMaxInterval = 10 * time.Minute

// notifyOptions retry an event for NotifyTimeout.
func (r *repair) notifyOptions(ctx workflow.Context, ev activities.Event) workflow.Context {
	var priority temporal.Priority // the repair's
	if Status(ev.Repair.Status).Terminal() {
		// The outcome: the app (and its user) wait for it.
		priority = userPriority
	}
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Priority:               priority,
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: r.opts.NotifyTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    notifyMaxInterval,
			// Bounded by NotifyTimeout, not by a count: this is more
			// attempts than that time holds. (Spelled out because the
			// SDK's test environment caps "unlimited" at 10, which would
			// end an app's two-hour outage after eight minutes.)
			MaximumAttempts: int32(r.opts.NotifyTimeout/notifyMaxInterval) + 20,
		},
		Summary: fmt.Sprintf("notify app: %s (%s)", ev.Type, ev.Repair.Status),
	})
}

// resendOutbox delivers the events an earlier run of this repair handed
// over undelivered. Their ids are unchanged, so an app that already got
// one drops the copy.
func (r *repair) resendOutbox(ctx workflow.Context) {
	pending := r.Outbox
	r.Outbox = nil
	for _, ev := range pending {
		r.deliver(ctx, ev)
	}
}
