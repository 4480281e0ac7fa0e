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

	"github.com/relink-dev/relink/activities/aggregator"
)

// HeaderVerification carries the webhook's JWT.
const HeaderVerification = "Plaid-Verification"

// DefaultMaxAge is how old a webhook's iat may be.
const DefaultMaxAge = 5 * time.Minute

// DefaultDedupeWindow groups Plaid's deliveries of one event: Plaid sends
// no event id, so a webhook with the same Item and code as one seen less
// than this long before is the same event (its retry).
const DefaultDedupeWindow = 10 * time.Minute

// Item webhook codes Relink acts on.
const (
	WebhookTypeItem       = "ITEM"
	CodeError             = "ERROR"
	CodePendingExpiration = "PENDING_EXPIRATION"
	CodePendingDisconnect = "PENDING_DISCONNECT"
	CodeLoginRepaired     = "LOGIN_REPAIRED"
	CodePermissionRevoked = "USER_PERMISSION_REVOKED"
	// CodeAccountRevoked: the user revoked access to one of the Item's
	// accounts at the bank's portal (account_id names it).
	CodeAccountRevoked = "USER_ACCOUNT_REVOKED"
	// CodeNewAccountsAvailable: Plaid detected accounts the user has not
	// shared; update mode with account selection asks for them.
	CodeNewAccountsAvailable = "NEW_ACCOUNTS_AVAILABLE"
)

// Webhook is a Plaid webhook body.
type Webhook struct {
	WebhookType string      `json:"webhook_type"`
	WebhookCode string      `json:"webhook_code"`
	ItemID      string      `json:"item_id"`
	Error       *plaidError `json:"error,omitempty"`
	Environment string      `json:"environment,omitempty"`
	Reason      string      `json:"reason,omitempty"`
	// AccountID is the revoked account of USER_ACCOUNT_REVOKED.
	AccountID string `json:"account_id,omitempty"`
}

// errUnknownKey: Plaid does not know the JWT's key id, or has retired it.
var errUnknownKey = errors.New("unknown verification key")

// Key cache lifetimes: a known key is fetched again after keyTTL, so a key
// Plaid retires stops verifying within that time; an unknown key id is
// remembered for missTTL, so forged ids do not each cost a call to Plaid.
const (
	keyTTL  = time.Hour
	missTTL = time.Minute
)

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
	jwk       *jose.JSONWebKey // nil: Plaid does not know the id
	expiredAt *int64
	fetchedAt time.Time
}

// key returns the key with id kid: errUnknownKey if Plaid does not have it
// or has retired it, another error if Plaid could not be asked.
func (k *VerificationKeys) key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	now := k.Now()
	k.mu.Lock()
	cached, ok := k.keys[kid]
	k.mu.Unlock()
	fresh := ok && ((cached.jwk != nil && now.Sub(cached.fetchedAt) < keyTTL) ||
		(cached.jwk == nil && now.Sub(cached.fetchedAt) < missTTL))
	if !fresh {
		var err error
		if cached, err = k.fetch(ctx, kid, now); err != nil {
			return jose.JSONWebKey{}, err
		}
		k.mu.Lock()
		if k.keys == nil {
			k.keys = map[string]verificationKey{}
		}
		k.keys[kid] = cached
		k.mu.Unlock()
	}
	if cached.jwk == nil || (cached.expiredAt != nil && now.Unix() >= *cached.expiredAt) {
		return jose.JSONWebKey{}, errUnknownKey
	}
	return *cached.jwk, nil
}

func (k *VerificationKeys) fetch(ctx context.Context, kid string, now time.Time) (verificationKey, error) {
	var res struct {
		Key json.RawMessage `json:"key"`
	}
	status, raw, err := aggregator.DoJSON(ctx, k.HTTP, aggregator.JSONRequest{
		Method: http.MethodPost,
		URL:    strings.TrimRight(k.APIURL, "/") + "/webhook_verification_key/get",
		Body:   map[string]string{"client_id": k.ClientID, "secret": k.Secret, "key_id": kid},
	}, &res)
	if err != nil {
		return verificationKey{}, err
	}
	if status/100 != 2 {
		var e plaidError
		_ = json.Unmarshal(raw, &e)
		if e.ErrorCode == "INVALID_WEBHOOK_VERIFICATION_KEY_ID" {
			return verificationKey{fetchedAt: now}, nil
		}
		// Credentials or Plaid itself: not the sender's fault.
		return verificationKey{}, fmt.Errorf("plaid verification key: %d %s", status, e.ErrorCode)
	}
	var jwk jose.JSONWebKey
	var meta struct {
		ExpiredAt *int64 `json:"expired_at"`
	}
	if err := json.Unmarshal(res.Key, &jwk); err != nil {
		return verificationKey{}, fmt.Errorf("plaid verification key: %w", err)
	}
	_ = json.Unmarshal(res.Key, &meta)
	return verificationKey{jwk: &jwk, expiredAt: meta.ExpiredAt, fetchedAt: now}, nil
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
	// NewAccounts turns NEW_ACCOUNTS_AVAILABLE into a proactive repair
	// (PLAID_NEW_ACCOUNTS_REPAIRS), whose Link session asks the user to
	// share the new accounts (Provider.AccountSelection).
	NewAccounts bool

	seen aggregator.Redeliveries // by Item and code
}

// identify names the event Item+code: a delivery within the window of the
// previous one is a retry and gets its id and time, so a retry neither
// starts nor fails anything twice.
func (w *WebhookReceiver) identify(key string, iat time.Time) (string, time.Time) {
	window := w.DedupeWindow
	if window <= 0 {
		window = DefaultDedupeWindow
	}
	return w.seen.Identify(key, iat, w.Now(), window)
}

type claims struct {
	IssuedAt          int64  `json:"iat"`
	RequestBodySHA256 string `json:"request_body_sha256"`
}

// Receive implements aggregator.WebhookReceiver.
func (w *WebhookReceiver) Receive(r *http.Request, body []byte) ([]aggregator.WebhookEvent, error) {
	c, err := w.verify(r.Context(), r.Header.Get(HeaderVerification), body)
	if err != nil {
		return nil, err
	}
	var hook Webhook
	if err := json.Unmarshal(body, &hook); err != nil {
		return nil, fmt.Errorf("%w: %v", aggregator.ErrWebhookMalformed, err)
	}
	kind, ok := w.kindOf(hook)
	if !ok {
		return nil, nil
	}
	if hook.ItemID == "" {
		return nil, fmt.Errorf("%w: %s/%s without item_id", aggregator.ErrWebhookMalformed, hook.WebhookType, hook.WebhookCode)
	}
	code := hook.WebhookCode
	if hook.Error != nil && hook.Error.ErrorCode != "" && hook.Error.ErrorCode != hook.WebhookCode {
		code += "/" + hook.Error.ErrorCode
	}
	key, typ := hook.ItemID+":"+code, hook.WebhookType+" "+code
	if hook.WebhookCode == CodeAccountRevoked && hook.AccountID != "" {
		// One event per account: revocations of two accounts are two
		// events, a retry of one is the same.
		key += ":" + hook.AccountID
		typ += " (account " + hook.AccountID + ")"
	}
	id, at := w.identify(key, time.Unix(c.IssuedAt, 0).UTC())
	return []aggregator.WebhookEvent{{
		EventID:        id,
		Kind:           kind,
		Type:           typ,
		At:             at,
		ConnectionID:   hook.ItemID,
		ProviderStatus: code,
	}}, nil
}

func (w *WebhookReceiver) kindOf(h Webhook) (aggregator.EventKind, bool) {
	if h.WebhookType != WebhookTypeItem {
		return "", false
	}
	switch h.WebhookCode {
	case CodeError:
		if h.Error != nil && h.Error.ErrorCode == CodeItemLoginRequired {
			return aggregator.EventKindRepairable, true
		}
		return aggregator.EventKindErrored, true
	case CodePendingExpiration, CodePendingDisconnect:
		return aggregator.EventKindProactive, w.Proactive
	case CodeLoginRepaired:
		return aggregator.EventKindRepairedElsewhere, true
	case CodePermissionRevoked, CodeAccountRevoked:
		// The user withdrew consent, for the Item or one of its accounts:
		// Relink does not ask them to undo it. The open repair ends
		// UNREPAIRABLE (reasonCode disconnected, the code in
		// lastProviderStatus); the app decides what to offer.
		return aggregator.EventKindDisconnected, true
	case CodeNewAccountsAvailable:
		return aggregator.EventKindProactive, w.NewAccounts
	}
	return "", false
}

// verify checks the Plaid-Verification JWT: ES256 only, signed by Plaid's
// key of that id, at most MaxAge old, over exactly this body.
func (w *WebhookReceiver) verify(ctx context.Context, token string, body []byte) (claims, error) {
	bad := func(why string) (claims, error) {
		return claims{}, fmt.Errorf("%w: %s", aggregator.ErrWebhookSignature, why)
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
		return claims{}, fmt.Errorf("%w: %v", aggregator.ErrWebhookUnavailable, err)
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
