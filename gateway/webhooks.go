package gateway

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"go.temporal.io/api/serviceerror"

	"github.com/relink-dev/relink/activities"
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
	log := g.Logger.With("provider", provider)
	recv, ok := g.Receivers[provider]
	if !ok {
		writeError(w, http.StatusNotFound, codeUnknownProvider, "no webhook receiver for provider "+provider)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			log.Warn("webhook rejected: body too large")
			writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, "webhook body over 1 MiB")
			return
		}
		writeError(w, http.StatusBadRequest, codeBadRequest, "could not read the body")
		return
	}
	events, err := recv.Receive(r, body)
	switch {
	case errors.Is(err, activities.ErrWebhookUnavailable):
		log.Warn("webhook not verified yet", "error", err)
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, err.Error())
		return
	case errors.Is(err, activities.ErrWebhookSignature):
		log.Warn("webhook rejected", "error", err, "remoteAddr", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, codeUnauthorized, err.Error())
		return
	case err != nil:
		log.Warn("webhook rejected", "error", err)
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
		return
	}

	for i, ev := range events {
		if !idPattern.MatchString(ev.ConnectionID) || (ev.ProfileID != "" && !idPattern.MatchString(ev.ProfileID)) {
			log.Warn("webhook rejected: unusable connection or profile id", "event", i)
			writeError(w, http.StatusBadRequest, codeBadRequest,
				fmt.Sprintf("events[%d]: connection and profile ids must be at most 256 printable characters, without quotes", i))
			return
		}
	}

	res := webhookResult{Received: len(events)}
	for _, ev := range events {
		elog := log.With("eventId", ev.EventID, "eventType", ev.Type, "connectionId", ev.ConnectionID)
		key := provider + "/" + ev.EventID
		if ev.EventID != "" && g.Seen.Seen(key) {
			res.Duplicates++
			elog.Info("duplicate webhook event acknowledged")
			continue
		}
		applied, err := g.applyEvent(r, provider, ev)
		if err != nil {
			// The provider retries the request; events already applied are
			// dropped by the workflow as duplicates.
			elog.Error("webhook event not applied", "error", err)
			writeError(w, http.StatusServiceUnavailable, codeUnavailable, "could not reach Temporal; retry the delivery")
			return
		}
		if applied {
			res.Applied++
			elog.Info("webhook event applied", "kind", ev.Kind)
		} else {
			res.Ignored++
			elog.Info("webhook event ignored: no open repair", "kind", ev.Kind)
		}
		if ev.EventID != "" {
			g.Seen.Add(key)
		}
	}
	writeJSON(w, http.StatusOK, res)
}

// applyEvent reports false for an event with no open repair to go to.
func (g *Gateway) applyEvent(r *http.Request, provider string, ev activities.WebhookEvent) (bool, error) {
	signal := workflows.ProviderEvent{
		EventID:        ev.EventID,
		Kind:           ev.Kind,
		At:             ev.At,
		ProviderStatus: ev.ProviderStatus,
		Reason:         ev.Type,
	}
	if ev.Kind == activities.EventKindRepairable || ev.Kind == activities.EventKindProactive {
		in := workflows.RepairInput{
			Provider:       provider,
			ConnectionID:   ev.ConnectionID,
			ProfileID:      ev.ProfileID,
			Institution:    ev.Institution,
			Connector:      ev.Connector,
			TriggerEventID: ev.EventID,
			TriggerReason:  ev.Type,
			DetectedAt:     ev.At,
			Proactive:      ev.Kind == activities.EventKindProactive,
			Options:        g.Defaults,
		}
		_, err := g.signalWithStart(r.Context(), in, signal)
		return err == nil, err
	}
	err := g.Temporal.SignalWorkflow(r.Context(), workflows.WorkflowID(provider, ev.ConnectionID), "",
		workflows.SignalProviderEvent, signal)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return false, nil
	}
	return err == nil, err
}
