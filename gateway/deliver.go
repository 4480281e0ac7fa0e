package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/relink-dev/relink/codec"
	"github.com/relink-dev/relink/workflows"
)

// eventOutcome is what became of one delivered message.
type eventOutcome string

const (
	eventApplied   eventOutcome = "applied"
	eventQueued    eventOutcome = "queued for the next run of a repair that is closing"
	eventJoined    eventOutcome = "joined the open repair"
	eventDuplicate eventOutcome = "duplicate: its repair already handled it"
	eventIgnored   eventOutcome = "ignored: no open repair to act on it"
)

// label is the outcome as a metric label.
func (o eventOutcome) label() string {
	switch o {
	case eventApplied, eventQueued:
		return "applied"
	case eventJoined:
		return "joined"
	case eventDuplicate:
		return "duplicate"
	}
	return "ignored"
}

// delivery is one message for a connection's repair.
type delivery struct {
	id  string
	msg workflows.Message
	// start, when set, starts a new repair with this input if none is
	// open; without it a message for no open repair is ignored.
	start *workflows.RepairInput
	// handled reports whether the last repair, closed now, already dealt
	// with this trigger.
	handled func(last workflows.RepairState) bool
}

// deliver hands a message to the connection's repair, reading first what
// Temporal knows of it (not any gateway's memory, so every replica answers
// alike): an open repair gets the message as a signal to that very run
// (unless it has ended and the message could change nothing); a closed or
// missing one is started anew when the message is a trigger. A run that
// opens or closes in between is looked at again.
func (g *Gateway) deliver(ctx context.Context, d delivery) (eventOutcome, string, error) {
	var notFound *serviceerror.NotFound
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if d.start != nil {
		// Most triggers are for a connection with no repair yet, open or
		// closed: try the start alone first (one call, not two), refused
		// if any run of this id exists, in which case the rules below
		// decide.
		opts := g.startOptions(*d.start)
		opts.WorkflowIDReusePolicy = enums.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE
		run, err := g.startWorkflow(ctx, opts, *d.start)
		if err == nil {
			return eventApplied, run.GetRunID(), nil
		}
		if !errors.As(err, &started) {
			return "", "", err
		}
	}
	for range 3 {
		desc, err := g.Temporal.DescribeWorkflowExecution(ctx, d.id, "")
		if err != nil && !errors.As(err, &notFound) {
			return "", "", err
		}
		info := desc.GetWorkflowExecutionInfo()
		summary := summarize(info)
		switch {
		case err == nil && summary.Running:
			ended := summary.Status.Terminal()
			if d.start == nil && ended {
				return eventIgnored, summary.RunID, nil
			}
			if d.msg.RepairRequest != nil && !ended {
				return eventJoined, summary.RunID, nil // nothing to record
			}
			if ev := d.msg.Event; ev != nil && ev.EventID != "" && g.triggerOf(info) == ev.EventID {
				return eventDuplicate, summary.RunID, nil // the event that started this run
			}
			err := g.signalRun(ctx, d.id, summary.RunID, d.msg)
			if errors.As(err, &notFound) {
				continue // it closed meanwhile
			}
			if ended {
				return eventQueued, summary.RunID, err
			}
			return eventApplied, summary.RunID, err
		case d.start == nil:
			return eventIgnored, "", nil
		case err == nil && d.handled != nil:
			last, ok, err := g.lastResult(ctx, d.id, summary.RunID)
			if err != nil {
				return "", "", err // not known: let the provider retry
			}
			if ok && d.handled(last) {
				return eventDuplicate, summary.RunID, nil
			}
		}
		run, err := g.startWorkflow(ctx, g.startOptions(*d.start), *d.start)
		if errors.As(err, &started) {
			continue // another replica started it: deliver to that run
		}
		if err != nil {
			return "", "", err
		}
		return eventApplied, run.GetRunID(), nil
	}
	return "", "", serviceerror.NewUnavailable("the repair kept opening and closing; retry")
}

// signalRun sends msg to one run. A provider event goes with a request id
// derived from its event id, which the server remembers for the run: a
// redelivery of an event the run already has is dropped by Temporal
// before it reaches history, so it costs no billable signal.
func (g *Gateway) signalRun(ctx context.Context, id, runID string, msg workflows.Message) error {
	if msg.Event == nil || msg.Event.EventID == "" {
		return g.Temporal.SignalWorkflow(ctx, id, runID, workflows.SignalMessage, msg)
	}
	dc := converter.WithDataConverterSerializationContext(codec.DataConverter(g.Codec),
		converter.WorkflowSerializationContext{Namespace: g.Namespace, WorkflowID: id})
	input, err := dc.ToPayloads(msg)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(id + "\x00" + msg.Event.EventID))
	_, err = g.Temporal.WorkflowService().SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{
		Namespace:         g.Namespace,
		WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: id, RunId: runID},
		SignalName:        workflows.SignalMessage,
		Input:             input,
		Identity:          "relink-gateway",
		RequestId:         "relink-event-" + hex.EncodeToString(sum[:]),
	})
	return err
}

// triggerOf reads a run's trigger event id from its memo.
func (g *Gateway) triggerOf(info *workflow.WorkflowExecutionInfo) string {
	var trigger string
	if p, ok := info.GetMemo().GetFields()[workflows.MemoTrigger]; ok {
		// Memos go through the data converter, so they are encrypted.
		_ = codec.DataConverter(g.Codec).FromPayload(p, &trigger)
	}
	return trigger
}

// lastResult reads a closed run's final state from its history; ok is false
// for a run that ended without one (terminated, failed, timed out).
func (g *Gateway) lastResult(ctx context.Context, id, runID string) (workflows.RepairState, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	var st workflows.RepairState
	err := g.Temporal.GetWorkflow(ctx, id, runID).Get(ctx, &st)
	var (
		terminated *temporal.TerminatedError
		timedOut   *temporal.TimeoutError
		canceled   *temporal.CanceledError
		failed     *temporal.ApplicationError
	)
	switch {
	case err == nil:
		return st, st.Status != "", nil
	case errors.As(err, &terminated), errors.As(err, &timedOut), errors.As(err, &canceled), errors.As(err, &failed):
		return st, false, nil
	}
	return st, false, fmt.Errorf("read the last repair's result: %w", err)
}

// startOptions start a new repair: one open repair per connection, and a
// new run under the same id once the last one closed.
func (g *Gateway) startOptions(in workflows.RepairInput) client.StartWorkflowOptions {
	summary := fmt.Sprintf("Repair %s connection %s", in.Provider, in.ConnectionID)
	if in.ProfileID != "" {
		summary += " for profile " + in.ProfileID
	}
	if in.Institution != "" {
		summary += " at " + in.Institution
	}
	var memo map[string]any
	if in.TriggerEventID != "" {
		memo = map[string]any{workflows.MemoTrigger: in.TriggerEventID}
	}
	return client.StartWorkflowOptions{
		ID:                       workflows.WorkflowID(in.Provider, in.ConnectionID),
		TaskQueue:                g.TaskQueue,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowIDReusePolicy:    enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		// Another gateway may have started it a moment ago: say so, and
		// the message goes to that run instead.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes:                    workflows.InitialSearchAttributes(in, g.now()),
		Memo:                                     memo,
		StaticSummary:                            summary,
	}
}
