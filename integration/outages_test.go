package integration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/app"
	"github.com/relink-dev/relink/recovery"
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

// outageProvider is the sandbox behind a switch: while down, every call
// fails as in a provider's outage, and is counted.
type outageProvider struct {
	*sandbox.Provider
	down    atomic.Bool
	refused atomic.Int64
}

func (p *outageProvider) outage() error {
	if !p.down.Load() {
		return nil
	}
	p.refused.Add(1)
	return errors.New("sandbox: 503 Service Unavailable")
}

func (p *outageProvider) Initialize(ctx context.Context, ref aggregator.ConnectionRef) (aggregator.Session, error) {
	if err := p.outage(); err != nil {
		return aggregator.Session{}, err
	}
	return p.Provider.Initialize(ctx, ref)
}

func (p *outageProvider) Close(ctx context.Context, req aggregator.CloseRequest) error {
	if err := p.outage(); err != nil {
		return err
	}
	return p.Provider.Close(ctx, req)
}

func (p *outageProvider) ConnectionStatus(ctx context.Context, ref aggregator.ConnectionRef) (aggregator.ConnectionStatus, error) {
	if err := p.outage(); err != nil {
		return aggregator.ConnectionStatus{}, err
	}
	return p.Provider.ConnectionStatus(ctx, ref)
}

// waitForBackoff waits until the pending activity of type activityType in
// each repair will not try again for at least gap: the point of an outage
// at which, without a probe, recovery would lag by that much.
func (s *stack) waitForBackoff(ids []string, activityType string, gap time.Duration, within time.Duration) {
	s.t.Helper()
	require.Eventually(s.t, func() bool {
		for _, id := range ids {
			desc, err := s.temporal.DescribeWorkflowExecution(context.Background(), id, "")
			if err != nil {
				return false
			}
			waiting := false
			for _, pa := range desc.GetPendingActivities() {
				next := pa.GetNextAttemptScheduleTime()
				waiting = waiting || (pa.GetActivityType().GetName() == activityType && next != nil && time.Until(next.AsTime()) >= gap)
			}
			if !waiting {
				return false
			}
		}
		return true
	}, within, 100*time.Millisecond, "every %s backing off for %s", activityType, gap)
}

// Users who finished in the widget during a provider's outage are not
// held up by the retries' backoff once it is back: the first repair
// resumes within 15 s of the provider's return, all within 60 s, and
// the outage cost a few probes, not a storm of calls.
func TestRepairsResumeWithinSecondsOfTheProvidersReturn(t *testing.T) {
	s := newBareStack(t, nil)
	p := &outageProvider{Provider: s.sandbox}
	s.startWorker(p)
	var conns, ids []string
	for i := range 5 {
		conn := fmt.Sprintf("conn_outage_%d", i)
		conns, ids = append(conns, conn), append(ids, workflows.WorkflowID("sandbox", conn))
		s.breakConnection(conn, "profile_outage")
	}
	for _, conn := range conns {
		s.waitForStatus(conn, workflows.StatusAwaitingUser)
	}

	p.down.Store(true)
	downAt := time.Now()
	for _, conn := range conns {
		s.repairConnection(conn) // the provider is not called until close
	}
	// Each close has been retried into a backoff of over 20 s (about 30 s
	// into the outage): without a probe, the first would wait that long.
	s.waitForBackoff(ids, "FinishReconnect", 20*time.Second, 2*time.Minute)
	outage := time.Since(downAt)
	refused := p.refused.Load()
	p.down.Store(false)
	backAt := time.Now()

	var first, last time.Duration
	pending := map[string]bool{}
	for _, conn := range conns {
		pending[conn] = true
	}
	require.Eventually(t, func() bool {
		for conn := range pending {
			if s.state(conn).Status == workflows.StatusRepaired {
				delete(pending, conn)
				if first == 0 {
					first = time.Since(backAt)
				}
				last = time.Since(backAt)
			}
		}
		return len(pending) == 0
	}, 3*time.Minute, 100*time.Millisecond)
	t.Logf("outage %s, %d calls refused; first repaired %s after the provider's return, last %s", outage.Round(time.Second), refused, first, last)
	assert.LessOrEqual(t, first, 15*time.Second, "the first repair resumes within 15 s")
	assert.LessOrEqual(t, last, 60*time.Second, "every waiting repair resumes within 60 s")
	// Each close retried at its backoff (1, 2, 4, 8, 16 s: 6 attempts in
	// 31 s), plus one probe every 5 s for the provider, not per repair.
	assert.LessOrEqual(t, refused, int64(len(conns)*7)+int64(outage/recovery.DefaultProbeEvery)+2)
}

// Events the app's endpoint missed while it was down reach it within
// seconds of its return, not at the retries' next backoff.
func TestEventsReachTheAppWithinSecondsOfItsReturn(t *testing.T) {
	s := newStack(t)
	s.breakConnection("conn_app_outage", "profile_app_outage")
	s.waitForStatus("conn_app_outage", workflows.StatusAwaitingUser)
	s.waitFor("the ask", func() bool { return len(s.app.typesFor("conn_app_outage")) == 1 })

	s.app.setDown(true)
	s.repairConnection("conn_app_outage")
	s.waitForStatus("conn_app_outage", workflows.StatusRepaired)
	// The outcome's event has been retried into a backoff of over 35 s
	// (about a minute into the outage): without a probe, it would arrive
	// that long after the app's return.
	s.waitForBackoff([]string{workflows.WorkflowID("sandbox", "conn_app_outage")}, "Notify", 35*time.Second, 3*time.Minute)
	s.app.setDown(false)
	backAt := time.Now()
	require.Eventually(t, func() bool { return len(s.app.typesFor("conn_app_outage")) == 2 },
		3*time.Minute, 100*time.Millisecond, "the outcome's event")
	took := time.Since(backAt)
	t.Logf("the outcome's event arrived %s after the app's return", took)
	assert.LessOrEqual(t, took, 30*time.Second)
}
