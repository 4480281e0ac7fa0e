// Package clienttoken mints and checks the short-lived tokens a browser
// uses to act on one connection's repair, and nothing else. The app's
// backend asks for one with its API key (POST …/client-token) and hands it
// to its frontend, as Plaid's link_token or Stripe's client_secret.
//
// A token is a JWT signed with Ed25519 (EdDSA, go-jose) naming the provider
// and connection. Checking it needs only the verification keys, not
// Temporal: every gateway replica checks tokens any replica minted, and a
// check costs no Temporal action.
package clienttoken

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/relink-dev/relink/keyring"
)

const (
	issuer   = "relink"
	audience = "relink-browser"
	// linkAudience is a reconnect link's: a page opened from an email.
	linkAudience = "relink-link"
	// notBeforeLeeway absorbs clock skew between the replica that mints a
	// token and one that checks it: a checking clock up to this far behind
	// still accepts a token minted just now. Expiry has no leeway: a token
	// is refused from the expiresAt the API returned on, by the checking
	// gateway's clock (README, Security model).
	notBeforeLeeway = 5 * time.Second
)

// Errors a check can end with; all mean 401.
var (
	ErrMalformed  = errors.New("not a Relink client token")
	ErrUnknownKey = errors.New("client token signed with an unknown key")
	ErrSignature  = errors.New("client token signature does not verify")
	ErrExpired    = errors.New("client token expired")
	ErrClaims     = errors.New("client token claims are invalid")
)

// Scope is what a token allows: one provider's connection.
type Scope struct {
	Provider     string `json:"prv"`
	ConnectionID string `json:"con"`
}

// Authority mints with the first key and checks with all of them.
type Authority struct {
	signer jose.Signer
	public map[string]ed25519.PublicKey
	TTL    time.Duration
	Now    func() time.Time
}

// New builds an Authority from Ed25519 seeds (RELINK_CLIENT_TOKEN_KEYS).
func New(keys []keyring.Key, ttl time.Duration, now func() time.Time) (*Authority, error) {
	if len(keys) == 0 {
		return nil, errors.New("clienttoken: no signing key")
	}
	a := &Authority{public: map[string]ed25519.PublicKey{}, TTL: ttl, Now: now}
	for i, k := range keys {
		private := ed25519.NewKeyFromSeed(k.Secret)
		a.public[k.ID] = private.Public().(ed25519.PublicKey)
		if i > 0 {
			continue
		}
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: private},
			(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), k.ID))
		if err != nil {
			return nil, fmt.Errorf("clienttoken: %w", err)
		}
		a.signer = signer
	}
	return a, nil
}

type claims struct {
	jwt.Claims
	Scope
	// Repair is set on link tokens only: the run id that began the repair
	// the link is for (it stays the same across continue-as-new).
	Repair string `json:"rep,omitempty"`
	// Session and URL are set on return tickets only: the redirect
	// session's connector token and where it sends the browser.
	Session string `json:"ses,omitempty"`
	URL     string `json:"url,omitempty"`
}

// Mint returns a token for scope and when it expires.
func (a *Authority) Mint(scope Scope) (string, time.Time, error) {
	return a.sign(audience, scope, "", a.TTL)
}

// Check verifies token and returns its scope.
func (a *Authority) Check(token string) (Scope, error) {
	c, err := a.verify(token, audience)
	return c.Scope, err
}

// Link is what a reconnect link token names: one repair of one connection.
type Link struct {
	Scope
	// Repair is the run id that began the repair (RepairRunID).
	Repair    string
	ExpiresAt time.Time
}

// MaxLinkTTL bounds a reconnect link's life, as Plaid bounds its hosted
// links: a link in an old email must stop working.
const MaxLinkTTL = 21 * 24 * time.Hour

// MintLink returns a reconnect link token for one repair, valid for ttl
// (at most MaxLinkTTL). Its audience differs from a browser token's: a
// link token is not a client token, nor the reverse.
func (a *Authority) MintLink(scope Scope, repair string, ttl time.Duration) (string, time.Time, error) {
	if repair == "" {
		return "", time.Time{}, errors.New("clienttoken: a link names its repair")
	}
	return a.sign(linkAudience, scope, repair, min(ttl, MaxLinkTTL))
}

// CheckLink verifies a reconnect link token.
func (a *Authority) CheckLink(token string) (Link, error) {
	c, err := a.verify(token, linkAudience)
	if err == nil && c.Repair == "" {
		err = ErrClaims
	}
	if err != nil {
		return Link{}, err
	}
	return Link{Scope: c.Scope, Repair: c.Repair, ExpiresAt: c.Expiry.Time().UTC()}, nil
}

// returnAudience is a return ticket's: neither a client token's nor a
// link's.
const returnAudience = "relink-return"

// Return is what a return ticket names: one redirect session of one
// connection, and the provider's page it sends the browser to.
type Return struct {
	Scope
	Session string
	URL     string
}

// MintReturn returns a return ticket, valid for ttl: the gateway's
// GET /r/go/{ticket} keeps it in the browser (a cookie of the return
// route) and sends the browser to url; the return route completes session
// with what the provider sends back.
func (a *Authority) MintReturn(r Return, ttl time.Duration) (string, time.Time, error) {
	if r.Session == "" || r.URL == "" {
		return "", time.Time{}, errors.New("clienttoken: a return ticket names its session and URL")
	}
	return a.signClaims(returnAudience, claims{Scope: r.Scope, Session: r.Session, URL: r.URL}, ttl)
}

// CheckReturn verifies a return ticket.
func (a *Authority) CheckReturn(token string) (Return, error) {
	c, err := a.verify(token, returnAudience)
	if err == nil && (c.Session == "" || c.URL == "") {
		err = ErrClaims
	}
	if err != nil {
		return Return{}, err
	}
	return Return{Scope: c.Scope, Session: c.Session, URL: c.URL}, nil
}

func (a *Authority) sign(aud string, scope Scope, repair string, ttl time.Duration) (string, time.Time, error) {
	return a.signClaims(aud, claims{Scope: scope, Repair: repair}, ttl)
}

func (a *Authority) signClaims(aud string, c claims, ttl time.Duration) (string, time.Time, error) {
	scope := c.Scope
	now := a.Now().UTC().Truncate(time.Second)
	// A JWT's exp is whole seconds: the expiresAt answered is that second,
	// so a token is never refused before the time its holder was told.
	exp := now.Add(ttl).Truncate(time.Second)
	c.Claims = jwt.Claims{
		Issuer:    issuer,
		Audience:  jwt.Audience{aud},
		Subject:   scope.Provider + "/" + scope.ConnectionID,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		Expiry:    jwt.NewNumericDate(exp),
	}
	token, err := jwt.Signed(a.signer).Claims(c).Serialize()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("clienttoken: sign: %w", err)
	}
	return token, exp, nil
}

func (a *Authority) verify(token, aud string) (claims, error) {
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil || len(parsed.Headers) != 1 {
		return claims{}, ErrMalformed
	}
	key, ok := a.public[parsed.Headers[0].KeyID]
	if !ok {
		return claims{}, ErrUnknownKey
	}
	var c claims
	if err := parsed.Claims(key, &c); err != nil {
		return claims{}, ErrSignature
	}
	now := a.Now()
	// go-jose applies one leeway to nbf, iat and exp alike; it is kept for
	// nbf and iat, and expiry is checked here without it.
	err = c.Claims.ValidateWithLeeway(jwt.Expected{
		Issuer:      issuer,
		AnyAudience: jwt.Audience{aud},
		Subject:     c.Provider + "/" + c.ConnectionID,
		Time:        now,
	}, notBeforeLeeway)
	switch {
	case errors.Is(err, jwt.ErrExpired), err == nil && c.Expiry != nil && !now.Before(c.Expiry.Time()):
		return claims{}, ErrExpired
	case err != nil, c.Expiry == nil, c.Provider == "", c.ConnectionID == "":
		return claims{}, ErrClaims
	}
	return c, nil
}
