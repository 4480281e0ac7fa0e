package integration

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/sandbox"
	relinkapi "github.com/relink-dev/relink/client"
	"github.com/relink-dev/relink/config"
	"github.com/relink-dev/relink/workflows"
)

func TestSignedWebhookToRepaired(t *testing.T) {
	// With requests to Temporal compressed, as they are by default.
	s := newStackWith(t, map[string]string{"RELINK_TEMPORAL_COMPRESSION": config.CompressionGzip})
	// Still syncing when Relink reads the status after close: the
	// provider's webhook confirms.
	require.Equal(t, http.StatusOK, s.call(http.MethodPut, "/sandbox/connections/conn_e2e/script", map[string]any{"syncingPolls": 1}, nil))

	s.breakConnection("conn_e2e", "profile_e2e")
	st := s.waitForStatus("conn_e2e", workflows.StatusAwaitingUser)
	assert.Equal(t, "connection.synced.errored.repairable", st.TriggerReason)
	assert.Equal(t, "profile_e2e", st.ProfileID)

	s.repairConnection("conn_e2e")
	st = s.waitForStatus("conn_e2e", workflows.StatusRepaired)

	assert.Equal(t, "confirmed by the provider's webhook", st.Reason)
	assert.Equal(t, []workflows.Status{workflows.StatusPending, workflows.StatusAwaitingUser,
		workflows.StatusCompleting, workflows.StatusVerifying, workflows.StatusRepaired}, stepStatuses(st))
	s.waitFor("the app to hear of the repair", func() bool {
		types := s.app.typesFor("conn_e2e")
		return len(types) > 0 && types[len(types)-1] == activities.EventRepaired
	})
	assert.Equal(t, []string{activities.EventActionRequired, activities.EventRepaired}, s.app.typesFor("conn_e2e"),
		"COMPLETING and VERIFYING are not sent")
	assert.Zero(t, s.app.bad, "every event carries a valid signature")

	// The repair is over: the frontend is told so.
	var errBody struct{ Error struct{ Code string } }
	assert.Equal(t, http.StatusConflict, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_e2e/reconnect", nil, &errBody))
	assert.Equal(t, "conflict", errBody.Error.Code)
	assert.Equal(t, http.StatusConflict, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_e2e/cancel", nil, nil))

	// The search attributes ended where the state did.
	var list listResponse
	s.waitFor("visibility to show REPAIRED", func() bool {
		s.call(http.MethodGet, "/v1/repairs?connectionId=conn_e2e", nil, &list)
		return len(list.Repairs) == 1 && list.Repairs[0].Status == workflows.StatusRepaired
	})
	assert.Equal(t, "profile_e2e", list.Repairs[0].ProfileID)
	assert.EqualValues(t, 1, list.Repairs[0].Attempts)
	s.recordHistory("repair:sandbox:conn_e2e", "repaired")
}

func TestDuplicateWebhooksStartOneWorkflow(t *testing.T) {
	s := newStack(t)

	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.breakConnection("conn_dup", "profile_dup")
		}()
	}
	wg.Wait()
	s.waitForStatus("conn_dup", workflows.StatusAwaitingUser)

	var list listResponse
	s.waitFor("visibility to list the repair", func() bool {
		s.call(http.MethodGet, "/v1/repairs?connectionId=conn_dup", nil, &list)
		return len(list.Repairs) > 0
	})
	assert.Len(t, list.Repairs, 1, "ten webhooks, one workflow")
	assert.True(t, list.Repairs[0].Running)
	assert.Equal(t, 1, s.state("conn_dup").SessionsIssued, "the user is asked once")

	// A provider redelivering the very same request: acknowledged, and
	// dropped by Temporal before it reaches the repair's history (the
	// signal's request id comes from the event id).
	body := []byte(`{"eventTypes":["connection.synced.errored.repairable"],"events":[{"id":"evt_redelivered","type":"connection.synced.errored.repairable","at":"2026-01-01T00:00:00Z","profile":{"id":"profile_dup"},"record":{"id":"conn_dup","status":"ERROR_REPAIRABLE"}}]}`)
	id := workflows.WorkflowID(sandbox.Name, "conn_dup")
	signals := func() int { return countEvents(s.history(id, ""), enums.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) }
	before := signals()
	first := s.postSandboxWebhook(body)
	second := s.postSandboxWebhook(body)
	assert.Equal(t, 1, first.Received)
	assert.Equal(t, 1, second.Received)
	s.waitFor("the event to be applied", func() bool { return slices.Contains(s.state("conn_dup").EventIDs, "evt_redelivered") })
	assert.Equal(t, before+1, signals(), "two deliveries, one signal")
	assert.Equal(t, 1, s.state("conn_dup").SessionsIssued)

	s.repairConnection("conn_dup")
	s.waitForStatus("conn_dup", workflows.StatusRepaired)
	assert.Len(t, filter(s.app.typesFor("conn_dup"), activities.EventActionRequired), 1)
}

func TestListByStatusThroughVisibility(t *testing.T) {
	s := newStack(t)
	for i := range 3 {
		s.breakConnection(fmt.Sprintf("conn_list_%d", i), "profile_list")
	}
	for i := range 3 {
		s.waitForStatus(fmt.Sprintf("conn_list_%d", i), workflows.StatusAwaitingUser)
	}
	s.repairConnection("conn_list_0")
	s.waitForStatus("conn_list_0", workflows.StatusRepaired)

	var awaiting, repaired listResponse
	s.waitFor("visibility to catch up", func() bool {
		s.call(http.MethodGet, "/v1/repairs?status=AWAITING_USER&provider=sandbox", nil, &awaiting)
		s.call(http.MethodGet, "/v1/repairs?status=REPAIRED&provider=sandbox", nil, &repaired)
		return len(awaiting.Repairs) == 2 && len(repaired.Repairs) == 1
	})
	assert.ElementsMatch(t, []string{"conn_list_1", "conn_list_2"},
		[]string{awaiting.Repairs[0].ConnectionID, awaiting.Repairs[1].ConnectionID})
	assert.Equal(t, "conn_list_0", repaired.Repairs[0].ConnectionID)

	var paged listResponse
	require.Equal(t, http.StatusOK, s.call(http.MethodGet, "/v1/repairs?profileId=profile_list&pageSize=2", nil, &paged))
	assert.Len(t, paged.Repairs, 2)
	assert.NotEmpty(t, paged.NextPageToken)
	var rest listResponse
	require.Equal(t, http.StatusOK, s.call(http.MethodGet, "/v1/repairs?profileId=profile_list&pageSize=2&pageToken="+paged.NextPageToken, nil, &rest))
	assert.Len(t, rest.Repairs, 1)
}

func TestManualStartCancelAndErrors(t *testing.T) {
	s := newStack(t)
	// A connection the provider has never heard of.
	var ref struct{ Repair struct{ ID, RunID string } }
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs",
		map[string]string{"provider": "sandbox", "connectionId": "conn_unknown", "reason": "ticket 42"}, &ref))
	assert.Equal(t, "repair:sandbox:conn_unknown", ref.Repair.ID)
	st := s.waitForStatus("conn_unknown", workflows.StatusUnrepairable)
	assert.Contains(t, st.Reason, "not found")
	assert.Equal(t, "manual: ticket 42", st.TriggerReason)
	// The Temporal UI's list shows it failed, not completed.
	assert.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_FAILED, s.waitClosed("repair:sandbox:conn_unknown"))
	// Its whole final state is still read from the closed run.
	res, err := s.api.GetRepairWithResponse(context.Background(), "sandbox", "conn_unknown", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode())
	assert.Equal(t, relinkapi.Result, res.JSON200.Repair.Source)
	assert.Equal(t, st.Reason, s.repairOf(res).Reason)
	s.recordHistory("repair:sandbox:conn_unknown", "unrepairable")

	s.breakConnection("conn_cancel", "p")
	s.waitForStatus("conn_cancel", workflows.StatusAwaitingUser)
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_cancel/cancel",
		map[string]string{"reason": "customer left", "requestedBy": "ops"}, nil))
	st = s.waitForStatus("conn_cancel", workflows.StatusCanceled)
	assert.Equal(t, "canceled by ops: customer left", st.Reason)
	assert.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_CANCELED, s.waitClosed("repair:sandbox:conn_cancel"))
	s.recordHistory("repair:sandbox:conn_cancel", "canceled")

	var errBody struct {
		Error struct{ Code, Message string }
	}
	assert.Equal(t, http.StatusNotFound, s.call(http.MethodGet, "/v1/repairs/sandbox/conn_never", nil, &errBody))
	assert.Equal(t, "not_found", errBody.Error.Code)
	assert.Equal(t, http.StatusNotFound, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_never/reconnect", nil, nil))
	assert.Equal(t, http.StatusNotFound, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_never/complete", map[string]string{"connectorToken": "sbx_ct_1"}, nil))
	assert.Equal(t, http.StatusBadRequest, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_never/complete", map[string]string{}, nil))
	assert.Equal(t, http.StatusBadRequest, s.call(http.MethodGet, "/v1/repairs?status=BROKEN", nil, &errBody))
	assert.Equal(t, "bad_request", errBody.Error.Code)
}

func TestNewBreakAfterRepairStartsANewRun(t *testing.T) {
	s := newStack(t)
	s.breakConnection("conn_again", "p")
	s.waitForStatus("conn_again", workflows.StatusAwaitingUser)
	s.repairConnection("conn_again")
	first := s.waitForStatus("conn_again", workflows.StatusRepaired)

	s.breakConnection("conn_again", "p")
	s.waitFor("a new repair", func() bool {
		st := s.state("conn_again")
		return st.Status == workflows.StatusAwaitingUser && st.StartedAt.After(first.StartedAt)
	})
	var list listResponse
	s.waitFor("two runs in visibility", func() bool {
		s.call(http.MethodGet, "/v1/repairs?connectionId=conn_again", nil, &list)
		return len(list.Repairs) == 2
	})
}

func TestHealthAndReadiness(t *testing.T) {
	s := newStack(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(s.gateway.URL + path)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
}

type listResponse struct {
	Repairs []struct {
		ConnectionID string
		ProfileID    string
		Status       workflows.Status
		Attempts     int64
		ReasonCode   workflows.ReasonCode
		UpdatedAt    time.Time
		LastEventID  string
		Running      bool
	}
	NextPageToken string
}

func stepStatuses(st workflows.RepairState) []workflows.Status {
	out := make([]workflows.Status, len(st.Steps))
	for i, step := range st.Steps {
		out[i] = step.Status
	}
	return out
}

func filter(list []string, keep string) []string {
	var out []string
	for _, v := range list {
		if v == keep {
			out = append(out, v)
		}
	}
	return out
}

// An app that was down longer than events are retried catches up with
// GET /v1/repairs?changedSince=: every repair whose status changed since
// then, each once, with its status, reason code and the id of the event
// that announced it.
func TestChangedSinceListsWhatChanged(t *testing.T) {
	s := newStack(t)
	lastEvents := map[string]string{}
	changed := func(since time.Time) map[string]workflows.ReasonCode {
		var list listResponse
		require.Equal(t, http.StatusOK, s.call(http.MethodGet,
			"/v1/repairs?provider=sandbox&changedSince="+since.UTC().Format(time.RFC3339Nano), nil, &list))
		out := map[string]workflows.ReasonCode{}
		for _, r := range list.Repairs {
			_, twice := out[r.ConnectionID]
			assert.False(t, twice, "%s listed once", r.ConnectionID)
			out[r.ConnectionID] = r.ReasonCode
			lastEvents[r.ConnectionID] = r.LastEventID
			assert.False(t, r.UpdatedAt.Before(since), "%s changed at %s", r.ConnectionID, r.UpdatedAt)
		}
		return out
	}
	start := time.Now()
	s.breakConnection("conn_before", "profile_cs")
	s.waitForStatus("conn_before", workflows.StatusAwaitingUser)
	s.waitFor("visibility to list conn_before", func() bool {
		return changed(start)["conn_before"] == workflows.ReasonUserActionRequired
	})
	since := time.Now()
	s.breakConnection("conn_after", "profile_cs")
	s.waitForStatus("conn_after", workflows.StatusAwaitingUser)
	s.waitFor("visibility to list conn_after alone", func() bool {
		got := changed(since)
		_, before := got["conn_before"]
		return got["conn_after"] == workflows.ReasonUserActionRequired && !before
	})
	s.repairConnection("conn_before")
	s.waitForStatus("conn_before", workflows.StatusRepaired)
	s.waitFor("visibility to list conn_before's outcome", func() bool {
		return changed(since)["conn_before"] == workflows.ReasonConfirmedOnClose
	})
	s.waitFor("the outcome's event", func() bool { return s.app.lastEvent("conn_before").Type == activities.EventRepaired })
	assert.Equal(t, s.app.lastEvent("conn_before").ID, lastEvents["conn_before"], "the listing names the event that told the app")
	assert.Equal(t, s.app.lastEvent("conn_after").ID, lastEvents["conn_after"])

	var errBody struct{ Error struct{ Code string } }
	assert.Equal(t, http.StatusBadRequest, s.call(http.MethodGet, "/v1/repairs?changedSince=yesterday", nil, &errBody))
	assert.Equal(t, "bad_request", errBody.Error.Code)
}
