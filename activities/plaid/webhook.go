package plaid

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/relink-dev/relink/activities"
)

// HeaderVerification carries the webhook's JWT.
const HeaderVerification = "Plaid-Verification"

// DefaultMaxAge is how old a webhook's iat may be.
const DefaultMaxAge = 5 * time.Minute

// DefaultDedupeWindow groups Plaid's retries of one event: Plaid sends no
// event id, so Item, code and this window of iat name an event.
const DefaultDedupeWindow = 10 * time.Minute

// Item webhook codes Relink acts on.
const (
	WebhookTypeItem       = "ITEM"
	CodeError             = "ERROR"
	CodePendingExpiration = "PENDING_EXPIRATION"
	CodePendingDisconnect = "PENDING_DISCONNECT"
	CodeLoginRepaired     = "LOGIN_REPAIRED"
	CodePermissionRevoked = "USER_PERMISSION_REVOKED"
)

// Webhook is a Plaid webhook body.
type Webhook struct {
	WebhookType string      `json:"webhook_type"`
	WebhookCode string      `json:"webhook_code"`
	ItemID      string      `json:"item_id"`
	Error       *plaidError `json:"error,omitempty"`
	Environment string      `json:"environment,omitempty"`
	Reason      string      `json:"reason,omitempty"`
}

// errUnknownKey: Plaid does not know the JWT's key id.
var errUnknownKey = errors.New("unknown verification key")

// VerificationKeys fetches Plaid's webhook verification keys
// (/webhook_verification_key/get) and caches them by key id.
type VerificationKeys struct {
	APIURL   string
	ClientID string
	Secret   string
	HTTP     *http.Client
	Now      func() time.Time

	mu   sync.Mutex
	keys map[string]verificationKey
}

type verificationKey struct {
	jwk       jose.JSONWebKey
	expiredAt *int64
}

// key returns the key with id kid: errUnknownKey if Plaid does not have it
// or has retired it, another error if Plaid could not be asked.
func (k *VerificationKeys) key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	k.mu.Lock()
	cached, ok := k.keys[kid]
	k.mu.Unlock()
	if !ok {
		var res struct {
			Key json.RawMessage `json:"key"`
		}
		status, _, err := activities.DoJSON(ctx, k.HTTP, activities.JSONRequest{
			Method: http.MethodPost,
			URL:    strings.TrimRight(k.APIURL, "/") + "/webhook_verification_key/get",
			Body:   map[string]string{"client_id": k.ClientID, "secret": k.Secret, "key_id": kid},
		}, &res)
		switch {
		case err != nil:
			return jose.JSONWebKey{}, err
		case status == http.StatusBadRequest || status == http.StatusNotFound:
			return jose.JSONWebKey{}, errUnknownKey
		case status/100 != 2:
			return jose.JSONWebKey{}, fmt.Errorf("plaid verification key: %d", status)
		}
		var meta struct {
			ExpiredAt *int64 `json:"expired_at"`
		}
		if err := json.Unmarshal(res.Key, &cached.jwk); err != nil {
			return jose.JSONWebKey{}, fmt.Errorf("plaid verification key: %w", err)
		}
		_ = json.Unmarshal(res.Key, &meta)
		cached.expiredAt = meta.ExpiredAt
		k.mu.Lock()
		if k.keys == nil {
			k.keys = map[string]verificationKey{}
		}
		k.keys[kid] = cached
		k.mu.Unlock()
	}
	if cached.expiredAt != nil && k.Now().Unix() >= *cached.expiredAt {
		return jose.JSONWebKey{}, errUnknownKey
	}
	return cached.jwk, nil
}

// WebhookReceiver verifies Plaid webhooks.
type WebhookReceiver struct {
	Keys         *VerificationKeys
	MaxAge       time.Duration
	DedupeWindow time.Duration
	Now          func() time.Time
	// Proactive turns PENDING_EXPIRATION and PENDING_DISCONNECT into
	// proactive repairs.
	Proactive bool
}

type claims struct {
	IssuedAt          int64  `json:"iat"`
	RequestBodySHA256 string `json:"request_body_sha256"`
}

// Receive implements activities.WebhookReceiver.
func (w *WebhookReceiver) Receive(r *http.Request, body []byte) ([]activities.WebhookEvent, error) {
	c, err := w.verify(r.Context(), r.Header.Get(HeaderVerification), body)
	if err != nil {
		return nil, err
	}
	var hook Webhook
	if err := json.Unmarshal(body, &hook); err != nil {
		return nil, fmt.Errorf("%w: %v", activities.ErrWebhookMalformed, err)
	}
	kind, ok := w.kindOf(hook)
	if !ok {
		return nil, nil
	}
	if hook.ItemID == "" {
		return nil, fmt.Errorf("%w: %s/%s without item_id", activities.ErrWebhookMalformed, hook.WebhookType, hook.WebhookCode)
	}
	code := hook.WebhookCode
	if hook.Error != nil && hook.Error.ErrorCode != "" {
		code += "/" + hook.Error.ErrorCode
	}
	at := time.Unix(c.IssuedAt, 0).UTC()
	window := w.DedupeWindow
	if window <= 0 {
		window = DefaultDedupeWindow
	}
	return []activities.WebhookEvent{{
		EventID:        fmt.Sprintf("%s:%s:%d", hook.ItemID, code, c.IssuedAt/int64(window/time.Second)),
		Kind:           kind,
		Type:           hook.WebhookType + " " + code,
		At:             at,
		ConnectionID:   hook.ItemID,
		ProviderStatus: code,
	}}, nil
}

func (w *WebhookReceiver) kindOf(h Webhook) (activities.EventKind, bool) {
	if h.WebhookType != WebhookTypeItem {
		return "", false
	}
	switch h.WebhookCode {
	case CodeError:
		if h.Error != nil && h.Error.ErrorCode == CodeItemLoginRequired {
			return activities.EventKindRepairable, true
		}
		return activities.EventKindErrored, true
	case CodePendingExpiration, CodePendingDisconnect:
		return activities.EventKindProactive, w.Proactive
	case CodeLoginRepaired:
		return activities.EventKindRepairedElsewhere, true
	case CodePermissionRevoked:
		return activities.EventKindDisconnected, true
	}
	return "", false
}

// verify checks the Plaid-Verification JWT: ES256 only, signed by Plaid's
// key of that id, at most MaxAge old, over exactly this body.
func (w *WebhookReceiver) verify(ctx context.Context, token string, body []byte) (claims, error) {
	bad := func(why string) (claims, error) {
		return claims{}, fmt.Errorf("%w: %s", activities.ErrWebhookSignature, why)
	}
	if token == "" {
		return bad("missing " + HeaderVerification)
	}
	jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return bad("not an ES256 JWT")
	}
	if len(jws.Signatures) != 1 || jws.Signatures[0].Header.KeyID == "" {
		return bad("no key id")
	}
	key, err := w.Keys.key(ctx, jws.Signatures[0].Header.KeyID)
	switch {
	case errors.Is(err, errUnknownKey):
		return bad("unknown or retired key id")
	case err != nil:
		return claims{}, fmt.Errorf("%w: %v", activities.ErrWebhookUnavailable, err)
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return bad("signature does not verify")
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil || c.IssuedAt == 0 {
		return bad("claims without iat")
	}
	maxAge := w.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	if age := w.Now().Sub(time.Unix(c.IssuedAt, 0)); age > maxAge || age < -maxAge {
		return bad("iat outside the " + maxAge.String() + " window")
	}
	sum := sha256.Sum256(body)
	if subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(strings.ToLower(c.RequestBodySHA256))) != 1 {
		return bad("request_body_sha256 does not match the body")
	}
	return c, nil
}
