package gateway

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"go.temporal.io/sdk/client"
	"golang.org/x/sync/semaphore"

	"github.com/relink-dev/relink/intake"
	"github.com/relink-dev/relink/workflows"
)

// errStartsBusy: a start found every start slot taken until its request's
// wait ran out. Nothing was recorded; the caller retries (503).
var errStartsBusy = errors.New("too many repairs are starting at once")

// startWorkflow starts a repair through one of this gateway's
// StartsInFlight slots, held for the start call alone. A burst of breaks
// (a bank's outage marks thousands of connections repairable at once, and
// the provider sends their webhooks as fast as it can) then puts a bounded
// number of starts on Temporal, not one per open request, and past the
// wait the provider is told to redeliver. The bound is per process (it
// shapes load, it keeps no state): with several gateways each holds its
// own. Lower is kinder to the users repairing during a burst, at the cost
// of the burst's start rate: the README's Performance section has both.
func (g *Gateway) startWorkflow(ctx context.Context, opts client.StartWorkflowOptions, in workflows.RepairInput) (client.WorkflowRun, error) {
	g.startsOnce.Do(func() {
		if g.StartsInFlight > 0 {
			g.starts = semaphore.NewWeighted(int64(g.StartsInFlight))
		}
	})
	// A free slot is taken at once, whatever the deadline (Acquire fails
	// on a passed deadline even then): the deadline bounds only waiting.
	if g.starts != nil && g.starts.TryAcquire(1) {
		defer g.starts.Release(1)
	} else if g.starts != nil {
		deadline, ok := ctx.Value(startDeadlineKey{}).(time.Time)
		if !ok {
			deadline = time.Now().Add(g.startWait())
		}
		waitCtx, cancel := context.WithDeadline(ctx, deadline)
		err := g.starts.Acquire(waitCtx, 1)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err() // the caller left
			}
			return nil, errStartsBusy
		}
		defer g.starts.Release(1)
	}
	return g.Temporal.ExecuteWorkflow(ctx, opts, workflows.WorkflowName, in)
}

// startDeadlineKey carries a request's one deadline for start slots: a
// webhook with several repairable events waits StartWait in all, not
// StartWait per event.
type startDeadlineKey struct{}

// withStartDeadline gives the request's starts StartWait from now.
func (g *Gateway) withStartDeadline(ctx context.Context) context.Context {
	return context.WithValue(ctx, startDeadlineKey{}, time.Now().Add(g.startWait()))
}

func (g *Gateway) startWait() time.Duration {
	if g.StartWait <= 0 {
		return defaultStartWait
	}
	return g.StartWait
}

// defaultStartWait is StartWait when unset: well inside the time a webhook
// sender waits for its answer (Quiltt's is reported as 20 s), so a
// delivery that waits and then gets 503 is retried, not timed out.
const defaultStartWait = 5 * time.Second

// busyRetryAfter is the Retry-After of a start turned away: 1 to 4
// seconds, spread so that the callers of one burst do not all come back
// in the same second.
func busyRetryAfter() time.Duration {
	return time.Duration(1+rand.IntN(4)) * time.Second
}

// intake is this gateway's start-or-join path, its starts going through
// the admission control above.
func (g *Gateway) intake() *intake.Intake {
	g.intakeOnce.Do(func() {
		g.intakeDesk = &intake.Intake{
			Temporal: g.Temporal, Namespace: g.Namespace, TaskQueue: g.TaskQueue,
			Codec: g.Codec, Start: g.startWorkflow, Now: g.now,
		}
	})
	return g.intakeDesk
}
