// Package mxfake is a local stand-in for MX's Platform API (v20111101),
// for tests, answering with the documented shapes (docs/providers/mx.md):
// users and their members, a member's status, aggregation and Connect
// widget URLs; every request is recorded. It also builds MX's webhook
// deliveries, with the HTTP basic credentials MX is configured to send.
package mxfake

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Accept is the media type every Platform API request must accept: it
// names the API version (v20111101). Another answers 406.
const Accept = "application/vnd.mx.api.v1+json"

// DefaultWidgetURL is where the widget URLs the fake mints point unless
// Server.WidgetURL says otherwise: MX's integration widget host, with the
// Connect widget's path (the token follows it).
const DefaultWidgetURL = "https://int-widgets.moneydesktop.com/md/connect/"

// Member is an MX member as the fake keeps it.
type Member struct {
	GUID     string
	UserGUID string
	// Name is the institution's name, as MX names the member.
	Name            string
	InstitutionCode string
	// Status is the connection_status; "" answers null (a member without
	// credentials: a manual one).
	Status          string
	BeingAggregated bool
	AggregatedAt    time.Time
}

// Request is one request the fake received.
type Request struct {
	Method, Path, Query, Authorization, Accept string
	Body                                       map[string]any
}

// Server is the fake.
type Server struct {
	*httptest.Server
	ClientID, APIKey string
	// HTTPStatus, when set, is the answer to every request (an outage).
	HTTPStatus int
	// WidgetURL, when set, is the Connect widget page the minted URLs
	// open (a token is appended), so a test can point the widget at a
	// page of its own; by default MX's integration widget host.
	WidgetURL string
	// AggregateTo, when set, is the status an aggregate call leaves the
	// member in; otherwise the member keeps its status and is being
	// aggregated.
	AggregateTo string
	// AggregateStatus, when set, is the aggregate call's answer (409: an
	// aggregation of another kind is running).
	AggregateStatus int
	Now             func() time.Time

	mu       sync.Mutex
	members  map[string]*Member
	order    []string        // member guids in the order of Put
	users    []string        // user guids in the order they first appeared
	disabled map[string]bool // users disabled
	requests []Request
	seq      int
	limited  int
	after    string
}

// New starts a fake that accepts clientID and apiKey.
func New(clientID, apiKey string) *Server {
	s := &Server{ClientID: clientID, APIKey: apiKey, Now: time.Now, members: map[string]*Member{}, disabled: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /users", s.listUsers)
	mux.HandleFunc("GET /users/{user}/members", s.listMembers)
	mux.HandleFunc("GET /users/{user}/members/{member}", s.readMember)
	mux.HandleFunc("GET /users/{user}/members/{member}/status", s.readStatus)
	mux.HandleFunc("POST /users/{user}/members/{member}/aggregate", s.aggregate)
	mux.HandleFunc("POST /users/{user}/widget_urls", s.widgetURL)
	s.Server = httptest.NewServer(s.check(mux))
	return s
}

// Put adds or replaces a member (and its user).
func (s *Server) Put(m Member) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.members[m.GUID] == nil {
		s.order = append(s.order, m.GUID)
	}
	if !slices.Contains(s.users, m.UserGUID) {
		s.users = append(s.users, m.UserGUID)
	}
	s.members[m.GUID] = &m
}

// Set changes a member's connection status, as the widget or an
// aggregation would, and ends any aggregation under way.
func (s *Server) Set(guid, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.members[guid].Status = status
	s.members[guid].BeingAggregated = false
}

// Delete removes a member, as deleting it at MX does.
func (s *Server) Delete(guid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.members, guid)
	s.order = slices.DeleteFunc(s.order, func(g string) bool { return g == guid })
}

// DisableUser marks a user disabled (is_disabled).
func (s *Server) DisableUser(guid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.disabled[guid] = true
}

// Member returns a member as the fake has it now.
func (s *Server) Member(guid string) (Member, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.members[guid]
	if m == nil {
		return Member{}, false
	}
	return *m, true
}

// RateLimitNext makes the next n requests answer 429 Too Many Requests,
// with retryAfter as their Retry-After header (none if empty).
func (s *Server) RateLimitNext(n int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limited, s.after = n, retryAfter
}

// SetHTTPStatus sets (or, with 0, clears) the answer to every request,
// safely while the adapter calls the fake.
func (s *Server) SetHTTPStatus(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.HTTPStatus = status
}

// Requests returns the requests so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Count is how many requests so far had method and path.
func (s *Server) Count(method, path string) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

// BasicAuth is the Authorization value of HTTP basic credentials
// (RFC 7617): how MX's API is called, and how MX calls a webhook URL
// configured with a username and password.
func BasicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// check records the request and enforces MX's authentication and
// version negotiation.
func (s *Server) check(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		s.mu.Lock()
		s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			Authorization: r.Header.Get("Authorization"), Accept: r.Header.Get("Accept"), Body: body})
		forced := s.HTTPStatus
		limited, after := s.limited > 0, s.after
		if limited {
			s.limited--
		}
		s.mu.Unlock()
		switch {
		case limited:
			if after != "" {
				w.Header().Set("Retry-After", after)
			}
			fail(w, http.StatusTooManyRequests, "Too many requests.")
		case forced != 0:
			fail(w, forced, http.StatusText(forced))
		case r.Header.Get("Authorization") != BasicAuth(s.ClientID, s.APIKey):
			fail(w, http.StatusUnauthorized, "Invalid MX-API-Key or MX-Client-ID provided.")
		case r.Header.Get("Accept") != Accept:
			fail(w, http.StatusNotAcceptable, "The request didn't specify a valid API version.")
		default:
			next.ServeHTTP(w, r.WithContext(withBody(r.Context(), body)))
		}
	})
}

// paging reads page and records_per_page as MX documents them: pages
// from 1, 10 to 1000 records (outside that, the default of 25).
func paging(q url.Values) (page, per int) {
	page, per = 1, 25
	if p, err := strconv.Atoi(q.Get("page")); err == nil && p > 0 {
		page = p
	}
	if n, err := strconv.Atoi(q.Get("records_per_page")); err == nil && n >= 10 && n <= 1000 {
		per = n
	}
	return page, per
}

// window is the part of n records on page, and the pagination object.
func window(n, page, per int) (from, to int, pagination map[string]any) {
	from = min((page-1)*per, n)
	to = min(from+per, n)
	return from, to, map[string]any{"current_page": page, "per_page": per, "total_entries": n,
		"total_pages": (n + per - 1) / per}
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	page, per := paging(r.URL.Query())
	s.mu.Lock()
	defer s.mu.Unlock()
	from, to, pagination := window(len(s.users), page, per)
	users := []map[string]any{}
	for _, u := range s.users[from:to] {
		users = append(users, map[string]any{"guid": u, "id": "partner-" + u, "email": nil,
			"is_disabled": s.disabled[u], "metadata": nil})
	}
	reply(w, http.StatusOK, map[string]any{"users": users, "pagination": pagination})
}

func (s *Server) listMembers(w http.ResponseWriter, r *http.Request) {
	page, per := paging(r.URL.Query())
	user := r.PathValue("user")
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.users, user) {
		fail(w, http.StatusNotFound, "We were unable to find the record you requested.")
		return
	}
	var mine []*Member
	for _, g := range s.order {
		if m := s.members[g]; m.UserGUID == user {
			mine = append(mine, m)
		}
	}
	from, to, pagination := window(len(mine), page, per)
	members := []map[string]any{}
	for _, m := range mine[from:to] {
		members = append(members, s.body(m))
	}
	reply(w, http.StatusOK, map[string]any{"members": members, "pagination": pagination})
}

// member is the path's member of the path's user; nil (answered 404)
// when either is unknown.
func (s *Server) member(w http.ResponseWriter, r *http.Request) *Member {
	m := s.members[r.PathValue("member")]
	if m == nil || m.UserGUID != r.PathValue("user") {
		fail(w, http.StatusNotFound, "We were unable to find the record you requested.")
		return nil
	}
	return m
}

func (s *Server) readMember(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.member(w, r); m != nil {
		reply(w, http.StatusOK, map[string]any{"member": s.body(m)})
	}
}

func (s *Server) readStatus(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.member(w, r)
	if m == nil {
		return
	}
	reply(w, http.StatusOK, map[string]any{"member": map[string]any{
		"aggregated_at": stamp(m.AggregatedAt), "challenges": []any{}, "connection_status": nullable(m.Status),
		"guid": m.GUID, "has_processed_accounts": true, "has_processed_transactions": true,
		"is_authenticated": m.Status == "CONNECTED", "is_being_aggregated": m.BeingAggregated,
		"successfully_aggregated_at": stamp(m.AggregatedAt),
	}})
}

// aggregate starts an aggregation: 202 with the member, as MX answers
// also when one is already running or was run a moment ago.
func (s *Server) aggregate(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.member(w, r)
	switch {
	case m == nil:
		return
	case s.AggregateStatus != 0:
		fail(w, s.AggregateStatus, http.StatusText(s.AggregateStatus))
		return
	}
	m.AggregatedAt = s.Now().UTC()
	m.BeingAggregated = true
	if s.AggregateTo != "" {
		m.Status, m.BeingAggregated = s.AggregateTo, false
	}
	reply(w, http.StatusAccepted, map[string]any{"member": s.body(m)})
}

// widgetURL mints a Connect widget URL: single use, valid ten minutes.
func (s *Server) widgetURL(w http.ResponseWriter, r *http.Request) {
	req, _ := bodyOf(r.Context())["widget_url"].(map[string]any)
	s.mu.Lock()
	defer s.mu.Unlock()
	user := r.PathValue("user")
	switch {
	case req == nil || req["widget_type"] == nil || req["widget_type"] == "":
		fail(w, http.StatusBadRequest, "widget_type is required.")
		return
	case !slices.Contains(s.users, user):
		fail(w, http.StatusNotFound, "We were unable to find the record you requested.")
		return
	}
	if guid, ok := req["current_member_guid"].(string); ok {
		if m := s.members[guid]; m == nil || m.UserGUID != user {
			fail(w, http.StatusNotFound, "We were unable to find the record you requested.")
			return
		}
	}
	s.seq++
	base := s.WidgetURL
	if base == "" {
		base = DefaultWidgetURL
	}
	reply(w, http.StatusOK, map[string]any{"widget_url": map[string]any{
		"type": req["widget_type"], "url": fmt.Sprintf("%swidget%04dtoken", base, s.seq), "user_id": "partner-" + user}})
}

// body is a member as MX answers it (MemberResponse).
func (s *Server) body(m *Member) map[string]any {
	return map[string]any{
		"aggregated_at": stamp(m.AggregatedAt), "background_aggregation_is_disabled": false,
		"connection_status": nullable(m.Status), "connection_status_message": nil,
		"guid": m.GUID, "id": nil, "institution_code": m.InstitutionCode, "institution_guid": "INS-" + m.InstitutionCode,
		"is_being_aggregated": m.BeingAggregated, "is_managed_by_user": false, "is_manual": m.Status == "", "is_oauth": false,
		"metadata": nil, "most_recent_job_detail_code": nil, "most_recent_job_detail_text": nil, "most_recent_job_guid": nil,
		"name": m.Name, "needs_updated_credentials": false, "oauth_window_uri": nil,
		"successfully_aggregated_at": stamp(m.AggregatedAt), "use_cases": []string{"PFM"},
		"user_guid": m.UserGUID, "user_id": "partner-" + m.UserGUID,
	}
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func stamp(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

type bodyKey struct{}

func withBody(ctx context.Context, body map[string]any) context.Context {
	return context.WithValue(ctx, bodyKey{}, body)
}

func bodyOf(ctx context.Context) map[string]any {
	b, _ := ctx.Value(bodyKey{}).(map[string]any)
	return b
}

// fail answers with MX's error object.
func fail(w http.ResponseWriter, status int, msg string) {
	reply(w, status, map[string]any{"error": map[string]any{"message": msg}})
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", Accept+"; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
