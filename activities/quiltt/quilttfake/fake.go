// Package quilttfake is a local stand-in for Quiltt's API, for tests: the
// session endpoint and the GraphQL operations Relink uses, answering with
// the documented shapes (docs/providers/quiltt.md). It records every
// request so tests can check what Relink sends.
package quilttfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Connection is a Quiltt connection as the fake keeps it.
type Connection struct {
	ID        string
	ProfileID string
	Provider  string // PLAID or MX
	Status    string
	// Institution is the institution's name.
	Institution string
}

// Request is one GraphQL request the fake received.
type Request struct {
	Authorization string
	Query         string
	Variables     map[string]any
}

// Input returns the request's $input variable.
func (r Request) Input() map[string]any {
	in, _ := r.Variables["input"].(map[string]any)
	return in
}

// Server is the fake.
type Server struct {
	*httptest.Server
	APISecret string
	// Legacy makes the schema name session fields status/token.
	Legacy bool
	// CloseFailsWith makes close answer success:false with this error code.
	CloseFailsWith string
	// HTTPStatus, when set, is the answer to every GraphQL request.
	HTTPStatus int
	// GraphQLError, when set, answers every GraphQL request with this
	// top-level error and null data, as an internal error would.
	GraphQLError string
	// OnClose runs after a successful close (e.g. to send a webhook).
	OnClose func(c Connection)
	// MXWidgetURL, when set, is the base of the MX Connect widget URL that
	// connectorMxInitialize answers (the connector token is appended), so
	// a test can point the widget at a page of its own; by default MX's
	// integration widget host.
	MXWidgetURL string
	Now         func() time.Time

	mu          sync.Mutex
	connections map[string]*Connection
	sessions    map[string]string // session token -> profile id
	tokens      map[string]string // connector token -> connection id
	requests    []Request
	sessionReqs int
	seq         int
	profiles    map[string]bool // profiles put without connections
	limited     int             // requests still to answer 429
	retryAfter  string          // their Retry-After header
}

// New starts a fake that accepts apiSecret.
func New(apiSecret string) *Server {
	s := &Server{APISecret: apiSecret, Now: time.Now, connections: map[string]*Connection{},
		sessions: map[string]string{}, tokens: map[string]string{}, profiles: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/users/sessions", s.session)
	mux.HandleFunc("POST /v1/graphql", s.graphql)
	mux.HandleFunc("GET /v1/profiles", s.listProfiles)
	s.Server = httptest.NewServer(s.limit(mux))
	return s
}

// PutProfile adds a profile (one with connections exists already).
func (s *Server) PutProfile(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.profiles[id] = true
}

// RateLimitNext makes the next n requests, to any endpoint, answer 429
// Too Many Requests, with retryAfter as their Retry-After header (none if
// empty).
func (s *Server) RateLimitNext(n int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limited, s.retryAfter = n, retryAfter
}

func (s *Server) limit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		limited, retryAfter := s.limited > 0, s.retryAfter
		if limited {
			s.limited--
		}
		s.mu.Unlock()
		if !limited {
			next.ServeHTTP(w, r)
			return
		}
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		reply(w, http.StatusTooManyRequests, map[string]string{"message": "Too Many Requests"})
	})
}

// knownProfiles are the profiles, in id order.
func (s *Server) knownProfiles() []string {
	set := map[string]bool{}
	for id := range s.profiles {
		set[id] = true
	}
	for _, c := range s.connections {
		set[c.ProfileID] = true
	}
	ids := make([]string, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// listProfiles is GET /v1/profiles: page (from 1) and limit (default 25),
// with the paging headers Quiltt sends.
func (s *Server) listProfiles(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+s.APISecret {
		reply(w, http.StatusUnauthorized, map[string]string{"message": "Invalid API key"})
		return
	}
	page, limit := 1, 25
	if v := r.URL.Query().Get("page"); v != "" {
		page, _ = strconv.Atoi(v)
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		limit, _ = strconv.Atoi(v)
	}
	if page < 1 || limit < 1 {
		reply(w, http.StatusBadRequest, map[string]string{"message": "invalid page or limit"})
		return
	}
	s.mu.Lock()
	ids := s.knownProfiles()
	s.mu.Unlock()
	from, to := min((page-1)*limit, len(ids)), min(page*limit, len(ids))
	out := []map[string]any{}
	for i, id := range ids[from:to] {
		out = append(out, map[string]any{"id": id, "uuid": fmt.Sprintf("018a72f8-5434-7262-a029-%012x", from+i),
			"metadata": nil, "email": nil, "phone": nil, "name": nil,
			"at": "2025-01-01T00:00:00Z", "createdAt": "2025-01-01T00:00:00Z", "updatedAt": "2025-01-01T00:00:00Z"})
	}
	w.Header().Set("Current-Page", strconv.Itoa(page))
	w.Header().Set("Page-Items", strconv.Itoa(limit))
	w.Header().Set("Total-Count", strconv.Itoa(len(ids)))
	w.Header().Set("Total-Pages", strconv.Itoa((len(ids)+limit-1)/limit))
	reply(w, http.StatusOK, out)
}

// Put adds or replaces a connection.
func (s *Server) Put(c Connection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.connections[c.ID] = &c
}

// Get returns a connection.
func (s *Server) Get(id string) Connection {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.connections[id]
}

// Requests returns the GraphQL requests so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// SessionRequests counts the session tokens minted.
func (s *Server) SessionRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessionReqs
}

func (s *Server) session(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+s.APISecret {
		reply(w, http.StatusUnauthorized, map[string]string{"message": "Invalid API key"})
		return
	}
	var body struct {
		UserID string `json:"userId"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	known := s.profiles[body.UserID]
	for _, c := range s.connections {
		known = known || c.ProfileID == body.UserID
	}
	if !known {
		reply(w, http.StatusNotFound, map[string]string{"message": "Profile not found"})
		return
	}
	s.sessionReqs++
	s.seq++
	token := fmt.Sprintf("session_%d", s.seq)
	s.sessions[token] = body.UserID
	exp := s.Now().Add(time.Hour)
	reply(w, http.StatusCreated, map[string]any{"token": token, "userId": body.UserID,
		"environmentId": "env_fake", "expiration": exp.Unix(), "expiresAt": exp.UTC().Format(time.RFC3339)})
}

var recordSelection = regexp.MustCompile(`record \{ (\w+) (\w+)`)

func (s *Server) graphql(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Query     string         `json:"query"`
		Variables map[string]any `json:"variables"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{Authorization: r.Header.Get("Authorization"), Query: body.Query, Variables: body.Variables})
	if s.HTTPStatus != 0 {
		reply(w, s.HTTPStatus, map[string]string{"message": http.StatusText(s.HTTPStatus)})
		return
	}
	if s.GraphQLError != "" {
		reply(w, http.StatusOK, map[string]any{"data": map[string]any{"connection": nil},
			"errors": []map[string]any{{"message": s.GraphQLError}}})
		return
	}
	profile, ok := s.sessions[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	if !ok {
		reply(w, http.StatusUnauthorized, map[string]string{"message": "Invalid session token"})
		return
	}
	// The schema check GraphQL itself would make.
	if m := recordSelection.FindStringSubmatch(body.Query); m != nil && strings.Contains(body.Query, "Initialize") {
		want := "connectorStatus"
		if s.Legacy {
			want = "status"
		}
		if m[1] != want {
			reply(w, http.StatusOK, map[string]any{"errors": []map[string]any{
				{"message": fmt.Sprintf("Field '%s' doesn't exist on type 'PlaidConnectorSession'", m[1])}}})
			return
		}
	}
	input, _ := body.Variables["input"].(map[string]any)
	switch {
	case strings.Contains(body.Query, "connectorPlaidInitialize"), strings.Contains(body.Query, "connectorMxInitialize"):
		s.initialize(w, profile, input, strings.Contains(body.Query, "connectorMxInitialize"))
	case strings.Contains(body.Query, "connectorPlaidClose"), strings.Contains(body.Query, "connectorMxClose"):
		s.close(w, profile, input, strings.Contains(body.Query, "connectorMxClose"))
	case strings.Contains(body.Query, "connectionSimulateError"):
		c := s.owned(profile, fmt.Sprint(input["id"]))
		if c == nil {
			mutation(w, "connectionSimulateError", false, "Connection not found", "", nil)
			return
		}
		c.Status = "ERROR_REPAIRABLE"
		mutation(w, "connectionSimulateError", true, "", "", map[string]any{"id": c.ID, "status": c.Status})
	case strings.Contains(body.Query, "connections(filter"):
		reply(w, http.StatusOK, map[string]any{"data": map[string]any{"connections": s.filtered(profile, body.Query)}})
	case strings.Contains(body.Query, "connection(id"):
		c := s.owned(profile, fmt.Sprint(body.Variables["id"]))
		if c == nil {
			reply(w, http.StatusOK, map[string]any{"data": map[string]any{"connection": nil}})
			return
		}
		reply(w, http.StatusOK, map[string]any{"data": map[string]any{"connection": map[string]any{
			"id": c.ID, "status": c.Status, "provider": c.Provider}}})
	default:
		reply(w, http.StatusOK, map[string]any{"errors": []map[string]any{{"message": "unknown operation"}}})
	}
}

var statusFilter = regexp.MustCompile(`status: \[([A-Z_, ]*)\]`)

// filtered answers connections(filter: {status: [...]}): the profile's
// connections with those statuses, in id order.
func (s *Server) filtered(profile, query string) []map[string]any {
	statuses := map[string]bool{}
	if m := statusFilter.FindStringSubmatch(query); m != nil {
		for _, st := range strings.Split(m[1], ",") {
			statuses[strings.TrimSpace(st)] = true
		}
	}
	var ids []string
	for id, c := range s.connections {
		if c.ProfileID == profile && (len(statuses) == 0 || statuses[c.Status]) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	out := []map[string]any{}
	for _, id := range ids {
		c := s.connections[id]
		var institution any
		if c.Institution != "" {
			institution = map[string]any{"name": c.Institution}
		}
		out = append(out, map[string]any{"id": c.ID, "status": c.Status, "provider": c.Provider, "institution": institution})
	}
	return out
}

func (s *Server) owned(profile, id string) *Connection {
	c := s.connections[id]
	if c == nil || c.ProfileID != profile {
		return nil
	}
	return c
}

func (s *Server) initialize(w http.ResponseWriter, profile string, input map[string]any, mx bool) {
	field := "connectorPlaidInitialize"
	if mx {
		field = "connectorMxInitialize"
	}
	c := s.owned(profile, fmt.Sprint(input["connectionId"]))
	switch {
	case c == nil:
		mutation(w, field, false, "Connection not found", "ITEM_NOT_FOUND", nil)
		return
	case c.Status == "DISCONNECTED":
		mutation(w, field, false, "Connection is disconnected and cannot be repaired", "", nil)
		return
	}
	statusField, tokenField := "connectorStatus", "connectorToken"
	if s.Legacy {
		statusField, tokenField = "status", "token"
	}
	if c.Status == "SYNCED" {
		mutation(w, field, true, "", "", map[string]any{statusField: "CONTINUE"})
		return
	}
	s.seq++
	token := fmt.Sprintf("ct_%d", s.seq)
	s.tokens[token] = c.ID
	record := map[string]any{statusField: "ACTION_REQUIRED", tokenField: token}
	if mx {
		base := s.MXWidgetURL
		if base == "" {
			base = "https://int-widgets.moneydesktop.com/md/connect/"
		}
		record["url"] = base + token
	} else {
		record["linkToken"] = fmt.Sprintf("link-sandbox-%d", s.seq)
		record["expiration"] = s.Now().Add(30 * time.Minute).UTC().Format(time.RFC3339)
	}
	mutation(w, field, true, "", "", record)
}

func (s *Server) close(w http.ResponseWriter, profile string, input map[string]any, mx bool) {
	field := "connectorPlaidClose"
	if mx {
		field = "connectorMxClose"
	}
	tokenField := "connectorToken"
	if s.Legacy {
		tokenField = "token"
	}
	token := fmt.Sprint(input[tokenField])
	c := s.owned(profile, s.tokens[token])
	switch {
	case c == nil:
		mutation(w, field, false, "Connector session not found or expired", "INVALID_LINK_TOKEN", nil)
		return
	case !mx && !strings.HasPrefix(fmt.Sprint(input["publicToken"]), "public-"):
		mutation(w, field, false, "provided public token is in an invalid format", "INVALID_PUBLIC_TOKEN", nil)
		return
	case s.CloseFailsWith != "":
		mutation(w, field, false, "close failed", s.CloseFailsWith, nil)
		return
	}
	delete(s.tokens, token)
	c.Status = "SYNCING"
	mutation(w, field, true, "", "", map[string]any{"id": c.ID, "status": c.Status})
	if s.OnClose != nil {
		go s.OnClose(*c)
	}
}

func mutation(w http.ResponseWriter, field string, success bool, msg, code string, record map[string]any) {
	payload := map[string]any{"success": success, "errors": []any{}, "record": record}
	if !success {
		payload["errors"] = []map[string]any{{"message": msg, "code": code, "type": "ITEM_ERROR"}}
		payload["record"] = nil
	}
	reply(w, http.StatusOK, map[string]any{"data": map[string]any{field: payload}})
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
