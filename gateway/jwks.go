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
	Issuer   string // empty: not checked
	Audience string // empty: not checked
	HTTP     *http.Client
	Now      func() time.Time

	mu      sync.Mutex
	keys    jose.JSONWebKeySet
	fetched time.Time
}

// operatorAlgorithms are the signatures identity providers use.
var operatorAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA}

// jwksRefreshInterval bounds how often an unknown key id makes the gateway
// fetch the key set again (a rotation at the provider, or a forged kid).
const jwksRefreshInterval = time.Minute

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
	expected := jwt.Expected{Issuer: o.Issuer, Time: o.Now()}
	if o.Audience != "" {
		expected.AnyAudience = jwt.Audience{o.Audience}
	}
	if claims.Expiry == nil {
		return errors.New("token has no expiry")
	}
	if err := claims.ValidateWithLeeway(expected, 30*time.Second); err != nil {
		return err
	}
	return nil
}

func (o *OperatorTokens) key(ctx context.Context, kid string) (any, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if found := o.keys.Key(kid); len(found) > 0 {
		return found[0].Public().Key, nil
	}
	if !o.fetched.IsZero() && o.Now().Sub(o.fetched) < jwksRefreshInterval {
		return nil, fmt.Errorf("unknown key id %q", kid)
	}
	if err := o.fetch(ctx); err != nil {
		return nil, err
	}
	if found := o.keys.Key(kid); len(found) > 0 {
		return found[0].Public().Key, nil
	}
	return nil, fmt.Errorf("unknown key id %q", kid)
}

func (o *OperatorTokens) fetch(ctx context.Context) error {
	o.fetched = o.Now()
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
	o.keys = set
	return nil
}
