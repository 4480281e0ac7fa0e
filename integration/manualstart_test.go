package integration

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/workflows"
)

// startAnswer is POST /v1/repairs' 202.
type startAnswer struct {
	Repair  struct{ ID, RunID string }
	Outcome string
	Options *struct {
		RepairWindow string
		MaxAttempts  int
	}
}

type errorAnswer struct {
	Error struct{ Code, Message string }
}

// A manual start's repairWindow and maxAttempts are bounded, applied when
// it starts a repair (the answer says what was applied), and never
// silently dropped: joining an open repair with them is refused, and the
// open repair stays as it is.
func TestManualStartOptionsAreBoundedAndNeverIgnored(t *testing.T) {
	s := newStack(t)

	// Past the bounds: 400, and nothing starts.
	for _, body := range []map[string]any{
		{"provider": "sandbox", "connectionId": "conn_bounds", "repairWindow": "2161h"},
		{"provider": "sandbox", "connectionId": "conn_bounds", "repairWindow": "2160h1s"},
		{"provider": "sandbox", "connectionId": "conn_bounds", "maxAttempts": 21},
	} {
		var e errorAnswer
		assert.Equal(t, http.StatusBadRequest, s.call(http.MethodPost, "/v1/repairs", body, &e), body)
		assert.Equal(t, "bad_request", e.Error.Code)
		assert.Contains(t, e.Error.Message, "at most", body)
	}
	assert.Equal(t, http.StatusNotFound, s.call(http.MethodGet, "/v1/repairs/sandbox/conn_bounds", nil, nil), "nothing started")

	// At the bounds: started, with what was applied.
	s.breakQuietly("conn_opts")
	var started startAnswer
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs",
		map[string]any{"provider": "sandbox", "connectionId": "conn_opts", "repairWindow": "2160h", "maxAttempts": 20}, &started))
	assert.Equal(t, "repair:sandbox:conn_opts", started.Repair.ID)
	assert.NotEmpty(t, started.Repair.RunID)
	assert.Equal(t, "started", started.Outcome)
	require.NotNil(t, started.Options)
	assert.Equal(t, "2160h0m0s", started.Options.RepairWindow)
	assert.Equal(t, 20, started.Options.MaxAttempts)
	st := s.waitForStatus("conn_opts", workflows.StatusAwaitingUser)
	assert.Equal(t, 20, st.MaxAttempts)
	assert.WithinDuration(t, st.StartedAt.Add(2160*time.Hour), st.ExpiresAt, time.Minute)

	// Joining it with options: 409, nothing recorded, the repair unchanged.
	id := workflows.WorkflowID(sandbox.Name, "conn_opts")
	s.waitForIdle(id)
	before := len(s.history(id, ""))
	for _, body := range []map[string]any{
		{"provider": "sandbox", "connectionId": "conn_opts", "maxAttempts": 3},
		{"provider": "sandbox", "connectionId": "conn_opts", "repairWindow": "1h"},
		{"provider": "sandbox", "connectionId": "conn_opts", "repairWindow": "2160h", "maxAttempts": 20},
	} {
		var e errorAnswer
		assert.Equal(t, http.StatusConflict, s.call(http.MethodPost, "/v1/repairs", body, &e), body)
		assert.Equal(t, "conflict", e.Error.Code)
		assert.Contains(t, e.Error.Message, "already open")
	}
	after := s.state("conn_opts")
	assert.Equal(t, 20, after.MaxAttempts)
	assert.Equal(t, st.ExpiresAt, after.ExpiresAt)
	assert.Equal(t, before, len(s.history(id, "")), "nothing recorded")

	// Joining it without options: 202, joined, the open run.
	var joined startAnswer
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs",
		map[string]any{"provider": "sandbox", "connectionId": "conn_opts", "reason": "ticket 9"}, &joined))
	assert.Equal(t, "joined", joined.Outcome)
	assert.Equal(t, started.Repair, joined.Repair)
	assert.Nil(t, joined.Options, "a join applies no options")
	assert.Equal(t, before, len(s.history(id, "")), "nothing recorded")

	// Started without options: the defaults, as applied.
	s.breakQuietly("conn_defaults")
	var defaults startAnswer
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs",
		map[string]any{"provider": "sandbox", "connectionId": "conn_defaults"}, &defaults))
	assert.Equal(t, "started", defaults.Outcome)
	require.NotNil(t, defaults.Options)
	assert.Equal(t, "168h0m0s", defaults.Options.RepairWindow)
	assert.Equal(t, 5, defaults.Options.MaxAttempts)
}

// A manual start while the last run has ended but is still delivering its
// outcome is queued for the next run: 202, outcome queued.
func TestAManualStartOnAClosingRepairIsQueued(t *testing.T) {
	s := newStackWith(t, map[string]string{"RELINK_NOTIFY_TIMEOUT": "10s"})
	s.app.setDown(true) // the canceled event waits: the run stays open
	s.breakConnection("conn_closing", "profile_closing")
	s.waitForStatus("conn_closing", workflows.StatusAwaitingUser)
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_closing/cancel", nil, nil))
	s.waitForStatus("conn_closing", workflows.StatusCanceled)
	id := workflows.WorkflowID(sandbox.Name, "conn_closing")
	desc, err := s.temporal.DescribeWorkflowExecution(context.Background(), id, "")
	require.NoError(t, err)
	require.Nil(t, desc.GetWorkflowExecutionInfo().GetCloseTime(), "the ended run is still delivering")

	// Options asked for are the next run's, and the answer says so.
	var queued startAnswer
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs",
		map[string]any{"provider": "sandbox", "connectionId": "conn_closing", "reason": "ticket 10", "maxAttempts": 9}, &queued))
	assert.Equal(t, "queued", queued.Outcome)
	require.NotNil(t, queued.Options)
	assert.Equal(t, 9, queued.Options.MaxAttempts)
	s.app.setDown(false)
	var st workflows.RepairState
	s.waitFor("the queued break's run", func() bool {
		st = s.state("conn_closing")
		return st.Status == workflows.StatusAwaitingUser && st.TriggerReason == "manual: ticket 10"
	})
	assert.Equal(t, 9, st.MaxAttempts, "the next run starts with the options answered")
}
