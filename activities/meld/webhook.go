package meld

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
)

// Signature headers: meld-signature is base64url(HMAC-SHA256(secret,
// "<meld-signature-timestamp>.<full request URL>.<raw body>")).
const (
	HeaderSignature = "Meld-Signature"
	HeaderTimestamp = "Meld-Signature-Timestamp"
)

// Event types Relink acts on.
const (
	EventStatusChange = "BANK_LINKING_CONNECTION_STATUS_CHANGE"
	EventDeleted      = "BANK_LINKING_CONNECTION_DELETED"
)

// Envelope is a Meld webhook body: one event per request.
type Envelope struct {
	EventType string          `json:"eventType"`
	EventID   string          `json:"eventId"`
	Timestamp time.Time       `json:"timestamp"`
	AccountID string          `json:"accountId,omitempty"`
	ProfileID *string         `json:"profileId"`
	Version   string          `json:"version,omitempty"`
	Payload   json.RawMessage `json:"payload"`
}

// ConnectionPayload is the payload of connection events. Meld documents
// newStatus; the reason's name varies, so all known names are read.
type ConnectionPayload struct {
	ConnectionID       string `json:"connectionId"`
	CustomerID         string `json:"customerId"`
	ExternalCustomerID string `json:"externalCustomerId,omitempty"`
	InstitutionName    string `json:"institutionName,omitempty"`
	NewStatus          string `json:"newStatus,omitempty"`
	Status             string `json:"status,omitempty"`
	StatusReason       string `json:"statusReason,omitempty"`
	NewStatusReason    string `json:"newStatusReason,omitempty"`
	Reason             string `json:"reason,omitempty"`
}

func (p ConnectionPayload) status() string { return cmp.Or(p.NewStatus, p.Status) }
func (p ConnectionPayload) reason() string {
	return cmp.Or(p.StatusReason, p.NewStatusReason, p.Reason)
}

// Sign returns the meld-signature value.
func Sign(secret, timestamp, fullURL string, body []byte) string {
	return base64.URLEncoding.EncodeToString(mac(secret, timestamp, fullURL, body))
}

func mac(secret, timestamp, fullURL string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp + "." + fullURL + "."))
	m.Write(body)
	return m.Sum(nil)
}

// WebhookReceiver verifies Meld webhooks.
type WebhookReceiver struct {
	Secret string
	// URL is the webhook URL registered with Meld, which the signature
	// covers. Set it: proxies change the URL the gateway sees. Empty means
	// rebuilt from the request (X-Forwarded-Proto and Host honoured).
	URL       string
	Tolerance time.Duration
	Now       func() time.Time
	// Proactive turns ACTIVE with ACCESS_EXPIRING_SOON or
	// NEW_ACCOUNTS_AVAILABLE into proactive repairs.
	Proactive bool
}

// Receive implements aggregator.WebhookReceiver.
func (w *WebhookReceiver) Receive(r *http.Request, body []byte) ([]aggregator.WebhookEvent, error) {
	if err := w.verify(r, body); err != nil {
		return nil, err
	}
	var env Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", aggregator.ErrWebhookMalformed, err)
	}
	if env.EventType != EventStatusChange && env.EventType != EventDeleted {
		return nil, nil // not Relink's business
	}
	var p ConnectionPayload
	if err := json.Unmarshal(env.Payload, &p); err != nil || env.EventID == "" || p.ConnectionID == "" {
		return nil, fmt.Errorf("%w: %s needs eventId and payload.connectionId", aggregator.ErrWebhookMalformed, env.EventType)
	}
	ev := aggregator.WebhookEvent{
		EventID:        env.EventID,
		Type:           env.EventType,
		At:             env.Timestamp,
		ConnectionID:   p.ConnectionID,
		ProfileID:      cmp.Or(p.ExternalCustomerID, p.CustomerID),
		Institution:    p.InstitutionName,
		ProviderStatus: p.status(),
	}
	if p.reason() != "" {
		ev.ProviderStatus += "/" + p.reason()
		ev.Type += " " + ev.ProviderStatus
	}
	kind, ok := w.kindOf(env.EventType, p.status(), p.reason())
	if !ok {
		return nil, nil
	}
	ev.Kind = kind
	return []aggregator.WebhookEvent{ev}, nil
}

func (w *WebhookReceiver) kindOf(eventType, status, reason string) (aggregator.EventKind, bool) {
	if eventType == EventDeleted {
		return aggregator.EventKindDeleted, true
	}
	switch status {
	case StatusReconnectRequired:
		return aggregator.EventKindRepairable, true
	case StatusDegraded:
		if needsCustomer(reason) {
			return aggregator.EventKindRepairable, true
		}
		return aggregator.EventKindErrored, true
	case StatusActive:
		if reason == ReasonAccessExpiringSoon || reason == ReasonNewAccountsAvailable {
			return aggregator.EventKindProactive, w.Proactive
		}
		return aggregator.EventKindSynced, true
	case StatusExpired, StatusUnrecoverable:
		return aggregator.EventKindDisconnected, true
	case StatusDeleted:
		return aggregator.EventKindDeleted, true
	}
	return "", false
}

func (w *WebhookReceiver) verify(r *http.Request, body []byte) error {
	sig, ts := r.Header.Get(HeaderSignature), r.Header.Get(HeaderTimestamp)
	if sig == "" || ts == "" {
		return fmt.Errorf("%w: missing %s or %s", aggregator.ErrWebhookSignature, HeaderSignature, HeaderTimestamp)
	}
	at, ok := parseTimestamp(ts)
	if !ok {
		return fmt.Errorf("%w: %s is neither RFC 3339 nor unix seconds", aggregator.ErrWebhookSignature, HeaderTimestamp)
	}
	tolerance := w.Tolerance
	if tolerance <= 0 {
		tolerance = 300 * time.Second
	}
	if age := w.Now().Sub(at); age > tolerance || age < -tolerance {
		return fmt.Errorf("%w: timestamp outside the %s tolerance", aggregator.ErrWebhookSignature, tolerance)
	}
	got, err := base64.URLEncoding.DecodeString(sig)
	if err != nil {
		got, err = base64.RawURLEncoding.DecodeString(sig)
	}
	if err != nil || !hmac.Equal(got, mac(w.Secret, ts, w.fullURL(r), body)) {
		return fmt.Errorf("%w: signature does not match (is MELD_WEBHOOK_URL the URL registered with Meld?)", aggregator.ErrWebhookSignature)
	}
	return nil
}

func (w *WebhookReceiver) fullURL(r *http.Request) string {
	if w.URL != "" {
		return w.URL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
		scheme = p
	}
	return scheme + "://" + r.Host + r.URL.RequestURI()
}

func parseTimestamp(ts string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
		return t, true
	}
	if secs, err := strconv.ParseInt(ts, 10, 64); err == nil {
		return time.Unix(secs, 0), true
	}
	return time.Time{}, false
}
