// Package app assembles Relink from its configuration: the Temporal client,
// the worker with its workflow and activities, logging, and the namespace's
// search attributes. The worker binary, the gateway, the dev stack and the
// integration tests all build Relink through it.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/codec"
	"github.com/relink-dev/relink/config"
	"github.com/relink-dev/relink/metrics"
	"github.com/relink-dev/relink/recovery"
	"github.com/relink-dev/relink/version"
	"github.com/relink-dev/relink/workflows"
)

// NewLogger builds the process logger from RELINK_LOG_LEVEL and
// RELINK_LOG_FORMAT.
func NewLogger(c config.Log) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("RELINK_LOG_LEVEL: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(c.Format) {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("RELINK_LOG_FORMAT must be text or json, not %q", c.Format)
}

// Dial connects to Temporal as the client profile says (the TEMPORAL_*
// variables, profile and config file the Temporal CLI reads: plain, mTLS,
// or Temporal Cloud with an API key). The SDK records its metrics (and
// the workflow and activities theirs) to m; nil records none.
func Dial(ctx context.Context, c config.Temporal, logger *slog.Logger, m client.MetricsHandler) (client.Client, error) {
	enc, err := PayloadCodec(c)
	if err != nil {
		return nil, err
	}
	dc := codec.DataConverter(enc)
	opts, err := c.ClientOptions()
	if err != nil {
		return nil, err
	}
	opts.Logger = sdklog.NewStructuredLogger(logger)
	opts.DataConverter = dc
	opts.FailureConverter = codec.FailureConverter(dc, enc != nil)
	opts.MetricsHandler = m
	cl, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (namespace %s): %w", c.Address, c.Namespace, err)
	}
	return cl, nil
}

// LoadConfig reads the configuration and builds the logger it asks for:
// the first step of every process (gateway, worker, CLI).
func LoadConfig(ctx context.Context) (config.Config, *slog.Logger, error) {
	return withLogger(config.Load(ctx))
}

// LoadDevConfig is LoadConfig for `relink dev`, whose defaults make the
// walkthrough's repairs finish in seconds (config.DevDefaults).
func LoadDevConfig(ctx context.Context) (config.Config, *slog.Logger, error) {
	return withLogger(config.LoadDev(ctx))
}

func withLogger(cfg config.Config, err error) (config.Config, *slog.Logger, error) {
	if err != nil {
		return cfg, nil, err
	}
	logger, err := NewLogger(cfg.Log)
	return cfg, logger, err
}

// StartMetrics makes the process's metrics registry and serves it on
// RELINK_METRICS_ADDR when that is set; stop ends the serving.
func StartMetrics(cfg config.Config, logger *slog.Logger) (reg *metrics.Registry, stop func(), err error) {
	reg, err = metrics.New()
	if err != nil {
		return nil, nil, err
	}
	if cfg.Metrics.Addr == "" {
		return reg, func() {}, nil
	}
	stop, err = ServeMetrics(cfg.Metrics.Addr, reg, logger)
	return reg, stop, err
}

// ErrNoProvider: production processes need at least one real provider.
var ErrNoProvider = errors.New("no provider is enabled: set a provider's settings (see the README's Configuration); the sandbox lives in `relink dev`")

// Connect starts the process's metrics and dials Temporal with them until
// it answers (DialUntilConnected: a worker started before its server
// waits), as the production worker does; closeAll closes both. It returns
// ctx's error if ctx ends first.
func Connect(ctx context.Context, cfg config.Config, logger *slog.Logger) (tc client.Client, reg *metrics.Registry, closeAll func(), err error) {
	reg, stopMetrics, err := StartMetrics(cfg, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	tc, err = DialUntilConnected(ctx, cfg.Temporal, logger, reg.Handler)
	if err != nil {
		stopMetrics()
		return nil, nil, nil, err
	}
	return tc, reg, func() { tc.Close(); stopMetrics() }, nil
}

// DialWhenReady dials Temporal, retrying for a minute while a server that
// was just started comes up.
func DialWhenReady(ctx context.Context, c config.Temporal, logger *slog.Logger, m client.MetricsHandler) (client.Client, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		tc, err := Dial(ctx, c, logger, m)
		if err == nil {
			return tc, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// ServeMetrics serves reg at addr/metrics until the returned stop is
// called (RELINK_METRICS_ADDR: a port for the scraper, not the public).
func ServeMetrics(addr string, reg *metrics.Registry, logger *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("RELINK_METRICS_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", reg.HTTPHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server stopped", "error", err)
		}
	}()
	logger.Info("metrics listening", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}

// PayloadCodec is the payload encryption from RELINK_PAYLOAD_KEYS; nil
// (an untyped nil interface) when no key is set.
func PayloadCodec(c config.Temporal) (converter.PayloadCodec, error) {
	keys := c.PayloadKeyring()
	if len(keys) == 0 {
		return nil, nil
	}
	return codec.NewEncryption(keys)
}

// NewNotifier builds the app notifier from RELINK_NOTIFY_URL/SECRET.
func NewNotifier(c config.Notify, logger *slog.Logger) (*activities.HTTPNotifier, error) {
	signers, err := activities.NewSigners(c.Secrets())
	if err != nil {
		return nil, fmt.Errorf("RELINK_NOTIFY_SECRET: %w", err)
	}
	return &activities.HTTPNotifier{
		URL:       c.URL,
		Signers:   signers,
		UserAgent: version.UserAgent(),
		Client:    &http.Client{Timeout: 20 * time.Second},
		Logger:    logger,
		Now:       time.Now,
	}, nil
}

// Register adds the repair workflow and its activities to a worker.
func Register(r worker.Registry, acts *activities.Activities) {
	r.RegisterWorkflow(workflows.ConnectionRepair)
	r.RegisterActivity(acts)
}

// WorkerOptions are the repair worker's options. A worker that stops
// leaves its cached workflows' tasks on its sticky queue; the server hands
// them to another worker after StickyScheduleToStartTimeout, which must
// stay below the gateway's query budget (3 s) so reads and reconnects
// still answer in time after a worker dies. It also sets the process's
// sticky cache size (effective before the first worker starts).
func WorkerOptions(c config.Worker) worker.Options {
	worker.SetStickyWorkflowCacheSize(c.CacheSize)
	// Polls scale with the work (the SDK's poller autoscaling, steered by
	// the server's backlog hints), up to c.Pollers per group of polls
	// (sticky workflow tasks, the queue's workflow tasks, activities). A
	// fixed 8 lost to a burst of starts: the server served 32 senders'
	// starts before the worker's few polls, and the repairs they started
	// waited (N repairs reached AWAITING_USER in 2.2 × their start time,
	// about 1.1 × now: see the README's Performance).
	most := max(c.Pollers, 2)
	if c.TaskSlots > 0 {
		// More polls than slots would take tasks no slot can run.
		most = min(most, max(c.TaskSlots, 2))
	}
	pollers := worker.NewPollerBehaviorAutoscaling(worker.PollerBehaviorAutoscalingOptions{
		MinimumNumberOfPollers: 2,
		InitialNumberOfPollers: min(8, most),
		MaximumNumberOfPollers: most,
	})
	opts := worker.Options{
		StickyScheduleToStartTimeout: 2 * time.Second,
		WorkflowTaskPollerBehavior:   pollers,
		ActivityTaskPollerBehavior:   pollers,
		WorkerStopTimeout:            c.StopTimeout,
	}
	if c.TaskSlots > 0 {
		opts.MaxConcurrentWorkflowTaskExecutionSize = c.TaskSlots
		opts.MaxConcurrentActivityExecutionSize = c.TaskSlots
		opts.MaxConcurrentLocalActivityExecutionSize = c.TaskSlots
	}
	if c.DeploymentName != "" {
		// Pinned: a repair runs its whole life (continue-as-new included)
		// on the build that started it, so a deploy never replays a
		// waiting repair on new code; old builds drain as their repairs
		// end. GetVersion stays for fixes that must reach open repairs.
		opts.DeploymentOptions = worker.DeploymentOptions{
			UseVersioning:             true,
			Version:                   worker.WorkerDeploymentVersion{DeploymentName: c.DeploymentName, BuildID: c.BuildID},
			DefaultVersioningBehavior: workflow.VersioningBehaviorPinned,
		}
	}
	return opts
}

// NewWorker builds the worker of the configured task queue: repairs,
// reconciliation sweeps and expiry-timed starts. It gives acts a
// recovery watcher (package recovery), which Stop stops.
func NewWorker(c client.Client, cfg config.Config, logger *slog.Logger, p Providers, acts *activities.Activities) (worker.Worker, error) {
	sweeper, err := NewSweeper(cfg, p, c)
	if err != nil {
		return nil, err
	}
	acts.Recovery = recovery.New(c.WorkflowService(), cfg.Temporal.Namespace, logger.With("component", "recovery"))
	w := worker.New(c, cfg.Temporal.TaskQueue, WorkerOptions(cfg.Worker))
	Register(w, acts)
	RegisterSweeps(w, sweeper)
	return recoveringWorker{Worker: w, recovery: acts.Recovery}, nil
}

// recoveringWorker stops its recovery watcher with it.
type recoveringWorker struct {
	worker.Worker
	recovery *recovery.Watcher
}

func (w recoveringWorker) Stop() {
	w.Worker.Stop()
	w.recovery.Stop()
}

func (w recoveringWorker) Run(interruptCh <-chan any) error {
	defer w.recovery.Stop()
	return w.Worker.Run(interruptCh)
}

// MissingSearchAttributes are Relink's search attributes the namespace
// lacks. A workflow that sets one of them fails its task until it is
// added (repairs wedge), hence the production worker's check at start.
func MissingSearchAttributes(ctx context.Context, c client.Client, namespace string) (map[string]enums.IndexedValueType, error) {
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return nil, fmt.Errorf("list search attributes: %w", err)
	}
	missing := map[string]enums.IndexedValueType{}
	for name, typ := range workflows.SearchAttributeTypes {
		if _, ok := resp.GetCustomAttributes()[name]; !ok {
			missing[name] = typ
		}
	}
	return missing, nil
}

// EnsureSearchAttributes registers Relink's search attributes in the
// namespace; attributes that already exist are left alone, so it is safe to
// run on every start.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	_, err := AddMissingSearchAttributes(ctx, c, namespace)
	return err
}

// AddMissingSearchAttributes is EnsureSearchAttributes, saying whether it
// added any.
func AddMissingSearchAttributes(ctx context.Context, c client.Client, namespace string) (added bool, err error) {
	missing, err := MissingSearchAttributes(ctx, c, namespace)
	if err != nil || len(missing) == 0 {
		return false, err
	}
	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        namespace,
		SearchAttributes: missing,
	})
	var exists *serviceerror.AlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return false, fmt.Errorf("add search attributes: %w", err)
	}
	return err == nil, nil // (AlreadyExists: another process added them)
}
