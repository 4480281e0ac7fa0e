package app

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/relink-dev/relink/config"
)

// Backoff is the wait between tries to reach Temporal: First after the
// first failed try, doubling after each one up to Max.
type Backoff struct {
	First, Max time.Duration
}

// TemporalBackoff is how the production binaries wait for a Temporal that
// is not there yet (a container started before its server, a namespace
// not yet visible): soon at first, then no more than twice a minute.
var TemporalBackoff = Backoff{First: time.Second, Max: 30 * time.Second}

// Wait is the pause after the attempt-th failed try (1 for the first): the
// doubled wait, capped at Max, less up to a fifth at random, so that
// replicas started together do not knock in step. It never exceeds Max.
func (b Backoff) Wait(attempt int) time.Duration {
	d := b.First
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

// tryTimeout bounds one try, so an address that swallows packets costs a
// try, not the whole wait.
const tryTimeout = 10 * time.Second

// RetryTemporal calls try until it succeeds, returns an error retryable
// does not accept, or ctx ends. Each failed try is logged at WARN as msg,
// with where it knocked (address and namespace, never credentials), the
// attempt, the wait before the next and the error. When ctx ends it
// returns ctx's error joined with the last try's.
func RetryTemporal(ctx context.Context, logger *slog.Logger, c config.Temporal, b Backoff, msg string,
	retryable func(error) bool, try func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		tryCtx, cancel := context.WithTimeout(ctx, tryTimeout)
		err := try(tryCtx)
		cancel()
		if err == nil {
			if attempt > 1 {
				logger.Info("Temporal answered", "address", c.Address, "namespace", c.Namespace, "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), err)
		}
		if !retryable(err) {
			return err
		}
		wait := b.Wait(attempt)
		logger.Warn(msg, "address", c.Address, "namespace", c.Namespace, "attempt", attempt, "retryIn", wait.Round(time.Millisecond).String(), "error", err)
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(wait):
		}
	}
}

// DialUntilConnected dials Temporal until it answers or ctx ends (then it
// returns ctx's error): a worker or gateway started before its server
// waits for it rather than exiting. Every failure is retried, a refused
// credential too, since the server may be the one not ready yet; each is
// logged at WARN with the error.
func DialUntilConnected(ctx context.Context, c config.Temporal, logger *slog.Logger, m client.MetricsHandler) (client.Client, error) {
	var tc client.Client
	err := RetryTemporal(ctx, logger, c, TemporalBackoff, "Temporal is not reachable yet; retrying",
		func(error) bool { return true },
		func(ctx context.Context) (err error) {
			tc, err = Dial(ctx, c, logger, m)
			return err
		})
	return tc, err
}

// TemporalNotThereYet says whether err is what a Temporal server or
// namespace that is not up yet answers: unreachable or overloaded, a try
// that timed out, or a namespace not found (a namespace just created takes
// some seconds to be visible on every frontend; the operator API of a
// SQL-visibility server answers Unavailable for it).
func TemporalNotThereYet(err error) bool {
	var (
		unavailable *serviceerror.Unavailable
		deadline    *serviceerror.DeadlineExceeded
		nsNotFound  *serviceerror.NamespaceNotFound
		notFound    *serviceerror.NotFound
	)
	if errors.As(err, &unavailable) || errors.As(err, &deadline) || errors.As(err, &nsNotFound) ||
		errors.As(err, &notFound) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	code := status.Code(err)
	return code == codes.Unavailable || code == codes.DeadlineExceeded
}
