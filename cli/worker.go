package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/app"
	"github.com/relink-dev/relink/bench/noop"
	"github.com/relink-dev/relink/config"
	"github.com/relink-dev/relink/version"
)

// RunWorker is the production worker (./worker/relink-worker, built as relink-worker):
// the ConnectionRepair workflow and its activities over the enabled
// providers, against the configured Temporal (TEMPORAL_* variables or
// profile, as the Temporal CLI reads them), until SIGINT or SIGTERM. It
// waits for a Temporal or a namespace that is not there yet (a container
// started before its server). It returns the process exit code.
func RunWorker(stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runWorker(ctx); err != nil {
		fmt.Fprintln(stderr, "relink worker:", err)
		return 1
	}
	return 0
}

func runWorker(ctx context.Context) error {
	cfg, logger, err := app.LoadConfig(ctx)
	if err != nil {
		return err
	}
	versioned, err := workerVersioning(cfg.Worker, logger)
	if err != nil {
		return err
	}
	if err := cfg.RequireLinkURL(); err != nil {
		return err
	}
	if err := cfg.RequireProductionKeys(); err != nil {
		return err
	}
	var sb *sandbox.Provider
	if os.Getenv("RELINK_BENCH_SANDBOX") == "1" {
		// `relink bench` runs this binary over a sandbox that adopts its
		// connections, so the worker it measures is the production one.
		sb = &sandbox.Provider{Adopt: sandbox.BenchScript, Now: time.Now, Logger: logger}
	}
	providers := app.NewProviders(cfg, sb)
	acts, err := app.NewActivities(cfg, logger, providers)
	if err != nil {
		return err
	}
	if len(acts.Providers.Names()) == 0 {
		return app.ErrNoProvider
	}
	tc, _, closeAll, err := app.Connect(ctx, cfg, logger)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for Temporal
		}
		return err
	}
	defer closeAll()
	if err := checkSearchAttributes(ctx, tc, cfg.Temporal, logger); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the namespace
		}
		return err
	}
	w, err := app.NewWorker(tc, cfg, logger, providers, acts)
	if err != nil {
		return err
	}
	if sb != nil {
		// The bench's yardstick, on the same worker (package noop).
		w.RegisterWorkflowWithOptions(noop.Workflow, workflow.RegisterOptions{Name: noop.Name})
	}
	logger.Info("worker starting", "taskQueue", cfg.Temporal.TaskQueue, "namespace", cfg.Temporal.Namespace,
		"providers", acts.Providers.Names(), "payloadEncryption", cfg.Temporal.PayloadKeys != "",
		"version", version.String(), "versioned", versioned, "deployment", cfg.Worker.DeploymentName, "buildId", cfg.Worker.BuildID)
	return w.Run(doneChannel(ctx))
}

// checkSearchAttributes refuses a namespace that lacks a search attribute
// this build sets: it would wedge every repair it runs, until `relink
// setup` ran. While the namespace is not found yet (just created, or not
// yet: the worker started first) or Temporal does not answer, it waits.
func checkSearchAttributes(ctx context.Context, tc client.Client, c config.Temporal, logger *slog.Logger) error {
	var missing map[string]enums.IndexedValueType
	err := app.RetryTemporal(ctx, logger, c, app.TemporalBackoff, "the namespace is not found yet, or Temporal does not answer; retrying",
		app.TemporalNotThereYet, func(ctx context.Context) (err error) {
			missing, err = app.MissingSearchAttributes(ctx, tc, c.Namespace)
			return err
		})
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		logger.Warn("could not check the namespace's search attributes (is the worker's identity allowed to list them?); run relink setup after every upgrade", "error", err)
	case len(missing) > 0:
		return fmt.Errorf("namespace %s lacks the search attributes %v this build sets: run `relink setup`", c.Namespace, slices.Sorted(maps.Keys(missing)))
	}
	return nil
}

// doneChannel is ctx's end as the channel worker.Run stops on.
func doneChannel(ctx context.Context) <-chan any {
	done := make(chan any)
	go func() {
		<-ctx.Done()
		close(done)
	}()
	return done
}

// workerVersioning is the production worker's choice: pinned to its build
// (Worker Versioning) unless the operator set RELINK_UNVERSIONED=true,
// which it warns about: nothing then keeps an open repair off a build
// whose workflow code it cannot replay.
func workerVersioning(w config.Worker, logger *slog.Logger) (versioned bool, err error) {
	versioned, err = w.ProductionVersioning()
	if err == nil && !versioned {
		logger.Warn("worker unversioned (RELINK_UNVERSIONED=true): every open repair replays on whichever build picks it up, " +
			"so a change to the workflow code needs a drain (every open repair finished) before a new build is deployed; " +
			"set RELINK_DEPLOYMENT_NAME and RELINK_BUILD_ID to pin each repair to its build instead")
	}
	return versioned, err
}
