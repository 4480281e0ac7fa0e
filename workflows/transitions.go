package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/metrics"
)

// end moves the repair to a terminal status; the first outcome wins.
func (r *repair) end(ctx workflow.Context, to Status, code ReasonCode, note string) {
	if !r.st.Status.Terminal() {
		r.transition(ctx, to, code, note)
	}
}

// transition is the only place the status changes. It records the step,
// upserts the search attributes that changed, refreshes the UI's current
// details and tells the app. Transient statuses (COMPLETING, VERIFYING)
// are neither upserted nor sent unless the options ask for it: each costs
// a billable action, and the outcome follows within minutes.
func (r *repair) transition(ctx workflow.Context, to Status, code ReasonCode, note string) {
	if r.st.Status == to {
		return
	}
	now := workflow.Now(ctx)
	r.measureTransition(ctx, to, now)
	r.st.Status = to
	r.st.UpdatedAt = now
	r.st.Steps = append(r.st.Steps, Step{Status: to, At: now, Code: code, Note: note})
	r.st.Reason, r.st.ReasonCode = note, code
	if to != StatusCompleting {
		// A completion or a refresh asked for in one wait must not carry
		// over into another.
		r.completion = nil
		r.refreshRequested = false
	}
	if to != StatusVerifying {
		// A break reported while close ran is checked once verifying.
		r.verifyNow = false
	}
	switch {
	case to.Terminal():
		r.st.ClosedAt = now
		r.clearSession()
	case to == StatusAwaitingUser:
		r.awaitingSince = now
		r.remindersBeforeWait = r.st.RemindersSent
		r.st.VerifyUntil = time.Time{}
	}
	workflow.GetLogger(ctx).Info("repair status changed", "status", to, "note", note,
		"provider", r.in.Provider, "connectionId", r.in.ConnectionID, "attempt", r.st.Attempt)
	report := !to.Transient() || r.opts.ReportTransientStatuses
	if report {
		r.syncSearchAttributes(ctx)
	}
	r.describe(ctx)
	if report && !r.st.Quiet {
		r.notify(ctx, eventTypeFor(to))
	}
}

// measureTransition records what a status change says about repairs in
// general: how long the user was waited for, outcomes, time to repair.
// The SDK's workflow metrics handler records nothing during replay.
func (r *repair) measureTransition(ctx workflow.Context, to Status, now time.Time) {
	m := workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"provider": r.in.Provider})
	if r.st.Status == StatusAwaitingUser && !r.awaitingSince.IsZero() {
		m.Timer(metrics.UserWait).Record(now.Sub(r.awaitingSince))
	}
	if !to.Terminal() {
		return
	}
	m.WithTags(map[string]string{"outcome": string(to)}).Counter(metrics.RepairsClosed).Inc(1)
	if to == StatusRepaired {
		since := r.st.DetectedAt
		if since.IsZero() || since.After(now) {
			since = r.st.StartedAt
		}
		m.Timer(metrics.TimeToRepair).Record(now.Sub(since))
	}
}

func eventTypeFor(s Status) string {
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
func (r *repair) syncSearchAttributes(ctx workflow.Context) {
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

var statusWords = map[Status]string{
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
func (r *repair) describe(ctx workflow.Context) {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s** — %s\n\n", r.st.Status, statusWords[r.st.Status])
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
	if r.st.Status == StatusCompleting || r.st.Status == StatusVerifying {
		fmt.Fprintf(&b, "- the user finished; verification runs until %s\n", r.st.VerifyUntil.UTC().Format(time.RFC3339))
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
// failing app endpoint is retried in the background, and the run delivers
// every event before it ends (or hands the undelivered ones to the run it
// continues as).
func (r *repair) notify(ctx workflow.Context, eventType string) {
	now := workflow.Now(ctx)
	switch {
	case eventType == activities.EventActionRequired && !r.st.LastAskedAt.IsZero() && now.Sub(r.st.LastAskedAt) < MinAskSpacing:
		// The user heard from us less than MinAskSpacing ago (a failed
		// attempt soon after they tried): tell the app, ask nothing.
		// (Reminders keep their spacing by RELINK_REMINDER_OFFSETS,
		// counted from the wait's start.)
		eventType = activities.EventStatusChanged
	case isAsk(eventType):
		r.st.LastAskedAt = now
	case r.st.Status.Terminal():
		r.withdrawAsks()
	}
	if asked := r.asked; asked != nil {
		// The probe delivered its ask under the next number: that was
		// this event, or one the repair moved past (a cancel that came
		// with the run), whose number stays taken.
		r.asked = nil
		r.st.EventsSent++
		if asked.Type == eventType && asked.Repair.Status == string(r.st.Status) {
			return
		}
	}
	ev := r.event(ctx, eventType, r.st.Status)
	r.st.EventsSent++
	r.deliver(ctx, ev)
}

// event is the repair's next event to the app, as it stands in status.
func (r *repair) event(ctx workflow.Context, eventType string, status Status) activities.Event {
	id := workflow.GetInfo(ctx).WorkflowExecution.ID
	seq := r.st.EventsSent + 1
	ev := activities.Event{
		ID:         fmt.Sprintf("%s/%s/%d", id, r.st.RepairRunID, seq),
		Type:       eventType,
		OccurredAt: workflow.Now(ctx),
		Repair: activities.RepairSummary{
			ID:           id,
			RunID:        r.st.RepairRunID,
			Provider:     r.in.Provider,
			ConnectionID: r.in.ConnectionID,
			ProfileID:    r.in.ProfileID,
			Institution:  r.in.Institution,
			Status:       string(status),
			Attempt:      r.st.Attempt,
			Reason:       r.st.Reason,
			ReasonCode:   string(r.st.ReasonCode),
			Sequence:     seq,
			Proactive:    r.st.Proactive,
			ExpiresAt:    r.deadline,
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
		r.outbox = slices.DeleteFunc(r.outbox, func(e activities.Event) bool { return e.ID == p.id })
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

// deliver sends ev to the app in the background: one quick local attempt,
// then the Notify activity retried for NotifyTimeout. ev stays in the
// outbox until it is delivered or its retries run out.
func (r *repair) deliver(ctx workflow.Context, ev activities.Event) {
	// Deliveries outlive a cancel of the workflow: an operator's cancel
	// must not drop an event the repair has decided to send, its outcome
	// above all. Only a withdrawn ask is canceled (askContext).
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	ctx, delivered := r.askContext(ctx, ev)
	r.outbox = append(r.outbox, ev)
	workflow.Go(ctx, func(ctx workflow.Context) {
		defer delivered()
		err := errNoLocalAttempt
		if !Status(ev.Repair.Status).Terminal() {
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
		r.outbox = slices.DeleteFunc(r.outbox, func(e activities.Event) bool { return e.ID == ev.ID })
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

// notifyOptions retry an event for NotifyTimeout.
func (r *repair) notifyOptions(ctx workflow.Context, ev activities.Event) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: r.opts.NotifyTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    10 * time.Minute,
		},
		Summary: fmt.Sprintf("notify app: %s (%s)", ev.Type, ev.Repair.Status),
	})
}

// resendOutbox delivers the events an earlier run of this repair handed
// over undelivered. Their ids are unchanged, so an app that already got
// one drops the copy.
func (r *repair) resendOutbox(ctx workflow.Context) {
	pending := r.outbox
	r.outbox = nil
	for _, ev := range pending {
		r.deliver(ctx, ev)
	}
}
