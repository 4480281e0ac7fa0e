// Package noop is the yardstick `relink bench` holds Relink's user path
// against: a workflow that does nothing but wait for one signal and end,
// run by the same worker on the same server, so that what the bench
// reports is Relink's own cost and not the machine's. The worker
// registers it only in bench mode (RELINK_BENCH_SANDBOX=1).
package noop

import "go.temporal.io/sdk/workflow"

// Name is the workflow's type, Signal the signal that ends it.
const (
	Name   = "BenchNoop"
	Signal = "go"
)

// Workflow waits for Signal and ends.
func Workflow(ctx workflow.Context) error {
	workflow.GetSignalChannel(ctx, Signal).Receive(ctx, nil)
	return nil
}
