package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/relink-dev/relink/workflows"
)

// manualSweepGap is the least time between the start of one sweep of a
// provider and an operator's next: a script calling in a loop would
// otherwise spend the provider's budget on back-to-back sweeps.
const manualSweepGap = time.Minute

// sweepView is one sweep as GET /v1/reconcile/{provider} answers it.
type sweepView struct {
	ID      string `json:"id"`
	RunID   string `json:"runId"`
	Running bool   `json:"running"`
	// Status is Temporal's: Running, Completed, Failed, Terminated, …
	Status string `json:"status"`
	workflows.SweepTotals
	// Error says why a sweep failed (the inventory refused the token).
	Error string `json:"error,omitempty"`
}

// sweepProvider checks the {provider} of a reconcile route, writing the
// error when it is not swept.
func (g *Gateway) sweepProvider(w http.ResponseWriter, r *http.Request) (workflows.SweepInput, bool) {
	p := r.PathValue("provider")
	in, ok := g.Sweeps[p]
	switch {
	case ok:
		return in, true
	case g.Receivers[p] == nil:
		writeError(w, http.StatusBadRequest, codeUnknownProvider, "provider "+p+" is not enabled")
	default:
		writeError(w, http.StatusConflict, codeNotSwept, "provider "+p+" has no candidate source: set RELINK_INVENTORY_URL, or RELINK_RECONCILE_SOURCE for it")
	}
	return workflows.SweepInput{}, false
}

// triggerSweep runs a provider's sweep now (POST
// /v1/reconcile/{provider}): 202 with its id. It triggers the provider's
// Schedule, whose overlap policy keeps one sweep of a provider at a time
// (so the provider's budget holds): asking while one runs answers that
// one, and starts nothing.
func (g *Gateway) triggerSweep(w http.ResponseWriter, r *http.Request) {
	in, ok := g.sweepProvider(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	h := g.Temporal.ScheduleClient().GetHandle(ctx, workflows.ScheduleID(in.Provider))
	desc, err := h.Describe(ctx)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		writeError(w, http.StatusConflict, codeNotSwept, "schedule "+workflows.ScheduleID(in.Provider)+" does not exist: run relink setup")
		return
	}
	if err != nil {
		g.temporalError(w, r, err, in.Provider, "")
		return
	}
	if run, ok := runningSweep(desc); ok {
		writeJSON(w, http.StatusAccepted, run)
		return
	}
	if n := len(desc.Info.RecentActions); n > 0 {
		last := desc.Info.RecentActions[n-1].ActualTime
		if wait := last.Add(manualSweepGap).Sub(g.now()); wait > 0 {
			writeRetry(w, http.StatusTooManyRequests, codeTooManyRequests,
				fmt.Sprintf("a sweep of %s started less than %s ago", in.Provider, manualSweepGap), wait)
			return
		}
	}
	// The sweeps known before the trigger: the one it starts is another
	// (the Schedule keeps only its last ten actions, so counting them
	// would not do).
	known := map[string]bool{}
	for _, a := range desc.Info.RecentActions {
		if a.StartWorkflowResult != nil {
			known[a.StartWorkflowResult.WorkflowID] = true
		}
	}
	if err := h.Trigger(ctx, client.ScheduleTriggerOptions{Overlap: enums.SCHEDULE_OVERLAP_POLICY_SKIP}); err != nil {
		g.temporalError(w, r, err, in.Provider, "")
		return
	}
	// The Schedule starts the sweep in a moment: answer it once it has.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			writeRetry(w, http.StatusServiceUnavailable, codeUnavailable,
				"the sweep was asked for but has not started yet; GET /v1/reconcile/"+in.Provider+" shows it once it has", 5*time.Second)
			return
		case <-tick.C:
		}
		desc, err := h.Describe(ctx)
		if err != nil {
			g.temporalError(w, r, err, in.Provider, "")
			return
		}
		run, ok := runningSweep(desc)
		for _, a := range desc.Info.RecentActions {
			if started := a.StartWorkflowResult; !ok && started != nil && !known[started.WorkflowID] {
				run, ok = sweepStarted{ID: started.WorkflowID, RunID: started.FirstExecutionRunID}, true // already over
			}
		}
		if ok {
			g.Logger.Info("reconciliation sweep asked for", "provider", in.Provider, "workflowId", run.ID, "runId", run.RunID)
			writeJSON(w, http.StatusAccepted, run)
			return
		}
	}
}

// sweepStarted is POST /v1/reconcile/{provider}'s answer.
type sweepStarted struct {
	ID    string `json:"id"`
	RunID string `json:"runId"`
}

func runningSweep(desc *client.ScheduleDescription) (sweepStarted, bool) {
	if running := desc.Info.RunningWorkflows; len(running) > 0 {
		return sweepStarted{ID: running[0].WorkflowID, RunID: running[0].FirstExecutionRunID}, true
	}
	return sweepStarted{}, false
}

// listSweeps answers a provider's last sweeps, newest first (GET
// /v1/reconcile/{provider}?limit=): running ones with their totals so
// far, finished ones with their result.
func (g *Gateway) listSweeps(w http.ResponseWriter, r *http.Request) {
	q, ok := singleQuery(w, r, "limit")
	if !ok {
		return
	}
	in, ok := g.sweepProvider(w, r)
	if !ok {
		return
	}
	limit := 10
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			writeError(w, http.StatusBadRequest, codeBadRequest, "limit must be between 1 and 100")
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	// A sweep that continued as new is one sweep: its last run carries
	// the totals.
	resp, err := g.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowType = '%s' AND %s = '%s' AND ExecutionStatus != 'ContinuedAsNew'",
			workflows.SweepWorkflowName, workflows.SearchAttrProvider.GetName(), in.Provider),
		PageSize: int32(limit),
	})
	if err != nil {
		g.temporalError(w, r, err, in.Provider, "")
		return
	}
	out := struct {
		Provider string      `json:"provider"`
		Source   string      `json:"source"`
		Sweeps   []sweepView `json:"sweeps"`
	}{Provider: in.Provider, Source: in.Source, Sweeps: []sweepView{}}
	for _, info := range resp.GetExecutions() {
		out.Sweeps = append(out.Sweeps, g.sweepOf(ctx, info))
	}
	writeJSON(w, http.StatusOK, out)
}

// sweepOf reads one sweep's totals: a query while it runs, its result once
// it completed; one that failed has only its times and why.
func (g *Gateway) sweepOf(ctx context.Context, info *workflowpb.WorkflowExecutionInfo) (v sweepView) {
	id, runID, status := info.GetExecution().GetWorkflowId(), info.GetExecution().GetRunId(), info.GetStatus()
	v = sweepView{ID: id, RunID: runID, Running: status == enums.WORKFLOW_EXECUTION_STATUS_RUNNING, Status: status.String()}
	defer func() { // (v is the named result: what the defer sets is answered)
		if v.StartedAt.IsZero() {
			v.StartedAt = info.GetStartTime().AsTime()
		}
		if v.FinishedAt.IsZero() && info.GetCloseTime() != nil {
			v.FinishedAt = info.GetCloseTime().AsTime()
		}
	}()
	var err error
	if v.Running {
		var progress converter.EncodedValue
		if progress, err = g.Temporal.QueryWorkflow(ctx, id, runID, workflows.QuerySweepProgress); err == nil {
			err = progress.Get(&v.SweepTotals)
		}
	} else {
		err = g.Temporal.GetWorkflow(ctx, id, runID).Get(ctx, &v.SweepTotals)
	}
	var failure *temporal.ApplicationError
	switch {
	case errors.As(err, &failure):
		v.Error = failure.Error()
	case err != nil:
		v.Error = err.Error()
	}
	return v
}
