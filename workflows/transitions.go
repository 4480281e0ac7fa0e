package workflows

import (
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
	if !r.State.Status.Terminal() {
		r.transition(ctx, to, code, note)
	}
}

// transition is the only place the status changes. It records the step,
// upserts the search attributes that changed, refreshes the UI's current
// details and tells the app. Transient statuses (COMPLETING, VERIFYING)
// are neither upserted nor sent unless the options ask for it: each costs
// a billable action, and the outcome follows within minutes.
func (r *repair) transition(ctx workflow.Context, to Status, code ReasonCode, note string) {
	if r.State.Status == to {
		return
	}
	if !slices.Contains(exits[r.State.Status], to) {
		// The state diagram (exits) has no such move: a bug. The repair
		// still moves, rather than wedge; tests fail on the log's twin,
		// the harness's check of every run's steps.
		workflow.GetLogger(ctx).Error("status change outside the state diagram", "from", r.State.Status, "to", to,
			"provider", r.in.Provider, "connectionId", r.in.ConnectionID)
	}
	now := workflow.Now(ctx)
	r.measureTransition(ctx, to, now)
	r.State.Status = to
	r.State.UpdatedAt = now
	r.State.Steps = append(r.State.Steps, Step{Status: to, At: now, Code: code, Note: note})
	r.State.Reason, r.State.ReasonCode = note, code
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
		r.State.ClosedAt = now
		r.clearSession()
	case to == StatusAwaitingUser:
		r.AwaitingSince = now
		r.RemindersBeforeWait = r.State.RemindersSent
		r.State.VerifyUntil = time.Time{}
	}
	workflow.GetLogger(ctx).Info("repair status changed", "status", to, "note", note,
		"provider", r.in.Provider, "connectionId", r.in.ConnectionID, "attempt", r.State.Attempt)
	report := !to.Transient() || r.opts.ReportTransientStatuses
	if report {
		// The event about to announce this status, for an app catching up
		// from the listing (GET /v1/repairs?changedSince=).
		var announcedBy string
		if !r.State.Quiet {
			_, seq, _ := r.nextEvent(now, eventTypeFor(to))
			announcedBy = r.eventID(ctx, seq)
		}
		r.syncSearchAttributes(ctx, announcedBy)
	}
	r.describe(ctx)
	if report && !r.State.Quiet {
		r.notify(ctx, eventTypeFor(to))
	}
}

// measureTransition records what a status change says about repairs in
// general: how long the user was waited for, outcomes, time to repair.
// The SDK's workflow metrics handler records nothing during replay.
func (r *repair) measureTransition(ctx workflow.Context, to Status, now time.Time) {
	m := workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"provider": r.in.Provider})
	if r.State.Status == StatusAwaitingUser && !r.AwaitingSince.IsZero() {
		m.Timer(metrics.UserWait).Record(now.Sub(r.AwaitingSince))
	}
	if !to.Terminal() {
		return
	}
	m.WithTags(map[string]string{"outcome": string(to)}).Counter(metrics.RepairsClosed).Inc(1)
	if to == StatusRepaired {
		since := r.State.DetectedAt
		if since.IsZero() || since.After(now) {
			since = r.State.StartedAt
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
// the history carries one upsert per real change. lastEventID is the event
// that announces the current status ("" for none).
func (r *repair) syncSearchAttributes(ctx workflow.Context, lastEventID string) {
	current := workflow.GetTypedSearchAttributes(ctx)
	var updates []temporal.SearchAttributeUpdate
	keyword := func(key temporal.SearchAttributeKeyKeyword, value string) {
		got, ok := current.GetKeyword(key)
		if (ok && got != value) || (!ok && value != "") {
			updates = append(updates, key.ValueSet(value))
		}
	}
	keyword(SearchAttrStatus, string(r.State.Status))
	keyword(SearchAttrProvider, r.in.Provider)
	keyword(SearchAttrConnectionID, r.in.ConnectionID)
	keyword(SearchAttrProfileID, r.in.ProfileID)
	keyword(SearchAttrReasonCode, string(r.State.ReasonCode))
	if _, set := current.GetKeyword(SearchAttrLastEventID); lastEventID == "" && set {
		// A quiet status, or a new break's run before its first event:
		// the last repair's event (carried by continue-as-new) is not this
		// one's.
		updates = append(updates, SearchAttrLastEventID.ValueUnset())
	} else if lastEventID != "" {
		keyword(SearchAttrLastEventID, lastEventID)
	}
	if got, ok := current.GetInt64(SearchAttrAttempts); !ok || got != int64(r.State.Attempt) {
		updates = append(updates, SearchAttrAttempts.ValueSet(int64(r.State.Attempt)))
	}
	if len(updates) == 0 {
		return
	}
	updates = append(updates, SearchAttrUpdatedAt.ValueSet(workflow.Now(ctx).UTC()))
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
	fmt.Fprintf(&b, "**%s** — %s\n\n", r.State.Status, statusWords[r.State.Status])
	fmt.Fprintf(&b, "- %s connection `%s`", r.in.Provider, r.in.ConnectionID)
	if r.in.ProfileID != "" {
		fmt.Fprintf(&b, ", profile `%s`", r.in.ProfileID)
	}
	if r.in.Institution != "" {
		fmt.Fprintf(&b, ", %s", r.in.Institution)
	}
	fmt.Fprintf(&b, "\n- attempt %d of %d\n", r.State.Attempt, r.opts.MaxAttempts)
	if r.State.Status.Terminal() {
		fmt.Fprintf(&b, "- reason: %s\n", r.State.Reason)
	} else {
		fmt.Fprintf(&b, "- repair window ends %s\n", r.Deadline.UTC().Format(time.RFC3339))
	}
	if r.State.Status == StatusCompleting || r.State.Status == StatusVerifying {
		fmt.Fprintf(&b, "- the user finished; verification runs until %s\n", r.State.VerifyUntil.UTC().Format(time.RFC3339))
	}
	if r.State.Status == StatusAwaitingUser {
		if !r.State.SessionExpiresAt.IsZero() {
			fmt.Fprintf(&b, "- widget session expires %s\n", r.State.SessionExpiresAt.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(&b, "- reminders sent: %d; widget exits: %d\n", r.State.RemindersSent, r.State.Exits)
	}
	if r.State.LastError != "" {
		fmt.Fprintf(&b, "- last error: %s\n", r.State.LastError)
	}
	workflow.SetCurrentDetails(ctx, b.String())
}
