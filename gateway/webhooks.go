package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/intake"
	"github.com/relink-dev/relink/metrics"
)

type webhookResult struct {
	Received   int `json:"received"`
	Applied    int `json:"applied"`
	Duplicates int `json:"duplicates"`
	// Ignored counts events for connections with no open repair.
	Ignored int `json:"ignored"`
}

// webhook verifies a provider's webhook and applies its events: a
// repairable event starts the connection's repair or joins the open one;
// the others go to the open repair as provider-event signals. Nothing is
// started or signalled unless the whole request verifies.
func (g *Gateway) webhook(w http.ResponseWriter, r *http.Request) {
	provider := r.PathValue("provider")
	log := g.logger(r.Context()).With("provider", provider)
	recv, ok := g.Receivers[provider]
	if !ok {
		g.countWebhook("unknown", "rejected", "unknown_provider", 1)
		writeError(w, http.StatusNotFound, codeUnknownProvider, "no webhook receiver for provider "+provider)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			log.Warn("webhook rejected: body too large")
			g.countWebhook(provider, "rejected", "too_large", 1)
			writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, "webhook body over 1 MiB")
			return
		}
		g.countWebhook(provider, "rejected", "unreadable", 1)
		writeError(w, http.StatusBadRequest, codeBadRequest, "could not read the body")
		return
	}
	events, err := recv.Receive(r, body)
	switch {
	case errors.Is(err, aggregator.ErrNoWebhooks):
		g.countWebhook(provider, "rejected", "no_webhooks", 1)
		writeError(w, http.StatusNotFound, codeNotFound, err.Error())
		return
	case errors.Is(err, aggregator.ErrWebhookUnavailable):
		log.Warn("webhook not verified yet", "error", err)
		g.countWebhook(provider, "rejected", "key_unavailable", 1)
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, err.Error())
		return
	case errors.Is(err, aggregator.ErrWebhookSignature):
		log.Warn("webhook rejected", "error", err, "remoteAddr", r.RemoteAddr)
		g.countWebhook(provider, "rejected", "signature", 1)
		writeError(w, http.StatusUnauthorized, codeUnauthorized, err.Error())
		return
	case err != nil:
		log.Warn("webhook rejected", "error", err)
		g.countWebhook(provider, "rejected", "malformed", 1)
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
		return
	}

	for i, ev := range events {
		if !validID(ev.ConnectionID) || (ev.ProfileID != "" && !validID(ev.ProfileID)) {
			log.Warn("webhook rejected: unusable connection or profile id", "event", i)
			g.countWebhook(provider, "rejected", "bad_id", 1)
			writeError(w, http.StatusBadRequest, codeBadRequest,
				fmt.Sprintf("events[%d]: connection and profile ids must be 1 to 256 printable ASCII characters, without spaces or quotes", i))
			return
		}
	}

	res, failure := g.applyEvents(r.Context(), provider, events)
	switch {
	case failure.err == nil && res.NotApplied > 0:
		// The budget ran out: what was applied stays applied, and the
		// provider's redelivery applies the rest (the applied ones come
		// back as duplicates, dropped before they reach a repair).
		log.Warn("webhook partly applied within its time budget; the provider will redeliver", "received", res.Received,
			"applied", res.Applied, "duplicates", res.Duplicates, "ignored", res.Ignored, "notApplied", res.NotApplied)
		g.countWebhook(provider, "rejected", "over_budget", int64(res.NotApplied))
		writeRetry(w, http.StatusServiceUnavailable, codeUnavailable,
			fmt.Sprintf("%d of %d events handled in %s, %d not yet: redeliver (those handled are dropped as duplicates)",
				res.Received-res.NotApplied, res.Received, g.webhookBudget(), res.NotApplied), time.Second)
	case errors.Is(failure.err, errStartsBusy):
		// This gateway is starting all the repairs it can.
		log.Warn("webhook event not applied: too many repairs starting; the provider will retry", "eventId", failure.event.EventID,
			"connectionId", failure.event.ConnectionID)
		g.countWebhook(provider, "rejected", "busy", int64(res.NotApplied))
		writeRetry(w, http.StatusServiceUnavailable, codeUnavailable, "too many repairs are starting at once; retry the delivery", busyRetryAfter())
	case failure.err != nil && r.Context().Err() != nil:
		// The sender hung up; it retries the request as it would a
		// timeout.
		log.Warn("webhook events not applied: the sender left", "error", failure.err, "notApplied", res.NotApplied)
		g.countWebhook(provider, "rejected", "sender_left", int64(res.NotApplied))
	case failure.err != nil:
		// The provider retries the request; events already applied are
		// dropped as duplicates.
		log.Warn("webhook event not applied; the provider will retry", "eventId", failure.event.EventID,
			"connectionId", failure.event.ConnectionID, "error", failure.err)
		g.countWebhook(provider, "rejected", "temporal_unavailable", int64(res.NotApplied))
		writeRetry(w, http.StatusServiceUnavailable, codeUnavailable, "could not reach Temporal; retry the delivery", 5*time.Second)
	default:
		writeJSON(w, http.StatusOK, res.webhookResult)
	}
}

// webhookBudget is how long one delivery's events are applied for: inside
// the time a sender waits for its answer (Quiltt's is reported as 20 s,
// many wait 30), so a huge or slow delivery is answered 503 with what was
// applied, and redelivered, rather than timed out mid-way.
const webhookBudget = 15 * time.Second

func (g *Gateway) webhookBudget() time.Duration {
	if g.WebhookBudget > 0 {
		return g.WebhookBudget
	}
	return webhookBudget
}

// webhookGrace is how long past the budget a call already under way may
// take.
const webhookGrace = 5 * time.Second

// eventsInFlight bounds how many of one delivery's connections are handled
// at once.
const eventsInFlight = 16

// recentEvents remembers the last recentEventsKept webhook events this
// process handled (started, applied or found a duplicate of), oldest
// forgotten first. It only saves work: an event it does not know is
// handled through Temporal, which dedupes it all the same. An ignored
// event is not kept: a repair may open before its redelivery.
type recentEvents struct {
	mu   sync.Mutex
	keys map[string]bool
	ring []string
	next int
}

const recentEventsKept = 1 << 16

func (r *recentEvents) contains(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys[key]
}

func (r *recentEvents) add(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keys == nil {
		r.keys = map[string]bool{}
		r.ring = make([]string, recentEventsKept)
	}
	if r.keys[key] {
		return
	}
	delete(r.keys, r.ring[r.next])
	r.ring[r.next] = key
	r.keys[key] = true
	r.next = (r.next + 1) % recentEventsKept
}

// deliveryResult is webhookResult and the events not applied.
type deliveryResult struct {
	webhookResult
	NotApplied int
}

// eventFailure is the first event that could not be applied, and why.
type eventFailure struct {
	event aggregator.WebhookEvent
	err   error
}

// applyEvents applies a delivery's events, several connections at once
// and each connection's events in their order, for at most
// webhookBudget. The first failure stops it from starting more.
func (g *Gateway) applyEvents(ctx context.Context, provider string, events []aggregator.WebhookEvent) (deliveryResult, eventFailure) {
	log := g.logger(ctx).With("provider", provider)
	var order []string
	byConnection := map[string][]aggregator.WebhookEvent{}
	for _, ev := range events {
		if _, ok := byConnection[ev.ConnectionID]; !ok {
			order = append(order, ev.ConnectionID)
		}
		byConnection[ev.ConnectionID] = append(byConnection[ev.ConnectionID], ev)
	}
	// Each delivery starts at a random connection: a batch too big for one
	// budget makes progress on every redelivery, even where handling a
	// duplicate costs as much as applying an event.
	offset := rand.IntN(len(order) + 1)
	order = append(order[offset:], order[:offset]...)
	budget := time.Now().Add(g.webhookBudget())
	sender := ctx
	// Calls under way when the budget ends get a little longer, not
	// forever: the answer must reach the sender before it gives up.
	ctx, cancel := context.WithDeadline(g.withStartDeadline(ctx), budget.Add(webhookGrace))
	defer cancel()
	var (
		mu      sync.Mutex
		res     = deliveryResult{webhookResult: webhookResult{Received: len(events)}}
		failure eventFailure
	)
	connections := make(chan string)
	var wg sync.WaitGroup
	for range min(eventsInFlight, len(order)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for conn := range connections {
				for i, ev := range byConnection[conn] {
					mu.Lock()
					stop := failure.err != nil || time.Now().After(budget)
					mu.Unlock()
					if stop {
						mu.Lock()
						res.NotApplied += len(byConnection[conn]) - i
						mu.Unlock()
						break
					}
					key := provider + "\x00" + ev.EventID
					if ev.EventID != "" && g.handledEvents.contains(key) {
						mu.Lock()
						res.Duplicates++
						mu.Unlock()
						g.countWebhook(provider, intake.Duplicate.Label(), "", 1)
						continue
					}
					outcome, err := g.applyEvent(ctx, provider, ev)
					if err == nil && ev.EventID != "" && outcome != intake.Ignored {
						g.handledEvents.add(key)
					}
					mu.Lock()
					switch {
					case err != nil && ctx.Err() != nil && sender.Err() == nil:
						res.NotApplied++ // out of time: redelivered, like the rest
					case err != nil:
						if failure.err == nil {
							failure = eventFailure{event: ev, err: err}
						}
						res.NotApplied++
					case outcome == intake.Started || outcome == intake.Applied || outcome == intake.Queued:
						res.Applied++
					case outcome == intake.Duplicate:
						res.Duplicates++
					default:
						res.Ignored++
					}
					mu.Unlock()
					if err == nil {
						g.countWebhook(provider, outcome.Label(), "", 1)
						log.Info("webhook event "+string(outcome), "eventId", ev.EventID, "eventType", ev.Type,
							"connectionId", ev.ConnectionID, "kind", ev.Kind)
					}
				}
			}
		}()
	}
	for _, conn := range order {
		connections <- conn
	}
	close(connections)
	wg.Wait()
	return res, failure
}

// countWebhook counts webhook events by outcome (applied, duplicate,
// ignored), and requests rejected whole, by reason. provider is always a
// configured one or "unknown", so a stranger's paths cannot mint labels.
func (g *Gateway) countWebhook(provider, result, reason string, n int64) {
	tags := map[string]string{"provider": provider, "result": result}
	if reason != "" {
		tags["reason"] = reason
	}
	g.metricsHandler().WithTags(tags).Counter(metrics.Webhooks).Inc(n)
}

// applyEvent hands one event to the connection's repair through the
// start-or-join path every trigger takes (package intake).
func (g *Gateway) applyEvent(ctx context.Context, provider string, ev aggregator.WebhookEvent) (intake.Outcome, error) {
	if ev.At.After(g.now().Add(5 * time.Minute)) {
		g.logger(ctx).Warn("webhook event dated ahead; taken as now", "provider", provider,
			"connectionId", ev.ConnectionID, "eventId", ev.EventID, "at", ev.At)
	}
	outcome, _, err := g.intake().ApplyEvent(ctx, provider, ev, g.Defaults)
	return outcome, err
}
