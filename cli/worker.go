package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"time"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/app"
	"github.com/relink-dev/relink/bench/noop"
	"github.com/relink-dev/relink/config"
	"github.com/relink-dev/relink/version"
)

// RunWorker is the production worker (./worker, built as relink-worker):
// the ConnectionRepair workflow and its activities over the enabled
// providers, against the configured Temporal (TEMPORAL_* variables or
// profile, as the Temporal CLI reads them), until SIGINT or SIGTERM. It
// returns the process exit code.
func RunWorker(stderr io.Writer) int {
	if err := runWorker(context.Background()); err != nil {
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
		return err
	}
	defer closeAll()
	// A build that sets a search attribute the namespace lacks would wedge
	// every repair it runs: refuse to start until `relink setup` ran.
	switch missing, err := app.MissingSearchAttributes(ctx, tc, cfg.Temporal.Namespace); {
	case err != nil:
		logger.Warn("could not check the namespace's search attributes (is the worker's identity allowed to list them?); run relink setup after every upgrade", "error", err)
	case len(missing) > 0:
		return fmt.Errorf("namespace %s lacks the search attributes %v this build sets: run `relink setup`", cfg.Temporal.Namespace, slices.Sorted(maps.Keys(missing)))
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
	return w.Run(worker.InterruptCh())
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
