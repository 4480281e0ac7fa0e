// Package bench is `relink bench`: Relink's own performance measured end
// to end on a real Temporal server (the embedded one by default), with the
// worker in a process of its own so its memory is its own, and the
// gateway in the bench's process. It prints one table; the README's
// Performance section holds what it measured on the project's machine.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/sethvargo/go-envconfig"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/inventory"
	"github.com/relink-dev/relink/activities/inventory/inventoryfake"
	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/app"
	"github.com/relink-dev/relink/bench/noop"
	"github.com/relink-dev/relink/config"
	"github.com/relink-dev/relink/cost"
	"github.com/relink-dev/relink/devstack"
	"github.com/relink-dev/relink/intake"
	"github.com/relink-dev/relink/workflows"
)

// Options say what to measure and against what.
type Options struct {
	// TemporalAddress is an existing Temporal frontend; empty starts the
	// embedded server in a temporary directory.
	TemporalAddress string
	Namespace       string
	// Senders are the concurrency levels of the start-rate comparison, and
	// PerLevel how many repairs each path starts at each level.
	Senders  []int
	PerLevel int
	// N repairs are started (32 senders) and timed to AWAITING_USER.
	N int
	// Waiting are the numbers of waiting repairs at which the worker's
	// memory is read (the largest is reached by starting more).
	Waiting []int
	// Samples latency samples are taken at rest, then as many while
	// Load other repairs are being started.
	Samples int
	Load    int
	// Sweep is the size of the app inventory one reconciliation sweep
	// reads (0: no sweep); SweepOnly measures the sweep alone.
	Sweep     int
	SweepOnly bool
	// Shapes, when set, measures the user path side by side with a no-op
	// workflow under each burst shape (UserPathOnly: that alone), with
	// ShapeSamples samples a shape; paced shapes last ShapeTime.
	Shapes       bool
	UserPathOnly bool
	ShapeSamples int
	ShapeTime    time.Duration
	// Backlog, when set, measures only the user path while a backlog of
	// each of these sizes drains through a worker with BacklogSlots task
	// slots, BacklogSamples samples a size.
	Backlog        []int
	BacklogSlots   int
	BacklogSamples int
	// WorkerCommand runs the worker binary (./worker, relink-worker), which reads
	// RELINK_BENCH_SANDBOX from its environment.
	WorkerCommand []string
	Out           io.Writer
}

// Settings the worker and gateway share (the worker gets them in its
// environment).
const (
	taskQueue     = "relink-bench"
	apiKey        = "bench-api-key"
	webhookSecret = "bench-webhook-secret"
)

type run struct {
	opts     Options
	env      map[string]string // the worker's settings
	worker   *exec.Cmd
	cfg      config.Config
	logger   *slog.Logger
	sweeps   []app.SweepPlan
	tc       client.Client
	gateway  string
	metrics  string
	http     *http.Client
	results  [][2]string
	baseline int64
}

// Run runs the benchmark and prints its table.
func Run(ctx context.Context, o Options) error {
	dir, err := os.MkdirTemp("", "relink-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	address, compression := o.TemporalAddress, config.CompressionGzip
	if address == "" {
		// The embedded server shares the host: compressing buys nothing.
		compression = config.CompressionNone
		port, err := freePort()
		if err != nil {
			return err
		}
		t, err := devstack.StartTemporal(devstack.Options{DataDir: filepath.Join(dir, "temporal"), Namespace: o.Namespace, FrontendPort: port})
		if err != nil {
			return err
		}
		defer t.Stop()
		address = t.Address
	}
	metricsPort, err := freePort()
	if err != nil {
		return err
	}
	env := map[string]string{
		"TEMPORAL_ADDRESS":   address,
		"TEMPORAL_NAMESPACE": o.Namespace,
		// -temporal names the server: no profile of the user's Temporal
		// CLI config file (its TLS or API key) applies.
		"TEMPORAL_CONFIG_FILE":          os.DevNull,
		"RELINK_TASK_QUEUE":             taskQueue,
		"RELINK_TEMPORAL_COMPRESSION":   compression,
		"RELINK_API_KEY":                apiKey,
		"RELINK_SANDBOX_WEBHOOK_SECRET": webhookSecret,
		// The bench confirms by webhook: no status polling meanwhile.
		"RELINK_VERIFY_QUIET_PERIOD": "1h",
		"RELINK_LOG_LEVEL":           "warn",
		"RELINK_METRICS_ADDR":        "127.0.0.1:" + strconv.Itoa(metricsPort),
		// The worker binary runs its sandbox in bench mode, one build,
		// unversioned (the production worker's opt-out).
		"RELINK_BENCH_SANDBOX": "1",
		"RELINK_UNVERSIONED":   "true",
	}
	if o.Sweep > 0 {
		// The app's inventory, served here: o.Sweep healthy connections
		// and one lost break in a thousand. The sweep reads as fast as
		// Relink goes (a provider's budget would pace it: N / rate).
		inv := &inventoryfake.Inventory{Token: strings.Repeat("b", 32)}
		inv.Set(sandbox.Name, sweepInventory(o.Sweep)...)
		invSrv := httptest.NewServer(inv)
		defer invSrv.Close()
		env["RELINK_INVENTORY_URL"], env["RELINK_INVENTORY_TOKEN"] = invSrv.URL, inv.Token
		env["RELINK_RECONCILE_SOURCE"] = "sandbox:inventory"
		env["RELINK_RECONCILE_RATE"] = "sandbox:1000000"
		env["RELINK_RECONCILE_INTERVAL"] = "off"
	}
	cfg, err := config.LoadFrom(ctx, envconfig.MapLookuper(env))
	if err != nil {
		return err
	}
	// The bench prints a table; the gateway here logs only what is wrong.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	tc, err := app.DialWhenReady(ctx, cfg.Temporal, logger, nil)
	if err != nil {
		return err
	}
	defer tc.Close()
	if err := app.EnsureSearchAttributes(ctx, tc, o.Namespace); err != nil {
		return err
	}

	// The worker, in its own process.
	r := &run{opts: o, env: env}
	if err := r.startWorker(ctx, nil); err != nil {
		return err
	}
	defer r.stopWorker()

	// The gateway, here: it only needs the sandbox's webhook receiver.
	sb := &sandbox.Provider{Webhooks: &sandbox.WebhookSender{Secret: webhookSecret}, Now: time.Now, Logger: logger}
	gw, err := app.NewGateway(cfg, tc, logger, app.NewProviders(cfg, sb), nil)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := app.NewHTTPServer(ln.Addr().String(), gw.Handler())
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	r.tc, r.cfg, r.logger, r.sweeps = tc, cfg, logger, app.SweepPlans(cfg, app.NewProviders(cfg, sb))
	r.gateway, r.metrics = "http://"+ln.Addr().String(), "http://"+env["RELINK_METRICS_ADDR"]+"/metrics"
	r.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	if err := r.waitForWorker(ctx); err != nil {
		return err
	}
	return r.all(ctx)
}

func (r *run) all(ctx context.Context) error {
	o := r.opts
	if len(o.Backlog) > 0 {
		if err := r.backlogs(ctx); err != nil {
			return err
		}
		r.print()
		return nil
	}
	if o.UserPathOnly {
		if err := r.userPathVsTemporal(ctx); err != nil {
			return err
		}
		r.print()
		return nil
	}
	if o.SweepOnly {
		if err := r.sweep(ctx); err != nil {
			return err
		}
		r.print()
		return nil
	}
	fmt.Fprintf(o.Out, "relink bench: %d repairs to AWAITING_USER, start rates at %v senders (%d per path), memory at %v waiting, %d latency samples\n",
		o.N, o.Senders, o.PerLevel, o.Waiting, o.Samples)

	// N started repairs reach AWAITING_USER.
	startTime, readyTime, err := r.startAndAwait(ctx, "bench-n-", o.N, 32)
	if err != nil {
		return err
	}
	r.add("started N repairs through webhooks (32 senders)", fmt.Sprintf("%d in %s (%.0f/s)", o.N, round(startTime), float64(o.N)/startTime.Seconds()))
	r.add("…all AWAITING_USER after", fmt.Sprintf("%s = %.2f × the start time (target ≤ 2)", round(readyTime), readyTime.Seconds()/startTime.Seconds()))

	// Start rates, side by side: each path starts on an idle system (the
	// other's repairs all waiting), in rounds that take turns going first,
	// so that what drifts during a run (the worker's poller count, which
	// follows the work; the database's size) weighs on both alike.
	for level, senders := range o.Senders {
		var elapsed [2]time.Duration
		var started [2]int
		paths := [2]func(context.Context, string) error{r.startByWebhook, r.startBySDK}
		for round := range StartRateRounds {
			n := o.PerLevel / StartRateRounds
			if round == StartRateRounds-1 {
				n = o.PerLevel - n*(StartRateRounds-1)
			}
			for turn := range 2 {
				path := (round + turn) % 2
				// (level, not senders: -senders may name a level twice)
				prefix := fmt.Sprintf("bench-rate-%s-%d-%d-", [2]string{"gw", "sdk"}[path], level, round)
				took, err := r.startMany(ctx, prefix, n, senders, paths[path])
				if err != nil {
					return err
				}
				elapsed[path] += took
				started[path] += n
				if err := r.awaitWaiting(ctx, atomic.LoadInt64(&r.baseline)); err != nil {
					return err
				}
			}
		}
		viaGateway := float64(started[0]) / elapsed[0].Seconds()
		viaSDK := float64(started[1]) / elapsed[1].Seconds()
		r.add(fmt.Sprintf("start rate, %d senders: webhook via gateway / raw SDK", senders),
			fmt.Sprintf("%.0f/s / %.0f/s = %.2f (target ≥ 0.9)", viaGateway, viaSDK, viaGateway/viaSDK))
	}

	// Worker memory at each number of waiting repairs.
	for _, n := range o.Waiting {
		waiting, err := r.count(ctx, workflows.StatusAwaitingUser)
		if err != nil {
			return err
		}
		if more := int64(n) - waiting; more > 0 {
			if _, _, err := r.startAndAwait(ctx, fmt.Sprintf("bench-fill-%d-", n), int(more), 64); err != nil {
				return err
			}
		}
		rss, heap, err := r.workerMemory(ctx)
		if err != nil {
			return err
		}
		if waiting, err = r.count(ctx, workflows.StatusAwaitingUser); err != nil {
			return err
		}
		// (The sandbox the worker calls lives in its process: its few
		// hundred bytes per connection are included.)
		r.add(fmt.Sprintf("worker memory, %d repairs waiting", waiting), fmt.Sprintf("RSS %d MB, Go heap %d MB", rss>>20, heap>>20))
	}

	// Latencies at rest, then while Load repairs are being started.
	atRest, err := r.latencies(ctx, "bench-n-", 0, o.Samples)
	if err != nil {
		return err
	}
	r.addLatencies("at rest", atRest)
	// Under load: samples are taken while Load repairs are being started,
	// and only then (so every one overlaps the load).
	loadDone := make(chan error, 1)
	go func() {
		_, err := r.startMany(ctx, "bench-load-", o.Load, 32, r.startByWebhook)
		loadDone <- err
	}()
	loaded, lerr, err := r.latenciesUntil(ctx, "bench-n-", o.Samples, o.Samples, loadDone)
	if err != nil {
		return err
	}
	if lerr != nil {
		return lerr
	}
	r.addLatencies(fmt.Sprintf("while %d others start (%d samples)", o.Load, len(loaded.synced)), loaded)
	if err := r.awaitWaiting(ctx, atomic.LoadInt64(&r.baseline)-int64(2*o.Samples)); err != nil {
		return err
	}

	// Billable actions of the main paths, from their real histories.
	if err := r.actions(ctx); err != nil {
		return err
	}
	if o.Sweep > 0 {
		if err := r.sweep(ctx); err != nil {
			return err
		}
	}
	if o.Shapes {
		if err := r.userPathVsTemporal(ctx); err != nil {
			return err
		}
	}
	r.print()
	return nil
}

func (r *run) add(what, value string) { r.results = append(r.results, [2]string{what, value}) }

func (r *run) print() {
	width := 0
	for _, row := range r.results {
		width = max(width, len([]rune(row[0])))
	}
	for _, row := range r.results {
		fmt.Fprintf(r.opts.Out, "%-*s  %s\n", width, row[0], row[1])
	}
}

// startAndAwait starts n repairs through the gateway and waits until they
// all wait for their users: the time to start them, and to have them ready.
func (r *run) startAndAwait(ctx context.Context, prefix string, n, senders int) (time.Duration, time.Duration, error) {
	began := time.Now()
	if _, err := r.startMany(ctx, prefix, n, senders, r.startByWebhook); err != nil {
		return 0, 0, err
	}
	started := time.Since(began)
	if err := r.awaitWaiting(ctx, atomic.LoadInt64(&r.baseline)); err != nil {
		return 0, 0, err
	}
	return started, time.Since(began), nil
}

// StartRateRounds: each path's PerLevel starts (at least this many) are
// taken in this many rounds.
const StartRateRounds = 4

// startMany starts n repairs (connection ids prefix0…) with senders
// goroutines, each counted in the baseline of waiting repairs.
func (r *run) startMany(ctx context.Context, prefix string, n, senders int, start func(context.Context, string) error) (time.Duration, error) {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	began := time.Now()
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil {
					return
				}
				if err := start(ctx, prefix+strconv.FormatInt(i, 10)); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				atomic.AddInt64(&r.baseline, 1)
			}
		}()
	}
	wg.Wait()
	return time.Since(began), firstErr
}

// startByWebhook reports a break as the sandbox would: a signed
// repairable webhook to the gateway.
func (r *run) startByWebhook(ctx context.Context, conn string) error {
	return r.webhook(ctx, conn, quiltt.EventRepairable, quiltt.StatusErrorRepairable)
}

func (r *run) webhook(ctx context.Context, conn, eventType, status string) error {
	now := time.Now()
	ev := quiltt.Event{ID: fmt.Sprintf("evt_bench_%s_%d", conn, now.UnixNano()), Type: eventType, At: now.UTC(),
		Profile: &quiltt.Profile{ID: "bench-profile"}, Record: &quiltt.Record{ID: conn, Status: status, Provider: "MOCK"}}
	return quiltt.PostWebhook(ctx, r.http, r.gateway+"/webhooks/"+sandbox.Name, webhookSecret, now, ev)
}

// startBySDK starts the same repair straight through the SDK, as the
// gateway would for a new connection.
func (r *run) startBySDK(ctx context.Context, conn string) error {
	in := workflows.RepairInput{Provider: sandbox.Name, ConnectionID: conn, ProfileID: "bench-profile",
		TriggerReason: quiltt.EventRepairable, DetectedAt: time.Now().UTC()}
	_, err := r.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       workflows.WorkflowID(sandbox.Name, conn),
		TaskQueue:                taskQueue,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowIDReusePolicy:    enums.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		TypedSearchAttributes:    workflows.InitialSearchAttributes(in, time.Now()),
		Memo:                     map[string]any{"relinkMessages": true},
	}, workflows.WorkflowName, in)
	return err
}

// count asks visibility how many repairs are running in status.
func (r *run) count(ctx context.Context, status workflows.Status) (int64, error) {
	resp, err := r.tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
		Query: fmt.Sprintf("%s = '%s' AND ExecutionStatus = 'Running'", workflows.SearchAttrStatus.GetName(), status),
	})
	return resp.GetCount(), err
}

// awaitWaiting waits until n repairs wait for their users.
func (r *run) awaitWaiting(ctx context.Context, n int64) error {
	deadline := time.Now().Add(time.Duration(n)*100*time.Millisecond + 2*time.Minute)
	for {
		waiting, err := r.count(ctx, workflows.StatusAwaitingUser)
		if err != nil {
			return err
		}
		if waiting >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d repairs reached AWAITING_USER", waiting, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startWorker runs the worker binary with the bench's settings and more
// (more overrides them).
func (r *run) startWorker(ctx context.Context, more map[string]string) error {
	w := exec.CommandContext(ctx, r.opts.WorkerCommand[0], r.opts.WorkerCommand[1:]...)
	// Only what the bench sets (and what a process needs): settings in the
	// bench's own environment, a notify URL say, must not reach it.
	w.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}
	for k, v := range r.env {
		if _, over := more[k]; !over {
			w.Env = append(w.Env, k+"="+v)
		}
	}
	for k, v := range more {
		w.Env = append(w.Env, k+"="+v)
	}
	w.Stdout, w.Stderr = os.Stderr, os.Stderr
	if err := w.Start(); err != nil {
		return fmt.Errorf("start the worker: %w", err)
	}
	r.worker = w
	return nil
}

// stopWorker stops the worker as an orchestrator does (SIGTERM: it hands
// back its sticky queue, so the next worker gets its repairs' tasks at
// once, not after the sticky timeout); its tasks wait on the server.
func (r *run) stopWorker() {
	if r.worker == nil {
		return
	}
	_ = r.worker.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = r.worker.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = r.worker.Process.Kill()
		<-done
	}
	r.worker = nil
}

func (r *run) waitForWorker(ctx context.Context) error {
	for range 600 {
		resp, err := r.http.Get(r.metrics)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("the bench worker did not come up")
}

// workerMemory reads the worker's RSS and Go heap from its /metrics,
// after letting it settle.
func (r *run) workerMemory(ctx context.Context) (rss, heap int64, err error) {
	select {
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	case <-time.After(3 * time.Second):
	}
	return r.readMemory()
}

// readMemory reads the worker's RSS and Go heap from its /metrics.
func (r *run) readMemory() (rss, heap int64, err error) {
	resp, err := r.http.Get(r.metrics)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	families, err := new(expfmt.TextParser).TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, 0, err
	}
	value := func(name string) int64 {
		if f := families[name]; f != nil && len(f.GetMetric()) > 0 {
			return int64(f.GetMetric()[0].GetGauge().GetValue())
		}
		return 0
	}
	return value("process_resident_memory_bytes"), value("go_memstats_heap_inuse_bytes"), nil
}

// latencySet holds two latencies per sample.
type latencySet struct{ complete, synced []time.Duration }

// latencies takes samples on repairs prefix{from…}: complete → VERIFYING
// (read through the gateway, as a user's page reads it: the only place
// VERIFYING shows) and synced webhook → REPAIRED (read from the server, as
// the no-op yardstick is), each measured from outside by polling.
func (r *run) latencies(ctx context.Context, prefix string, from, n int) (latencySet, error) {
	var set latencySet
	for i := from; i < from+n; i++ {
		conn := prefix + strconv.Itoa(i)
		session, err := r.openWidget(ctx, conn)
		if err != nil {
			return set, err
		}
		if err := r.finish(ctx, conn, session, &set); err != nil {
			return set, err
		}
	}
	return set, nil
}

// openWidget is the user's reconnect: the session their widget opens.
func (r *run) openWidget(ctx context.Context, conn string) (*aggregator.Session, error) {
	var rec workflows.ReconnectResult
	if err := r.api(ctx, http.MethodPost, "/v1/repairs/sandbox/"+conn+"/reconnect", nil, &rec); err != nil {
		return nil, err
	}
	if rec.Session == nil {
		return nil, fmt.Errorf("%s: no session to complete", conn)
	}
	return rec.Session, nil
}

// finish times the rest of the user's path: complete → VERIFYING, then
// the provider's synced webhook → REPAIRED.
func (r *run) finish(ctx context.Context, conn string, session *aggregator.Session, set *latencySet) error {
	began := time.Now()
	if err := r.api(ctx, http.MethodPost, "/v1/repairs/sandbox/"+conn+"/complete",
		map[string]string{"connectorToken": session.ConnectorToken, "publicToken": "bench"}, nil); err != nil {
		return err
	}
	if err := r.awaitStatus(ctx, conn, workflows.StatusVerifying); err != nil {
		return err
	}
	set.complete = append(set.complete, time.Since(began))
	began = time.Now()
	if err := r.webhook(ctx, conn, quiltt.EventSyncedSuccessful, quiltt.StatusSynced); err != nil {
		return err
	}
	// Read as the no-op yardstick is read (DescribeWorkflowExecution:
	// the server alone, its search attributes), not through a query
	// the worker answers: the outcome is the status attribute's.
	repaired := func(desc *workflowservice.DescribeWorkflowExecutionResponse) bool {
		return intake.StatusOf(desc.GetWorkflowExecutionInfo()) == workflows.StatusRepaired
	}
	if err := r.pollWorkflow(ctx, workflows.WorkflowID(sandbox.Name, conn), repaired); err != nil {
		return err
	}
	set.synced = append(set.synced, time.Since(began))
	return nil
}

// latenciesUntil takes up to n samples, stopping when done reports (the
// load finished); it returns done's error too.
func (r *run) latenciesUntil(ctx context.Context, prefix string, from, n int, done <-chan error) (latencySet, error, error) {
	var set latencySet
	for i := from; i < from+n; i++ {
		select {
		case err := <-done:
			return set, err, nil
		default:
		}
		one, err := r.latencies(ctx, prefix, i, 1)
		if err != nil {
			return set, nil, err
		}
		set.complete = append(set.complete, one.complete...)
		set.synced = append(set.synced, one.synced...)
	}
	return set, <-done, nil
}

func (r *run) awaitStatus(ctx context.Context, conn string, want workflows.Status) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		var view struct{ Repair workflows.RepairState }
		if err := r.api(ctx, http.MethodGet, "/v1/repairs/sandbox/"+conn, nil, &view); err == nil && view.Repair.Status == want {
			return nil
		}
		// Each read is a query the worker answers: poll gently, or the
		// bench measures its own load.
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("%s never became %s", conn, want)
}

func (r *run) addLatencies(when string, s latencySet) {
	r.add("complete → VERIFYING, "+when, percentiles(s.complete))
	r.add("synced webhook → REPAIRED, "+when, percentiles(s.synced)+" (target p99 ≤ "+map[bool]string{true: "100", false: "200"}[when == "at rest"]+" ms)")
}

func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %d ms, p95 %d ms, p99 %d ms", percentile(ds, 0.50).Milliseconds(), percentile(ds, 0.95).Milliseconds(), percentile(ds, 0.99).Milliseconds())
}

// percentile is the nearest-rank percentile q of ds: with 100 samples,
// p99 is the 99th.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	return sorted[max(0, int(math.Ceil(q*float64(len(sorted))))-1)]
}

// actions prints the billable actions of the main paths from real
// histories: a user-completed repair confirmed by webhook (one the
// latency samples ran), and a repair the provider answered CONTINUE.
func (r *run) actions(ctx context.Context) error {
	if err := r.startByWebhook(ctx, sandbox.BenchContinuePrefix+"1"); err != nil {
		return err
	}
	if err := r.awaitStatus(ctx, sandbox.BenchContinuePrefix+"1", workflows.StatusRepaired); err != nil {
		return err
	}
	for _, p := range []struct{ what, conn string }{
		{"user completed, webhook confirmed", "bench-n-0"},
		{"provider answered CONTINUE", sandbox.BenchContinuePrefix + "1"},
	} {
		events, err := r.history(ctx, workflows.WorkflowID(sandbox.Name, p.conn))
		if err != nil {
			return err
		}
		b := cost.Actions(events)
		var parts []string
		for _, k := range b.Kinds() {
			parts = append(parts, fmt.Sprintf("%s %d", k, b[k]))
		}
		r.add("billable actions: "+p.what, fmt.Sprintf("%d (%s)", b.Total(), strings.Join(parts, ", ")))
	}
	return nil
}

// burst is a shape of background load: rate starts a second for the
// shape's time, or n at once from 32 senders, or none.
type burst struct {
	name string
	rate float64
	n    int
}

var burstShapes = []burst{{name: "at rest"}, {name: "paced 10/s", rate: 10}, {name: "paced 25/s", rate: 25},
	{name: "paced 50/s", rate: 50}, {name: "unpaced 1,000", n: 1000}}

// userPathVsTemporal measures, under each burst shape, Relink's user path
// (complete → VERIFYING, synced webhook → REPAIRED) side by side with a
// no-op workflow signalled on the same server (signal → closed), both
// timed from outside by polling, in turns: the ratio is Relink's own cost.
//
// Each turn also times complete → VERIFYING for a session that closes in
// the workflow task (sandbox.BenchCloseInTaskPrefix: as Plaid's, Meld's
// and MX's do), beside the close at the provider (as Quiltt's).
func (r *run) userPathVsTemporal(ctx context.Context) error {
	per := r.opts.ShapeSamples
	const inTask = sandbox.BenchCloseInTaskPrefix + "up-"
	for _, prefix := range []string{"bench-up-", inTask} {
		if _, _, err := r.startAndAwait(ctx, prefix, per*len(burstShapes), 32); err != nil {
			return err
		}
	}
	repaired := int64(0)
	best := map[string]float64{}
	for i, shape := range burstShapes {
		loadDone := make(chan error, 1)
		go func() { loadDone <- r.burst(ctx, fmt.Sprintf("bench-burst-%d-", i), shape) }()
		var relink, task latencySet
		var noops []time.Duration
		for j := range per {
			// In turns, each kind first every other sample, so neither
			// always meets the load a little later than the other.
			for k := range 2 {
				if (j+k)%2 == 0 {
					one, err := r.latencies(ctx, "bench-up-", i*per+j, 1)
					if err != nil {
						return err
					}
					relink.complete = append(relink.complete, one.complete...)
					relink.synced = append(relink.synced, one.synced...)
					continue
				}
				one, err := r.latencies(ctx, inTask, i*per+j, 1)
				if err != nil {
					return err
				}
				task.complete = append(task.complete, one.complete...)
			}
			d, err := r.noopLatency(ctx, fmt.Sprintf("bench-noop-%d-%d", i, j))
			if err != nil {
				return err
			}
			noops = append(noops, d)
		}
		if err := <-loadDone; err != nil {
			return err
		}
		repaired += int64(2 * per)
		if err := r.awaitWaiting(ctx, atomic.LoadInt64(&r.baseline)-repaired); err != nil {
			return err
		}
		synced99, complete99, noop99 := percentile(relink.synced, 0.99), percentile(relink.complete, 0.99), percentile(noops, 0.99)
		task99 := percentile(task.complete, 0.99)
		ratio := func(d time.Duration) float64 { return float64(d) / float64(max(noop99, time.Millisecond)) }
		r.add("user path vs a no-op workflow, "+shape.name, fmt.Sprintf("synced → REPAIRED %s; complete → VERIFYING %s; no-op signal → closed %s; p99 ratios %.2f and %.2f (goal ≤ 1.2)",
			percentiles(relink.synced), percentiles(relink.complete), percentiles(noops), ratio(synced99), ratio(complete99)))
		r.add("…close in the task, "+shape.name, fmt.Sprintf("complete → VERIFYING %s; p99 ratio %.2f (goal ≤ 1.2)",
			percentiles(task.complete), ratio(task99)))
		if shape.rate > 0 {
			if max(synced99, complete99, task99) <= 200*time.Millisecond {
				best["Relink"] = max(best["Relink"], shape.rate)
			}
			if noop99 <= 200*time.Millisecond {
				best["no-op"] = max(best["no-op"], shape.rate)
			}
		}
	}
	r.add("highest paced rate measured with p99 ≤ 200 ms", fmt.Sprintf("Relink %.0f/s, no-op workflow %.0f/s (0: none of 10, 25, 50)", best["Relink"], best["no-op"]))
	return nil
}

// backlogs measures the user path while a real backlog drains, for each
// size in turn: the worker stops, that many repairs start by webhook (their
// tasks wait on the server, at the background priority), and a worker with
// few task slots comes back, slower than the server, as in a bank's outage
// on a busy cluster. The users' repairs (waiting for them since before)
// are sampled while the backlog is still there. With task priority, their
// p99 should not grow with the backlog's size.
func (r *run) backlogs(ctx context.Context) error {
	per, slots := r.opts.BacklogSamples, r.opts.BacklogSlots
	repaired := int64(0)
	for i, n := range r.opts.Backlog {
		// Half the users' sessions close at the provider (as Quiltt's),
		// half in the workflow task (as Plaid's, Meld's and MX's).
		users := []string{fmt.Sprintf("bench-backlog-%d-user-", i), fmt.Sprintf("%sbacklog-%d-user-", sandbox.BenchCloseInTaskPrefix, i)}
		sessions := map[string]*aggregator.Session{}
		for _, prefix := range users {
			if _, err := r.startMany(ctx, prefix, per, 8, r.startByWebhook); err != nil {
				return err
			}
		}
		if err := r.awaitWaiting(ctx, atomic.LoadInt64(&r.baseline)-repaired); err != nil {
			return err
		}
		// The users have their bank's sign-in open when the flood comes.
		for j := range per {
			for _, prefix := range users {
				var err error
				if sessions[prefix+strconv.Itoa(j)], err = r.openWidget(ctx, prefix+strconv.Itoa(j)); err != nil {
					return err
				}
			}
		}
		r.stopWorker()
		if _, err := r.startMany(ctx, fmt.Sprintf("bench-backlog-%d-", i), n, 32, r.startByWebhook); err != nil {
			return err
		}
		if err := r.startWorker(ctx, map[string]string{"RELINK_WORKER_TASK_SLOTS": strconv.Itoa(slots)}); err != nil {
			return err
		}
		if err := r.waitForWorker(ctx); err != nil {
			return err
		}
		began := time.Now()
		var set, task latencySet
		for j := range per {
			for k := range 2 { // in turns, as above
				conn, into := users[0]+strconv.Itoa(j), &set
				if (j+k)%2 == 1 {
					conn, into = users[1]+strconv.Itoa(j), &task
				}
				if err := r.finish(ctx, conn, sessions[conn], into); err != nil {
					return err
				}
			}
		}
		took := time.Since(began)
		repaired += int64(2 * per)
		waiting, err := r.count(ctx, workflows.StatusAwaitingUser)
		if err != nil {
			return err
		}
		left := atomic.LoadInt64(&r.baseline) - repaired - waiting
		r.add(fmt.Sprintf("user path, backlog of %d (%d task slots)", n, slots),
			fmt.Sprintf("synced → REPAIRED %s; complete → VERIFYING %s (close in the task: %s); %d users in %s, %d of the backlog not yet waiting at the end",
				percentiles(set.synced), percentiles(set.complete), percentiles(task.complete), 2*per, round(took), max(left, 0)))
		// The bench's own worker again, until the backlog has drained.
		r.stopWorker()
		if err := r.startWorker(ctx, nil); err != nil {
			return err
		}
		if err := r.waitForWorker(ctx); err != nil {
			return err
		}
		if err := r.awaitWaiting(ctx, atomic.LoadInt64(&r.baseline)-repaired); err != nil {
			return err
		}
	}
	return nil
}

// burst runs a shape's background load: repairs started by webhook.
func (r *run) burst(ctx context.Context, prefix string, b burst) error {
	switch {
	case b.n > 0:
		_, err := r.startMany(ctx, prefix, b.n, 32, r.startByWebhook)
		return err
	case b.rate > 0:
		tick := time.NewTicker(time.Duration(float64(time.Second) / b.rate))
		defer tick.Stop()
		var wg sync.WaitGroup
		errs := make(chan error, 1)
		for i, end := 0, time.Now().Add(r.opts.ShapeTime); time.Now().Before(end); i++ {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
			wg.Go(func() {
				if err := r.startByWebhook(ctx, prefix+strconv.Itoa(i)); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				atomic.AddInt64(&r.baseline, 1)
			})
		}
		wg.Wait()
		select {
		case err := <-errs:
			return err
		default:
		}
	}
	return nil
}

// noopLatency starts a no-op workflow, waits until it idles, then times
// its signal → closed from outside, polling as the user path is polled.
func (r *run) noopLatency(ctx context.Context, id string) (time.Duration, error) {
	if _, err := r.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: taskQueue}, noop.Name); err != nil {
		return 0, err
	}
	idle := func(desc *workflowservice.DescribeWorkflowExecutionResponse) bool {
		return desc.GetPendingWorkflowTask() == nil && desc.GetWorkflowExecutionInfo().GetHistoryLength() >= 3
	}
	if err := r.pollWorkflow(ctx, id, idle); err != nil {
		return 0, err
	}
	began := time.Now()
	if err := r.tc.SignalWorkflow(ctx, id, "", noop.Signal, nil); err != nil {
		return 0, err
	}
	closed := func(desc *workflowservice.DescribeWorkflowExecutionResponse) bool {
		return desc.GetWorkflowExecutionInfo().GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_COMPLETED
	}
	if err := r.pollWorkflow(ctx, id, closed); err != nil {
		return 0, err
	}
	return time.Since(began), nil
}

func (r *run) pollWorkflow(ctx context.Context, id string, done func(*workflowservice.DescribeWorkflowExecutionResponse) bool) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if desc, err := r.tc.DescribeWorkflowExecution(ctx, id, ""); err == nil && done(desc) {
			return nil
		}
		time.Sleep(5 * time.Millisecond) // as awaitStatus polls
	}
	return fmt.Errorf("workflow %s never got there", id)
}

// sweepInventory is n healthy connections, every thousandth a lost break.
func sweepInventory(n int) []inventory.Entry {
	entries := make([]inventory.Entry, n)
	for i := range entries {
		id := fmt.Sprintf("%s%07d", sandbox.BenchHealthyPrefix, i)
		if i%1000 == 999 {
			id = fmt.Sprintf("%s%07d", sandbox.BenchLostPrefix, i)
		}
		entries[i] = inventory.Entry{ConnectionID: id, ProfileID: "bench-profile"}
	}
	return entries
}

// sweep runs one reconciliation sweep of the inventory through the
// gateway, as an operator would, and reports its time, its billable
// actions and the worker's memory while it ran.
func (r *run) sweep(ctx context.Context) error {
	if err := app.EnsureSweepSchedules(ctx, r.tc, r.cfg, r.sweeps, r.logger); err != nil {
		return err
	}
	var started struct{ ID, RunID string }
	begin := time.Now()
	if err := r.api(ctx, http.MethodPost, "/v1/reconcile/"+sandbox.Name, nil, &started); err != nil {
		return err
	}
	var peakRSS, peakHeap int64
	var totals workflows.SweepTotals
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		rss, heap, err := r.readMemory()
		if err != nil {
			return err
		}
		peakRSS, peakHeap = max(peakRSS, rss), max(peakHeap, heap)
		var list struct {
			Sweeps []struct {
				RunID   string
				Running bool
				Error   string
				workflows.SweepTotals
			}
		}
		if err := r.api(ctx, http.MethodGet, "/v1/reconcile/"+sandbox.Name, nil, &list); err != nil {
			return err
		}
		for _, sw := range list.Sweeps {
			if sw.RunID == started.RunID && !sw.Running {
				if sw.Error != "" {
					return fmt.Errorf("the sweep failed: %s", sw.Error)
				}
				totals, done = sw.SweepTotals, true
			}
		}
	}
	took := time.Since(begin)
	r.add(fmt.Sprintf("sweep of %d inventory entries (status reads unpaced)", r.opts.Sweep),
		fmt.Sprintf("%s, %.0f checked/s; %d found (a repair started for each), %d errors", round(took), float64(totals.Checked)/took.Seconds(), totals.Found, totals.Errors))
	events, err := r.history(ctx, started.ID)
	if err != nil {
		return err
	}
	b := cost.Actions(events)
	r.add("…its billable actions", fmt.Sprintf("%d = %.1f per 1,000 checked, plus one start per repair found", b.Total(), float64(b.Total())*1000/float64(totals.Checked)))
	r.add("…worker memory while it ran (peak)", fmt.Sprintf("RSS %d MB, Go heap %d MB", peakRSS>>20, peakHeap>>20))
	return nil
}

func (r *run) history(ctx context.Context, id string) ([]*history.HistoryEvent, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		desc, err := r.tc.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			return nil, err
		}
		if desc.GetWorkflowExecutionInfo().GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	iter := r.tc.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var events []*history.HistoryEvent
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			return nil, err
		}
		events = append(events, ev)
	}
	return events, nil
}

func round(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// api calls the gateway with the app's key and decodes a 2xx answer.
func (r *run) api(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.gateway+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := r.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(raw))
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}
