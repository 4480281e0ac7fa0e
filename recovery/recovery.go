// Package recovery makes repairs resume when a dependency that was down
// comes back, rather than when their retry backoff next fires.
//
// A provider call or an event that fails in a way that may pass is
// retried by Temporal with backoff capped at minutes (5 for providers, 10
// for the app's events): cheap during a long outage, but after a
// 5-minute outage a user who finished in the widget would wait up to 5
// more. So each worker keeps, per dependency ("provider:<name>", "app"),
// the activities whose last attempt failed on it, and probes it once
// every ProbeEvery with a read-only call (a provider's status read of a
// waiting connection; a signed relink.ping to the app) — one call, however
// many repairs wait. When a probe answers, or a real call to the
// dependency succeeds once a probe has failed, the waiting activities'
// next attempt is brought forward to now, spread over a few seconds so
// the dependency is not stampeded (WorkflowService.PauseActivity, then
// UnpauseActivity, which schedules it at once and keeps its attempt count,
// so an activity that still fails goes back to its long backoff).
//
// What it holds is a speed-up, not a guarantee: a worker that dies takes
// its list with it, and those activities resume at their backoff, as
// without this package. Activities whose attempts ran on several workers
// are brought forward by each of them, which is harmless (a running one
// is left alone).
package recovery

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Defaults.
const (
	// DefaultProbeEvery is how often a dependency that failed is probed:
	// the worst wait after it comes back, and one call per interval
	// while it is down.
	DefaultProbeEvery = 5 * time.Second
	// DefaultPace is how many waiting activities resume per second once a
	// dependency is back; they are spread with the server's jitter.
	DefaultPace = 20
	// maxSpread bounds that spread, so every waiting repair resumes within
	// a minute of the dependency's return.
	maxSpread = 45 * time.Second
	// probeTimeout bounds one probe.
	probeTimeout = 10 * time.Second
	// resumesInFlight bounds the activities being brought forward at once.
	resumesInFlight = 8
	// resumeSpacing: an activity is brought forward at most this often, the longest
	// backoff between provider attempts. A call that fails for one
	// connection alone, while the provider answers others, is then not
	// retried every time another call succeeds.
	resumeSpacing = 5 * time.Minute
)

// Probe asks a dependency, read-only, whether it answers again. A nil
// error means it does.
type Probe func(ctx context.Context) error

// Watcher tracks the activities waiting on each dependency of this
// worker and resumes them when it is back. The zero value is not usable;
// use New. A nil *Watcher does nothing, for activities run without one.
type Watcher struct {
	service    workflowservice.WorkflowServiceClient
	namespace  string
	logger     *slog.Logger
	probeEvery time.Duration
	pace       float64

	ctx  context.Context
	stop context.CancelFunc

	mu      sync.Mutex
	outages map[string]*outage
	// resumedAt is when each activity was last brought forward, within
	// resumeSpacing.
	resumedAt map[waiter]time.Time
	watchers  sync.WaitGroup
}

// outage is one dependency that failed, and what waits on it.
type outage struct {
	since   time.Time
	probe   Probe
	waiting map[waiter]struct{}
	// confirmed: a probe failed too. Until then a call that fails while
	// others succeed is this one call's trouble, not an outage, and
	// another call's success does not resume it.
	confirmed bool
}

// waiter is one pending activity, as ResetActivity names it.
type waiter struct {
	workflowID, runID, activityID string
}

// New returns a Watcher that brings activities forward in namespace through
// service; Stop ends its probes.
func New(service workflowservice.WorkflowServiceClient, namespace string, logger *slog.Logger) *Watcher {
	ctx, stop := context.WithCancel(context.Background())
	return &Watcher{
		service: service, namespace: namespace, logger: logger,
		probeEvery: DefaultProbeEvery, pace: DefaultPace,
		ctx: ctx, stop: stop, outages: map[string]*outage{}, resumedAt: map[waiter]time.Time{},
	}
}

// Stop ends the probes and waits for them.
func (w *Watcher) Stop() {
	if w == nil {
		return
	}
	w.stop()
	w.watchers.Wait()
}

// Failed records that the calling activity's attempt failed on dep in a
// way that may pass; probe tells when dep is back. Local activities are
// not recorded: the workflow follows a failed local attempt with a
// regular activity at once.
func (w *Watcher) Failed(ctx context.Context, dep string, probe Probe) {
	if w == nil || !activity.IsActivity(ctx) || ctx.Err() != nil {
		return
	}
	info := activity.GetInfo(ctx)
	if info.IsLocalActivity {
		return
	}
	me := waiter{workflowID: info.WorkflowExecution.ID, runID: info.WorkflowExecution.RunID, activityID: info.ActivityID}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ctx.Err() != nil {
		return // stopped: its worker is going away
	}
	o, ok := w.outages[dep]
	if !ok {
		o = &outage{since: time.Now(), waiting: map[waiter]struct{}{}}
		w.outages[dep] = o
		w.logger.Warn("dependency failing: probing it until it answers, then resuming what waits on it",
			"dependency", dep, "probeEvery", w.probeEvery)
		w.watchers.Add(1)
		go w.watch(dep, o)
	}
	o.probe = probe // the latest failure's: the call most likely to tell
	o.waiting[me] = struct{}{}
}

// Waiting is how many activities wait on dep here.
func (w *Watcher) Waiting(dep string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if o, ok := w.outages[dep]; ok {
		return len(o.waiting)
	}
	return 0
}

// Answered records that a call to dep succeeded: if a probe has
// confirmed an outage, whatever waits on it resumes now.
func (w *Watcher) Answered(dep string) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	o, down := w.outages[dep]
	if !down || !o.confirmed || w.ctx.Err() != nil {
		return
	}
	// Not on the caller's time: its activity is done.
	w.watchers.Add(1)
	go func() {
		defer w.watchers.Done()
		w.resume(dep, o, "a call succeeded")
	}()
}

// watch probes dep until it answers, its outage o is over, or the
// watcher stops.
func (w *Watcher) watch(dep string, o *outage) {
	defer w.watchers.Done()
	tick := time.NewTicker(w.probeEvery)
	defer tick.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-tick.C:
		}
		w.mu.Lock()
		current := w.outages[dep] == o
		probe := o.probe
		w.mu.Unlock()
		if !current {
			return // a real call answered first; a later outage has its own watch
		}
		ctx, cancel := context.WithTimeout(w.ctx, probeTimeout)
		err := probe(ctx)
		cancel()
		if err == nil {
			w.resume(dep, o, "the probe answered")
			return
		}
		w.mu.Lock()
		o.confirmed = true
		w.mu.Unlock()
		w.logger.Debug("dependency still failing", "dependency", dep, "error", err)
	}
}

// resume brings forward every activity waiting on dep's outage o, spread
// over up to maxSpread at pace per second.
func (w *Watcher) resume(dep string, o *outage, why string) {
	w.mu.Lock()
	if w.outages[dep] != o {
		w.mu.Unlock()
		return // already resumed
	}
	delete(w.outages, dep)
	now := time.Now()
	for a, at := range w.resumedAt {
		if now.Sub(at) >= resumeSpacing {
			delete(w.resumedAt, a)
		}
	}
	for a := range o.waiting {
		if _, recent := w.resumedAt[a]; recent {
			delete(o.waiting, a)
		} else {
			w.resumedAt[a] = now
		}
	}
	w.mu.Unlock()
	spread := min(time.Duration(float64(len(o.waiting))/w.pace*float64(time.Second)), maxSpread)
	w.logger.Info("dependency is back: resuming what waits on it", "dependency", dep, "why", why,
		"downFor", time.Since(o.since).Round(time.Second), "waiting", len(o.waiting), "spread", spread)
	// Every activity runs within spread of now, however long the calls
	// below take to get to it.
	until := now.Add(spread)
	jobs := make(chan waiter)
	var wg sync.WaitGroup
	for range min(resumesInFlight, len(o.waiting)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range jobs {
				w.bringForward(a, time.Until(until))
			}
		}()
	}
	for a := range o.waiting {
		jobs <- a
	}
	close(jobs)
	wg.Wait()
}

// bringForward asks Temporal to run a's next attempt now (plus up to
// spread), keeping its attempt count and heartbeat details: it pauses the
// activity and unpauses it. Only an activity waiting out its backoff is
// touched: one running, paused by an operator, or about to run anyway is
// left alone. One that has finished meanwhile is no longer there.
func (w *Watcher) bringForward(a waiter, spread time.Duration) {
	ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
	defer cancel()
	execution := &commonpb.WorkflowExecution{WorkflowId: a.workflowID, RunId: a.runID}
	desc, err := w.service.DescribeWorkflowExecution(ctx, &workflowservice.DescribeWorkflowExecutionRequest{
		Namespace: w.namespace, Execution: execution})
	if err != nil {
		w.unresumed(a, err)
		return
	}
	i := slices.IndexFunc(desc.GetPendingActivities(), func(p *workflowpb.PendingActivityInfo) bool { return p.GetActivityId() == a.activityID })
	if i < 0 {
		return // finished
	}
	pending := desc.GetPendingActivities()[i]
	next := pending.GetNextAttemptScheduleTime()
	if pending.GetState() != enumspb.PENDING_ACTIVITY_STATE_SCHEDULED || pending.GetAttempt() <= 1 ||
		next == nil || time.Until(next.AsTime()) < time.Second {
		return
	}
	if _, err := w.service.PauseActivity(ctx, &workflowservice.PauseActivityRequest{
		Namespace: w.namespace, Execution: execution, Identity: "relink-recovery",
		Activity: &workflowservice.PauseActivityRequest_Id{Id: a.activityID},
		Reason:   "recovery: the dependency answers again; resumed at once",
	}); err != nil {
		w.unresumed(a, err)
		return
	}
	req := &workflowservice.UnpauseActivityRequest{
		Namespace: w.namespace, Execution: execution, Identity: "relink-recovery",
		Activity: &workflowservice.UnpauseActivityRequest_Id{Id: a.activityID},
	}
	if spread > 0 {
		req.Jitter = durationpb.New(spread)
	}
	if _, err := w.service.UnpauseActivity(ctx, req); err != nil {
		// Paused and not unpaused would wait for an operator: try once more
		// with a context of its own.
		retry, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := w.service.UnpauseActivity(retry, req); err != nil {
			w.logger.Error("an activity paused to be resumed could not be unpaused: unpause it (temporal activity unpause)",
				"workflowId", a.workflowID, "runId", a.runID, "activityId", a.activityID, "error", err)
		}
	}
}

// unresumed logs an activity left to its backoff.
func (w *Watcher) unresumed(a waiter, err error) {
	var notFound *serviceerror.NotFound
	if !errors.As(err, &notFound) {
		w.logger.Warn("could not resume an activity; it resumes at its backoff", "workflowId", a.workflowID,
			"activityId", a.activityID, "error", err)
	}
}
