package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/history/v1"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/workflows"
)

// A close with no call at the provider (Plaid's, Meld's, MX's: here the
// sandbox's closeInTask) runs inside the workflow task that takes the
// user's complete: no FinishReconnect activity, and the update and the
// answer to it are written by the same task.
func TestCloseInTaskAnswersInTheCompletionsTask(t *testing.T) {
	s := newStack(t)
	require.Equal(t, http.StatusOK, s.call(http.MethodPut, "/sandbox/connections/conn_task/script",
		map[string]any{"closeInTask": true, "syncingPolls": 1}, nil))

	s.breakConnection("conn_task", "profile_task")
	s.waitForStatus("conn_task", workflows.StatusAwaitingUser)
	s.repairConnection("conn_task")
	st := s.waitForStatus("conn_task", workflows.StatusRepaired)

	assert.Equal(t, []workflows.Status{workflows.StatusPending, workflows.StatusAwaitingUser,
		workflows.StatusCompleting, workflows.StatusVerifying, workflows.StatusRepaired}, stepStatuses(st))
	assert.Equal(t, 1, st.Attempt)
	id := workflows.WorkflowID(sandbox.Name, "conn_task")
	events := s.history(id, "")
	var accepted, closeMarker int64
	for _, ev := range events {
		switch ev.GetEventType() {
		case enums.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			assert.NotEqual(t, "FinishReconnect", ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName(),
				"no FinishReconnect activity")
		case enums.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
			if ev.GetWorkflowExecutionUpdateAcceptedEventAttributes().GetAcceptedRequest().GetInput().GetName() == workflows.UpdateComplete {
				accepted = ev.GetEventId()
			}
		case enums.EVENT_TYPE_MARKER_RECORDED:
			if localActivityType(ev) == "FinishReconnect" {
				closeMarker = ev.GetEventId()
			}
		}
	}
	require.NotZero(t, accepted, "the complete update")
	require.NotZero(t, closeMarker, "FinishReconnect's local attempt")
	assert.Equal(t, taskOf(events, accepted), taskOf(events, closeMarker),
		"the close's answer is written by the task that took the complete")
	s.waitClosed(id)
	s.recordHistory(id, "close-in-task")
}

// The task that closes in it answers a user who waits: an event it sends
// (here the failed attempt's, after a refused close) goes as an activity,
// not as a second local attempt holding that task open.
func TestCloseInTaskSendsItsEventsAsActivities(t *testing.T) {
	s := newStack(t)
	require.Equal(t, http.StatusOK, s.call(http.MethodPut, "/sandbox/connections/conn_task_refused/script",
		map[string]any{"closeInTask": true, "close": "reject"}, nil))
	s.breakConnection("conn_task_refused", "profile_task_refused")
	s.waitForStatus("conn_task_refused", workflows.StatusAwaitingUser)
	s.repairConnection("conn_task_refused")
	s.waitFor("the failed attempt", func() bool { return s.state("conn_task_refused").Attempt == 2 })
	s.waitFor("the app to hear of it", func() bool {
		return len(filter(s.app.typesFor("conn_task_refused"), activities.EventStatusChanged)) == 1
	})

	events := s.history(workflows.WorkflowID(sandbox.Name, "conn_task_refused"), "")
	var closeTask int64
	for _, ev := range events {
		if localActivityType(ev) == "FinishReconnect" {
			closeTask = taskOf(events, ev.GetEventId())
		}
	}
	require.NotZero(t, closeTask)
	var notifyActivity bool
	for _, ev := range events {
		if taskOf(events, ev.GetEventId()) != closeTask {
			continue
		}
		assert.NotEqual(t, "Notify", localActivityType(ev), "no second local attempt in the close's task")
		notifyActivity = notifyActivity || ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName() == "Notify"
	}
	assert.True(t, notifyActivity, "the failed attempt's event is an activity scheduled by the close's task")

	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_task_refused/cancel", nil, nil))
	s.waitClosed(workflows.WorkflowID(sandbox.Name, "conn_task_refused"))
	s.recordHistory(workflows.WorkflowID(sandbox.Name, "conn_task_refused"), "close-in-task-refused")
}

// A worker that dies while it closes in the task: the next worker repeats
// the attempt, which finds the close applied, and the user is not asked
// again.
func TestWorkerKilledMidCloseInTaskDoesNotAskTheUserAgain(t *testing.T) {
	s := newBareStack(t, nil)
	hang := &closeThenHang{Provider: s.sandbox, blocked: make(chan struct{})}
	first := s.startWorker(hang)
	_, err := s.sandbox.SetScript("conn_task_crash", sandbox.Script{CloseInTask: true, SuppressWebhooks: true})
	require.NoError(t, err)

	s.breakConnection("conn_task_crash", "profile_task_crash")
	s.waitForStatus("conn_task_crash", workflows.StatusAwaitingUser)
	done := s.userSignsIn("conn_task_crash")
	go func() {
		// Its answer waits for the task the worker never finishes; the
		// server hands the update to the next worker's attempt of it.
		_, _ = s.api.CompleteWithResponse(context.Background(), sandbox.Name, "conn_task_crash", nil, done)
	}()
	select {
	case <-hang.blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("close never reached the provider")
	}
	first.Stop() // mid-close, inside the workflow task: nothing of it is recorded
	s.startWorker(s.sandbox)

	var st workflows.RepairState
	s.waitFor("the repair to settle", func() bool {
		var out struct{ Repair workflows.RepairState }
		s.call(http.MethodGet, "/v1/repairs/sandbox/conn_task_crash", nil, &out)
		st = out.Repair
		return st.Status.Terminal() || st.Attempt > 1
	})
	assert.Equal(t, workflows.StatusRepaired, st.Status)
	assert.Equal(t, 1, st.Attempt, "the reconnect that worked is not a failed attempt")
	s.waitFor("the app to hear the outcome", func() bool {
		types := s.app.typesFor("conn_task_crash")
		return len(types) > 0 && types[len(types)-1] == activities.EventRepaired
	})
	assert.Len(t, filter(s.app.typesFor("conn_task_crash"), activities.EventActionRequired), 1, "the user is asked once")
	// What happened: the task that ran the close timed out, and the next
	// worker's attempt of it closed again, harmlessly; no activity ran.
	var timedOut bool
	for _, ev := range s.history(workflows.WorkflowID(sandbox.Name, "conn_task_crash"), "") {
		timedOut = timedOut || ev.GetEventType() == enums.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT
		assert.NotEqual(t, "FinishReconnect", ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName())
	}
	assert.True(t, timedOut, "the dead worker's task timed out")
	conn, err := s.sandbox.Get("conn_task_crash")
	require.NoError(t, err)
	assert.Equal(t, 2, conn.Calls["close"], "the close was repeated")
	s.waitClosed(workflows.WorkflowID(sandbox.Name, "conn_task_crash"))
	s.recordHistory(workflows.WorkflowID(sandbox.Name, "conn_task_crash"), "close-in-task-after-crash")
}

// localActivityType names the local activity a marker records ("" for
// other markers).
func localActivityType(ev *history.HistoryEvent) string {
	attrs := ev.GetMarkerRecordedEventAttributes()
	if attrs.GetMarkerName() != "LocalActivity" {
		return ""
	}
	var data struct {
		ActivityType string
	}
	if p := attrs.GetDetails()["data"].GetPayloads(); len(p) > 0 {
		_ = json.Unmarshal(p[0].GetData(), &data)
	}
	return data.ActivityType
}

// taskOf is the workflow task whose completion wrote event id: the last
// WorkflowTaskCompleted at or before it.
func taskOf(events []*history.HistoryEvent, id int64) int64 {
	var task int64
	for _, ev := range events {
		if ev.GetEventId() > id {
			break
		}
		if ev.GetEventType() == enums.EVENT_TYPE_WORKFLOW_TASK_COMPLETED {
			task = ev.GetEventId()
		}
	}
	return task
}
