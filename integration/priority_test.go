package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"

	"github.com/relink-dev/relink/app"
	"github.com/relink-dev/relink/workflows"
)

// When a thousand connections of one bank break at once, the user in the
// middle of a repair at that very bank does not wait behind them (the
// close after their complete is an activity, behind a thousand event
// deliveries to an app that is down), and another bank's few new repairs
// are not served last. A real backlog: the worker is stopped while the
// burst is queued, then a small one (two task slots) works through it.
func TestUsersGoFirstWhenThousandsBreakAtOnce(t *testing.T) {
	s := newBareStack(t, nil)
	first := s.startWorker(s.providers.APIs...)
	_, err := s.sandbox.Break(context.Background(), "user_b", "profile_b", "Bank A")
	require.NoError(t, err)
	s.waitForStatus("user_b", workflows.StatusAwaitingUser)
	var rec workflows.ReconnectResult
	s.call("POST", "/v1/repairs/sandbox/user_b/reconnect", nil, &rec)
	require.NotNil(t, rec.Session, "the user opened the widget")
	first.Stop()
	// The app's endpoint is down too: every repair's event falls back to
	// a Notify activity, a backlog in the activity queue as well.
	s.app.setDown(true)

	// The flood: 1,000 breaks at bank A, then 10 at bank C.
	breakMany := func(prefix, institution string, n int) {
		var wg sync.WaitGroup
		ids := make(chan string)
		for range 32 {
			wg.Go(func() {
				for id := range ids {
					_, err := s.sandbox.Break(context.Background(), id, "profile_"+prefix, institution)
					assert.NoError(t, err)
				}
			})
		}
		for i := range n {
			ids <- fmt.Sprintf("%s%04d", prefix, i)
		}
		close(ids)
		wg.Wait()
	}
	breakMany("flood_a_", "Bank A", 1000)
	breakMany("few_c_", "Bank C", 10)

	s.startSmallWorker()
	// The user finishes in the widget now.
	login, err := s.sandbox.LoginUser("user_b")
	require.NoError(t, err)
	require.Equal(t, 202, s.call("POST", "/v1/repairs/sandbox/user_b/complete", login, nil))
	s.waitForStatus("user_b", workflows.StatusRepaired)
	assert.Greater(t, s.unprobed("flood_a_"), 500, "the user's repair went before most of bank A's backlog")

	s.waitFor("bank C's repairs to be probed", func() bool { return s.unprobed("few_c_") == 0 })
	assert.Greater(t, s.unprobed("flood_a_"), 100, "bank C's few were not served after bank A's thousand")
}

// unprobed counts the sandbox connections named prefix… whose repair has
// not yet asked the provider (no initialize): the backlog still queued.
func (s *stack) unprobed(prefix string) int {
	s.t.Helper()
	n := 0
	for i := range 1000 {
		c, err := s.sandbox.Get(fmt.Sprintf("%s%04d", prefix, i))
		if err != nil {
			break
		}
		if c.Calls["initialize"] == 0 {
			n++
		}
	}
	return n
}

// startSmallWorker runs a worker with two slots of each kind, so that a
// backlog builds up in the task queue and the server's dispatch order
// (priority, fairness) decides what runs first.
func (s *stack) startSmallWorker() {
	s.t.Helper()
	opts := app.WorkerOptions(s.cfg.Worker)
	opts.MaxConcurrentWorkflowTaskExecutionSize = 2
	opts.MaxConcurrentActivityExecutionSize = 2
	opts.MaxConcurrentLocalActivityExecutionSize = 2
	two := worker.NewPollerBehaviorSimpleMaximum(worker.PollerBehaviorSimpleMaximumOptions{MaximumNumberOfPollers: 2})
	opts.WorkflowTaskPollerBehavior, opts.ActivityTaskPollerBehavior = two, two
	w := worker.New(s.temporal, s.cfg.Temporal.TaskQueue, opts)
	app.Register(w, s.activities(s.providers))
	sweeper, err := app.NewSweeper(s.cfg, s.providers, s.temporal)
	require.NoError(s.t, err)
	app.RegisterSweeps(w, sweeper)
	require.NoError(s.t, w.Start())
	s.t.Cleanup(w.Stop)
}
