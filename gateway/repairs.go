package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/relink-dev/relink/codec"
	"github.com/relink-dev/relink/workflows"
)

var providerPattern = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// validID accepts a provider's connection or profile id: 1 to 256
// printable ASCII characters without spaces, quotes or backslashes (ids
// end up in workflow ids and visibility queries). Every provider Relink
// speaks to uses such ids; anything else gets 400 rather than a failure
// deeper in.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 256 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' || c == '\'' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
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

// Bounds of a manual start's options.
const (
	maxManualRepairWindow = 90 * 24 * time.Hour
	maxManualAttempts     = 20
)

// What a manual start did: started a repair, joined the open one
// (nothing recorded), or queued the break for the next run of a repair
// that has ended and is still closing.
const (
	startOutcomeStarted = "started"
	startOutcomeJoined  = "joined"
	startOutcomeQueued  = "queued"
)

// startAnswer is POST /v1/repairs' 202. Options are those the repair
// started with; a join or a queued break applies none.
type startAnswer struct {
	Repair  repairRef       `json:"repair"`
	Outcome string          `json:"outcome"`
	Options *appliedOptions `json:"options,omitempty"`
}

type appliedOptions struct {
	RepairWindow string `json:"repairWindow"`
	MaxAttempts  int    `json:"maxAttempts"`
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
	if req.ProfileID != "" && !validID(req.ProfileID) {
		writeError(w, http.StatusBadRequest, codeBadRequest, "profileId has characters that are not allowed")
		return
	}
	if len(req.Reason) > workflows.MaxExitFieldBytes || len(req.Institution) > workflows.MaxExitFieldBytes ||
		len(req.Connector) > workflows.MaxExitFieldBytes {
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge,
			fmt.Sprintf("reason, institution and connector are at most %d bytes", workflows.MaxExitFieldBytes))
		return
	}
	opts := g.Defaults
	if req.RepairWindow != "" {
		d, err := time.ParseDuration(req.RepairWindow)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, codeBadRequest, "repairWindow must be a positive duration such as 72h")
			return
		}
		if d > maxManualRepairWindow {
			writeError(w, http.StatusBadRequest, codeBadRequest, "repairWindow must be at most 2160h (90 days)")
			return
		}
		opts.RepairWindow = d
	}
	if req.MaxAttempts < 0 {
		writeError(w, http.StatusBadRequest, codeBadRequest, "maxAttempts must not be negative")
		return
	}
	if req.MaxAttempts > maxManualAttempts {
		writeError(w, http.StatusBadRequest, codeBadRequest, fmt.Sprintf("maxAttempts must be at most %d", maxManualAttempts))
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
	// A running repair is joined (nothing recorded); one that has ended but
	// is still delivering its last events starts the next run when it
	// closes; with none open a new one starts. A manual start is never lost.
	outcome, runID, err := g.deliver(g.withStartDeadline(r.Context()), delivery{
		id:    workflows.WorkflowID(req.Provider, req.ConnectionID),
		msg:   workflows.Message{RepairRequest: &workflows.RepairRequest{Reason: reason, At: time.Now().UTC()}},
		start: &in,
	})
	if err != nil {
		g.temporalError(w, r, err, req.Provider, req.ConnectionID)
		return
	}
	answer := startAnswer{Repair: repairRef{ID: workflows.WorkflowID(req.Provider, req.ConnectionID), RunID: runID}}
	switch {
	case outcome == eventApplied:
		answer.Outcome = startOutcomeStarted
		applied := opts
		if applied.RepairWindow <= 0 {
			applied.RepairWindow = workflows.DefaultRepairWindow
		}
		if applied.MaxAttempts <= 0 {
			applied.MaxAttempts = workflows.DefaultMaxAttempts
		}
		answer.Options = &appliedOptions{RepairWindow: applied.RepairWindow.String(), MaxAttempts: applied.MaxAttempts}
	case outcome == eventQueued:
		// Signalled to a run that has ended and is still closing: its next
		// run takes the break, with that repair's options.
		answer.Outcome = startOutcomeQueued
	case outcome == eventJoined:
		answer.Outcome = startOutcomeJoined
		if req.RepairWindow != "" || req.MaxAttempts != 0 {
			// Nothing was recorded: the open repair keeps its own options
			// rather than silently dropping the ones asked for.
			g.logger(r.Context()).Info("manual start with options refused: a repair is open",
				"provider", req.Provider, "connectionId", req.ConnectionID, "runId", runID)
			writeError(w, http.StatusConflict, codeConflict,
				"a repair is already open for this connection (run "+runID+"); its repairWindow and maxAttempts cannot be changed: start without them to join it, or cancel it first")
			return
		}
	default:
		g.logger(r.Context()).Error("manual start: unexpected delivery outcome", "outcome", string(outcome),
			"provider", req.Provider, "connectionId", req.ConnectionID, "runId", runID)
		writeError(w, http.StatusInternalServerError, codeInternal, "unexpected outcome of the start")
		return
	}
	g.logger(r.Context()).Info("repair started by API: "+answer.Outcome, "provider", req.Provider, "connectionId", req.ConnectionID, "runId", runID)
	writeJSON(w, http.StatusAccepted, answer)
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
	if !validID(connectionID) {
		writeError(w, http.StatusBadRequest, codeBadRequest, "connectionId is required: 1 to 256 printable ASCII characters, no spaces or quotes")
		return false
	}
	return true
}

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
	} else if st, ok, err := g.lastResult(ctx, id, summary.RunID); err == nil && ok {
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

// reconnect answers with the widget session. It asks the workflow first
// (a query writes no history), and only when a new session is needed sends
// the reconnect update, with the id the workflow chose so that concurrent
// callers on any gateway share one update.
func (g *Gateway) reconnect(w http.ResponseWriter, r *http.Request) {
	provider, conn := r.PathValue("provider"), r.PathValue("connectionId")
	if !g.validConnection(w, provider, conn) {
		return
	}
	var body struct {
		ForceNewSession bool `json:"forceNewSession,omitempty"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	req := workflows.ReconnectRequest{ForceNewSession: body.ForceNewSession, Gateway: g.instanceID()}
	ctx, cancel := context.WithTimeout(r.Context(), interactiveBudget)
	defer cancel()
	id := workflows.WorkflowID(provider, conn)
	for {
		offer, err := g.reconnectOffer(ctx, id, req)
		if err != nil {
			g.temporalError(w, r, err, provider, conn)
			return
		}
		switch {
		case offer.Result != nil:
			writeJSON(w, http.StatusOK, offer.Result)
			return
		case offer.Closed != "":
			writeError(w, http.StatusConflict, codeConflict, fmt.Sprintf("the repair is %s", offer.Closed))
			return
		case offer.Unavailable != "":
			msg := pageUnavailable
			if principalOf(r).app {
				msg = offer.Unavailable
				if failure := g.pendingFailureOf(ctx, id); failure != "" {
					msg += "; provider: " + failure
				}
			}
			writeRetry(w, http.StatusServiceUnavailable, codeUnavailable, msg, offer.RetryAfter)
			return
		}
		var res workflows.ReconnectResult
		req.At = g.now().UTC()
		err = g.update(ctx, id, workflows.UpdateReconnect, offer.UpdateID, req, &res)
		if isMoving(err) {
			continue
		}
		if err != nil {
			g.temporalError(w, r, err, provider, conn)
			return
		}
		writeJSON(w, http.StatusOK, res)
		return
	}
}

// reconnectOffer asks the repair what a reconnect call gets. Identical
// calls for one connection that arrive while this replica's query for
// them is under way (a page open in several tabs, a frontend in a loop)
// share that query: every answer still comes from the workflow, no older
// than the query, and a looping caller costs the worker one query at a
// time rather than one per call. The query outlives a caller that gives
// up, for the others waiting on it.
func (g *Gateway) reconnectOffer(ctx context.Context, id string, req workflows.ReconnectRequest) (workflows.ReconnectOffer, error) {
	key := fmt.Sprintf("%s\x00%t", id, req.ForceNewSession)
	answer := g.reconnectQueries.DoChan(key, func() (_ any, err error) {
		// The query runs outside the request's goroutine, where net/http's
		// recovery can't reach: a panic becomes this call's error.
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("reconnect query: %v", p)
			}
		}()
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), queryTimeout)
		defer cancel()
		var offer workflows.ReconnectOffer
		req.At = g.now().UTC()
		v, err := g.Temporal.QueryWorkflow(qctx, id, "", workflows.QueryReconnect, req)
		if err == nil {
			err = v.Get(&offer)
		}
		return offer, err
	})
	g.reconnectWaiting.Add(1) // (DoChan has joined this caller to the query)
	defer g.reconnectWaiting.Add(-1)
	select {
	case r := <-answer:
		offer, _ := r.Val.(workflows.ReconnectOffer)
		return offer, r.Err
	case <-ctx.Done():
		return workflows.ReconnectOffer{}, ctx.Err()
	}
}

func (g *Gateway) pendingFailureOf(ctx context.Context, id string) string {
	desc, err := g.Temporal.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return ""
	}
	return g.pendingFailure(desc)
}

// update sends a workflow update with a caller-chosen id (so retries and
// concurrent callers are one update to the server) and waits for its
// result. A run handing over to its continuation is retried after a pause.
func (g *Gateway) update(ctx context.Context, id, name, updateID string, arg, result any) error {
	h, err := g.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   id,
		UpdateID:     updateID,
		UpdateName:   name,
		Args:         []any{arg},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, result)
	}
	if isMoving(err) {
		select {
		case <-time.After(movingRetryPause):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

func isMoving(err error) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.Type() == workflows.ErrTypeRepairMoving
}

// updateID derives an update id from what identifies the message, so the
// server records a repeated message once.
func updateID(kind string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return kind + "/" + hex.EncodeToString(h.Sum(nil)[:16])
}

// complete records the widget's success; the workflow's validator decides
// whether the repair can use it, and only then does the answer say 202.
func (g *Gateway) complete(w http.ResponseWriter, r *http.Request) {
	var req workflows.ReconnectCompleted
	if !g.decodeMessage(w, r, &req) {
		return
	}
	switch {
	case req.ConnectorToken == "":
		writeError(w, http.StatusBadRequest, codeBadRequest, "connectorToken is required: the session the widget completed")
		return
	case len(req.Metadata) > workflows.MaxCompletionMetadataBytes:
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge,
			fmt.Sprintf("metadata over %d KiB", workflows.MaxCompletionMetadataBytes>>10))
		return
	case len(req.ConnectorToken) > workflows.MaxTokenBytes || len(req.PublicToken) > workflows.MaxTokenBytes:
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("tokens over %d bytes", workflows.MaxTokenBytes))
		return
	}
	provider, conn := r.PathValue("provider"), r.PathValue("connectionId")
	g.sendMessage(w, r, workflows.UpdateComplete, updateID("complete", provider, conn, req.ConnectorToken), req)
}

// exit records the user leaving the widget.
func (g *Gateway) exit(w http.ResponseWriter, r *http.Request) {
	var req workflows.ReconnectExited
	if !g.decodeMessage(w, r, &req) {
		return
	}
	if len(req.Reason) > workflows.MaxExitFieldBytes || len(req.ErrorCode) > workflows.MaxExitFieldBytes ||
		len(req.ProviderRequestID) > workflows.MaxExitFieldBytes {
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("exit fields over %d bytes", workflows.MaxExitFieldBytes))
		return
	}
	provider, conn := r.PathValue("provider"), r.PathValue("connectionId")
	// The same exit sent again is one update (its time is only part of it
	// when the frontend gave one).
	id := updateID("exit", provider, conn, req.Reason, req.ErrorCode, req.ProviderRequestID, req.At.Format(time.RFC3339Nano))
	if req.At.IsZero() {
		req.At = time.Now().UTC()
	}
	g.sendMessage(w, r, workflows.UpdateExit, id, req)
}

// decodeMessage checks the path and decodes a non-empty JSON body.
func (g *Gateway) decodeMessage(w http.ResponseWriter, r *http.Request, payload any) bool {
	if !g.validConnection(w, r.PathValue("provider"), r.PathValue("connectionId")) || !decodeBody(w, r, payload) {
		return false
	}
	return true
}

// sendMessage sends a complete or exit update and answers 202 once the
// workflow has accepted it.
func (g *Gateway) sendMessage(w http.ResponseWriter, r *http.Request, name, updateID string, payload any) {
	provider, conn := r.PathValue("provider"), r.PathValue("connectionId")
	ctx, cancel := context.WithTimeout(r.Context(), interactiveBudget)
	defer cancel()
	id := workflows.WorkflowID(provider, conn)
	var err error
	for {
		if err = g.update(ctx, id, name, updateID, payload, nil); !isMoving(err) {
			break
		}
	}
	var appErr *temporal.ApplicationError
	duplicate := errors.As(err, &appErr) && appErr.Type() == workflows.ErrTypeAlreadyCompleted
	if err != nil && !duplicate {
		g.temporalError(w, r, err, provider, conn)
		return
	}
	g.logger(r.Context()).Info("repair message accepted", "message", name, "provider", provider, "connectionId", conn, "duplicate", duplicate)
	writeJSON(w, http.StatusAccepted, map[string]any{"repair": map[string]string{"id": id}, "accepted": name, "duplicate": duplicate})
}

// cancel ends an open repair (an operator's call).
func (g *Gateway) cancel(w http.ResponseWriter, r *http.Request) {
	var req workflows.CancelRequest
	provider, conn := r.PathValue("provider"), r.PathValue("connectionId")
	if !g.decodeMessage(w, r, &req) {
		return
	}
	if len(req.Reason) > workflows.MaxExitFieldBytes || len(req.RequestedBy) > workflows.MaxExitFieldBytes {
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("cancel fields over %d bytes", workflows.MaxExitFieldBytes))
		return
	}
	id := workflows.WorkflowID(provider, conn)
	outcome, _, err := g.deliver(r.Context(), delivery{id: id, msg: workflows.Message{Cancel: &req}})
	if err != nil {
		g.temporalError(w, r, err, provider, conn)
		return
	}
	if outcome != eventApplied {
		info, err := g.describe(r.Context(), id)
		if err != nil {
			g.temporalError(w, r, err, provider, conn)
			return
		}
		writeError(w, http.StatusConflict, codeConflict, fmt.Sprintf("the repair is %s", info.Status))
		return
	}
	g.logger(r.Context()).Info("repair cancel sent", "provider", provider, "connectionId", conn)
	writeJSON(w, http.StatusAccepted, map[string]any{"repair": map[string]string{"id": id}, "accepted": "cancel"})
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
			if !validID(v) {
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

// temporalError maps a Temporal error onto the API's error responses.
func (g *Gateway) temporalError(w http.ResponseWriter, r *http.Request, err error, provider, conn string) {
	var (
		notFound   *serviceerror.NotFound
		invalid    *serviceerror.InvalidArgument
		appErr     *temporal.ApplicationError
		canceled   *temporal.CanceledError
		timeout    *client.WorkflowUpdateServiceTimeoutOrCanceledError
		deadline   *serviceerror.DeadlineExceeded
		down       *serviceerror.Unavailable
		overloaded *serviceerror.ResourceExhausted
	)
	switch {
	case errors.Is(err, errStartsBusy):
		g.logger(r.Context()).Warn("repair not started: too many repairs starting", "provider", provider, "connectionId", conn)
		writeRetry(w, http.StatusServiceUnavailable, codeUnavailable, "too many repairs are starting at once; retry", busyRetryAfter())
	case errors.As(err, &canceled):
		// An update that was waiting when the repair ended.
		writeError(w, http.StatusConflict, codeConflict, "the repair was canceled")
	case errors.As(err, &appErr):
		g.workflowError(w, r, appErr)
	case errors.As(err, &timeout) || errors.As(err, &deadline) || errors.As(err, &down) || errors.As(err, &overloaded):
		writeRetry(w, http.StatusServiceUnavailable, codeUnavailable, "Temporal or its worker did not answer in time; retry", 2*time.Second)
	case errors.As(err, &invalid):
		writeError(w, http.StatusBadRequest, codeBadRequest, "Temporal refused the request: "+invalid.Message)
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
		writeRetry(w, http.StatusServiceUnavailable, codeUnavailable, "Temporal or its worker did not answer in time; retry", 2*time.Second)
	default:
		g.logger(r.Context()).Error("temporal call failed", "provider", provider, "connectionId", conn, "path", r.URL.Path, "error", err)
		writeError(w, http.StatusInternalServerError, codeInternal, "internal error; see the gateway log")
	}
}

// workflowError maps an update's refusal or failure onto HTTP.
func (g *Gateway) workflowError(w http.ResponseWriter, r *http.Request, e *temporal.ApplicationError) {
	switch e.Type() {
	case workflows.ErrTypeRepairClosed, workflows.ErrTypeNotAwaitingUser:
		writeError(w, http.StatusConflict, codeConflict, e.Message())
	case workflows.ErrTypeSessionUnknown:
		writeError(w, http.StatusUnprocessableEntity, codeSessionUnknown, e.Message())
	case workflows.ErrTypeInvalidMessage:
		writeError(w, http.StatusBadRequest, codeBadRequest, e.Message())
	case workflows.ErrTypeTooLarge:
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, e.Message())
	case workflows.ErrTypeTooManyRequests:
		writeRetry(w, http.StatusTooManyRequests, codeTooManyRequests, e.Message(), time.Minute)
	case workflows.ErrTypeProviderUnavailable, workflows.ErrTypeRepairMoving:
		msg := e.Message() // may quote the provider: the app's only
		if !principalOf(r).app {
			msg = pageUnavailable
		}
		writeRetry(w, http.StatusServiceUnavailable, codeUnavailable, msg, 2*time.Second)
	default:
		g.logger(r.Context()).Error("unexpected workflow error", "errorType", e.Type(), "error", e)
		writeError(w, http.StatusInternalServerError, codeInternal, "internal error; see the gateway log")
	}
}
