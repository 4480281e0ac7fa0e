package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/relink-dev/relink/app"
	"github.com/relink-dev/relink/workflows"
)

// runGateway runs the production gateway against the configured Temporal
// (the TEMPORAL_* variables or profile).
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
	tc, reg, closeAll, err := app.Connect(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer closeAll()
	providers := app.NewProviders(cfg, nil)
	if len(providers.APIs) == 0 {
		return app.ErrNoProvider
	}
	gw, err := app.NewGateway(cfg, tc, logger, providers, nil)
	if err != nil {
		return err
	}
	gw.Metrics = reg
	srv := app.NewHTTPServer(cfg.Gateway.ListenAddr, gw.Handler())
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.ListenAndServe() }()
	logger.Info("gateway listening", "addr", cfg.Gateway.ListenAddr, "temporal", cfg.Temporal.Address, "namespace", cfg.Temporal.Namespace,
		"payloadEncryption", gw.Codec != nil, "clientTokens", gw.ClientTokens != nil, "corsOrigins", cfg.Gateway.CORSOrigins)
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return err
	}
	Shutdown(srv, logger)
	return nil
}

// runSetup registers the search attributes on a cluster.
func runSetup(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("setup", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, logger, err := app.LoadConfig(ctx)
	if err != nil {
		return err
	}
	tc, err := app.Dial(ctx, cfg.Temporal, logger, nil)
	if err != nil {
		return err
	}
	defer tc.Close()
	if err := app.EnsureSearchAttributes(ctx, tc, cfg.Temporal.Namespace); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "search attributes registered in namespace %s\n", cfg.Temporal.Namespace)
	plans := app.SweepPlans(cfg, app.NewProviders(cfg, nil))
	if err := app.EnsureSweepSchedules(ctx, tc, cfg, plans, logger); err != nil {
		return err
	}
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
