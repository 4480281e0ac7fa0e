package workflows

import (
	"go.temporal.io/sdk/temporal"
)

// Task priorities (Temporal's: 1 is served first, 5 last; 3 when unset).
// When thousands of connections break at once (a bank's migration, an
// outage, a sweep that finds every break a lost webhook hid), the people
// in the middle of a repair must not wait behind them.
const (
	// PriorityUser is work a person is waiting on: a manual start's probe,
	// the close and status read after the user completed, the outcome's
	// notification, and all of a repair's work once its user acted
	// (reconnect, complete, exit: the gateway raises the run's priority).
	PriorityUser = 1
	// PriorityBackground is a repair nobody is looking at yet: started by
	// a webhook, a reconciliation sweep, or an expiry-timed or proactive
	// start.
	PriorityBackground = 4
	// PrioritySweep is a reconciliation sweep's pages: after everything
	// else (the repairs a sweep finds start at the background's).
	PrioritySweep = 5
)

// maxFairnessKeyBytes is Temporal's limit on a fairness key.
const maxFairnessKeyBytes = 64

// FairnessKey is the key that shares a task queue fairly between
// institutions: 1,000 new repairs for one bank and 10 for another are
// served in proportion, not in arrival order. The provider alone when the
// institution is unknown.
func FairnessKey(provider, institution string) string {
	key := provider
	if institution != "" {
		key += ":" + institution
	}
	if len(key) > maxFairnessKeyBytes {
		key = key[:maxFairnessKeyBytes]
	}
	return key
}

// StartPriority is the priority a repair starts at: the user's for a
// manual start (someone asked for it now), else the background's; with
// its institution's fairness key.
func StartPriority(in RepairInput) temporal.Priority {
	p := temporal.Priority{PriorityKey: PriorityBackground, FairnessKey: FairnessKey(in.Provider, in.Institution)}
	if in.trigger() == "manual" {
		p.PriorityKey = PriorityUser
	}
	return p
}

// userPriority is the priority of an activity a person waits on, whatever
// the repair's own (the fairness key is the repair's).
var userPriority = temporal.Priority{PriorityKey: PriorityUser}
