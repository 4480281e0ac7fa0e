package dev

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/relink-dev/relink/app"
	"github.com/relink-dev/relink/config"
)

// listedUnreplayable is how many unreplayable repairs the message names.
const listedUnreplayable = 10

// terminateReason is recorded on each repair -terminate-unreplayable ends.
const terminateReason = "relink dev: recorded by an older build of the workflow code, which this build cannot replay"

// checkReplay replays every open repair on this build before the worker
// starts. Repairs an older build recorded may not replay on changed
// workflow code, and the worker would fail their tasks over and over: the
// dev stack refuses to start and says which they are and what to do, or,
// with -terminate-unreplayable, terminates them and carries on.
func checkReplay(ctx context.Context, tc client.Client, cfg config.Config, logger *slog.Logger, embedded, terminate bool, stdout io.Writer, progress func(string, ...any)) error {
	progress("replaying the open repairs on this build's workflow code")
	began := time.Now()
	check, err := app.CheckOpenRepairsReplay(ctx, tc, cfg.Temporal, logger)
	if err != nil {
		return fmt.Errorf("replay the open repairs: %w", err)
	}
	logger.Info("open repairs replayed", "open", check.Open, "failed", len(check.Failed), "took", time.Since(began))
	if len(check.Failed) == 0 {
		return nil
	}
	if terminate {
		for _, exec := range check.Failed {
			if err := tc.TerminateWorkflow(ctx, exec.ID, exec.RunID, terminateReason); err != nil {
				return fmt.Errorf("terminate %s: %w", exec.ID, err)
			}
		}
		fmt.Fprintf(stdout, "Terminated %d open repairs this build cannot replay (-terminate-unreplayable):\n%s", len(check.Failed), listRepairs(check))
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d of the %d open repairs were recorded by an older build of the workflow code and cannot be replayed by this one; the worker would fail on them over and over, so the dev stack did not start:\n", len(check.Failed), check.Open)
	b.WriteString(listRepairs(check))
	fmt.Fprintf(&b, "The first one fails with: %s\n", firstLine(check.FirstError.Error(), 300))
	b.WriteString("To go on, either\n")
	b.WriteString("  terminate them and start:   go run ./dev -terminate-unreplayable   (relink dev -terminate-unreplayable)\n")
	fmt.Fprintf(&b, "  or one at a time:           temporal workflow terminate --address %s --namespace %s --workflow-id <id> --reason %q\n",
		cfg.Temporal.Address, cfg.Temporal.Namespace, "older build")
	if embedded {
		fmt.Fprintf(&b, "  or start over, empty:       rm -rf %s   (task reset)\n", cfg.Dev.DataDir)
	}
	return fmt.Errorf("%s", strings.TrimSuffix(b.String(), "\n"))
}

// listRepairs names the first of the failed repairs, and counts the rest.
func listRepairs(check app.ReplayCheck) string {
	var b strings.Builder
	for i, exec := range check.Failed {
		if i == listedUnreplayable {
			fmt.Fprintf(&b, "  … and %d more\n", len(check.Failed)-listedUnreplayable)
			break
		}
		fmt.Fprintf(&b, "  %s\n", exec.ID)
	}
	return b.String()
}

// firstLine is s's first line, at most n bytes of it.
func firstLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
