package dev

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/relink-dev/relink/bench"
	"github.com/relink-dev/relink/cli"
)

// runBench is `relink bench`: see package bench.
func runBench(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	temporal := fs.String("temporal", "", "an existing Temporal frontend (host:port); empty starts the embedded server")
	namespace := fs.String("namespace", "default", "namespace")
	n := fs.Int("n", 1000, "repairs started and timed to AWAITING_USER (at least twice -samples)")
	senders := fs.String("senders", "8,32,64", "concurrent senders of the start-rate comparison")
	perLevel := fs.Int("per-level", 300, "repairs each path starts per concurrency level (in 4 rounds, taking turns)")
	waiting := fs.String("waiting", "1000,10000", "waiting repairs at which the worker's memory is read")
	samples := fs.Int("samples", 100, "latency samples at rest, and again under load")
	load := fs.Int("load", 1000, "repairs started while the loaded latency samples are taken")
	sweep := fs.Int("sweep", 100000, "inventory entries one reconciliation sweep reads (0: no sweep)")
	sweepOnly := fs.Bool("sweep-only", false, "measure the sweep alone")
	shapes := fs.Bool("shapes", false, "measure the user path side by side with a no-op workflow under each burst shape")
	userPathOnly := fs.Bool("user-path-only", false, "measure that alone")
	shapeSamples := fs.Int("shape-samples", 20, "samples of each path per burst shape")
	shapeTime := fs.Duration("shape-time", 30*time.Second, "how long a paced burst lasts")
	backlog := fs.String("backlog", "", "measure only the user path while backlogs of these sizes drain (e.g. 250,1000,4000)")
	backlogSlots := fs.Int("backlog-slots", 2, "task slots of the worker that drains a backlog")
	backlogSamples := fs.Int("backlog-samples", 20, "user-path samples per backlog size")
	workerBinary := fs.String("worker", "", "the worker binary to measure (default: go build ./worker/relink-worker)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	levels, err := ints(*senders)
	if err != nil {
		return cli.UsageError("-senders: %v", err)
	}
	marks, err := ints(*waiting)
	if err != nil {
		return cli.UsageError("-waiting: %v", err)
	}
	var backlogs []int
	if *backlog != "" {
		if backlogs, err = ints(*backlog); err != nil {
			return cli.UsageError("-backlog: %v", err)
		}
		if *backlogSlots < 2 || *backlogSamples < 1 {
			return cli.UsageError("-backlog-slots must be at least 2 and -backlog-samples at least 1")
		}
	}
	if *n < 2**samples {
		return cli.UsageError("-n must be at least twice -samples")
	}
	if *perLevel < bench.StartRateRounds {
		return cli.UsageError("-per-level must be at least %d (each path starts in that many rounds)", bench.StartRateRounds)
	}
	binary := *workerBinary
	if binary == "" {
		// The production worker, built from this checkout: its memory is
		// what the bench reports, so it must not be this (much larger)
		// binary, which embeds the Temporal server.
		dir, err := os.MkdirTemp("", "relink-bench-worker-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "relink-worker")
		build := exec.CommandContext(ctx, "go", "build", "-o", binary, "./worker/relink-worker")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build ./worker (run the bench from the repository, or pass -worker bin/relink-worker): %w", err)
		}
	}
	return bench.Run(ctx, bench.Options{
		TemporalAddress: *temporal, Namespace: *namespace,
		Senders: levels, PerLevel: *perLevel, N: *n, Waiting: marks, Samples: *samples, Load: *load,
		Sweep: *sweep, SweepOnly: *sweepOnly,
		Shapes: *shapes || *userPathOnly, UserPathOnly: *userPathOnly, ShapeSamples: *shapeSamples, ShapeTime: *shapeTime,
		Backlog: backlogs, BacklogSlots: *backlogSlots, BacklogSamples: *backlogSamples,
		WorkerCommand: []string{binary}, Out: stdout,
	})
}

func ints(list string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(list, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, v)
	}
	return out, nil
}
