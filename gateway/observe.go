package gateway

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/relink-dev/relink/metrics"
)

// Every request gets an id (the caller's X-Request-Id if it sent a usable
// one), returned in X-Request-Id and carried by every log line of the
// request, an access log line, and the HTTP metrics.

type requestInfoKey struct{}

// requestInfo is filled in as the request is routed.
type requestInfo struct {
	id    string
	route string // the matched pattern, e.g. "POST /v1/repairs/{provider}/{connectionId}/complete"
	// client is who called, for the access log: "app", "page" or empty,
	// never the credential.
	client string
}

func infoOf(ctx context.Context) *requestInfo {
	if info, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		return info
	}
	return &requestInfo{}
}

// logger is the gateway's logger with the request's id.
func (g *Gateway) logger(ctx context.Context) *slog.Logger {
	if id := infoOf(ctx).id; id != "" {
		return g.Logger.With("requestId", id)
	}
	return g.Logger
}

func (g *Gateway) metricsHandler() client.MetricsHandler {
	if g.Metrics == nil {
		return client.MetricsNopHandler
	}
	return g.Metrics.Handler
}

// requestID accepts a caller's id of up to 128 printable characters, so
// ids from a load balancer or the app tie their logs to Relink's.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 && validID(id) {
		return id
	}
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

// observe wraps the whole handler: request id, access log, metrics.
func (g *Gateway) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started := time.Now()
		info := &requestInfo{id: requestID(r)}
		w.Header().Set("X-Request-Id", info.id)
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info)))
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		elapsed := time.Since(started)
		route := info.route
		if route == "" {
			route = "unmatched"
		}
		status := strconv.Itoa(rec.status)
		m := g.metricsHandler().WithTags(map[string]string{"route": route, "method": methodLabel(r.Method)})
		m.WithTags(map[string]string{"status": status}).Counter(metrics.HTTPRequests).Inc(1)
		m.Timer(metrics.HTTPLatency).Record(elapsed)
		if action, provider, ok := g.userAction(r, route); ok {
			g.metricsHandler().WithTags(map[string]string{"provider": provider, "action": action, "status": status}).
				Counter(metrics.UserActions).Inc(1)
		}

		level := slog.LevelInfo
		switch {
		case route == "GET /healthz" || route == "GET /readyz":
			level = slog.LevelDebug
		case rec.status == http.StatusServiceUnavailable || rec.status == http.StatusTooManyRequests:
			level = slog.LevelWarn // expected and retried by the caller
		case rec.status >= 500:
			level = slog.LevelError
		}
		g.Logger.Log(r.Context(), level, "http request", "requestId", info.id, "method", r.Method, "route", route,
			"path", loggedPath(r.URL.Path), "status", rec.status, "bytes", rec.bytes, "durationMs", elapsed.Milliseconds(),
			"client", cmp.Or(info.client, "none"))
	})
}

// methodLabel keeps the method label to the methods HTTP defines: a
// stranger's made-up methods would otherwise mint a series each.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodHead, http.MethodOptions:
		return m
	}
	return "other"
}

// userAction names a frontend call for the user-actions metric.
func (g *Gateway) userAction(r *http.Request, route string) (action, provider string, ok bool) {
	for _, a := range []string{"reconnect", "complete", "exit"} {
		if route == "POST /v1/repairs/{provider}/{connectionId}/"+a {
			provider = "other"
			if parts := strings.Split(r.URL.Path, "/"); len(parts) > 3 {
				if _, known := g.Receivers[parts[3]]; known {
					provider = parts[3]
				}
			}
			return a, provider, true
		}
	}
	return "", "", false
}
