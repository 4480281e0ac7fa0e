package workflows

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/sandbox"
)

// (That the task which closes locally sends its events as activities
// needs the server's history length, which this harness does not keep:
// integration/close_in_task_test.go and the corpus's
// close-in-task-refused.json check it.)

// closeRecorder records how each FinishReconnect ran: as a local activity
// (inside a workflow task) or as an activity, and what it was asked.
type closeRecorder struct {
	mu       sync.Mutex
	local    []aggregator.CloseRequest
	activity []aggregator.CloseRequest
}

func recordCloses(h *harness) *closeRecorder {
	rec := &closeRecorder{}
	record := func(info *activity.Info, local bool, req aggregator.CloseRequest) {
		if info.ActivityType.Name != "FinishReconnect" {
			return
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if local {
			rec.local = append(rec.local, req)
		} else {
			rec.activity = append(rec.activity, req)
		}
	}
	h.env.SetOnLocalActivityStartedListener(func(info *activity.Info, _ context.Context, args []any) {
		req, _ := args[0].(aggregator.CloseRequest)
		record(info, true, req)
	})
	h.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, args converter.EncodedValues) {
		var req aggregator.CloseRequest
		if info.ActivityType.Name == "FinishReconnect" {
			require.NoError(h.t, args.Get(&req))
		}
		record(info, false, req)
	})
	return rec
}

// userOpensWidget breaks the connection, scripted so, and has the user
// open the widget a minute in: the setup of every test here.
func userOpensWidget(t *testing.T, script sandbox.Script) (*harness, *closeRecorder) {
	h := newHarness(t)
	closes := recordCloses(h)
	h.breakConnection()
	h.script(script)
	h.at(time.Minute, func() { h.reconnect(ReconnectRequest{}) })
	return h, closes
}

// A session whose close makes no call at the provider is closed in the
// task that takes the completion: no activity.
func TestCloseInTaskRunsInTheCompletionsTask(t *testing.T) {
	h, closes := userOpensWidget(t, sandbox.Script{CloseInTask: true, SyncingPolls: 1})
	h.at(2*time.Minute, func() { h.userCompletes() })
	var verifying RepairState
	h.at(3*time.Minute, func() { verifying = h.state() })
	h.at(4*time.Minute, func() { h.providerEvent("evt_synced", aggregator.EventKindSynced) })

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusVerifying, verifying.Status)
	assert.Equal(t, StatusRepaired, st.Status)
	assert.Equal(t, []Status{StatusPending, StatusAwaitingUser, StatusCompleting, StatusVerifying, StatusRepaired}, statuses(st))
	require.Len(t, closes.local, 1)
	assert.False(t, closes.local[0].Resumed)
	assert.Empty(t, closes.activity, "no activity for a close in the task")
	assert.Equal(t, 1, h.calls("close"))
}

// A close at the provider (the default, as Quiltt's) is never tried in a
// workflow task: only the retried activity keeps the record that makes a
// second close safe.
func TestCloseAtTheProviderRunsAsAnActivity(t *testing.T) {
	h, closes := userOpensWidget(t, sandbox.Script{})
	h.at(2*time.Minute, func() { h.userCompletes() })

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusRepaired, st.Status)
	assert.Empty(t, closes.local)
	require.Len(t, closes.activity, 1)
	assert.False(t, closes.activity[0].Resumed)
}

// The session the user finished in decides how it is closed: an older
// one whose close is a call at the provider is closed by the activity,
// even when the current session could be closed in the task.
func TestCloseInTaskIsTheCompletedSessions(t *testing.T) {
	h, closes := userOpensWidget(t, sandbox.Script{})
	var first string // the probe's session, still open in the widget
	h.at(2*time.Minute, func() {
		first = h.reconnect(ReconnectRequest{}).result.Session.ConnectorToken
		h.script(sandbox.Script{CloseInTask: true})
		h.reconnect(ReconnectRequest{ForceNewSession: true})
	})
	h.at(3*time.Minute, func() {
		login, err := h.sandbox.LoginInWidget(testConn, first)
		require.NoError(t, err)
		h.complete(ReconnectCompleted{ConnectorToken: login.ConnectorToken, PublicToken: login.PublicToken, Metadata: login.Metadata})
	})

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusRepaired, st.Status)
	assert.Equal(t, 2, st.SessionsIssued)
	assert.Empty(t, closes.local)
	require.Len(t, closes.activity, 1)
	assert.Equal(t, first, closes.activity[0].ConnectorToken)
}

// A failure that may pass falls through to the retried activity, as a
// first attempt: such a close is safe to repeat.
func TestCloseInTaskFallsBackToTheActivity(t *testing.T) {
	h, closes := userOpensWidget(t, sandbox.Script{CloseInTask: true})
	h.at(2*time.Minute, func() {
		h.script(sandbox.Script{FailCalls: 1}) // the close in the task gets a 503
		h.userCompletes()
	})

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusRepaired, st.Status)
	assert.Equal(t, 1, st.Attempt, "an outage is not the user's attempt")
	require.Len(t, closes.local, 1)
	require.Len(t, closes.activity, 1)
	assert.False(t, closes.activity[0].Resumed)
	assert.Equal(t, 2, h.calls("close"))
}

// A local attempt that outlives its 2 s (a slow status read) falls through
// to the activity too, and the reconnect that worked is not an attempt.
func TestCloseInTaskTimedOutFallsBackToTheActivity(t *testing.T) {
	h, closes := userOpensWidget(t, sandbox.Script{CloseInTask: true})
	h.env.SetTestTimeout(time.Minute) // two slow calls, in real time
	h.at(2*time.Minute, func() {
		h.script(sandbox.Script{LatencyMillis: int(localAttemptTimeout/time.Millisecond) + 100})
		h.userCompletes()
	})

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusRepaired, st.Status)
	assert.Equal(t, 1, st.Attempt)
	assert.Len(t, closes.local, 1)
	assert.Len(t, closes.activity, 1)
}

// A cancel that comes with the complete is applied before the close's
// answer, as it would be while the activity ran.
func TestCloseInTaskAppliesMessagesThatCameWithTheComplete(t *testing.T) {
	h, closes := userOpensWidget(t, sandbox.Script{CloseInTask: true})
	h.at(2*time.Minute, func() {
		h.userCompletes()
		h.send(CancelRequest{Reason: "the app deleted the connection"})
	})

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusCanceled, st.Status)
	assert.Len(t, closes.local, 1)
}

// The provider's refusal in the task is final, as the activity's is: the
// attempt fails and the user is asked again, with no activity.
func TestCloseInTaskRefusedCountsTheAttempt(t *testing.T) {
	h, closes := userOpensWidget(t, sandbox.Script{CloseInTask: true, Close: sandbox.CloseRejects})
	h.at(2*time.Minute, func() { h.userCompletes() })
	var again RepairState
	h.at(3*time.Minute, func() {
		again = h.state()
		h.script(sandbox.Script{CloseInTask: true}) // the second try works
		h.reconnect(ReconnectRequest{})
	})
	h.at(4*time.Minute, func() { h.userCompletes() })

	st := h.run(RepairOptions{})

	assert.Equal(t, StatusAwaitingUser, again.Status)
	assert.Equal(t, 2, again.Attempt)
	assert.Equal(t, StatusRepaired, st.Status)
	assert.Equal(t, 2, st.Attempt)
	assert.Len(t, closes.local, 2, "the second completion's close is tried in its task too")
	assert.Empty(t, closes.activity)
}
