// Package plaidfake is a local stand-in for Plaid's API, for tests:
// /link/token/create, /item/get and /webhook_verification_key/get with the
// documented shapes (docs/providers/plaid.md), and webhooks signed with a
// real ES256 key the way Plaid signs them.
package plaidfake

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Item is a Plaid Item as the fake keeps it.
type Item struct {
	ID          string
	AccessToken string
	// ErrorCode is the Item's error (ITEM_LOGIN_REQUIRED, …), empty if none.
	ErrorCode string
	// ConsentExpiresAt is the Item's consent_expiration_time; zero is null.
	ConsentExpiresAt time.Time
	// InstitutionID is the Item's institution_id; empty is "ins_3"
	// (Chase in Plaid's sandbox).
	InstitutionID string
}

// Request is one request the fake received.
type Request struct {
	Path string
	Body map[string]any
}

// Server is the fake.
type Server struct {
	*httptest.Server
	ClientID, Secret string
	KeyID            string
	// KeyExpiredAt retires the verification key at that unix time.
	KeyExpiredAt *int64
	// HTTPStatus, when set, is the answer to every request (with Plaid's
	// error body for that status).
	HTTPStatus int
	// RedirectURIs are the OAuth redirect URIs registered in the
	// dashboard: /link/token/create refuses any other redirect_uri.
	RedirectURIs []string
	Now          func() time.Time

	key      *ecdsa.PrivateKey
	mu       sync.Mutex
	items    map[string]*Item
	requests []Request
	seq      int
	limited  int // requests still to answer RATE_LIMIT_EXCEEDED
	tokens   map[string]LinkToken
}

// LinkToken is what a link token was created with.
type LinkToken struct {
	Token       string
	ItemID      string
	RedirectURI string
	// AccountSelection: update.account_selection_enabled was true.
	AccountSelection bool
}

// New starts a fake with a fresh signing key.
func New(clientID, secret string) *Server {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	s := &Server{ClientID: clientID, Secret: secret, KeyID: "6c5516e1-92dc-479e-a8ff-5a51992e0001",
		Now: time.Now, key: key, items: map[string]*Item{}, tokens: map[string]LinkToken{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /link/token/create", s.linkTokenCreate)
	mux.HandleFunc("POST /item/get", s.itemGet)
	mux.HandleFunc("POST /webhook_verification_key/get", s.verificationKey)
	s.Server = httptest.NewServer(mux)
	return s
}

// Put adds or replaces an Item.
func (s *Server) Put(it Item) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.items[it.ID] = &it
}

// SetError sets an Item's error code ("" clears it).
func (s *Server) SetError(itemID, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.items[itemID].ErrorCode = code
}

// SetConsentExpiration sets an Item's consent_expiration_time (zero:
// null).
func (s *Server) SetConsentExpiration(itemID string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.items[itemID].ConsentExpiresAt = at
}

// LinkToken returns what token was created with, and whether the fake
// created it.
func (s *Server) LinkToken(token string) (LinkToken, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lt, ok := s.tokens[token]
	return lt, ok
}

// RateLimitNext makes the next n requests fail as Plaid's rate limits do:
// HTTP 429, error_type RATE_LIMIT_EXCEEDED, with the limit's error_code.
func (s *Server) RateLimitNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limited = n
}

// Requests returns the requests so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// KeyRequests counts verification key fetches.
func (s *Server) KeyRequests() int {
	n := 0
	for _, r := range s.Requests() {
		if r.Path == "/webhook_verification_key/get" {
			n++
		}
	}
	return n
}

// Sign returns the Plaid-Verification JWT for body, issued at iat, signed
// with key under kid.
func Sign(key *ecdsa.PrivateKey, kid string, body []byte, iat time.Time) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(body)
	claims, _ := json.Marshal(map[string]any{"iat": iat.Unix(), "request_body_sha256": hex.EncodeToString(sum[:])})
	obj, err := signer.Sign(claims)
	if err != nil {
		panic(err)
	}
	token, err := obj.CompactSerialize()
	if err != nil {
		panic(err)
	}
	return token
}

// Sign signs body with the fake's own key, as Plaid would now.
func (s *Server) Sign(body []byte) string { return s.SignAt(body, s.Now()) }

// SignAt signs body with the fake's own key, issued at iat.
func (s *Server) SignAt(body []byte, iat time.Time) string { return Sign(s.key, s.KeyID, body, iat) }

// begin records the request and checks Plaid's credentials.
func (s *Server) begin(w http.ResponseWriter, r *http.Request) (map[string]any, bool) {
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	s.mu.Lock()
	s.requests = append(s.requests, Request{Path: r.URL.Path, Body: body})
	limited := s.limited > 0
	if limited {
		s.limited--
	}
	s.mu.Unlock()
	if limited {
		code := "RATE_LIMIT"
		if r.URL.Path == "/item/get" {
			code = "ITEM_GET_LIMIT"
		}
		fail(w, http.StatusTooManyRequests, "RATE_LIMIT_EXCEEDED", code, "rate limit exceeded for attempts to access this item. please try again later")
		return nil, false
	}
	if s.HTTPStatus != 0 {
		code, typ := "INTERNAL_SERVER_ERROR", "API_ERROR"
		if s.HTTPStatus == http.StatusTooManyRequests {
			code, typ = "ITEM_GET_LIMIT", "RATE_LIMIT_EXCEEDED"
		}
		fail(w, s.HTTPStatus, typ, code, "forced")
		return nil, false
	}
	if body["client_id"] != s.ClientID || body["secret"] != s.Secret {
		fail(w, http.StatusBadRequest, "INVALID_INPUT", "INVALID_API_KEYS", "invalid client_id or secret provided")
		return nil, false
	}
	return body, true
}

func (s *Server) item(w http.ResponseWriter, accessToken any) *Item {
	for _, it := range s.items {
		if it.AccessToken == accessToken {
			return it
		}
	}
	fail(w, http.StatusBadRequest, "INVALID_INPUT", "INVALID_ACCESS_TOKEN", "could not find matching access token")
	return nil
}

func (s *Server) linkTokenCreate(w http.ResponseWriter, r *http.Request) {
	body, ok := s.begin(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, has := body["products"]; has {
		fail(w, http.StatusBadRequest, "INVALID_REQUEST", "INVALID_FIELD", "products must not be specified in update mode")
		return
	}
	it := s.item(w, body["access_token"])
	if it == nil {
		return
	}
	lt := LinkToken{ItemID: it.ID}
	if v, has := body["redirect_uri"]; has {
		lt.RedirectURI, _ = v.(string)
		if !slices.Contains(s.RedirectURIs, lt.RedirectURI) {
			// Plaid allows only the redirect URIs registered in its dashboard.
			fail(w, http.StatusBadRequest, "INVALID_REQUEST", "INVALID_FIELD", "OAuth redirect URI must be configured in the developer dashboard")
			return
		}
	}
	if v, has := body["update"]; has {
		update, ok := v.(map[string]any)
		sel, isBool := update["account_selection_enabled"].(bool)
		if !ok || (update["account_selection_enabled"] != nil && !isBool) {
			fail(w, http.StatusBadRequest, "INVALID_REQUEST", "INVALID_FIELD", "update must be an object; account_selection_enabled a boolean")
			return
		}
		lt.AccountSelection = sel
	}
	s.seq++
	lt.Token = fmt.Sprintf("link-sandbox-%d", s.seq)
	s.tokens[lt.Token] = lt
	reply(w, http.StatusOK, map[string]any{"link_token": lt.Token,
		"expiration": s.Now().Add(30 * time.Minute).UTC().Format(time.RFC3339), "request_id": "req_fake"})
}

func (s *Server) itemGet(w http.ResponseWriter, r *http.Request) {
	body, ok := s.begin(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it := s.item(w, body["access_token"])
	if it == nil {
		return
	}
	var itemErr any
	if it.ErrorCode != "" {
		itemErr = map[string]any{"error_type": "ITEM_ERROR", "error_code": it.ErrorCode,
			"error_message": "the login details of this item have changed", "display_message": nil}
	}
	var consentExpires any
	if !it.ConsentExpiresAt.IsZero() {
		consentExpires = it.ConsentExpiresAt.UTC().Format(time.RFC3339Nano)
	}
	institution := it.InstitutionID
	if institution == "" {
		institution = "ins_3"
	}
	reply(w, http.StatusOK, map[string]any{"item": map[string]any{"item_id": it.ID, "institution_id": institution,
		"error": itemErr, "consent_expiration_time": consentExpires, "update_type": "background"},
		"status": map[string]any{}, "request_id": "req_fake"})
}

func (s *Server) verificationKey(w http.ResponseWriter, r *http.Request) {
	body, ok := s.begin(w, r)
	if !ok {
		return
	}
	if body["key_id"] != s.KeyID {
		fail(w, http.StatusBadRequest, "INVALID_INPUT", "INVALID_WEBHOOK_VERIFICATION_KEY_ID", "invalid key_id provided")
		return
	}
	jwk, _ := jose.JSONWebKey{Key: &s.key.PublicKey, KeyID: s.KeyID, Algorithm: "ES256", Use: "sig"}.MarshalJSON()
	var key map[string]any
	_ = json.Unmarshal(jwk, &key)
	key["created_at"] = s.Now().Add(-24 * time.Hour).Unix()
	key["expired_at"] = s.KeyExpiredAt
	reply(w, http.StatusOK, map[string]any{"key": key, "request_id": "req_fake"})
}

func fail(w http.ResponseWriter, status int, typ, code, msg string) {
	reply(w, status, map[string]any{"error_type": typ, "error_code": code, "error_message": msg,
		"display_message": nil, "request_id": "req_fake"})
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
