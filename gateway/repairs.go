package gateway

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/relink-dev/relink/workflows"
)

var (
	providerPattern = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)
	// Connection and profile ids are the providers'; anything printable
	// without quotes (they end up in visibility queries) is accepted.
	idPattern = regexp.MustCompile(`^[^\x00-\x1f\x7f'"\\]{1,256}$`)
)

// startOptions start a repair or join the open one: one open repair per
// connection, and a new run under the same id once the last one closed.
func (g *Gateway) startOptions(in workflows.RepairInput) client.StartWorkflowOptions {
	summary := fmt.Sprintf("Repair %s connection %s", in.Provider, in.ConnectionID)
	if in.ProfileID != "" {
		summary += " for profile " + in.ProfileID
	}
	if in.Institution != "" {
		summary += " at " + in.Institution
	}
	return client.StartWorkflowOptions{
		ID:                       workflows.WorkflowID(in.Provider, in.ConnectionID),
		TaskQueue:                g.TaskQueue,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		TypedSearchAttributes:    workflows.InitialSearchAttributes(in),
		StaticSummary:            summary,
	}
}

// signalWithStart delivers ev to the connection's open repair, starting one
// with in if there is none.
func (g *Gateway) signalWithStart(ctx context.Context, in workflows.RepairInput, ev workflows.ProviderEvent) (client.WorkflowRun, error) {
	opts := g.startOptions(in)
	return g.Temporal.SignalWithStartWorkflow(ctx, opts.ID, workflows.SignalProviderEvent, ev, opts, workflows.WorkflowName, in)
}

type startRequest struct {
	Provider     string `json:"provider"`
	ConnectionID string `json:"connectionId"`
	ProfileID    string `json:"profileId,omitempty"`
	Institution  string `json:"institution,omitempty"`
	Connector    string `json:"connector,omitempty"`
	Reason       string `json:"reason,omitempty"`
	// RepairWindow overrides RELINK_REPAIR_WINDOW, as a Go duration ("72h").
	RepairWindow string `json:"repairWindow,omitempty"`
	MaxAttempts  int    `json:"maxAttempts,omitempty"`
}

type repairRef struct {
	ID    string `json:"id"`
	RunID string `json:"runId"`
}

// startRepair starts a repair by hand (or joins the open one).
func (g *Gateway) startRepair(w http.ResponseWriter, r *http.Request) {
	var req startRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if !g.validConnection(w, req.Provider, req.ConnectionID) {
		return
	}
	if req.ProfileID != "" && !idPattern.MatchString(req.ProfileID) {
		writeError(w, http.StatusBadRequest, codeBadRequest, "profileId has characters that are not allowed")
		return
	}
	opts := g.Defaults
	if req.RepairWindow != "" {
		d, err := time.ParseDuration(req.RepairWindow)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, codeBadRequest, "repairWindow must be a positive duration such as 72h")
			return
		}
		opts.RepairWindow = d
	}
	if req.MaxAttempts < 0 {
		writeError(w, http.StatusBadRequest, codeBadRequest, "maxAttempts must not be negative")
		return
	}
	if req.MaxAttempts > 0 {
		opts.MaxAttempts = req.MaxAttempts
	}
	reason := "manual"
	if req.Reason != "" {
		reason = "manual: " + req.Reason
	}
	in := workflows.RepairInput{
		Provider:      req.Provider,
		ConnectionID:  req.ConnectionID,
		ProfileID:     req.ProfileID,
		Institution:   req.Institution,
		Connector:     req.Connector,
		TriggerReason: reason,
		Options:       opts,
	}
	// Signal-with-start: a running repair is joined, and one that has ended
	// but is still delivering its last events starts the next run when it
	// closes, so a manual start is never lost.
	start := g.startOptions(in)
	run, err := g.Temporal.SignalWithStartWorkflow(r.Context(), start.ID, workflows.SignalRepairRequested,
		workflows.RepairRequest{Reason: reason, At: time.Now().UTC()}, start, workflows.WorkflowName, in)
	if err != nil {
		g.temporalError(w, r, err, req.Provider, req.ConnectionID)
		return
	}
	g.Logger.Info("repair started or joined by API", "provider", req.Provider, "connectionId", req.ConnectionID, "runId", run.GetRunID())
	writeJSON(w, http.StatusAccepted, map[string]repairRef{"repair": {ID: run.GetID(), RunID: run.GetRunID()}})
}

// validConnection checks a provider and connection id, writing the error.
func (g *Gateway) validConnection(w http.ResponseWriter, provider, connectionID string) bool {
	if !providerPattern.MatchString(provider) {
		writeError(w, http.StatusBadRequest, codeBadRequest, "provider must be a provider name such as sandbox or quiltt")
		return false
	}
	if _, ok := g.Receivers[provider]; !ok {
		writeError(w, http.StatusBadRequest, codeUnknownProvider, "provider "+provider+" is not enabled")
		return false
	}
	if !idPattern.MatchString(connectionID) {
		writeError(w, http.StatusBadRequest, codeBadRequest, "connectionId is required (at most 256 printable characters, no quotes)")
		return false
	}
	return true
}

type repairView struct {
	ID string `json:"id"`
	workflows.RepairState
}

// getRepair returns the repair's state (the latest run's, open or closed).
func (g *Gateway) getRepair(w http.ResponseWriter, r *http.Request) {
	provider, conn := r.PathValue("provider"), r.PathValue("connectionId")
	if !g.validConnection(w, provider, conn) {
		return
	}
	id := workflows.WorkflowID(provider, conn)
	v, err := g.Temporal.QueryWorkflow(r.Context(), id, "", workflows.QueryState)
	if err != nil {
		g.temporalError(w, r, err, provider, conn)
		return
	}
	var st workflows.RepairState
	if err := v.Get(&st); err != nil {
		g.temporalError(w, r, err, provider, conn)
		return
	}
	writeJSON(w, http.StatusOK, map[string]repairView{"repair": {ID: id, RepairState: st}})
}

// reconnect runs the reconnect update and returns the widget session.
func (g *Gateway) reconnect(w http.ResponseWriter, r *http.Request) {
	provider, conn := r.PathValue("provider"), r.PathValue("connectionId")
	if !g.validConnection(w, provider, conn) {
		return
	}
	var req workflows.ReconnectRequest
	if !decodeBody(w, r, &req) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 90*time.Second)
	defer cancel()
	id := workflows.WorkflowID(provider, conn)
	h, err := g.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   id,
		UpdateName:   workflows.UpdateReconnect,
		Args:         []any{req},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	var res workflows.ReconnectResult
	if err == nil {
		err = h.Get(ctx, &res)
	}
	if err != nil {
		g.temporalError(w, r, err, provider, conn)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// complete, exit and cancel signal an open repair.
func (g *Gateway) complete(w http.ResponseWriter, r *http.Request) {
	var req workflows.ReconnectCompleted
	signalRepair(g, w, r, workflows.SignalReconnectCompleted, &req, func() string { return "" })
}

func (g *Gateway) exit(w http.ResponseWriter, r *http.Request) {
	var req workflows.ReconnectExited
	signalRepair(g, w, r, workflows.SignalReconnectExited, &req, func() string {
		if req.At.IsZero() {
			req.At = time.Now().UTC()
		}
		return ""
	})
}

func (g *Gateway) cancel(w http.ResponseWriter, r *http.Request) {
	var req workflows.CancelRequest
	signalRepair(g, w, r, workflows.SignalCancel, &req, func() string { return "" })
}

// signalRepair decodes the body into payload, checks it with validate
// (which returns a message for 400), makes sure the repair is open (404,
// 409) and sends the signal (202).
func signalRepair[T any](g *Gateway, w http.ResponseWriter, r *http.Request, signal string, payload *T, validate func() string) {
	provider, conn := r.PathValue("provider"), r.PathValue("connectionId")
	if !g.validConnection(w, provider, conn) || !decodeBody(w, r, payload) {
		return
	}
	if msg := validate(); msg != "" {
		writeError(w, http.StatusBadRequest, codeBadRequest, msg)
		return
	}
	id := workflows.WorkflowID(provider, conn)
	info, err := g.describe(r.Context(), id)
	if err != nil {
		g.temporalError(w, r, err, provider, conn)
		return
	}
	if !info.Running || info.Status.Terminal() {
		writeError(w, http.StatusConflict, codeConflict, fmt.Sprintf("the repair is %s", info.Status))
		return
	}
	if err := g.Temporal.SignalWorkflow(r.Context(), id, "", signal, payload); err != nil {
		g.temporalError(w, r, err, provider, conn)
		return
	}
	g.Logger.Info("repair signalled", "signal", signal, "provider", provider, "connectionId", conn)
	writeJSON(w, http.StatusAccepted, map[string]any{"repair": map[string]string{"id": id}, "accepted": signal})
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
	Running      bool             `json:"running"`
	StartedAt    time.Time        `json:"startedAt"`
	ClosedAt     time.Time        `json:"closedAt,omitzero"`
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
	return s
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
	q := r.URL.Query()
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
			if !idPattern.MatchString(v) {
				writeError(w, http.StatusBadRequest, codeBadRequest, param+" has characters that are not allowed")
				return
			}
			clauses = append(clauses, fmt.Sprintf("%s = '%s'", attr, v))
		}
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
	token, err := base64.RawURLEncoding.DecodeString(q.Get("pageToken"))
	if err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, "pageToken is not one this API returned")
		return
	}
	resp, err := g.Temporal.ListWorkflow(r.Context(), &workflowservice.ListWorkflowExecutionsRequest{
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
	}{Repairs: []repairSummary{}, NextPageToken: base64.RawURLEncoding.EncodeToString(resp.GetNextPageToken())}
	for _, info := range resp.GetExecutions() {
		out.Repairs = append(out.Repairs, summarize(info))
	}
	writeJSON(w, http.StatusOK, out)
}

// temporalError maps a Temporal error onto the API's error responses.
func (g *Gateway) temporalError(w http.ResponseWriter, r *http.Request, err error, provider, conn string) {
	var (
		notFound   *serviceerror.NotFound
		appErr     *temporal.ApplicationError
		canceled   *temporal.CanceledError
		timeout    *client.WorkflowUpdateServiceTimeoutOrCanceledError
		deadline   *serviceerror.DeadlineExceeded
		down       *serviceerror.Unavailable
		overloaded *serviceerror.ResourceExhausted
	)
	switch {
	case errors.As(err, &canceled):
		// An update that was waiting when the repair ended.
		writeError(w, http.StatusConflict, codeConflict, "the repair was canceled")
	case errors.As(err, &timeout) || errors.As(err, &deadline) || errors.As(err, &down) || errors.As(err, &overloaded):
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "Temporal did not answer in time; retry")
	case errors.As(err, &appErr) && appErr.Type() == workflows.ErrTypeRepairClosed:
		writeError(w, http.StatusConflict, codeConflict, appErr.Message())
	case errors.As(err, &appErr) && appErr.Type() == workflows.ErrTypeProviderUnavailable:
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, appErr.Message())
	case errors.As(err, &notFound):
		// An update or signal to a closed run is "not found" too: tell a
		// closed repair (409) from none at all (404).
		if provider != "" {
			if info, derr := g.describe(r.Context(), workflows.WorkflowID(provider, conn)); derr == nil {
				writeError(w, http.StatusConflict, codeConflict, fmt.Sprintf("the repair is %s", info.Status))
				return
			}
		}
		writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("no repair for %s connection %s", provider, conn))
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "Temporal did not answer in time; retry")
	default:
		g.Logger.Error("temporal call failed", "provider", provider, "connectionId", conn, "path", r.URL.Path, "error", err)
		writeError(w, http.StatusInternalServerError, codeInternal, "internal error; see the gateway log")
	}
}
