package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/sandbox"
)

const (
	testConn    = "conn_1"
	testProfile = "profile_1"
)

// harness runs ConnectionRepair in the SDK's time-skipping test environment
// with the real activities over the sandbox provider. Provider webhooks are
// delivered as the gateway would: provider-event signals.
type harness struct {
	t       *testing.T
	env     *testsuite.TestWorkflowEnvironment
	sandbox *sandbox.Provider
	events  *eventRecorder
	start   time.Time
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWith(t, nil)
}

// newHarnessWith runs over an existing sandbox (nil: a new one), for a
// run that continues where another harness's left off.
func newHarnessWith(t *testing.T, sb *sandbox.Provider) *harness {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	if sb == nil {
		sb = &sandbox.Provider{Now: env.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}
	rec := &eventRecorder{now: env.Now}
	env.RegisterWorkflow(ConnectionRepair)
	env.RegisterActivity(&activities.Activities{Providers: aggregator.NewRegistry(sb), Notifier: rec})
	h := &harness{t: t, env: env, sandbox: sb, events: rec, start: env.Now()}
	return h
}

// breakConnection breaks the sandbox connection as the repairable webhook
// would report it.
func (h *harness) breakConnection() {
	h.t.Helper()
	_, err := h.sandbox.Break(context.Background(), testConn, testProfile, "First Sandbox Bank")
	require.NoError(h.t, err)
}

func (h *harness) script(s sandbox.Script) {
	h.t.Helper()
	_, err := h.sandbox.SetScript(testConn, s)
	require.NoError(h.t, err)
}

func (h *harness) input(opts RepairOptions) RepairInput {
	return RepairInput{
		Provider:       sandbox.Name,
		ConnectionID:   testConn,
		ProfileID:      testProfile,
		Institution:    "First Sandbox Bank",
		TriggerEventID: "evt_trigger",
		TriggerReason:  "connection.synced.errored.repairable",
		DetectedAt:     h.start,
		Options:        opts,
	}
}

// run executes the workflow to the end and returns its final state.
func (h *harness) run(opts RepairOptions) RepairState {
	h.t.Helper()
	h.env.ExecuteWorkflow(ConnectionRepair, h.input(opts))
	require.True(h.t, h.env.IsWorkflowCompleted())
	st := h.finalState()
	requireDiagramSteps(h.t, st)
	return st
}

// finalState is the state the ended run closed with: its result, or its
// close's details (outcome.go), checked against how it closed.
func (h *harness) finalState() RepairState {
	h.t.Helper()
	err := h.env.GetWorkflowError()
	if err == nil {
		var st RepairState
		require.NoError(h.t, h.env.GetWorkflowResult(&st))
		require.Equal(h.t, StatusRepaired, st.Status, "only a repaired connection completes its run")
		return st
	}
	st, ok := ClosedState(err)
	require.True(h.t, ok, "the run closed without a repair's state: %v", err)
	// The close says the outcome in the Temporal UI's list: Failed with
	// the outcome as its type and the reason code in its message, or
	// Canceled.
	var (
		failed   *temporal.ApplicationError
		canceled *temporal.CanceledError
	)
	switch st.Status {
	case StatusExpired, StatusUnrepairable:
		require.ErrorAs(h.t, err, &failed)
		assert.Equal(h.t, map[Status]string{StatusExpired: FailureTypeExpired, StatusUnrepairable: FailureTypeUnrepairable}[st.Status], failed.Type())
		assert.True(h.t, failed.NonRetryable())
		assert.Equal(h.t, temporal.ApplicationErrorCategoryBenign, failed.Category(), "not counted as a failure of Relink's")
		assert.Equal(h.t, string(st.Status)+" ("+string(st.ReasonCode)+")", failed.Message())
	case StatusCanceled:
		require.ErrorAs(h.t, err, &canceled)
	default:
		h.t.Fatalf("a run closed with %v in status %s", err, st.Status)
	}
	return st
}

// requireDiagramSteps fails unless every status change of st is one the
// state diagram (exits) has.
func requireDiagramSteps(t *testing.T, st RepairState) {
	t.Helper()
	for i := 1; i < len(st.Steps); i++ {
		from, to := st.Steps[i-1].Status, st.Steps[i].Status
		require.Contains(t, exits[from], to, "step %d: %s to %s is not in the state diagram", i, from, to)
	}
}

// at schedules fn at offset d of the test clock.
func (h *harness) at(d time.Duration, fn func()) {
	h.env.RegisterDelayedCallback(fn, d)
}

// reconnect sends the reconnect update; the returned outcome is filled when
// the update completes.
//
// Like the gateway, it asks the reconnect query first and sends the update
// only when the query says a new session is needed, saying what time it is
// (req.At, if set: a gateway whose clock is off).
func (h *harness) reconnect(req ReconnectRequest) *updateOutcome {
	h.t.Helper()
	if req.At.IsZero() {
		req.At = h.env.Now()
	}
	v, err := h.env.QueryWorkflow(QueryReconnect, req)
	require.NoError(h.t, err)
	var offer ReconnectOffer
	require.NoError(h.t, v.Get(&offer))
	switch {
	case offer.Result != nil:
		return &updateOutcome{done: true, result: *offer.Result}
	case offer.Closed != "":
		return &updateOutcome{done: true, err: repairError(ErrTypeRepairClosed, "the repair is %s", offer.Closed)}
	case offer.Unavailable != "":
		return &updateOutcome{done: true, err: repairError(ErrTypeProviderUnavailable, "%s", offer.Unavailable)}
	}
	return h.update(UpdateReconnect, req)
}

// complete sends the complete update, as the gateway does.
func (h *harness) complete(c ReconnectCompleted) *updateOutcome {
	return h.update(UpdateComplete, c)
}

// exit sends the exit update, as the gateway does.
func (h *harness) exit(e ReconnectExited) *updateOutcome {
	return h.update(UpdateExit, e)
}

// update sends an update; the returned outcome is filled when it is
// rejected or completes.
func (h *harness) update(name string, arg any) *updateOutcome {
	out := &updateOutcome{}
	h.env.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
		OnAccept: func() {},
		OnReject: func(err error) { out.err = err; out.done = true },
		OnComplete: func(v any, err error) {
			out.done = true
			out.err = err
			if err == nil {
				b, _ := json.Marshal(v)
				_ = json.Unmarshal(b, &out.result)
			}
		},
	}, arg)
	return out
}

// userCompletes plays the user finishing in the widget and the frontend
// reporting it.
func (h *harness) userCompletes() sandbox.Login {
	h.t.Helper()
	login, err := h.sandbox.LoginUser(testConn)
	require.NoError(h.t, err)
	h.complete(ReconnectCompleted{
		ConnectorToken: login.ConnectorToken, PublicToken: login.PublicToken, Metadata: login.Metadata,
	})
	return login
}

func (h *harness) providerEvent(id string, kind aggregator.EventKind) {
	h.send(ProviderEvent{EventID: id, Kind: kind, At: h.env.Now()})
}

// continuedAs is the input of the run the workflow continued as.
func (h *harness) continuedAs() RepairInput {
	h.t.Helper()
	var can *workflow.ContinueAsNewError
	require.True(h.t, errors.As(h.env.GetWorkflowError(), &can), "%v", h.env.GetWorkflowError())
	var next RepairInput
	require.NoError(h.t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	return next
}

// send sends a message as the gateway does: webhook events, cancels and
// repair requests on the one message channel.
func (h *harness) send(msg any) {
	switch v := msg.(type) {
	case ProviderEvent:
		h.env.SignalWorkflow(SignalMessage, Message{Event: &v})
	case CancelRequest:
		h.env.SignalWorkflow(SignalMessage, Message{Cancel: &v})
	case RepairRequest:
		h.env.SignalWorkflow(SignalMessage, Message{RepairRequest: &v})
	default:
		h.t.Fatalf("not a message: %T", msg)
	}
}

func (h *harness) state() RepairState {
	h.t.Helper()
	v, err := h.env.QueryWorkflow(QueryState)
	require.NoError(h.t, err)
	var st RepairState
	require.NoError(h.t, v.Get(&st))
	return st
}

func (h *harness) calls(name string) int {
	h.t.Helper()
	c, err := h.sandbox.Get(testConn)
	require.NoError(h.t, err)
	return c.Calls[name]
}

type updateOutcome struct {
	done   bool
	result ReconnectResult
	err    error
}

// eventRecorder is the app's notification endpoint.
type eventRecorder struct {
	mu      sync.Mutex
	now     func() time.Time
	events  []recordedEvent
	failing bool // the app's endpoint is down
}

type recordedEvent struct {
	activities.Event
	deliveredAt time.Time
}

func (r *eventRecorder) Notify(_ context.Context, ev activities.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing {
		return errors.New("app endpoint: 503")
	}
	r.events = append(r.events, recordedEvent{Event: ev, deliveredAt: r.now()})
	return nil
}

// types lists the delivered event types in sequence order.
func (r *eventRecorder) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.events))
	for _, ev := range r.events {
		out[ev.Repair.Sequence-1] = ev.Type
	}
	return out
}

func (r *eventRecorder) ofType(t string) []recordedEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recordedEvent
	for _, ev := range r.events {
		if ev.Type == t {
			out = append(out, ev)
		}
	}
	return out
}

// stepCodes lists the reason codes of a repair's steps.
func stepCodes(st RepairState) []ReasonCode {
	out := make([]ReasonCode, len(st.Steps))
	for i, s := range st.Steps {
		out[i] = s.Code
	}
	return out
}

// statuses lists the statuses a repair went through.
func statuses(st RepairState) []Status {
	out := make([]Status, len(st.Steps))
	for i, s := range st.Steps {
		out[i] = s.Status
	}
	return out
}

// setFailing takes the app's endpoint down or brings it back.
func (h *harness) setFailing(down bool) {
	h.events.mu.Lock()
	defer h.events.mu.Unlock()
	h.events.failing = down
}
