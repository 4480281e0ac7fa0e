package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/relink-dev/relink/app"
	"github.com/relink-dev/relink/workflows"
)

// runGateway runs the production gateway against the configured Temporal
// (the TEMPORAL_* variables or profile). It listens at once and waits for
// Temporal meanwhile: /healthz answers, /readyz and the routes that need
// Temporal answer 503 until it is reachable (gateway/waiting.go), so an
// orchestrator holds traffic back instead of restarting a gateway started
// before its server.
func runGateway(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, logger, err := app.LoadConfig(ctx)
	if err != nil {
		return err
	}
	if err := cfg.RequireAPIKey(); err != nil {
		return err
	}
	if err := cfg.RequireLinkURL(); err != nil {
		return err
	}
	if cfg.Gateway.ListenAddr == "" {
		cfg.Gateway.ListenAddr = ":8080"
	}
	providers := app.NewProviders(cfg, nil)
	if len(providers.APIs) == 0 {
		return app.ErrNoProvider
	}
	// Built, and its settings checked, before Temporal answers: a bad
	// setting still stops the process at once.
	gw, err := app.NewGateway(cfg, nil, logger, providers, nil)
	if err != nil {
		return err
	}
	reg, stopMetrics, err := app.StartMetrics(cfg, logger)
	if err != nil {
		return err
	}
	defer stopMetrics()
	gw.Metrics = reg
	connected := gw.ServeBeforeTemporal()
	srv := app.NewHTTPServer(cfg.Gateway.ListenAddr, gw.Handler())
	ln, err := net.Listen("tcp", cfg.Gateway.ListenAddr)
	if err != nil {
		return err
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("gateway listening", "addr", cfg.Gateway.ListenAddr, "temporal", cfg.Temporal.Address, "namespace", cfg.Temporal.Namespace,
		"payloadEncryption", gw.Codec != nil, "clientTokens", gw.ClientTokens != nil, "corsOrigins", cfg.Gateway.CORSOrigins)
	tc, err := app.DialUntilConnected(ctx, cfg.Temporal, logger, reg.Handler)
	if err != nil {
		Shutdown(srv, logger)
		if ctx.Err() != nil {
			return nil // stopped while waiting for Temporal
		}
		return err
	}
	defer tc.Close()
	connected(tc)
	logger.Info("gateway ready: connected to Temporal", "temporal", cfg.Temporal.Address, "namespace", cfg.Temporal.Namespace)
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return err
	}
	Shutdown(srv, logger)
	return nil
}

// setupWait is how long `relink setup` waits by default for Temporal and
// the namespace: a namespace just created takes some seconds to be
// visible on every frontend, and a server started beside the setup job
// some more to answer.
const setupWait = 2 * time.Minute

// runSetup registers the search attributes on a cluster and creates or
// updates the sweeps' schedules, waiting up to -wait for Temporal and the
// namespace to be there.
func runSetup(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("setup", flag.ContinueOnError)
	wait := fs.Duration("wait", setupWait, "how long to wait for Temporal and the namespace to be reachable (0: try once)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *wait < 0 {
		return UsageError("-wait must not be negative")
	}
	cfg, logger, err := app.LoadConfig(ctx)
	if err != nil {
		return err
	}
	plans := app.SweepPlans(cfg, app.NewProviders(cfg, nil))
	var (
		tc      client.Client
		lastErr error
	)
	defer func() {
		if tc != nil {
			tc.Close()
		}
	}()
	// Both steps are idempotent, so a try that failed halfway (the
	// namespace visible on one frontend, not yet on the next) is redone.
	try := func(ctx context.Context) error {
		if tc == nil {
			if tc, lastErr = app.Dial(ctx, cfg.Temporal, logger, nil); lastErr != nil {
				return lastErr // tc stays nil: the next try dials again
			}
		}
		if lastErr = app.EnsureSearchAttributes(ctx, tc, cfg.Temporal.Namespace); lastErr != nil {
			return lastErr
		}
		lastErr = app.EnsureSweepSchedules(ctx, tc, cfg, plans, logger)
		return lastErr
	}
	retryable := func(err error) bool {
		// A dial is retried whatever failed (the server may not be up
		// yet); at the server, only an absent namespace or an overloaded
		// or unreachable server is: a refusal is final.
		return *wait > 0 && (tc == nil || app.TemporalNotThereYet(err))
	}
	waitCtx, cancel := ctx, context.CancelFunc(func() {})
	if *wait > 0 {
		waitCtx, cancel = context.WithTimeout(ctx, *wait)
	}
	defer cancel()
	err = app.RetryTemporal(waitCtx, logger, cfg.Temporal, app.TemporalBackoff,
		"Temporal or the namespace is not ready yet; retrying", retryable, try)
	if err != nil && waitCtx.Err() != nil && ctx.Err() == nil {
		return fmt.Errorf("Temporal at %s, namespace %s, was still not ready after %s (-wait): %w; "+
			"if the namespace does not exist, create it (temporal operator namespace create --namespace %s) or fix TEMPORAL_NAMESPACE",
			cfg.Temporal.Address, cfg.Temporal.Namespace, *wait, lastErr, cfg.Temporal.Namespace)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "search attributes registered in namespace %s\n", cfg.Temporal.Namespace)
	if interval, on := cfg.Reconcile.SweepInterval(); on {
		for _, p := range plans {
			fmt.Fprintf(stdout, "schedule %s: sweeps %s every %s from its %s\n", workflows.ScheduleID(p.Provider), p.Provider, interval, p.Source)
		}
	} else {
		fmt.Fprintln(stdout, "reconciliation sweeps are off (RELINK_RECONCILE_INTERVAL=off): their schedules are paused")
	}
	return nil
}

// Shutdown stops an HTTP server, letting requests in flight finish.
func Shutdown(srv *http.Server, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Warn("gateway shutdown", "error", err)
	}
}
