package truelayer

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
)

// HTTPTokens is the app's token endpoint (TRUELAYER_TOKEN_URL), both ways,
// with the bearer secret TRUELAYER_TOKEN_SECRET:
//
//	GET  <URL>?connection_id=<id>  → {"access_token","refresh_token","user":{…},"consent_reconfirmed_at"} (404: unknown)
//	POST <URL> {"connection_id","access_token","refresh_token","expires_in","token_type","issued_at"} → 2xx
//	POST <URL> {"connection_id","consent_reconfirmed_at"} → 2xx (no tokens: keep the connection's)
//
// Over HTTPS, the tokens cross this channel the app controls, never a log
// line nor an activity's input or result; tokens not yet delivered wait
// in the activity's checkpoint (heartbeat details), which the payload
// codec encrypts: TrueLayer is enabled only with RELINK_PAYLOAD_KEYS.
type HTTPTokens struct {
	URL    string
	Secret string
	HTTP   *http.Client
}

func (h *HTTPTokens) header() http.Header {
	return http.Header{"Authorization": {"Bearer " + h.Secret}}
}

// Credentials implements Tokens.
func (h *HTTPTokens) Credentials(ctx context.Context, connectionID string) (Credentials, error) {
	var c Credentials
	u := h.URL + "?" + url.Values{"connection_id": {connectionID}}.Encode()
	status, _, err := aggregator.DoJSON(ctx, h.HTTP, aggregator.JSONRequest{Method: http.MethodGet, URL: u, Header: h.header()}, &c)
	switch {
	case err != nil:
		return Credentials{}, fmt.Errorf("the app's TrueLayer tokens: %w", err)
	case status == http.StatusNotFound:
		return Credentials{}, aggregator.NotFound(fmt.Sprintf("truelayer: the app knows no connection %s", connectionID))
	case status/100 != 2:
		// 401/403 too: an operator fixes the secret while this retries.
		return Credentials{}, fmt.Errorf("the app's TrueLayer tokens for %s: the app answered %d", connectionID, status)
	}
	return c, nil
}

// Store implements Tokens.
func (h *HTTPTokens) Store(ctx context.Context, t NewTokens) error {
	status, _, err := aggregator.DoJSON(ctx, h.HTTP, aggregator.JSONRequest{Method: http.MethodPost, URL: h.URL, Header: h.header(), Body: t}, nil)
	switch {
	case err != nil:
		return fmt.Errorf("delivering TrueLayer tokens to the app: %w", err)
	case status/100 != 2:
		return fmt.Errorf("delivering TrueLayer tokens for %s: the app answered %d", t.ConnectionID, status)
	}
	return nil
}

// reconfirmation is the POST that tells the app of a reconfirmation.
type reconfirmation struct {
	ConnectionID         string    `json:"connection_id"`
	ConsentReconfirmedAt time.Time `json:"consent_reconfirmed_at"`
}

// Reconfirmed implements Tokens.
func (h *HTTPTokens) Reconfirmed(ctx context.Context, connectionID string, at time.Time) error {
	status, _, err := aggregator.DoJSON(ctx, h.HTTP, aggregator.JSONRequest{Method: http.MethodPost, URL: h.URL, Header: h.header(),
		Body: reconfirmation{ConnectionID: connectionID, ConsentReconfirmedAt: at}}, nil)
	switch {
	case err != nil:
		return fmt.Errorf("telling the app of a TrueLayer reconfirmation: %w", err)
	case status/100 != 2:
		return fmt.Errorf("telling the app of the TrueLayer reconfirmation for %s: the app answered %d", connectionID, status)
	}
	return nil
}

// MemoryTokens is an in-memory token store, for tests and the local
// stand-ins.
type MemoryTokens struct {
	mu    sync.Mutex
	creds map[string]Credentials
	// Stored are the deliveries, in order.
	Stored []NewTokens
	// Fail, when set, makes Store and Reconfirmed fail.
	Fail error
}

// Put sets a connection's credentials.
func (m *MemoryTokens) Put(connectionID string, c Credentials) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.creds == nil {
		m.creds = map[string]Credentials{}
	}
	m.creds[connectionID] = c
}

// Credentials implements Tokens.
func (m *MemoryTokens) Credentials(_ context.Context, connectionID string) (Credentials, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.creds[connectionID]
	if !ok {
		return Credentials{}, aggregator.NotFound(fmt.Sprintf("truelayer: the app knows no connection %s", connectionID))
	}
	return c, nil
}

// Store implements Tokens.
func (m *MemoryTokens) Store(_ context.Context, t NewTokens) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		return m.Fail
	}
	c := m.creds[t.ConnectionID]
	c.AccessToken, c.RefreshToken = t.AccessToken, t.RefreshToken
	if m.creds == nil {
		m.creds = map[string]Credentials{}
	}
	m.creds[t.ConnectionID] = c
	m.Stored = append(m.Stored, t)
	return nil
}

// Reconfirmed implements Tokens.
func (m *MemoryTokens) Reconfirmed(_ context.Context, connectionID string, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		return m.Fail
	}
	if m.creds == nil {
		m.creds = map[string]Credentials{}
	}
	c := m.creds[connectionID]
	c.ConsentReconfirmedAt = at
	m.creds[connectionID] = c
	return nil
}

// SetFail sets Fail (nil: deliveries work again), safely while calls run.
func (m *MemoryTokens) SetFail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Fail = err
}

// Deliveries returns the tokens stored so far.
func (m *MemoryTokens) Deliveries() []NewTokens {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]NewTokens(nil), m.Stored...)
}

// errNoWebhooks: TrueLayer's Data API sends no webhook Relink acts on.
var errNoWebhooks = fmt.Errorf("%w: TrueLayer sends none; breaks come from expiry-timed repairs, the app's inventory and manual starts", aggregator.ErrNoWebhooks)

// WebhookReceiver refuses every delivery: nothing starts a TrueLayer
// repair by posting to POST /webhooks/truelayer.
type WebhookReceiver struct{}

// Receive implements aggregator.WebhookReceiver.
func (WebhookReceiver) Receive(*http.Request, []byte) ([]aggregator.WebhookEvent, error) {
	return nil, errNoWebhooks
}
