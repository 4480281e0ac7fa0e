// Package intake hands messages to a connection's repair, starting one
// when the message is a trigger and none is open: the one start-or-join
// path that provider webhooks, manual starts, reconciliation sweeps and
// expiry-timed starts all take, so a break found twice (a late webhook
// and a sweep, two sweeps) is one repair and one ask of the user.
//
// It reads what Temporal knows of the repair, never a process's memory,
// so every gateway and worker decides alike.
package intake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/codec"
	"github.com/relink-dev/relink/workflows"
)

// Outcome is what became of one delivered message.
type Outcome string

const (
	// Started: a new repair began with this message as its trigger.
	Started   Outcome = "started a new repair"
	Applied   Outcome = "applied"
	Queued    Outcome = "queued for the next run of a repair that is closing"
	Joined    Outcome = "joined the open repair"
	Duplicate Outcome = "duplicate: its repair already handled it"
	Ignored   Outcome = "ignored: no open repair to act on it"
)

// Label is the outcome as a metric label.
func (o Outcome) Label() string {
	switch o {
	case Started, Applied, Queued:
		return "applied"
	case Joined:
		return "joined"
	case Duplicate:
		return "duplicate"
	}
	return "ignored"
}

// Delivery is one message for a connection's repair.
type Delivery struct {
	ID  string
	Msg workflows.Message
	// Start, when set, starts a new repair with this input if none is
	// open; without it a message for no open repair is ignored.
	Start *workflows.RepairInput
	// Handled reports whether the last repair, closed now, already dealt
	// with this trigger.
	Handled func(last workflows.RepairState) bool
}

// Intake delivers messages to repairs on one Temporal namespace.
type Intake struct {
	Temporal  client.Client
	Namespace string
	TaskQueue string
	// Codec encrypts payloads (nil: none); the run's trigger memo is read
	// through it.
	Codec converter.PayloadCodec
	// Start starts a repair workflow; nil starts it directly. The gateway
	// passes its admission control (a bound on starts in flight).
	Start func(ctx context.Context, opts client.StartWorkflowOptions, in workflows.RepairInput) (client.WorkflowRun, error)
	// Now is the clock (time.Now if nil).
	Now func() time.Time

	// prioritiesUnsupported: the server cannot change a run's priority.
	prioritiesUnsupported atomic.Bool
}

func (k *Intake) now() time.Time {
	if k.Now != nil {
		return k.Now()
	}
	return time.Now()
}

func (k *Intake) start(ctx context.Context, opts client.StartWorkflowOptions, in workflows.RepairInput) (client.WorkflowRun, error) {
	if k.Start != nil {
		return k.Start(ctx, opts, in)
	}
	return k.Temporal.ExecuteWorkflow(ctx, opts, workflows.WorkflowName, in)
}

// Deliver hands a message to the connection's repair, reading first what
// Temporal knows of it: an open repair gets the message as a signal to
// that very run (unless it has ended and the message could change
// nothing); a closed or missing one is started anew when the message is a
// trigger. A run that opens or closes in between is looked at again.
func (k *Intake) Deliver(ctx context.Context, d Delivery) (Outcome, string, error) {
	var notFound *serviceerror.NotFound
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if d.Start != nil {
		// Most triggers are for a connection with no repair yet, open or
		// closed: try the start alone first (one call, not two), refused
		// if any run of this id exists, in which case the rules below
		// decide.
		opts := k.StartOptions(*d.Start)
		opts.WorkflowIDReusePolicy = enums.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE
		run, err := k.start(ctx, opts, *d.Start)
		if err == nil {
			return Started, run.GetRunID(), nil
		}
		if !errors.As(err, &started) {
			return "", "", err
		}
	}
	for range 3 {
		desc, err := k.Temporal.DescribeWorkflowExecution(ctx, d.ID, "")
		if err != nil && !errors.As(err, &notFound) {
			return "", "", err
		}
		info := desc.GetWorkflowExecutionInfo()
		running := err == nil && info.GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING
		runID := info.GetExecution().GetRunId()
		switch {
		case running:
			ended := StatusOf(info).Terminal()
			if d.Start == nil && ended {
				return Ignored, runID, nil
			}
			if d.Msg.RepairRequest != nil && !ended {
				return Joined, runID, nil // nothing to record
			}
			if ev := d.Msg.Event; ev != nil && ev.EventID != "" && k.TriggerOf(info) == ev.EventID {
				return Duplicate, runID, nil // the event that started this run
			}
			err := k.signalRun(ctx, d.ID, runID, d.Msg)
			if errors.As(err, &notFound) {
				continue // it closed meanwhile
			}
			if ended {
				// The next run (a new repair) inherits this one's
				// priority: make it the one the new repair starts at.
				if err == nil && d.Start != nil {
					k.SetPriority(ctx, d.ID, workflows.StartPriority(*d.Start).PriorityKey)
				}
				return Queued, runID, err
			}
			return Applied, runID, err
		case d.Start == nil:
			return Ignored, "", nil
		case err == nil && d.Handled != nil:
			last, ok, err := k.LastResult(ctx, d.ID, runID)
			if err != nil {
				return "", "", err // not known: let the caller retry
			}
			if ok && d.Handled(last) {
				return Duplicate, runID, nil
			}
		}
		run, err := k.start(ctx, k.StartOptions(*d.Start), *d.Start)
		if errors.As(err, &started) {
			continue // another replica started it: deliver to that run
		}
		if err != nil {
			return "", "", err
		}
		return Started, run.GetRunID(), nil
	}
	return "", "", serviceerror.NewUnavailable("the repair kept opening and closing; retry")
}

// maxEventLead is how far ahead of this process's clock a provider's
// event time is trusted.
const maxEventLead = 5 * time.Minute

// Event fields the workflow records are clipped, so a provider's long
// strings cannot bloat a repair's history.
const (
	maxEventTypeBytes   = 200
	maxEventStatusBytes = 100
)

// ApplyEvent hands one provider event to the connection's repair (see
// Deliver). A repairable or proactive event starts a repair with options
// if none is open, unless the last repair, now closed, already handled it:
// the same event id, or an event dated no later than the break it
// repaired.
func (k *Intake) ApplyEvent(ctx context.Context, provider string, ev aggregator.WebhookEvent, options workflows.RepairOptions) (Outcome, string, error) {
	if now := k.now(); ev.At.After(now.Add(maxEventLead)) {
		// A validly signed event dated ahead (a provider's clock, a bug)
		// would make every real event of the repair look older than the
		// break, and be ignored as stale: it is taken as happening now.
		ev.At = now
	}
	signal := workflows.ProviderEvent{
		EventID:        ev.EventID,
		Kind:           ev.Kind,
		At:             ev.At,
		ProviderStatus: workflows.ClipUTF8(ev.ProviderStatus, maxEventStatusBytes),
		Reason:         workflows.ClipUTF8(ev.Type, maxEventTypeBytes),
	}
	d := Delivery{ID: workflows.WorkflowID(provider, ev.ConnectionID), Msg: workflows.Message{Event: &signal}}
	if ev.Kind == aggregator.EventKindRepairable || ev.Kind == aggregator.EventKindProactive {
		d.Start = &workflows.RepairInput{
			Provider:       provider,
			ConnectionID:   ev.ConnectionID,
			ProfileID:      ev.ProfileID,
			Institution:    workflows.ClipUTF8(ev.Institution, maxEventTypeBytes),
			Connector:      workflows.ClipUTF8(ev.Connector, maxEventStatusBytes),
			TriggerEventID: ev.EventID,
			TriggerReason:  signal.Reason,
			DetectedAt:     ev.At,
			Proactive:      ev.Kind == aggregator.EventKindProactive,
			Options:        options,
		}
		d.Handled = func(last workflows.RepairState) bool {
			if ev.EventID != "" && slices.Contains(last.EventIDs, ev.EventID) {
				return true
			}
			return !ev.At.IsZero() && !last.DetectedAt.IsZero() && !ev.At.After(last.DetectedAt)
		}
	}
	return k.Deliver(ctx, d)
}

// priorityTimeout bounds raising or lowering a run's priority: it is worth
// a moment, never the caller's whole budget.
const priorityTimeout = 500 * time.Millisecond

// SetPriority sets the open run of repair id to task priority key (its
// fairness key stays). Setting the priority a run already has changes
// nothing and writes nothing. Best effort: a server that cannot (the
// Temporal CLI's 1.29 has no priority in workflow options) still serves
// the run, in its turn, and is not asked again by this process.
func (k *Intake) SetPriority(ctx context.Context, id string, key int) {
	if k.prioritiesUnsupported.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, priorityTimeout)
	defer cancel()
	_, err := k.Temporal.WorkflowService().UpdateWorkflowExecutionOptions(ctx, &workflowservice.UpdateWorkflowExecutionOptionsRequest{
		Namespace:                k.Namespace,
		WorkflowExecution:        &commonpb.WorkflowExecution{WorkflowId: id},
		WorkflowExecutionOptions: &workflow.WorkflowExecutionOptions{Priority: &commonpb.Priority{PriorityKey: int32(key)}},
		UpdateMask:               &fieldmaskpb.FieldMask{Paths: []string{"priority.priority_key"}},
	})
	var invalid *serviceerror.InvalidArgument
	var unimplemented *serviceerror.Unimplemented
	if errors.As(err, &invalid) || errors.As(err, &unimplemented) {
		k.prioritiesUnsupported.Store(true)
	}
}

// signalRun sends msg to one run. A provider event goes with a request id
// derived from its event id, which the server remembers for the run: a
// redelivery of an event the run already has is dropped by Temporal
// before it reaches history, so it costs no billable signal.
func (k *Intake) signalRun(ctx context.Context, id, runID string, msg workflows.Message) error {
	if msg.Event == nil || msg.Event.EventID == "" {
		return k.Temporal.SignalWorkflow(ctx, id, runID, workflows.SignalMessage, msg)
	}
	dc := converter.WithDataConverterSerializationContext(codec.DataConverter(k.Codec),
		converter.WorkflowSerializationContext{Namespace: k.Namespace, WorkflowID: id})
	input, err := dc.ToPayloads(msg)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(id + "\x00" + msg.Event.EventID))
	_, err = k.Temporal.WorkflowService().SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{
		Namespace:         k.Namespace,
		WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: id, RunId: runID},
		SignalName:        workflows.SignalMessage,
		Input:             input,
		Identity:          "relink-intake",
		RequestId:         "relink-event-" + hex.EncodeToString(sum[:]),
	})
	return err
}

// StatusOf reads a run's repair status from its search attributes.
func StatusOf(info *workflow.WorkflowExecutionInfo) workflows.Status {
	var status string
	if p, ok := info.GetSearchAttributes().GetIndexedFields()[workflows.SearchAttrStatus.GetName()]; ok {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &status)
	}
	return workflows.Status(status)
}

// TriggerOf reads a run's trigger event id from its memo.
func (k *Intake) TriggerOf(info *workflow.WorkflowExecutionInfo) string {
	var trigger string
	if p, ok := info.GetMemo().GetFields()[workflows.MemoTrigger]; ok {
		// Memos go through the data converter, so they are encrypted.
		_ = codec.DataConverter(k.Codec).FromPayload(p, &trigger)
	}
	return trigger
}

// resultTimeout bounds reading a closed run's result.
const resultTimeout = 3 * time.Second

// LastResult reads a closed run's final state from its history: its
// result, or its close's details for a repair that did not repair
// (workflows.ClosedState); ok is false for a run that ended without one
// (terminated, timed out, failed otherwise).
func (k *Intake) LastResult(ctx context.Context, id, runID string) (workflows.RepairState, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, resultTimeout)
	defer cancel()
	var st workflows.RepairState
	err := k.Temporal.GetWorkflow(ctx, id, runID).Get(ctx, &st)
	if st, ok := workflows.ClosedState(err); ok {
		return st, true, nil
	}
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
		return workflows.RepairState{}, false, nil
	}
	return st, false, fmt.Errorf("read the last repair's result: %w", err)
}

// StartOptions start a new repair: one open repair per connection, and a
// new run under the same id once the last one closed.
func (k *Intake) StartOptions(in workflows.RepairInput) client.StartWorkflowOptions {
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
		TaskQueue:                k.TaskQueue,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowIDReusePolicy:    enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		// Another process may have started it a moment ago: say so, and
		// the message goes to that run instead.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes:                    workflows.InitialSearchAttributes(in, k.now()),
		Memo:                                     memo,
		StaticSummary:                            summary,
		// Behind the work of people in the middle of a repair, and shared
		// fairly between institutions (workflows/priority.go).
		Priority: workflows.StartPriority(in),
	}
}
