package gateway

import (
	"context"
	"errors"
	"time"

	"golang.org/x/sync/semaphore"
)

// errStartsBusy: a delivery that may start a repair found every start slot
// taken for StartWait. Nothing was recorded; the caller retries (503).
var errStartsBusy = errors.New("too many repairs are starting at once")

// startSlot takes one of this gateway's StartsInFlight slots for a
// delivery that may start a repair, waiting up to StartWait; release gives
// it back. A burst of breaks (a bank's outage marks thousands of
// connections repairable at once, and the provider sends their webhooks
// as fast as it can) then puts a bounded number of starts on Temporal,
// not one per open request, and past the wait the provider is told to
// redeliver. The bound is per process (it shapes load, it keeps no
// state): with several gateways each holds its own. Lower is kinder to
// the users repairing during a burst, at the cost of the burst's start
// rate: the README's Performance section has both, measured.
func (g *Gateway) startSlot(ctx context.Context) (release func(), err error) {
	g.startsOnce.Do(func() {
		if g.StartsInFlight > 0 {
			g.starts = semaphore.NewWeighted(int64(g.StartsInFlight))
		}
	})
	if g.starts == nil {
		return func() {}, nil
	}
	wait := g.StartWait
	if wait <= 0 {
		wait = defaultStartWait
	}
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := g.starts.Acquire(waitCtx, 1); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err() // the caller left
		}
		return nil, errStartsBusy
	}
	return func() { g.starts.Release(1) }, nil
}

// defaultStartWait is StartWait when unset: well inside the time a webhook
// sender waits for its answer (Quiltt's is reported as 20 s), so a
// delivery that waits and then gets 503 is retried, not timed out.
const defaultStartWait = 5 * time.Second
