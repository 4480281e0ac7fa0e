package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// OperatorTokens checks the access token the Temporal Web UI passes to
// /codec (its codec setting passAccessToken): a JWT from the UI's identity
// provider (Temporal Cloud's, or your OIDC provider's for a self-hosted UI),
// verified against that provider's published keys. It lets operators
// signed in to the UI read decoded payloads without holding an API key.
type OperatorTokens struct {
	JWKSURL  string
	Issuer   string
	Audience string
	HTTP     *http.Client
	Now      func() time.Time

	mu        sync.RWMutex
	keys      jose.JSONWebKeySet
	fetchedAt time.Time // of the keys held

	fetchMu sync.Mutex // one fetch at a time
	lastTry time.Time
}

// operatorAlgorithms are the signatures identity providers use; no HMAC,
// so a public key can never be used as a shared secret.
var operatorAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA}

const (
	// jwksRefreshInterval bounds how often the key set is fetched: an
	// unknown key id (a rotation at the provider, or a forged kid) fetches
	// at most this often.
	jwksRefreshInterval = time.Minute
	// jwksMaxAge is how long fetched keys are trusted before they are
	// fetched again, so a key the provider withdrew stops verifying.
	jwksMaxAge = time.Hour
)

// Check verifies token.
func (o *OperatorTokens) Check(ctx context.Context, token string) error {
	parsed, err := jwt.ParseSigned(token, operatorAlgorithms)
	if err != nil || len(parsed.Headers) != 1 {
		return errors.New("not a signed JWT")
	}
	key, err := o.key(ctx, parsed.Headers[0].KeyID)
	if err != nil {
		return err
	}
	var claims jwt.Claims
	if err := parsed.Claims(key, &claims); err != nil {
		return errors.New("signature does not verify")
	}
	if claims.Expiry == nil {
		return errors.New("token has no expiry")
	}
	return claims.ValidateWithLeeway(jwt.Expected{
		Issuer:      o.Issuer,
		AnyAudience: jwt.Audience{o.Audience},
		Time:        o.Now(),
	}, 30*time.Second)
}

// cached returns the key kid from the held set, and whether the set is
// still fresh.
func (o *OperatorTokens) cached(kid string) (any, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	fresh := !o.fetchedAt.IsZero() && o.Now().Sub(o.fetchedAt) < jwksMaxAge
	if found := o.keys.Key(kid); len(found) > 0 {
		return found[0].Public().Key, fresh
	}
	return nil, fresh
}

func (o *OperatorTokens) key(ctx context.Context, kid string) (any, error) {
	if key, fresh := o.cached(kid); key != nil && fresh {
		return key, nil
	}
	o.fetchMu.Lock()
	defer o.fetchMu.Unlock()
	key, fresh := o.cached(kid)
	if key != nil && fresh {
		return key, nil // fetched while this call waited
	}
	if o.Now().Sub(o.lastTry) < jwksRefreshInterval {
		if key != nil {
			return key, nil
		}
		return nil, fmt.Errorf("unknown key id %q", kid)
	}
	o.lastTry = o.Now()
	// The caller hanging up must not cancel a fetch others rely on.
	if err := o.fetch(context.WithoutCancel(ctx)); err != nil {
		if key != nil {
			return key, nil // the provider is down: keep the keys held
		}
		return nil, err
	}
	if key, _ = o.cached(kid); key == nil {
		return nil, fmt.Errorf("unknown key id %q", kid)
	}
	return key, nil
}

func (o *OperatorTokens) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.JWKSURL, nil)
	if err != nil {
		return err
	}
	resp, err := o.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("fetch operator keys: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch operator keys: %s answered %d", o.JWKSURL, resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return fmt.Errorf("fetch operator keys: %w", err)
	}
	o.mu.Lock()
	o.keys, o.fetchedAt = set, o.Now()
	o.mu.Unlock()
	return nil
}
