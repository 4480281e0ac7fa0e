package workflows

import (
	"unicode/utf8"

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
	// (reconnect, complete: the gateway raises the run's priority).
	PriorityUser = 1
	// PriorityBackground is a repair nobody is looking at yet: started by
	// a webhook, a reconciliation sweep, or an expiry-timed or proactive
	// start.
	PriorityBackground = 4
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
	return ClipUTF8(key, maxFairnessKeyBytes)
}

// ClipUTF8 cuts s to at most n bytes, at a character boundary: a string
// cut inside a character is not valid UTF-8 (Temporal refuses such a
// fairness key, and JSON mangles it). Callers bound what a caller's
// strings may cost a repair's history with it.
func ClipUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// SweepPriority is a reconciliation sweep's, for its own tasks (set on its
// Schedule) and its pages: with the background's repairs, sharing the
// queue with them fairly under a key of their own (at a lower level they
// would wait for as long as any backlog lasts).
func SweepPriority(provider string) temporal.Priority {
	return temporal.Priority{PriorityKey: PriorityBackground, FairnessKey: ClipUTF8("reconcile:"+provider, maxFairnessKeyBytes)}
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
