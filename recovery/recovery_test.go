package recovery

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fakeService answers Describe with one pending activity in the given
// state and records the pauses and unpauses.
type fakeService struct {
	workflowservice.WorkflowServiceClient
	mu       sync.Mutex
	state    enumspb.PendingActivityState
	pauses   int
	unpauses []*workflowservice.UnpauseActivityRequest
}

func (f *fakeService) DescribeWorkflowExecution(_ context.Context, req *workflowservice.DescribeWorkflowExecutionRequest, _ ...grpc.CallOption) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &workflowservice.DescribeWorkflowExecutionResponse{PendingActivities: []*workflowpb.PendingActivityInfo{{
		ActivityId: "0", State: f.state, Attempt: 4, NextAttemptScheduleTime: timestamppb.New(time.Now().Add(time.Minute)),
	}}}, nil
}

func (f *fakeService) PauseActivity(_ context.Context, req *workflowservice.PauseActivityRequest, _ ...grpc.CallOption) (*workflowservice.PauseActivityResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pauses++
	return &workflowservice.PauseActivityResponse{}, nil
}

func (f *fakeService) UnpauseActivity(_ context.Context, req *workflowservice.UnpauseActivityRequest, _ ...grpc.CallOption) (*workflowservice.UnpauseActivityResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unpauses = append(f.unpauses, req)
	return &workflowservice.UnpauseActivityResponse{}, nil
}

func (f *fakeService) unpauseCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.unpauses)
}

func TestAnActivityWaitingOnADependencyResumesWhenItsProbeAnswers(t *testing.T) {
	svc := &fakeService{state: enumspb.PENDING_ACTIVITY_STATE_SCHEDULED}
	w := New(svc, "ns", slog.New(slog.NewTextHandler(io.Discard, nil)))
	w.probeEvery = 10 * time.Millisecond
	defer w.Stop()

	var probes atomic.Int32
	probe := func(context.Context) error {
		if probes.Add(1) < 3 {
			return errors.New("still down")
		}
		return nil
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivityWithOptions(func(ctx context.Context) error {
		w.Failed(ctx, "provider:x", probe)
		return errors.New("503")
	}, activityOptions("Call"))
	_, err := env.ExecuteActivity("Call")
	require.Error(t, err)

	require.Eventually(t, func() bool { return svc.unpauseCount() == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.EqualValues(t, 3, probes.Load(), "probed until it answered, then no more")
	assert.Equal(t, "ns", svc.unpauses[0].GetNamespace())
	assert.Equal(t, "0", svc.unpauses[0].GetId())
	assert.False(t, svc.unpauses[0].GetResetAttempts(), "its attempt count stays: still failing, it backs off long")
	assert.Equal(t, 1, svc.pauses)

	// Failing again at once, then answered: not brought forward again within
	// resumeSpacing (the same call may fail for this connection alone).
	_, err = env.ExecuteActivity("Call")
	require.Error(t, err)
	w.Answered("provider:x")
	require.Eventually(t, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.outages) == 0
	}, 5*time.Second, 5*time.Millisecond)
	w.Stop() // waits for the resume
	assert.Equal(t, 1, svc.unpauseCount())
}

// A call that fails while the provider answers others (before any probe
// failed) is this call's trouble: another call's success does not retry it.
func TestAnotherCallsSuccessDoesNotResumeAnUnconfirmedFailure(t *testing.T) {
	svc := &fakeService{state: enumspb.PENDING_ACTIVITY_STATE_SCHEDULED}
	w := New(svc, "ns", slog.New(slog.NewTextHandler(io.Discard, nil)))
	w.probeEvery = time.Hour // no probe in this test
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivityWithOptions(func(ctx context.Context) error {
		w.Failed(ctx, "provider:x", func(context.Context) error { return nil })
		return errors.New("503 for this connection")
	}, activityOptions("Call"))
	_, err := env.ExecuteActivity("Call")
	require.Error(t, err)
	w.Answered("provider:x")
	w.Stop()
	assert.Zero(t, svc.unpauseCount())
}

func TestARunningActivityIsLeftAlone(t *testing.T) {
	svc := &fakeService{state: enumspb.PENDING_ACTIVITY_STATE_STARTED}
	w := New(svc, "ns", slog.New(slog.NewTextHandler(io.Discard, nil)))
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivityWithOptions(func(ctx context.Context) error {
		w.Failed(ctx, "app", func(context.Context) error { return nil })
		return errors.New("503")
	}, activityOptions("Notify"))
	w.probeEvery = 10 * time.Millisecond
	_, err := env.ExecuteActivity("Notify")
	require.Error(t, err)
	require.Eventually(t, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.outages) == 0
	}, 5*time.Second, 5*time.Millisecond, "the probe answered")
	w.Stop()
	assert.Zero(t, svc.unpauseCount(), "a running attempt is left to finish")
}

func TestANilWatcherDoesNothing(t *testing.T) {
	var w *Watcher
	w.Failed(context.Background(), "app", nil)
	w.Answered("app")
	w.Stop()
}

func activityOptions(name string) activity.RegisterOptions {
	return activity.RegisterOptions{Name: name}
}
