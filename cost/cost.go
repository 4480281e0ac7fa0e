// Package cost counts the billable Temporal actions a run's history
// records, by the rules of Temporal Cloud's own estimator (docs: "Temporal
// Cloud Actions"): a start, each activity scheduled and each retry, each
// timer started, each signal (the one of a signal-with-start is in the
// start), each update accepted, each search-attribute upsert (the SDK's
// own TemporalChangeVersion ones too), each continue-as-new, each child
// workflow (two), each marker (local activities', and version markers
// too). The integration tests hold the typical repair to a budget with
// it, and `relink bench` reports it per path.
package cost

import (
	"maps"
	"slices"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/history/v1"
)

// Breakdown is actions by kind ("start", "activity", "timer", …).
type Breakdown map[string]int

// Total is the number of actions.
func (b Breakdown) Total() int {
	n := 0
	for _, v := range b {
		n += v
	}
	return n
}

// Kinds are the breakdown's kinds, sorted.
func (b Breakdown) Kinds() []string { return slices.Sorted(maps.Keys(b)) }

// Actions counts a history's billable actions by kind.
func Actions(events []*history.HistoryEvent) Breakdown {
	b := Breakdown{}
	for _, ev := range events {
		switch ev.GetEventType() {
		case enums.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
			b["start"]++
		case enums.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			b["activity"]++
		case enums.EVENT_TYPE_TIMER_STARTED:
			b["timer"]++
		case enums.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
			b["update"]++
		case enums.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
			b["continue-as-new"]++
		case enums.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
			b["upsert"]++
		case enums.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
			if ev.GetEventId() != 2 {
				b["signal"]++
			}
		case enums.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			if retries := int(ev.GetActivityTaskStartedEventAttributes().GetAttempt()) - 1; retries > 0 {
				b["activity retry"] += retries
			}
		case enums.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
			b["child"] += 2
		case enums.EVENT_TYPE_MARKER_RECORDED:
			b["marker"]++
		}
	}
	return b
}
