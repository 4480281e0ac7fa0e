package aggregator

import (
	"errors"
	"net/http"
	"time"
)

// EventKind is a provider webhook event, normalised. Adapters map their
// providers' event types onto these; the workflow acts on nothing else.
type EventKind string

const (
	// EventKindRepairable: the connection broke and needs the user. Starts
	// a repair, or joins the open one; during verification it means the
	// reconnect did not take.
	EventKindRepairable EventKind = "repairable"
	// EventKindSynced: the connection synced successfully. Confirms.
	EventKindSynced EventKind = "synced"
	// EventKindErrored: an error the user cannot fix (provider, service,
	// institution). Recorded on the repair; it keeps waiting.
	EventKindErrored EventKind = "errored"
	// EventKindRepairedElsewhere: the provider says the connection was
	// repaired outside Relink (Plaid LOGIN_REPAIRED).
	EventKindRepairedElsewhere EventKind = "repaired_elsewhere"
	// EventKindDisconnected: the connection is gone at the provider.
	EventKindDisconnected EventKind = "disconnected"
	// EventKindDeleted: the app or user deleted the connection.
	EventKindDeleted EventKind = "deleted"
	// EventKindProactive: the connection works but will need the user soon
	// (consent expiring, new accounts to share). Starts a proactive repair,
	// which never reports the connection broken; joins an open repair.
	EventKindProactive EventKind = "proactive"
)

// WebhookEvent is one event out of a provider's webhook request.
type WebhookEvent struct {
	EventID        string
	Kind           EventKind
	Type           string // the provider's own event type, for logs and reasons
	At             time.Time
	ConnectionID   string
	ProfileID      string
	Institution    string
	Connector      string
	ProviderStatus string
}

// Errors a WebhookReceiver returns; the gateway maps them to 401, 400,
// 503 and 404.
var (
	ErrWebhookSignature = errors.New("webhook signature invalid")
	ErrWebhookMalformed = errors.New("webhook body malformed")
	// ErrWebhookUnavailable: the request could not be verified right now
	// (the provider's verification key could not be fetched); the provider
	// should deliver it again.
	ErrWebhookUnavailable = errors.New("webhook cannot be verified right now")
	// ErrNoWebhooks: the provider sends no webhooks Relink acts on (its
	// breaks come from expiry-timed repairs, inventories and manual
	// starts); the gateway answers 404 not_found, not a signature error.
	ErrNoWebhooks = errors.New("the provider sends no webhooks to Relink")
)

// WebhookReceiver verifies one provider's webhook requests and normalises
// their events. Events of types Relink does not act on are left out.
type WebhookReceiver interface {
	// Receive checks the request's signature over the raw body and returns
	// its events. Errors wrap ErrWebhookSignature or ErrWebhookMalformed.
	Receive(r *http.Request, body []byte) ([]WebhookEvent, error)
}
