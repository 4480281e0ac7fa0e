package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
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

	res := webhookResult{Received: len(events)}
	ctx := g.withStartDeadline(r.Context())
	for _, ev := range events {
		elog := log.With("eventId", ev.EventID, "eventType", ev.Type, "connectionId", ev.ConnectionID)
		outcome, err := g.applyEvent(ctx, provider, ev)
		switch {
		case errors.Is(err, errStartsBusy):
			// As below; this gateway is starting all the repairs it can.
			elog.Warn("webhook event not applied: too many repairs starting; the provider will retry")
			g.countWebhook(provider, "rejected", "busy", 1)
			writeRetry(w, http.StatusServiceUnavailable, codeUnavailable, "too many repairs are starting at once; retry the delivery", busyRetryAfter())
			return
		case err != nil && r.Context().Err() != nil:
			// The sender hung up; it retries the request as it would a
			// timeout.
			elog.Warn("webhook event not applied: the sender left", "error", err)
			g.countWebhook(provider, "rejected", "sender_left", 1)
			return
		}
		if err != nil {
			// The provider retries the request; events already applied are
			// dropped by the workflow as duplicates.
			elog.Warn("webhook event not applied; the provider will retry", "error", err)
			g.countWebhook(provider, "rejected", "temporal_unavailable", 1)
			writeRetry(w, http.StatusServiceUnavailable, codeUnavailable, "could not reach Temporal; retry the delivery", 5*time.Second)
			return
		}
		switch outcome {
		case intake.Started, intake.Applied, intake.Queued:
			res.Applied++
		case intake.Duplicate:
			res.Duplicates++
		default:
			res.Ignored++
		}
		g.countWebhook(provider, outcome.Label(), "", 1)
		elog.Info("webhook event "+string(outcome), "kind", ev.Kind)
	}
	writeJSON(w, http.StatusOK, res)
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
