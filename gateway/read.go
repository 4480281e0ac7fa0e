package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	failurepb "go.temporal.io/api/failure/v1"

	"go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/relink-dev/relink/codec"
	"github.com/relink-dev/relink/workflows"
)

type repairView struct {
	ID string `json:"id"`
	workflows.RepairState
	// Source says where the state comes from: "workflow" (a live query),
	// "result" (the closed repair's final state, read from its history),
	// or "visibility" (no worker answered: only what Temporal's visibility
	// store knows; steps and reasons are missing).
	Source string `json:"source"`
}

// Time budgets of the calls a browser waits on.
const (
	// queryTimeout bounds a query; without a worker it would wait for one.
	queryTimeout = 3 * time.Second
	// interactiveBudget bounds reconnect, complete and exit, so a frontend
	// hears "retry" within five seconds whatever Temporal or the provider
	// are doing.
	interactiveBudget = 4500 * time.Millisecond
	// movingRetryPause separates sends to a run handing over to its
	// continuation.
	movingRetryPause = 100 * time.Millisecond
)

// getRepair returns the repair's state (the latest run's, open or closed).
// It needs no worker: a closed repair's state is its result, and a running
// one that no worker answers for falls back to visibility.
func (g *Gateway) getRepair(w http.ResponseWriter, r *http.Request) {
	provider, conn := r.PathValue("provider"), r.PathValue("connectionId")
	if !g.validConnection(w, provider, conn) {
		return
	}
	view, err := g.readRepair(r.Context(), provider, conn)
	if err != nil {
		g.temporalError(w, r, err, provider, conn)
		return
	}
	if !principalOf(r).app {
		view.RepairState = pageState(view.RepairState)
	}
	writeJSON(w, http.StatusOK, map[string]repairView{"repair": view})
}

// readRepair reads a connection's latest repair: from the running
// workflow, else from the closed run's result, else from visibility.
func (g *Gateway) readRepair(ctx context.Context, provider, conn string) (repairView, error) {
	id := workflows.WorkflowID(provider, conn)
	desc, err := g.Temporal.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return repairView{}, err
	}
	info := desc.GetWorkflowExecutionInfo()
	summary := summarize(info)
	view := repairView{ID: id}
	if summary.Running {
		view.RepairState, view.Source = g.queryState(ctx, id)
	} else if st, ok, err := g.intake().LastResult(ctx, id, summary.RunID); err == nil && ok {
		view.RepairState, view.Source = st, "result"
	} else {
		view.Source = "visibility"
	}
	if view.Source == "visibility" {
		view.RepairState = summary.state()
	}
	if view.Status == workflows.StatusPending && view.LastError == "" {
		view.LastError = g.pendingFailure(desc)
	}
	return view, nil
}

// pageState is what a page holding a client token sees of its repair:
// status, reason codes, attempts, times, the session's expiry and its own
// last exit. Reasons, notes and errors can quote a provider's answer, and counters
// and event ids are the app's business, so they are left out: a list of
// what is shown, not of what is hidden, so a field added to RepairState
// stays the app's until it is added here.
func pageState(st workflows.RepairState) workflows.RepairState {
	steps := make([]workflows.Step, len(st.Steps))
	for i, step := range st.Steps {
		steps[i] = workflows.Step{Status: step.Status, At: step.At, Code: step.Code}
	}
	return workflows.RepairState{
		Provider:         st.Provider,
		ConnectionID:     st.ConnectionID,
		Institution:      st.Institution,
		Proactive:        st.Proactive,
		Status:           st.Status,
		ReasonCode:       st.ReasonCode,
		Attempt:          st.Attempt,
		MaxAttempts:      st.MaxAttempts,
		StartedAt:        st.StartedAt,
		UpdatedAt:        st.UpdatedAt,
		ExpiresAt:        st.ExpiresAt,
		ClosedAt:         st.ClosedAt,
		Steps:            steps,
		ConnectorStatus:  st.ConnectorStatus,
		SessionExpiresAt: st.SessionExpiresAt,
		LastExit:         st.LastExit,
		VerifyUntil:      st.VerifyUntil,
	}
}

// pageUnavailable replaces a provider's error for a page.
const pageUnavailable = "the provider is not answering yet; retry shortly"

// queryState asks the workflow for its state.
func (g *Gateway) queryState(ctx context.Context, id string) (workflows.RepairState, string) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	var st workflows.RepairState
	v, err := g.Temporal.QueryWorkflow(ctx, id, "", workflows.QueryState)
	if err == nil {
		err = v.Get(&st)
	}
	if err != nil {
		g.logger(ctx).Warn("state query failed; answering from visibility", "workflowId", id, "error", err)
		return st, "visibility"
	}
	return st, "workflow"
}

// pendingFailure is the last failure of a provider call still being
// retried, which the workflow itself only learns when the call gives up.
func (g *Gateway) pendingFailure(desc *workflowservice.DescribeWorkflowExecutionResponse) string {
	id := desc.GetWorkflowExecutionInfo().GetExecution().GetWorkflowId()
	for _, act := range desc.GetPendingActivities() {
		if msg := g.failureMessage(id, act.GetLastFailure()); msg != "" {
			return fmt.Sprintf("%s (attempt %d): %s", act.GetActivityType().GetName(), act.GetAttempt(), msg)
		}
	}
	return ""
}

// failureMessage reads a failure of workflow id's activity; with payload
// encryption on, the message is in the failure's encrypted attributes.
func (g *Gateway) failureMessage(id string, f *failurepb.Failure) string {
	if enc := f.GetEncodedAttributes(); enc != nil && g.Codec != nil {
		var attrs struct {
			Message string `json:"message"`
		}
		dc := converter.WithDataConverterSerializationContext(codec.DataConverter(g.Codec),
			converter.ActivitySerializationContext{Namespace: g.Namespace, WorkflowID: id})
		if err := dc.FromPayload(enc, &attrs); err == nil {
			return attrs.Message
		}
	}
	return f.GetMessage()
}

// repairSummary is a repair as visibility lists it.
type repairSummary struct {
	ID           string           `json:"id"`
	RunID        string           `json:"runId"`
	Provider     string           `json:"provider"`
	ConnectionID string           `json:"connectionId"`
	ProfileID    string           `json:"profileId,omitempty"`
	Status       workflows.Status `json:"status"`
	Attempts     int64            `json:"attempts"`
	// ReasonCode and UpdatedAt: why and when the status last changed.
	ReasonCode workflows.ReasonCode `json:"reasonCode,omitempty"`
	UpdatedAt  time.Time            `json:"updatedAt,omitzero"`
	// LastEventID is the webhook-id of the event that told the app of
	// this status: an app catching up compares it with the last it took.
	LastEventID string    `json:"lastEventId,omitempty"`
	Running     bool      `json:"running"`
	StartedAt   time.Time `json:"startedAt"`
	ClosedAt    time.Time `json:"closedAt,omitzero"`
}

func summarize(info *workflow.WorkflowExecutionInfo) repairSummary {
	s := repairSummary{
		ID:        info.GetExecution().GetWorkflowId(),
		RunID:     info.GetExecution().GetRunId(),
		Running:   info.GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING,
		StartedAt: info.GetStartTime().AsTime(),
	}
	if info.GetCloseTime() != nil {
		s.ClosedAt = info.GetCloseTime().AsTime()
	}
	fields := info.GetSearchAttributes().GetIndexedFields()
	var status string
	decodeAttr(fields, workflows.SearchAttrStatus.GetName(), &status)
	s.Status = workflows.Status(status)
	decodeAttr(fields, workflows.SearchAttrProvider.GetName(), &s.Provider)
	decodeAttr(fields, workflows.SearchAttrConnectionID.GetName(), &s.ConnectionID)
	decodeAttr(fields, workflows.SearchAttrProfileID.GetName(), &s.ProfileID)
	decodeAttr(fields, workflows.SearchAttrAttempts.GetName(), &s.Attempts)
	decodeAttr(fields, workflows.SearchAttrReasonCode.GetName(), &s.ReasonCode)
	decodeAttr(fields, workflows.SearchAttrUpdatedAt.GetName(), &s.UpdatedAt)
	decodeAttr(fields, workflows.SearchAttrLastEventID.GetName(), &s.LastEventID)
	return s
}

// state is what visibility knows of a repair, for when no worker answers.
func (s repairSummary) state() workflows.RepairState {
	return workflows.RepairState{
		Provider:     s.Provider,
		ConnectionID: s.ConnectionID,
		ProfileID:    s.ProfileID,
		Status:       s.Status,
		Attempt:      int(s.Attempts),
		StartedAt:    s.StartedAt,
		ClosedAt:     s.ClosedAt,
		RepairRunID:  s.RunID,
	}
}

func decodeAttr(fields map[string]*common.Payload, name string, v any) {
	if p, ok := fields[name]; ok {
		_ = converter.GetDefaultDataConverter().FromPayload(p, v)
	}
}

// describe reads a repair's latest run without a worker.
func (g *Gateway) describe(ctx context.Context, id string) (repairSummary, error) {
	resp, err := g.Temporal.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return repairSummary{}, err
	}
	return summarize(resp.GetWorkflowExecutionInfo()), nil
}

// listRepairs lists repairs through Temporal visibility, newest first.
// Filters: status, provider, profileId, connectionId; paging: pageSize,
// pageToken.
func (g *Gateway) listRepairs(w http.ResponseWriter, r *http.Request) {
	q, ok := singleQuery(w, r, "status", "provider", "profileId", "connectionId", "changedSince", "pageSize", "pageToken")
	if !ok {
		return
	}
	clauses := []string{fmt.Sprintf("WorkflowType = '%s'", workflows.WorkflowName)}
	if s := q.Get("status"); s != "" {
		if !workflows.Status(s).Valid() {
			writeError(w, http.StatusBadRequest, codeBadRequest, fmt.Sprintf("status must be one of %v", workflows.Statuses))
			return
		}
		clauses = append(clauses, fmt.Sprintf("%s = '%s'", workflows.SearchAttrStatus.GetName(), s))
	}
	for _, f := range []struct{ param, attr string }{
		{"provider", workflows.SearchAttrProvider.GetName()},
		{"profileId", workflows.SearchAttrProfileID.GetName()},
		{"connectionId", workflows.SearchAttrConnectionID.GetName()},
	} {
		param, attr := f.param, f.attr
		if v := q.Get(param); v != "" {
			if !validID(v) {
				writeError(w, http.StatusBadRequest, codeBadRequest, param+" has characters that are not allowed")
				return
			}
			// As a provider in a path or a body: one not enabled has no
			// repairs here to list, which the caller should hear.
			if param == "provider" && g.Receivers[v] == nil {
				writeError(w, http.StatusBadRequest, codeUnknownProvider, "provider "+v+" is not enabled")
				return
			}
			clauses = append(clauses, fmt.Sprintf("%s = '%s'", attr, v))
		}
	}
	if v := q.Get("changedSince"); v != "" {
		since, err := time.Parse(time.RFC3339, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, codeBadRequest, "changedSince must be an RFC 3339 time such as 2026-12-01T00:00:00Z")
			return
		}
		// Each repair once: its latest run (a run that continued as new
		// handed its status on).
		clauses = append(clauses, fmt.Sprintf("%s >= '%s' AND ExecutionStatus != 'ContinuedAsNew'",
			workflows.SearchAttrUpdatedAt.GetName(), since.UTC().Format(time.RFC3339Nano)))
	}
	pageSize := 50
	if v := q.Get("pageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, codeBadRequest, "pageSize must be between 1 and 1000")
			return
		}
		pageSize = n
	}
	token, ok := openPageToken(q.Get("pageToken"))
	if !ok {
		writeError(w, http.StatusBadRequest, codeBadRequest, "pageToken is not one this API returned")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	resp, err := g.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query:         strings.Join(clauses, " AND "),
		PageSize:      int32(pageSize),
		NextPageToken: token,
	})
	if err != nil {
		g.temporalError(w, r, err, "", "")
		return
	}
	out := struct {
		Repairs       []repairSummary `json:"repairs"`
		NextPageToken string          `json:"nextPageToken,omitempty"`
	}{Repairs: []repairSummary{}, NextPageToken: sealPageToken(resp.GetNextPageToken())}
	for _, info := range resp.GetExecutions() {
		out.Repairs = append(out.Repairs, summarize(info))
	}
	writeJSON(w, http.StatusOK, out)
}

// sealPageToken wraps Temporal's page token with a checksum, so a token
// this API did not hand out is refused with 400 before Temporal sees it.
func sealPageToken(token []byte) string {
	if len(token) == 0 {
		return ""
	}
	sum := sha256.Sum256(token)
	return base64.RawURLEncoding.EncodeToString(append(sum[:8], token...))
}

func openPageToken(s string) ([]byte, bool) {
	if s == "" {
		return nil, true
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) <= 8 {
		return nil, false
	}
	sum := sha256.Sum256(raw[8:])
	return raw[8:], bytes.Equal(sum[:8], raw[:8])
}
