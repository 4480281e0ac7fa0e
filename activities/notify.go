package activities

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"
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
)

// SignatureHeader carries the outbound event's signature:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>".
const SignatureHeader = "Relink-Signature"

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
	Sequence     int    `json:"sequence"`
	Reminder     int    `json:"reminder,omitempty"`
	// Proactive: nothing is broken yet; invite the user rather than warn.
	Proactive bool      `json:"proactive,omitempty"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
}

// Notifier delivers events to the app.
type Notifier interface {
	Notify(ctx context.Context, ev Event) error
}

// HTTPNotifier POSTs signed JSON events to the app. With no URL it only logs,
// which is what the dev stack does unless RELINK_NOTIFY_URL is set.
type HTTPNotifier struct {
	URL    string
	Secret string
	Client *http.Client
	Logger *slog.Logger
	Now    Clock
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
	body, err := json.Marshal(ev)
	if err != nil {
		return InvalidInput(fmt.Sprintf("encode event: %v", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.URL, bytes.NewReader(body))
	if err != nil {
		return InvalidInput(fmt.Sprintf("notify request: %v", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Relink-Event-Id", ev.ID)
	req.Header.Set("Relink-Event-Type", ev.Type)
	req.Header.Set(SignatureHeader, SignEvent(n.Secret, n.Now(), body))
	resp, err := n.Client.Do(req)
	if err != nil {
		log.Warn("notify failed", "error", err)
		return fmt.Errorf("notify %s: %w", ev.Type, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		log.Warn("notify rejected", "httpStatus", resp.StatusCode)
		return fmt.Errorf("notify %s: app answered %d", ev.Type, resp.StatusCode)
	}
	log.Info("notified")
	return nil
}

// SignEvent returns the Relink-Signature header value for body sent at t.
func SignEvent(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}
