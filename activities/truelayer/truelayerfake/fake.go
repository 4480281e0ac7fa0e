// Package truelayerfake is a local stand-in for TrueLayer's auth server
// and Data API v1 as Relink uses them, written from TrueLayer's
// documentation (docs/providers/truelayer.md): POST /connections/extend,
// POST /connect/token, GET /data/v1/me, and a sign-in page standing in for
// the auth dialog a user_input_link opens. Connections behave as TrueLayer's
// mock bank users do: john/eternal extends with no_action_needed, john/doe
// with authentication_needed, and every Data API call of an error.<code>
// user fails with <code>.
package truelayerfake

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Mock bank users (TrueLayer's "Mock users" page).
const (
	UserJohn        = "john"
	PasswordEternal = "eternal" // extend: no_action_needed
	PasswordDoe     = "doe"     // extend: authentication_needed
	PasswordError   = "error"   // with an error.<code> username
)

// Connection is one connection as the fake keeps it: the mock user who
// made it and its current tokens.
type Connection struct {
	ID       string
	Username string
	Password string
	// ConsentExpired: the 90 days ran out; Data API calls answer 403
	// access_denied until the user extends the connection.
	ConsentExpired bool
	// ReconfirmOnly stands in for a UK connection whose renewal needs only
	// the user's reconfirmation: extend without it answers
	// reconfirmation_of_consent_needed, with it no_action_needed. (TrueLayer's
	// sandbox does not answer reconfirmation_of_consent_needed yet.)
	ReconfirmOnly bool
	// ReconfirmThenSignIn stands for a UK connection whose renewal needs
	// the user's reconfirmation and a sign-in at the bank: extend without
	// the reconfirmation answers reconfirmation_of_consent_needed, with it
	// as the mock user's password says (john/doe: authentication_needed).
	// Like TrueLayer's documentation, the fake keeps no reconfirmation:
	// each extend says whether the user reconfirmed.
	ReconfirmThenSignIn bool
	AccessToken         string
	RefreshToken        string
	// AccessTokenExpiresAt: /me refuses the access token from then on
	// (401 invalid_token). Put and every new token set it an hour on, as
	// TrueLayer's expires_in of 3600 says.
	AccessTokenExpiresAt time.Time
}

// AccessTokenLifetime is how long the fake's access tokens work.
const AccessTokenLifetime = time.Hour

// Request is one request the fake received.
type Request struct {
	Method, Path string
	Form         url.Values     // /connect/token
	Body         map[string]any // JSON bodies
}

// Server is the fake.
type Server struct {
	*httptest.Server
	ClientID, ClientSecret string
	// HTTPStatus, when set, is the answer to every API call.
	HTTPStatus int
	Now        func() time.Time

	mu       sync.Mutex
	conns    map[string]*Connection // by id
	sessions map[string]*session    // by user_input_link session id
	codes    map[string]*session    // by code, until exchanged
	requests []Request
	returns  []string // where the sign-in page sent browsers back to
}

type session struct {
	id, conn, redirectURI, state, code string
}

// New starts a fake that accepts the client id and secret.
func New(clientID, clientSecret string) *Server {
	s := &Server{ClientID: clientID, ClientSecret: clientSecret, Now: time.Now,
		conns: map[string]*Connection{}, sessions: map[string]*session{}, codes: map[string]*session{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /connections/extend", s.extend)
	mux.HandleFunc("POST /connect/token", s.token)
	mux.HandleFunc("GET /data/v1/me", s.me)
	mux.HandleFunc("GET /dialog", s.dialog)
	mux.HandleFunc("POST /dialog", s.approve)
	s.Server = httptest.NewServer(mux)
	return s
}

// Put adds or replaces a connection, giving it tokens if it has none, and
// returns it.
func (s *Server) Put(c Connection) Connection {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.AccessToken == "" {
		c.AccessToken = "at_" + random()
	}
	if c.RefreshToken == "" {
		c.RefreshToken = "rt_" + random()
	}
	if c.AccessTokenExpiresAt.IsZero() {
		c.AccessTokenExpiresAt = s.Now().Add(AccessTokenLifetime)
	}
	s.conns[c.ID] = &c
	return c
}

// Get returns a connection as the fake holds it now.
func (s *Server) Get(id string) (Connection, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.conns[id]
	if !ok {
		return Connection{}, false
	}
	return *c, true
}

// Update changes a connection in place.
func (s *Server) Update(id string, f func(*Connection)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.conns[id])
}

// Requests returns the requests so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Returns are the URLs the sign-in page sent browsers back to, in order
// (redirect_uri with code, or with error when the user canceled).
func (s *Server) Returns() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.returns...)
}

// Approve plays the user signing in at a user_input_link's page: it
// returns the URL TrueLayer sends the browser back to (redirect_uri with
// code, and state if the link had one).
func (s *Server) Approve(link string) (string, error) {
	u, err := url.Parse(link)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stateFromLinkLocked(u.Query())
	return s.approveLocked(u.Query().Get("session"))
}

// stateFromLinkLocked: a state on the link opened takes the place of the
// extend request's, as an OAuth 2 authorization server keeps the state of
// the authorization request it was sent (RFC 6749, 4.1.1) and echoes it
// back on the redirect (4.1.2).
func (s *Server) stateFromLinkLocked(q url.Values) {
	if sess := s.sessions[q.Get("session")]; sess != nil && q.Has("state") {
		sess.state = q.Get("state")
	}
}

func (s *Server) approveLocked(id string) (string, error) {
	sess := s.sessions[id]
	if sess == nil {
		return "", fmt.Errorf("no sign-in session %q", id)
	}
	delete(s.sessions, id) // a link works once
	sess.code = "code_" + random()
	s.codes[sess.code] = sess
	back, err := url.Parse(sess.redirectURI)
	if err != nil {
		return "", err
	}
	q := back.Query()
	q.Set("code", sess.code)
	q.Set("scope", "info accounts balance transactions offline_access")
	if sess.state != "" {
		q.Set("state", sess.state)
	}
	back.RawQuery = q.Encode()
	s.returns = append(s.returns, back.String())
	return back.String(), nil
}

// denyLocked is the user canceling at the sign-in page: back to
// redirect_uri with error=access_denied, as an OAuth 2 authorization
// server answers a refusal (RFC 6749, 4.1.2.1). The link still works: the
// user may sign in from it later.
func (s *Server) denyLocked(id string) (string, error) {
	sess := s.sessions[id]
	if sess == nil {
		return "", fmt.Errorf("no sign-in session %q", id)
	}
	back, err := url.Parse(sess.redirectURI)
	if err != nil {
		return "", err
	}
	q := back.Query()
	q.Set("error", "access_denied")
	if sess.state != "" {
		q.Set("state", sess.state)
	}
	back.RawQuery = q.Encode()
	s.returns = append(s.returns, back.String())
	return back.String(), nil
}

func (s *Server) record(r *http.Request, form url.Values, body map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Form: form, Body: body})
}

func (s *Server) forced(w http.ResponseWriter) bool {
	s.mu.Lock()
	st := s.HTTPStatus
	s.mu.Unlock()
	if st == 0 {
		return false
	}
	fail(w, st, "provider_error", http.StatusText(st))
	return true
}

// extend is POST /connections/extend.
func (s *Server) extend(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		fail(w, http.StatusBadRequest, "validation_error", "body is not JSON")
		return
	}
	s.record(r, nil, body)
	if s.forced(w) {
		return
	}
	str := func(k string) string { v, _ := body[k].(string); return v }
	if str("client_id") != s.ClientID || str("client_secret") != s.ClientSecret {
		fail(w, http.StatusUnauthorized, "invalid_client", "The client_id or client_secret are invalid.")
		return
	}
	if str("redirect_uri") == "" || str("refresh_token") == "" {
		fail(w, http.StatusBadRequest, "validation_error", "refresh_token and redirect_uri are required")
		return
	}
	reconfirmed, _ := body["user_has_reconfirmed_consent"].(bool)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.byRefresh(str("refresh_token"))
	switch {
	case c == nil:
		fail(w, http.StatusBadRequest, "invalid_grant", "The refresh token is invalid, expired or revoked.")
	case strings.HasPrefix(c.Username, "error.account_permanently_locked"):
		fail(w, http.StatusBadRequest, "account_permanently_locked", "The account is permanently locked.")
	case (c.ReconfirmOnly || c.ReconfirmThenSignIn) && !reconfirmed:
		reply(w, http.StatusOK, map[string]any{"action_needed": "reconfirmation_of_consent_needed"})
	case c.ReconfirmOnly || (c.Username == UserJohn && c.Password == PasswordEternal):
		c.ConsentExpired = false
		s.issueLocked(c)
		reply(w, http.StatusOK, map[string]any{"action_needed": "no_action_needed",
			"access_token": c.AccessToken, "refresh_token": c.RefreshToken, "expires_in": 3600, "token_type": "Bearer"})
	default:
		// john/doe (and every other mock user): the bank needs a sign-in.
		sess := &session{id: random(), conn: c.ID, redirectURI: str("redirect_uri"), state: str("state")}
		s.sessions[sess.id] = sess
		reply(w, http.StatusOK, map[string]any{"action_needed": "authentication_needed",
			"user_input_link": s.URL + "/dialog?session=" + sess.id})
	}
}

// issueLocked gives c new tokens: the refresh token they replace is
// retired, the access token works for AccessTokenLifetime.
func (s *Server) issueLocked(c *Connection) {
	c.AccessToken, c.RefreshToken = "at_"+random(), "rt_"+random()
	c.AccessTokenExpiresAt = s.Now().Add(AccessTokenLifetime)
}

func (s *Server) byRefresh(token string) *Connection {
	for _, c := range s.conns {
		if c.RefreshToken == token {
			return c
		}
	}
	return nil
}

// token is POST /connect/token (authorization_code and refresh_token).
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		fail(w, http.StatusBadRequest, "invalid_request", "unreadable form")
		return
	}
	form := r.PostForm
	s.record(r, form, nil)
	if s.forced(w) {
		return
	}
	if form.Get("client_id") != s.ClientID || form.Get("client_secret") != s.ClientSecret {
		fail(w, http.StatusBadRequest, "invalid_client", "The client_id or client_secret are invalid.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var c *Connection
	switch form.Get("grant_type") {
	case "authorization_code":
		sess := s.codes[form.Get("code")]
		if sess == nil || sess.redirectURI != form.Get("redirect_uri") {
			fail(w, http.StatusBadRequest, "invalid_grant", "The authorisation grant is invalid, expired, revoked or does not match the redirection URI.")
			return
		}
		delete(s.codes, sess.code) // single use
		c = s.conns[sess.conn]
	case "refresh_token":
		if c = s.byRefresh(form.Get("refresh_token")); c == nil || c.ConsentExpired {
			fail(w, http.StatusBadRequest, "invalid_grant", "The refresh token is invalid, expired or revoked.")
			return
		}
	default:
		fail(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type")
		return
	}
	c.ConsentExpired = false
	s.issueLocked(c)
	reply(w, http.StatusOK, map[string]any{"access_token": c.AccessToken, "refresh_token": c.RefreshToken,
		"expires_in": 3600, "token_type": "Bearer", "scope": "info accounts balance transactions offline_access"})
}

// errorStatus is the HTTP status the fake answers each error.<code>
// user's Data API calls with: the adapter reads the code, not the status.
var errorStatus = map[string]int{
	"account_permanently_locked": http.StatusForbidden,
	"account_temporarily_locked": http.StatusForbidden,
	"internal_error":             http.StatusInternalServerError,
	"provider_error":             http.StatusServiceUnavailable,
	"user_input_required":        http.StatusForbidden,
	"wrong_credentials":          http.StatusUnauthorized,
}

// me is GET /data/v1/me.
func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	s.record(r, nil, nil)
	if s.forced(w) {
		return
	}
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	defer s.mu.Unlock()
	var c *Connection
	for _, x := range s.conns {
		if x.AccessToken == token && token != "" {
			c = x
		}
	}
	if c == nil || !s.Now().Before(c.AccessTokenExpiresAt) {
		fail(w, http.StatusUnauthorized, "invalid_token", "The access token is invalid or expired.")
		return
	}
	if code, ok := strings.CutPrefix(c.Username, "error."); ok {
		st := errorStatus[code]
		if st == 0 {
			st = http.StatusBadRequest
		}
		fail(w, st, code, "mock user "+c.Username)
		return
	}
	if c.ConsentExpired {
		fail(w, http.StatusForbidden, "access_denied", "Consent has expired.")
		return
	}
	now := s.Now().UTC()
	reply(w, http.StatusOK, map[string]any{"results": []map[string]any{{
		"client_id": s.ClientID, "credentials_id": c.ID, "consent_status": "Authorised",
		"consent_status_updated_at": now, "consent_created_at": now, "consent_expires_at": now.Add(90 * 24 * time.Hour),
		"provider": map[string]any{"display_name": "Mock", "provider_id": "mock"}, "scopes": []string{"info", "accounts"},
	}}})
}

var dialogPage = template.Must(template.New("dialog").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Mock bank sign-in</title></head>
<body><h1>Mock bank</h1>
<form method="post" action="/dialog"><input type="hidden" name="session" value="{{.}}">
<label>Username <input name="username" value="john"></label>
<label>Password <input name="password" type="password" value="doe"></label>
<button id="approve" type="submit">Sign in</button>
<button id="deny" type="submit" name="decision" value="deny">Cancel</button></form>
</body></html>`))

// dialog is the page a user_input_link opens: the auth dialog's stand-in.
func (s *Server) dialog(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("session")
	s.mu.Lock()
	_, ok := s.sessions[id]
	s.stateFromLinkLocked(r.URL.Query())
	s.mu.Unlock()
	if !ok {
		http.Error(w, "this sign-in link is not valid", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = dialogPage.Execute(w, id)
}

// approve is the sign-in form's submit: back to redirect_uri with a code,
// or with error=access_denied when the user pressed Cancel.
func (s *Server) approve(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	s.mu.Lock()
	decide := s.approveLocked
	if r.PostForm.Get("decision") == "deny" {
		decide = s.denyLocked
	}
	back, err := decide(r.PostForm.Get("session"))
	s.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	http.Redirect(w, r, back, http.StatusFound)
}

func fail(w http.ResponseWriter, status int, code, description string) {
	reply(w, status, map[string]any{"error": code, "error_description": description})
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func random() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
