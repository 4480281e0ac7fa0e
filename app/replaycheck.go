package app

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/codec"
	"github.com/relink-dev/relink/config"
	"github.com/relink-dev/relink/workflows"
)

// openRepairsQuery lists the repairs a worker would pick up again.
const openRepairsQuery = `WorkflowType = 'ConnectionRepair' AND ExecutionStatus = 'Running'`

// nonDeterminismCode marks the SDK's non-determinism errors: a history
// another build's workflow code recorded.
const nonDeterminismCode = "TMPRL1100"

// replayPageSize bounds each visibility page of the replay check.
const replayPageSize = 100

// ReplayCheck is what CheckOpenRepairsReplay found.
type ReplayCheck struct {
	// Open is how many open repairs it replayed.
	Open int
	// Failed are the open repairs this build's workflow code cannot
	// replay (recorded by an older build): a worker would fail their
	// workflow tasks over and over.
	Failed []workflow.Execution
	// FirstError is the first failure's replay error.
	FirstError error
}

// CheckOpenRepairsReplay replays the history of every open ConnectionRepair
// in the client's namespace on this build's workflow code, decoding with
// the payload keys of c as the worker does, each with its own workflow id
// (the codec binds payloads to it). The dev stack runs it before its worker
// starts: its data directory outlives the code that recorded it.
func CheckOpenRepairsReplay(ctx context.Context, tc client.Client, c config.Temporal, logger *slog.Logger) (ReplayCheck, error) {
	var out ReplayCheck
	enc, err := PayloadCodec(c)
	if err != nil {
		return out, err
	}
	dc := codec.DataConverter(enc)
	replayer, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{
		DataConverter:    dc,
		FailureConverter: codec.FailureConverter(dc, enc != nil),
	})
	if err != nil {
		return out, err
	}
	replayer.RegisterWorkflow(workflows.ConnectionRepair) // as Register does
	quiet := sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))
	var token []byte
	for {
		page, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: c.Namespace, PageSize: replayPageSize, NextPageToken: token, Query: openRepairsQuery,
		})
		if err != nil {
			return out, fmt.Errorf("list open repairs: %w", err)
		}
		for _, info := range page.GetExecutions() {
			exec := workflow.Execution{ID: info.GetExecution().GetWorkflowId(), RunID: info.GetExecution().GetRunId()}
			hist, err := fetchHistory(ctx, tc, exec)
			if err != nil {
				return out, fmt.Errorf("history of %s: %w", exec.ID, err)
			}
			out.Open++
			err = replayer.ReplayWorkflowHistoryWithOptions(quiet, hist, worker.ReplayWorkflowHistoryOptions{OriginalExecution: exec})
			if err != nil && !strings.Contains(err.Error(), nonDeterminismCode) {
				// Not another build's commands (a payload that does not
				// decrypt with these keys, say): terminating would not be
				// the cure, so say what it is.
				return out, fmt.Errorf("replay %s: %w", exec.ID, err)
			}
			if err != nil {
				logger.Debug("open repair does not replay", "workflowId", exec.ID, "runId", exec.RunID, "error", err)
				out.Failed = append(out.Failed, exec)
				if out.FirstError == nil {
					out.FirstError = err
				}
			}
		}
		token = page.GetNextPageToken()
		if len(token) == 0 {
			return out, nil
		}
	}
}

// fetchHistory reads one run's whole history.
func fetchHistory(ctx context.Context, tc client.Client, exec workflow.Execution) (*historypb.History, error) {
	it := tc.GetWorkflowHistory(ctx, exec.ID, exec.RunID, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	hist := &historypb.History{}
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, err
		}
		hist.Events = append(hist.Events, ev)
	}
	return hist, nil
}
