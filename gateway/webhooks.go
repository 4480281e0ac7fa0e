package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/metrics"
	"github.com/relink-dev/relink/workflows"
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
		case eventApplied, eventQueued:
			res.Applied++
		case eventDuplicate:
			res.Duplicates++
		default:
			res.Ignored++
		}
		g.countWebhook(provider, outcome.label(), "", 1)
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

// maxEventLead is how far ahead of the gateway's clock a provider's event
// time is trusted.
const maxEventLead = 5 * time.Minute

// Webhook fields the workflow records are clipped, so a provider's long
// strings cannot bloat a repair's history.
const (
	maxEventTypeBytes   = 200
	maxEventStatusBytes = 100
)

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// applyEvent hands one event to the connection's repair (see deliver). A
// repairable or proactive event starts a repair if none is open, unless
// the last repair, now closed, already handled it: the same event id, or
// an event dated no later than the break it repaired.
func (g *Gateway) applyEvent(ctx context.Context, provider string, ev aggregator.WebhookEvent) (eventOutcome, error) {
	if now := g.now(); ev.At.After(now.Add(maxEventLead)) {
		// A validly signed event dated ahead (a provider's clock, a bug)
		// would make every real event of the repair look older than the
		// break, and be ignored as stale: it is taken as happening now.
		g.logger(ctx).Warn("webhook event dated ahead; taken as now", "provider", provider,
			"connectionId", ev.ConnectionID, "eventId", ev.EventID, "at", ev.At)
		ev.At = now
	}
	signal := workflows.ProviderEvent{
		EventID:        ev.EventID,
		Kind:           ev.Kind,
		At:             ev.At,
		ProviderStatus: clip(ev.ProviderStatus, maxEventStatusBytes),
		Reason:         clip(ev.Type, maxEventTypeBytes),
	}
	d := delivery{id: workflows.WorkflowID(provider, ev.ConnectionID), msg: workflows.Message{Event: &signal}}
	if ev.Kind == aggregator.EventKindRepairable || ev.Kind == aggregator.EventKindProactive {
		d.start = &workflows.RepairInput{
			Provider:       provider,
			ConnectionID:   ev.ConnectionID,
			ProfileID:      ev.ProfileID,
			Institution:    clip(ev.Institution, maxEventTypeBytes),
			Connector:      clip(ev.Connector, maxEventStatusBytes),
			TriggerEventID: ev.EventID,
			TriggerReason:  signal.Reason,
			DetectedAt:     ev.At,
			Proactive:      ev.Kind == aggregator.EventKindProactive,
			Options:        g.Defaults,
		}
		d.handled = func(last workflows.RepairState) bool {
			if ev.EventID != "" && slices.Contains(last.EventIDs, ev.EventID) {
				return true
			}
			return !ev.At.IsZero() && !last.DetectedAt.IsZero() && !ev.At.After(last.DetectedAt)
		}
	}
	outcome, _, err := g.deliver(ctx, d)
	return outcome, err
}
