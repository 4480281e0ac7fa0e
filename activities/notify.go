package activities

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.temporal.io/sdk/temporal"

	"github.com/relink-dev/relink/activities/aggregator"
)

// Outbound event types, POSTed to the app's RELINK_NOTIFY_URL.
const (
	EventActionRequired = "repair.action_required" // the user must reconnect
	EventReminder       = "repair.reminder"        // still waiting for the user
	EventStatusChanged  = "repair.status_changed"  // any other status change
	EventRepaired       = "repair.repaired"
	EventExpired        = "repair.expired"
	EventUnrepairable   = "repair.unrepairable"
	EventCanceled       = "repair.canceled"
	// EventPing carries no repair: while events to the app fail, it asks
	// the endpoint every few seconds whether it is back (Ping).
	EventPing = "relink.ping"
)

// Event is one notification to the app. ID is stable across retries so the
// app can drop duplicates; Sequence orders one repair's events.
type Event struct {
	ID         string        `json:"id"`
	Type       string        `json:"type"`
	OccurredAt time.Time     `json:"occurredAt"`
	Repair     RepairSummary `json:"repair"`
}

// RepairSummary is the repair as the app sees it in an event. Each run
// (one break) numbers its events from 1 in Sequence.
type RepairSummary struct {
	ID           string `json:"id"`
	RunID        string `json:"runId"`
	Provider     string `json:"provider"`
	ConnectionID string `json:"connectionId"`
	ProfileID    string `json:"profileId,omitempty"`
	Institution  string `json:"institution,omitempty"`
	Status       string `json:"status"`
	Attempt      int    `json:"attempt"`
	Reason       string `json:"reason,omitempty"`
	// ReasonCode is Reason in one stable word (workflows.ReasonCode).
	ReasonCode string `json:"reasonCode,omitempty"`
	Sequence   int    `json:"sequence"`
	Reminder   int    `json:"reminder,omitempty"`
	// Proactive: nothing is broken yet; invite the user rather than warn.
	Proactive bool      `json:"proactive,omitempty"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	// ReconnectURL is the hosted reconnect page for this repair, on
	// action_required and reminder events, when links are enabled. It is
	// minted as the event is sent, so it never enters workflow history.
	ReconnectURL string `json:"reconnectUrl,omitempty"`
}

// Notifier delivers events to the app.
type Notifier interface {
	Notify(ctx context.Context, ev Event) error
}

// Pinger is a Notifier that can tell whether the app's endpoint answers
// without sending it a repair's event.
type Pinger interface {
	Ping(ctx context.Context) error
}

// HTTPNotifier POSTs JSON events to the app, signed as Standard Webhooks
// (standardwebhooks.com) so the app verifies them with the official
// libraries: webhook-id (the event id, the same on every retry),
// webhook-timestamp, and webhook-signature with one "v1,<base64>" per
// secret, so the app can rotate its secret without missing an event. With
// no URL it only logs, which is what the dev stack does unless
// RELINK_NOTIFY_URL is set.
type HTTPNotifier struct {
	URL string
	// Signers are the "whsec_…" secrets, each of which signs every event.
	Signers   []*standardwebhooks.Webhook
	UserAgent string
	Client    *http.Client
	Logger    *slog.Logger
	Now       Clock
}

// NewSigners parses "whsec_<base64>" secrets.
func NewSigners(secrets []string) ([]*standardwebhooks.Webhook, error) {
	signers := make([]*standardwebhooks.Webhook, 0, len(secrets))
	for i, s := range secrets {
		if !strings.HasPrefix(s, "whsec_") {
			return nil, fmt.Errorf("notify secret %d must start with whsec_", i+1)
		}
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			return nil, fmt.Errorf("notify secret %d is not whsec_<base64>", i+1)
		}
		signers = append(signers, wh)
	}
	return signers, nil
}

// Notify implements Notifier. A non-2xx answer is an error, so Temporal
// retries it with the activity's backoff.
func (n *HTTPNotifier) Notify(ctx context.Context, ev Event) error {
	log := n.Logger.With("eventId", ev.ID, "eventType", ev.Type,
		"provider", ev.Repair.Provider, "connectionId", ev.Repair.ConnectionID, "status", ev.Repair.Status)
	if n.URL == "" {
		log.Info("repair event (RELINK_NOTIFY_URL not set, not delivered)")
		return nil
	}
	status, err := n.post(ctx, ev)
	var invalid *temporal.ApplicationError
	switch {
	case errors.As(err, &invalid):
		return err // as it is: Temporal reads only the error it is handed
	case err != nil:
		log.Warn("notify failed", "error", err)
		return fmt.Errorf("notify %s: %w", ev.Type, err)
	}
	if status/100 != 2 {
		log.Warn("notify rejected", "httpStatus", status)
		return &AppAnswered{EventType: ev.Type, Status: status}
	}
	log.Info("notified")
	return nil
}

// Ping asks the app's endpoint whether it answers again, with a signed
// relink.ping event (see EventPing). Any answer but 408, 429 or a 5xx
// means it does: an endpoint that refuses an event type it does not know
// is up all the same.
func (n *HTTPNotifier) Ping(ctx context.Context) error {
	if n.URL == "" {
		return nil
	}
	status, err := n.post(ctx, Event{ID: "ping_" + rand.Text(), Type: EventPing, OccurredAt: n.Now().UTC()})
	switch {
	case err != nil:
		return err
	case appDown(status):
		return fmt.Errorf("ping: app answered %d", status)
	}
	return nil
}

// AppAnswered is the app's answer to an event other than 2xx: Temporal
// retries the event.
type AppAnswered struct {
	EventType string
	Status    int
}

func (e *AppAnswered) Error() string {
	return fmt.Sprintf("notify %s: app answered %d", e.EventType, e.Status)
}

// appDown reports an answer that says the app's endpoint is down or
// overwhelmed (408, 429, 5xx), as opposed to up and refusing.
func appDown(status int) bool {
	return status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout
}

// post sends ev, signed, and returns the app's HTTP status.
func (n *HTTPNotifier) post(ctx context.Context, ev Event) (int, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return 0, invalidEvent(fmt.Sprintf("encode event: %v", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.URL, bytes.NewReader(body))
	if err != nil {
		return 0, invalidEvent(fmt.Sprintf("notify request: %v", err))
	}
	if len(n.Signers) == 0 {
		// config refuses this at start; never send an event unsigned.
		return 0, invalidEvent("RELINK_NOTIFY_URL is set without RELINK_NOTIFY_SECRET")
	}
	sent := n.Now()
	signatures := make([]string, 0, len(n.Signers))
	for _, s := range n.Signers {
		sig, err := s.Sign(ev.ID, sent, body)
		if err != nil {
			return 0, invalidEvent(fmt.Sprintf("sign event: %v", err))
		}
		signatures = append(signatures, sig)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", n.UserAgent)
	req.Header.Set(standardwebhooks.HeaderWebhookID, ev.ID)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(sent.Unix(), 10))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, strings.Join(signatures, " "))
	req.Header.Set("Relink-Event-Type", ev.Type)
	resp, err := n.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}

// invalidEvent reports an event that cannot be sent as it is (it cannot be
// encoded or signed): retrying cannot help.
func invalidEvent(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, aggregator.ErrTypeInvalidInput, nil)
}
