package integration

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/app"
	"github.com/relink-dev/relink/workflows"
)

// startWorkerWith runs a worker over the stack's providers with
// interceptors, as app.NewWorker builds one otherwise.
func (s *stack) startWorkerWith(interceptors ...interceptor.WorkerInterceptor) worker.Worker {
	s.t.Helper()
	sweeper, err := app.NewSweeper(s.cfg, s.providers, s.temporal)
	require.NoError(s.t, err)
	opts := app.WorkerOptions(s.cfg.Worker)
	opts.Interceptors = interceptors
	w := worker.New(s.temporal, s.cfg.Temporal.TaskQueue, opts)
	app.Register(w, s.activities(s.providers))
	app.RegisterSweeps(w, sweeper)
	require.NoError(s.t, w.Start())
	var once sync.Once
	s.t.Cleanup(func() { once.Do(w.Stop) })
	return stoppable{Worker: w, once: &once}
}

// diesAfterDelivering stands for a worker that dies after the app took an
// event and before Temporal heard: the first Notify activity attempt that
// delivers an event of eventType never returns (until the test ends), so
// nothing of it is reported, as with a killed process.
type diesAfterDelivering struct {
	interceptor.WorkerInterceptorBase
	eventType string
	once      sync.Once
	hung      chan struct{}
	testEnded chan struct{}
}

func (d *diesAfterDelivering) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	i := &diesAfterDeliveringInbound{d: d}
	i.Next = next
	return i
}

type diesAfterDeliveringInbound struct {
	interceptor.ActivityInboundInterceptorBase
	d *diesAfterDelivering
}

func (i *diesAfterDeliveringInbound) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	res, err := i.Next.ExecuteActivity(ctx, in)
	info := activity.GetInfo(ctx)
	if ev, ok := in.Args[0].(activities.Event); ok && err == nil && !info.IsLocalActivity && ev.Type == i.d.eventType {
		hang := false
		i.d.once.Do(func() { hang = true; close(i.d.hung) })
		if hang {
			<-i.d.testEnded
			return nil, errors.New("the test ended")
		}
	}
	return res, err
}

// An event the app took is not sent again by the retry of an attempt
// whose worker died before Temporal heard of the delivery.
func TestAnEventDeliveredBeforeTheWorkerDiedIsNotSentAgain(t *testing.T) {
	s := newBareStack(t, nil)
	dies := &diesAfterDelivering{eventType: activities.EventRepaired, hung: make(chan struct{}), testEnded: make(chan struct{})}
	first := s.startWorkerWith(dies)
	t.Cleanup(func() { close(dies.testEnded) }) // runs before the worker's cleanup

	s.breakConnection("conn_dup", "profile_dup")
	s.waitForStatus("conn_dup", workflows.StatusAwaitingUser)
	s.repairConnection("conn_dup")
	select {
	case <-dies.hung:
	case <-time.After(60 * time.Second):
		t.Fatal("the outcome's event never reached the app")
	}
	first.Stop()
	s.startWorker(s.sandbox)

	// The run ends once its outcome's event is delivered.
	id := workflows.WorkflowID("sandbox", "conn_dup")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, s.temporal.GetWorkflow(ctx, id, "").Get(ctx, nil))
	assert.Equal(t, []string{activities.EventActionRequired, activities.EventRepaired}, s.app.deliveries("conn_dup"),
		"the app took each event once")
}
