// Package quiltt speaks Quiltt's wire formats. This file is its webhooks:
// the envelope, the Quiltt-Signature scheme and the mapping of connection
// event types onto Relink's event kinds. The sandbox provider sends the same
// format, so one receiver serves both.
package quiltt

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
)

// Signature headers. Quiltt-Signature is base64(HMAC-SHA256(secret,
// "1" + Quiltt-Timestamp + raw body)); the "1" is the scheme version.
const (
	HeaderSignature = "Quiltt-Signature"
	HeaderTimestamp = "Quiltt-Timestamp"
	signatureScheme = "1"
)

// DefaultTolerance is how far Quiltt-Timestamp may be from now.
const DefaultTolerance = 300 * time.Second

// Webhook event types Relink acts on.
const (
	EventRepairable         = "connection.synced.errored.repairable"
	EventSyncedSuccessful   = "connection.synced.successful"
	EventErroredService     = "connection.synced.errored.service"
	EventErroredProvider    = "connection.synced.errored.provider"
	EventErroredInstitution = "connection.synced.errored.institution"
	EventDisconnected       = "connection.disconnected"
	EventDeleted            = "connection.deleted"
	syncedSuccessfulPrefix  = EventSyncedSuccessful + "."
)

// Envelope is a webhook request body.
type Envelope struct {
	Environment json.RawMessage `json:"environment,omitempty"`
	EventTypes  []string        `json:"eventTypes"`
	Events      []Event         `json:"events"`
}

// Event is one webhook event.
type Event struct {
	ID      string    `json:"id"`
	Type    string    `json:"type"`
	At      time.Time `json:"at"`
	Profile *Profile  `json:"profile,omitempty"`
	Record  *Record   `json:"record,omitempty"`
}

// Profile is the end user the connection belongs to.
type Profile struct {
	ID string `json:"id"`
}

// Record is the connection an event is about.
type Record struct {
	ID string `json:"id"`
	// Status is the connection's status; some events omit it.
	Status string `json:"status,omitempty"`
	// Provider is the aggregator behind Quiltt: PLAID or MX.
	Provider    string       `json:"provider,omitempty"`
	Institution *Institution `json:"institution,omitempty"`
}

// Institution is the bank.
type Institution struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

// Sign returns the Quiltt-Signature value for body sent with timestamp.
func Sign(secret, timestamp string, body []byte) string {
	return base64.StdEncoding.EncodeToString(mac(secret, timestamp, body))
}

func mac(secret, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(signatureScheme + timestamp))
	m.Write(body)
	return m.Sum(nil)
}

// WebhookReceiver verifies Quiltt-format webhooks.
type WebhookReceiver struct {
	Secret    string
	Tolerance time.Duration
	Now       func() time.Time
}

// Receive implements aggregator.WebhookReceiver.
func (w *WebhookReceiver) Receive(r *http.Request, body []byte) ([]aggregator.WebhookEvent, error) {
	if err := w.verify(r.Header.Get(HeaderSignature), r.Header.Get(HeaderTimestamp), body); err != nil {
		return nil, err
	}
	var env Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", aggregator.ErrWebhookMalformed, err)
	}
	if len(env.Events) == 0 {
		return nil, fmt.Errorf("%w: no events", aggregator.ErrWebhookMalformed)
	}
	var out []aggregator.WebhookEvent
	for i, ev := range env.Events {
		kind, ok := kindOf(ev.Type)
		if !ok {
			continue // an event type Relink does not act on
		}
		if ev.ID == "" || ev.Record == nil || ev.Record.ID == "" {
			return nil, fmt.Errorf("%w: events[%d] (%s) needs id and record.id", aggregator.ErrWebhookMalformed, i, ev.Type)
		}
		we := aggregator.WebhookEvent{
			EventID:        ev.ID,
			Kind:           kind,
			Type:           ev.Type,
			At:             ev.At,
			ConnectionID:   ev.Record.ID,
			Connector:      ev.Record.Provider,
			ProviderStatus: ev.Record.Status,
		}
		if we.ProviderStatus == "" {
			we.ProviderStatus = statusOf(ev.Type)
		}
		if ev.Profile != nil {
			we.ProfileID = ev.Profile.ID
		}
		if ev.Record.Institution != nil {
			we.Institution = ev.Record.Institution.Name
		}
		out = append(out, we)
	}
	return out, nil
}

func (w *WebhookReceiver) verify(signature, timestamp string, body []byte) error {
	if signature == "" || timestamp == "" {
		return fmt.Errorf("%w: missing %s or %s", aggregator.ErrWebhookSignature, HeaderSignature, HeaderTimestamp)
	}
	secs, err := strconv.ParseInt(strings.TrimSpace(timestamp), 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s is not unix seconds", aggregator.ErrWebhookSignature, HeaderTimestamp)
	}
	tolerance := w.Tolerance
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if age := w.Now().Sub(time.Unix(secs, 0)); age > tolerance || age < -tolerance {
		return fmt.Errorf("%w: timestamp outside the %s tolerance", aggregator.ErrWebhookSignature, tolerance)
	}
	got, err := base64.StdEncoding.DecodeString(signature)
	if err != nil || !hmac.Equal(got, mac(w.Secret, timestamp, body)) {
		return fmt.Errorf("%w: signature does not match", aggregator.ErrWebhookSignature)
	}
	return nil
}

// kindOf maps a Quiltt event type onto a Relink event kind.
func kindOf(eventType string) (aggregator.EventKind, bool) {
	switch {
	case eventType == EventRepairable:
		return aggregator.EventKindRepairable, true
	case eventType == EventSyncedSuccessful || strings.HasPrefix(eventType, syncedSuccessfulPrefix):
		return aggregator.EventKindSynced, true
	case eventType == EventErroredService || eventType == EventErroredProvider || eventType == EventErroredInstitution:
		return aggregator.EventKindErrored, true
	case eventType == EventDisconnected:
		return aggregator.EventKindDisconnected, true
	case eventType == EventDeleted:
		return aggregator.EventKindDeleted, true
	}
	return "", false
}

// statusOf derives the connection status an event type implies, for
// records that arrive without one.
func statusOf(eventType string) string {
	switch eventType {
	case EventRepairable:
		return StatusErrorRepairable
	case EventErroredService:
		return StatusErrorService
	case EventErroredProvider:
		return StatusErrorProvider
	case EventErroredInstitution:
		return StatusErrorInstitution
	case EventDisconnected:
		return StatusDisconnected
	}
	if eventType == EventSyncedSuccessful || strings.HasPrefix(eventType, syncedSuccessfulPrefix) {
		return StatusSynced
	}
	return ""
}

// Connection statuses (Quiltt's Connection.status).
const (
	StatusSyncing          = "SYNCING"
	StatusSynced           = "SYNCED"
	StatusErrorRepairable  = "ERROR_REPAIRABLE"
	StatusErrorService     = "ERROR_SERVICE"
	StatusErrorProvider    = "ERROR_PROVIDER"
	StatusErrorInstitution = "ERROR_INSTITUTION"
	StatusDisconnecting    = "DISCONNECTING"
	StatusDisconnected     = "DISCONNECTED"
)

// HealthOf maps a Quiltt connection status onto Relink's health. Unknown
// statuses count as syncing: not confirmed, not failed, poll again.
func HealthOf(status string) aggregator.Health {
	switch status {
	case StatusSynced:
		return aggregator.HealthHealthy
	case StatusErrorRepairable:
		return aggregator.HealthRepairable
	case StatusErrorService, StatusErrorProvider, StatusErrorInstitution:
		return aggregator.HealthDegraded
	case StatusDisconnecting, StatusDisconnected:
		return aggregator.HealthDisconnected
	}
	return aggregator.HealthSyncing
}

// Delivery is the body and headers of one webhook request carrying
// events, signed with secret at now, as Quiltt sends it.
func Delivery(secret string, now time.Time, events ...Event) ([]byte, http.Header, error) {
	env := Envelope{Environment: json.RawMessage(`{"id":"env_relink","mode":"SANDBOX"}`)}
	for _, ev := range events {
		env.Events = append(env.Events, ev)
		env.EventTypes = append(env.EventTypes, ev.Type)
	}
	body, err := json.Marshal(env)
	if err != nil {
		return nil, nil, err
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	header := http.Header{}
	header.Set("Content-Type", "application/json")
	header.Set(HeaderTimestamp, ts)
	header.Set(HeaderSignature, Sign(secret, ts, body))
	return body, header, nil
}

// PostWebhook sends events to url in one envelope, signed with secret at
// now, as Quiltt does. The sandbox provider and test fakes use it.
func PostWebhook(ctx context.Context, c *http.Client, url, secret string, now time.Time, events ...Event) error {
	body, header, err := Delivery(secret, now, events...)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header = header
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook: receiver answered %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}
