// Package meldfake is a local stand-in for Meld's bank-linking API, for
// tests, answering with the documented shapes (docs/providers/meld.md) and
// recording every request.
package meldfake

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultWidgetURL is the widget page the repair call answers with unless
// Server.WidgetURL says otherwise: Meld's sandbox widget host.
const DefaultWidgetURL = "https://institution-connect-sb.meld.io"

// Connection is a Meld connection as the fake keeps it.
type Connection struct {
	ID                 string
	CustomerID         string
	ExternalCustomerID string
	InstitutionName    string
	Status             string
	StatusReason       string
}

// Request is one request the fake received.
type Request struct {
	Method, Path, Authorization, Version string
	Body                                 map[string]any
}

// Server is the fake.
type Server struct {
	*httptest.Server
	APIKey string
	// HTTPStatus, when set, is the answer to every request.
	HTTPStatus int
	// RepairConflict makes the repair call answer 409 whatever the status
	// read said (the connection changed in between).
	RepairConflict bool
	// RepairStatus, when set, is the repair call's answer.
	RepairStatus int
	// WidgetURL, when set, is the Meld Connect widget page that the repair
	// call's widgetUrl opens (?connectToken=… is appended), so a test can
	// point the widget at a page of its own; by default Meld's sandbox
	// widget host.
	WidgetURL string
	Now       func() time.Time

	mu          sync.Mutex
	connections map[string]*Connection
	keys        map[string]string // connection id -> its key, in the order of Put
	requests    []Request
	seq         int
	limited     int    // requests still to answer 429
	retryAfter  string // their Retry-After header
}

// New starts a fake that accepts apiKey.
func New(apiKey string) *Server {
	s := &Server{APIKey: apiKey, Now: time.Now, connections: map[string]*Connection{}, keys: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bank-linking/connections", s.search)
	mux.HandleFunc("GET /bank-linking/connections/{id}", s.get)
	mux.HandleFunc("POST /bank-linking/connect/repair", s.repair)
	s.Server = httptest.NewServer(s.check(mux))
	return s
}

// Put adds or replaces a connection.
func (s *Server) Put(c Connection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.connections[c.ID] = &c
	if s.keys[c.ID] == "" {
		// Opaque to clients; ordered like the connections were created.
		s.keys[c.ID] = fmt.Sprintf("K%08dx%s", len(s.keys)+1, base64.RawURLEncoding.EncodeToString([]byte(c.ID)))
	}
}

// Set changes a connection's status, as the widget or an aggregation would.
func (s *Server) Set(id, status, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.connections[id].Status, s.connections[id].StatusReason = status, reason
}

// RateLimitNext makes the next n requests answer 429 Too Many Requests,
// with retryAfter as their Retry-After header (none if empty).
func (s *Server) RateLimitNext(n int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limited, s.retryAfter = n, retryAfter
}

// Requests returns the requests so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// check records the request and enforces Meld's authentication.
func (s *Server) check(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		s.mu.Lock()
		s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path,
			Authorization: r.Header.Get("Authorization"), Version: r.Header.Get("Meld-Version"), Body: body})
		forced := s.HTTPStatus
		limited, retryAfter := s.limited > 0, s.retryAfter
		if limited {
			s.limited--
		}
		s.mu.Unlock()
		switch {
		case limited:
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			fail(w, http.StatusTooManyRequests, "TOO_MANY_REQUESTS", "Rate limit exceeded")
		case forced != 0:
			fail(w, forced, "FORCED", http.StatusText(forced))
		case r.Header.Get("Authorization") != "BASIC "+s.APIKey:
			fail(w, http.StatusUnauthorized, "UNAUTHORIZED", "Invalid API key")
		default:
			next.ServeHTTP(w, r.WithContext(withBody(r.Context(), body)))
		}
	})
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.connections[r.PathValue("id")]
	if c == nil {
		fail(w, http.StatusNotFound, "NOT_FOUND", "Connection not found")
		return
	}
	reply(w, http.StatusOK, s.body(c))
}

// search is Meld's connection search: filtered by customerId,
// externalCustomerId and statuses (comma separated), in key order, paged
// with after/before (a key) and limit (default 10, 1 to 100).
func (s *Server) search(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 10
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			fail(w, http.StatusBadRequest, "INVALID_REQUEST", "limit must be between 1 and 100")
			return
		}
		limit = n
	}
	after, before := q.Get("after"), q.Get("before")
	if after != "" && before != "" {
		fail(w, http.StatusBadRequest, "INVALID_REQUEST", "before and after cannot be used in the same request")
		return
	}
	statuses := map[string]bool{}
	for _, st := range strings.Split(q.Get("statuses"), ",") {
		if st = strings.TrimSpace(st); st != "" {
			statuses[st] = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var matched []*Connection
	for id, c := range s.connections {
		key := s.keys[id]
		switch {
		case len(statuses) > 0 && !statuses[c.Status],
			q.Get("customerId") != "" && q.Get("customerId") != c.CustomerID,
			q.Get("externalCustomerId") != "" && q.Get("externalCustomerId") != c.ExternalCustomerID,
			after != "" && key <= after,
			before != "" && key >= before:
			continue
		}
		matched = append(matched, c)
	}
	sort.Slice(matched, func(i, j int) bool { return s.keys[matched[i].ID] < s.keys[matched[j].ID] })
	page := matched[:min(limit, len(matched))]
	if before != "" {
		page = matched[len(matched)-len(page):] // the page just before the key
	}
	out := make([]map[string]any, len(page))
	for i, c := range page {
		out[i] = s.body(c)
	}
	reply(w, http.StatusOK, map[string]any{"connections": out, "count": len(out), "remaining": len(matched) - len(page)})
}

// body is a connection as Meld answers it.
func (s *Server) body(c *Connection) map[string]any {
	var reason any
	if c.StatusReason != "" {
		reason = c.StatusReason
	}
	return map[string]any{"id": c.ID, "key": s.keys[c.ID], "customerId": c.CustomerID, "externalCustomerId": c.ExternalCustomerID,
		"institutionName": c.InstitutionName, "status": c.Status, "statusReason": reason,
		"accountId": "acct_fake", "products": []string{"TRANSACTIONS"}}
}

func (s *Server) repair(w http.ResponseWriter, r *http.Request) {
	body := bodyOf(r.Context())
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.connections[fmt.Sprint(body["connectionId"])]
	switch {
	case s.RepairStatus != 0:
		fail(w, s.RepairStatus, "FORCED", http.StatusText(s.RepairStatus))
		return
	case c == nil:
		fail(w, http.StatusNotFound, "NOT_FOUND", "Connection not found")
		return
	case s.RepairConflict || c.Status == "EXPIRED" || c.Status == "DELETED" || c.Status == "IN_PROGRESS":
		fail(w, http.StatusConflict, "CONNECTION_NOT_REPAIRABLE", "Connection is "+c.Status)
		return
	}
	s.seq++
	claims, _ := json.Marshal(map[string]any{"exp": s.Now().Add(3 * time.Hour).Unix(), "connectionId": c.ID})
	token := "eyJhbGciOiJIUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(claims) + fmt.Sprintf(".sig%d", s.seq)
	widget := s.WidgetURL
	if widget == "" {
		widget = DefaultWidgetURL
	}
	reply(w, http.StatusOK, map[string]any{"id": c.ID, "connectToken": token, "institutionId": "ins_fake",
		"widgetUrl": widget + "?connectToken=" + url.QueryEscape(token)})
}

func fail(w http.ResponseWriter, status int, code, msg string) {
	reply(w, status, map[string]any{"code": code, "message": msg, "errors": []string{msg},
		"requestId": "req_fake", "timestamp": time.Now().UTC().Format(time.RFC3339)})
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
