package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflow/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/relink-dev/relink/codec"
	"github.com/relink-dev/relink/workflows"
)

// eventOutcome is what became of one delivered message.
type eventOutcome string

const (
	eventApplied   eventOutcome = "applied"
	eventJoined    eventOutcome = "joined the open repair"
	eventDuplicate eventOutcome = "duplicate: its repair already handled it"
	eventIgnored   eventOutcome = "ignored: no open repair to act on it"
)

// label is the outcome as a metric label.
func (o eventOutcome) label() string {
	switch o {
	case eventApplied:
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
			err := g.signalRun(ctx, d.id, summary.RunID, g.speaksMessages(info), d.msg)
			if errors.As(err, &notFound) {
				continue // it closed meanwhile
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

// signalRun sends msg to one run: on the message channel, or as the
// per-kind signal a run begun before it understands.
func (g *Gateway) signalRun(ctx context.Context, id, runID string, messages bool, msg workflows.Message) error {
	if messages {
		return g.Temporal.SignalWorkflow(ctx, id, runID, workflows.SignalMessage, msg)
	}
	switch {
	case msg.Event != nil:
		return g.Temporal.SignalWorkflow(ctx, id, runID, workflows.SignalProviderEvent, msg.Event)
	case msg.Cancel != nil:
		return g.Temporal.SignalWorkflow(ctx, id, runID, workflows.SignalCancel, msg.Cancel)
	default:
		return g.Temporal.SignalWorkflow(ctx, id, runID, workflows.SignalRepairRequested, msg.RepairRequest)
	}
}

// protocolMemo marks the runs this gateway starts as reading SignalMessage,
// from their first moment (continue-as-new keeps the memo).
const protocolMemo = "relinkMessages"

// speaksMessages reports whether a run reads SignalMessage: one this
// gateway started (its memo), or one whose version marker says so (the SDK
// lists the markers a run recorded in TemporalChangeVersion, after its
// first task).
func (g *Gateway) speaksMessages(info *workflow.WorkflowExecutionInfo) bool {
	var marked bool
	if p, ok := info.GetMemo().GetFields()[protocolMemo]; ok {
		// Memos go through the data converter, so they are encrypted.
		_ = codec.DataConverter(g.Codec).FromPayload(p, &marked)
	}
	var versions []string
	decodeAttr(info.GetSearchAttributes().GetIndexedFields(), "TemporalChangeVersion", &versions)
	return marked || slices.ContainsFunc(versions, func(v string) bool {
		return strings.HasPrefix(v, workflows.VersionMarker+"-") && v != workflows.VersionMarker+"-0"
	})
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
	return client.StartWorkflowOptions{
		ID:                       workflows.WorkflowID(in.Provider, in.ConnectionID),
		TaskQueue:                g.TaskQueue,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowIDReusePolicy:    enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		// Another gateway may have started it a moment ago: say so, and
		// the message goes to that run instead.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes:                    workflows.InitialSearchAttributes(in),
		Memo:                                     map[string]any{protocolMemo: true},
		StaticSummary:                            summary,
	}
}
