package gateway

import (
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"go.temporal.io/sdk/converter"
)

// LocalCodec is Temporal's remote codec protocol at POST /encode and
// POST /decode for one operator's own machine (`relink codec-server`): the
// Web UI in that operator's browser, or the temporal CLI there, decodes
// payloads with the keys in the operator's environment, with no single
// sign-on and no API key. It takes no credential, so what keeps everyone
// else out is where it answers:
//   - it listens on loopback only (the command refuses anything else);
//   - it answers only requests addressed to a loopback host (Host), so a
//     web page whose own name resolves to 127.0.0.1 (DNS rebinding) is
//     refused;
//   - a browser may call it only from UIOrigins: any other Origin is
//     refused with 403, and gets no CORS answer.
//
// Requests with no Origin (the temporal CLI, curl) are served: only
// processes on this machine can reach it.
type LocalCodec struct {
	Codec     converter.PayloadCodec
	Namespace string
	// UIOrigins are the Web UI origins whose pages may call it.
	UIOrigins []string
	// Logger logs each answer's method, path, status and origin; never a
	// payload.
	Logger *slog.Logger
}

// Handler serves the protocol behind the Host and Origin checks.
func (l *LocalCodec) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /encode", func(w http.ResponseWriter, r *http.Request) {
		serveCodecProtocol(w, r, l.Codec, l.Namespace, true)
	})
	mux.HandleFunc("POST /decode", func(w http.ResponseWriter, r *http.Request) {
		serveCodecProtocol(w, r, l.Codec, l.Namespace, false)
	})
	// limitBody outermost, as in the gateway (Handler).
	return limitBody(l.logged(l.loopbackHostOnly(l.uiOriginsOnly(jsonErrors(mux)))))
}

// IsLoopbackHost reports that host (a Host header's or a listen address's
// host, without its port) names this machine: localhost or a loopback IP.
func IsLoopbackHost(host string) bool {
	ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return strings.EqualFold(host, "localhost") || (ip != nil && ip.IsLoopback())
}

// loopbackHostOnly refuses requests addressed to any other name than this
// machine's. A page at http://attacker.example:8888 whose name the attacker
// has pointed at 127.0.0.1 is same-origin with this server, so CORS would
// not stop it: the Host header it sends, attacker.example, does.
func (l *LocalCodec) loopbackHostOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(r.Host); err == nil {
			host = h
		}
		if !IsLoopbackHost(host) {
			writeError(w, http.StatusForbidden, codeForbidden,
				"host "+strconv.Quote(r.Host)+" is not this machine: call the codec server at 127.0.0.1, [::1] or localhost")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// uiOriginsOnly answers the preflights of UIOrigins and refuses every
// other Origin outright: a page elsewhere could not read the answer anyway
// (no CORS headers), but it could still make this server decrypt for it.
func (l *LocalCodec) uiOriginsOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Origin")
		origin, browser := r.Header["Origin"]
		if !browser {
			next.ServeHTTP(w, r)
			return
		}
		if len(origin) != 1 || !slices.Contains(l.UIOrigins, origin[0]) {
			writeError(w, http.StatusForbidden, codeForbidden,
				"origin "+strconv.Quote(strings.Join(origin, ", "))+" may not call this codec server (start it with -ui-origin for the Web UI's origin)")
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", origin[0])
		// The Web UI fetches with credentials when its "include
		// cross-origin credentials" setting is on; there are none to
		// read here, but without this the browser drops the answer.
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Access-Control-Allow-Methods", http.MethodPost)
		// What the Web UI sends; it sends Authorization only to an https
		// endpoint, which this one is not.
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type, X-Namespace")
		w.Header().Set("Access-Control-Max-Age", "600")
		// Chrome asks before a page on a less private address (a UI on the
		// LAN) calls loopback; the origin is one the operator named.
		if r.Header.Get("Access-Control-Request-Private-Network") == "true" {
			w.Header().Set("Access-Control-Allow-Private-Network", "true")
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// logged logs each answer without its body: payloads, clear or not, never
// reach the log.
func (l *LocalCodec) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if l.Logger == nil {
			return
		}
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		level := slog.LevelInfo
		if rec.status >= 400 {
			level = slog.LevelWarn
		}
		l.Logger.Log(r.Context(), level, "codec request", "method", r.Method, "path", r.URL.Path,
			"status", rec.status, "origin", r.Header.Get("Origin"), "host", r.Host, "namespace", r.Header.Get("X-Namespace"))
	})
}
