package mx

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
)

// Webhook types Relink acts on.
const (
	// WebhookConnectionStatus: a member entered an end-user-actionable
	// status (CHALLENGED, DENIED, EXPIRED, IMPAIRED, IMPEDED, LOCKED,
	// PREVENTED, REJECTED). Each one is a break: Relink reads the member
	// before acting on it, so LOCKED too starts a repair, which ends
	// UNREPAIRABLE with the reason.
	WebhookConnectionStatus = "CONNECTION_STATUS"
	// WebhookAggregation: an aggregation of the member completed with new
	// data. Ignored: its body is neither signed nor dated by anything but
	// itself, so it must not confirm a repair on its word, and it comes
	// for every member's every aggregation; Relink confirms by reading
	// the member's status.
	WebhookAggregation = "AGGREGATION"
)

// DefaultDedupeWindow groups MX's deliveries of one event: MX's
// CONNECTION_STATUS webhook has no event id and no time, so one with the
// same member and status as one seen less than this long before is the
// same event (MX's retry).
const DefaultDedupeWindow = 10 * time.Minute

// Webhook is an MX webhook body: the fields of CONNECTION_STATUS and
// AGGREGATION webhooks Relink reads.
type Webhook struct {
	Type             string `json:"type"`
	Action           string `json:"action"`
	MemberGUID       string `json:"member_guid"`
	UserGUID         string `json:"user_guid"`
	ConnectionStatus string `json:"connection_status"`
	// CompletedAt (AGGREGATION) is when the aggregation finished, in unix
	// seconds.
	CompletedAt int64 `json:"completed_at"`
}

// WebhookReceiver verifies MX webhooks. MX does not sign them: it sends
// them over HTTPS with the HTTP basic credentials (username and password)
// the client gave it, and a request is MX's when its Authorization header
// carries exactly those (compared in constant time). Without a signature
// nothing dates a delivery or binds its body, so redeliveries are told
// apart by a window (DedupeWindow), and a CONNECTION_STATUS event only
// makes Relink read the member, whose status decides. An AGGREGATION
// event (optional at MX) confirms an open repair on its own word, as the
// other providers' synced webhooks do.
type WebhookReceiver struct {
	Username, Password string
	DedupeWindow       time.Duration
	Now                func() time.Time

	seen aggregator.Redeliveries // by member and status
}

// Receive implements aggregator.WebhookReceiver.
func (w *WebhookReceiver) Receive(r *http.Request, body []byte) ([]aggregator.WebhookEvent, error) {
	if err := w.verify(r); err != nil {
		return nil, err
	}
	var hook Webhook
	if err := json.Unmarshal(body, &hook); err != nil {
		return nil, fmt.Errorf("%w: %v", aggregator.ErrWebhookMalformed, err)
	}
	switch hook.Type {
	case WebhookConnectionStatus:
		if hook.MemberGUID == "" || hook.ConnectionStatus == "" {
			return nil, fmt.Errorf("%w: %s needs member_guid and connection_status", aggregator.ErrWebhookMalformed, hook.Type)
		}
		id, at := w.identify(hook.MemberGUID + ":" + hook.ConnectionStatus)
		return []aggregator.WebhookEvent{{
			EventID:        id,
			Kind:           aggregator.EventKindRepairable,
			Type:           hook.Type + " " + hook.ConnectionStatus,
			At:             at,
			ConnectionID:   hook.MemberGUID,
			ProfileID:      hook.UserGUID,
			ProviderStatus: hook.ConnectionStatus,
		}}, nil
	}
	return nil, nil // not Relink's business
}

// verify checks the request's HTTP basic credentials. Both are compared,
// as digests, in constant time, so neither their content nor their length
// shows in how long a refusal takes.
func (w *WebhookReceiver) verify(r *http.Request) error {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return fmt.Errorf("%w: no HTTP basic credentials (MX sends the username and password it was given)", aggregator.ErrWebhookSignature)
	}
	if w.Username == "" || w.Password == "" {
		return fmt.Errorf("%w: MX webhook credentials are not configured", aggregator.ErrWebhookSignature)
	}
	gotUser, gotPass := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
	wantUser, wantPass := sha256.Sum256([]byte(w.Username)), sha256.Sum256([]byte(w.Password))
	userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
	passOK := subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
	if userOK&passOK != 1 {
		return fmt.Errorf("%w: HTTP basic credentials do not match MX_WEBHOOK_USERNAME and MX_WEBHOOK_PASSWORD", aggregator.ErrWebhookSignature)
	}
	return nil
}

// identify names the event member+status: a delivery within the window of
// the previous one is MX's retry and gets its id and time.
func (w *WebhookReceiver) identify(key string) (string, time.Time) {
	window := w.DedupeWindow
	if window <= 0 {
		window = DefaultDedupeWindow
	}
	now := w.now()
	return w.seen.Identify(key, now.UTC(), now, window)
}

func (w *WebhookReceiver) now() time.Time {
	if w.Now == nil {
		return time.Now()
	}
	return w.Now()
}
