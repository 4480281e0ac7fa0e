package gateway

// Who may call what. Two credentials reach the API:
//
//   - an API key (RELINK_API_KEY / RELINK_API_KEYS), held by the app's
//     backend: every route;
//   - a client token (POST …/client-token), held by one user's browser:
//     only GET, reconnect, complete and exit of the connection it names,
//     rate-limited per connection, from the origins in RELINK_CORS_ORIGINS.
//
// Tokens are checked with the verification keys alone, never by asking
// Temporal, so a check costs nothing and works on every replica.

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/relink-dev/relink/clienttoken"
)

type principalKey struct{}

// principal is who made a request: the app (API key) or a browser holding
// a client token for scope.
type principal struct {
	app   bool
	scope clienttoken.Scope
}

func principalOf(r *http.Request) principal {
	p, _ := r.Context().Value(principalKey{}).(principal)
	return p
}

// authenticated accepts an API key or a client token and records which;
// anything else is 401. What the caller may do is decided per route.
func (g *Gateway) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bearer, ok := bearerCredential(r.Header.Get("Authorization"))
		if !ok {
			unauthorized(w, "missing bearer API key or client token")
			return
		}
		if g.isAPIKey(bearer) {
			infoOf(r.Context()).client = "app"
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, principal{app: true})))
			return
		}
		if g.ClientTokens == nil {
			unauthorized(w, "invalid bearer API key")
			return
		}
		scope, err := g.ClientTokens.Check(bearer)
		if err != nil {
			msg := "invalid bearer API key or client token"
			if !errors.Is(err, clienttoken.ErrMalformed) {
				msg = err.Error() // expired, unknown key, bad signature: says which, never the token
			}
			unauthorized(w, msg)
			return
		}
		infoOf(r.Context()).client = "page"
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, principal{scope: scope})))
	})
}

// bearerCredential reads "Bearer <credential>"; the scheme is
// case-insensitive (RFC 7235 section 2.1), so "bearer" works as well.
func bearerCredential(header string) (string, bool) {
	scheme, credential, ok := strings.Cut(header, " ")
	credential = strings.TrimLeft(credential, " ")
	return credential, ok && strings.EqualFold(scheme, "Bearer") && credential != ""
}

// isAPIKey compares bearer with every key in constant time.
func (g *Gateway) isAPIKey(bearer string) bool {
	match := 0
	for _, k := range g.APIKeys {
		match |= subtle.ConstantTimeCompare([]byte(bearer), []byte(k))
	}
	return match == 1
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="relink"`)
	writeError(w, http.StatusUnauthorized, codeUnauthorized, msg)
}

// appOnly refuses client tokens: the route needs the app's API key.
func appOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !principalOf(r).app {
			writeError(w, http.StatusForbidden, codeForbidden,
				"a client token may only read, reconnect, complete or exit its own connection's repair")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// forConnection admits the app, and a client token for exactly the
// {provider}/{connectionId} in the path, within its connection's rate.
func (g *Gateway) forConnection(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principalOf(r)
		if p.app {
			next(w, r)
			return
		}
		if p.scope.Provider != r.PathValue("provider") || p.scope.ConnectionID != r.PathValue("connectionId") {
			writeError(w, http.StatusForbidden, codeForbidden, "this client token is for another connection")
			return
		}
		if ok, wait := g.browserLimits.allow(p.scope.Provider+"/"+p.scope.ConnectionID, g.now()); !ok {
			writeRetry(w, http.StatusTooManyRequests, codeTooManyRequests,
				"too many requests for this connection; slow down", wait)
			return
		}
		next(w, r)
	})
}

// clientToken mints a browser token for one connection:
// POST /v1/repairs/{provider}/{connectionId}/client-token.
func (g *Gateway) clientToken(w http.ResponseWriter, r *http.Request) {
	provider, conn := r.PathValue("provider"), r.PathValue("connectionId")
	if !g.validConnection(w, provider, conn) {
		return
	}
	if g.ClientTokens == nil {
		writeError(w, http.StatusNotImplemented, codeNotEnabled,
			"client tokens are off: set RELINK_CLIENT_TOKEN_KEYS on every gateway")
		return
	}
	token, exp, err := g.ClientTokens.Mint(clienttoken.Scope{Provider: provider, ConnectionID: conn})
	if err != nil {
		g.logger(r.Context()).Error("mint client token", "provider", provider, "connectionId", conn, "error", err)
		writeError(w, http.StatusInternalServerError, codeInternal, "could not sign the client token")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, map[string]any{"token": token, "expiresAt": exp})
}

// Cross-origin calls. A page on an allowed origin may call the browser
// routes (and the Web UI's origin the codec); every other origin gets no
// CORS headers, so browsers refuse to show it the answers.

// browserRouteMethod is the method of the browser route at path, if any:
// GET /v1/repairs/{p}/{c}, POST …/reconnect, …/complete, …/exit.
func browserRouteMethod(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/v1/repairs/")
	if !ok {
		return "", false
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		return http.MethodGet, true
	case len(parts) == 3 && parts[0] != "" && parts[1] != "" &&
		(parts[2] == "reconnect" || parts[2] == "complete" || parts[2] == "exit"):
		return http.MethodPost, true
	}
	return "", false
}

// corsPolicy is which origins may call a route and with what.
type corsPolicy struct {
	origins     []string
	method      string
	headers     string
	credentials bool
}

// corsPolicyFor reads the escaped path, as the router does, so an id with
// an encoded "/" is one segment here too.
func (g *Gateway) corsPolicyFor(path string) (corsPolicy, bool) {
	if method, ok := browserRouteMethod(path); ok {
		return corsPolicy{origins: g.CORSOrigins, method: method, headers: "Authorization, Content-Type"}, true
	}
	if path == "/codec/encode" || path == "/codec/decode" {
		return corsPolicy{origins: g.codecOrigins(), method: http.MethodPost,
			headers: "Authorization, Authorization-Extras, Content-Type, X-Namespace", credentials: true}, true
	}
	return corsPolicy{}, false
}

func (g *Gateway) codecOrigins() []string {
	return append(slices.Clip(g.CodecOrigins), g.DevCodecOrigins...)
}

// cors answers preflights and marks answers to allowed origins.
func (g *Gateway) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		policy, ok := g.corsPolicyFor(r.URL.EscapedPath())
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		allowed := origin != "" && slices.Contains(policy.origins, origin)
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if allowed {
			w.Header().Set("Access-Control-Allow-Origin", origin)
			w.Header().Set("Access-Control-Expose-Headers", "Retry-After")
			if policy.credentials {
				w.Header().Set("Access-Control-Allow-Credentials", "true")
			}
		}
		if !preflight {
			next.ServeHTTP(w, r)
			return
		}
		if !allowed {
			writeError(w, http.StatusForbidden, codeForbidden, "origin "+strconv.Quote(origin)+" may not call "+r.URL.Path)
			return
		}
		w.Header().Set("Access-Control-Allow-Methods", policy.method)
		w.Header().Set("Access-Control-Allow-Headers", policy.headers)
		w.Header().Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
	})
}

// connectionLimits is a token bucket per connection for client-token
// calls. It protects this process and the repair from a looping page; it
// is not a correctness rule (the workflow bounds what any caller can make
// it write), so it may live in memory: with N gateways a page gets at most
// N times the rate.
type connectionLimits struct {
	rate  rate.Limit
	burst int

	mu     sync.Mutex
	byConn map[string]*rate.Limiter
}

// maxTrackedConnections bounds the limiter map; past it, connections whose
// bucket has refilled (idle ones) are forgotten.
const maxTrackedConnections = 10000

func newConnectionLimits(perSecond float64, burst int) *connectionLimits {
	return &connectionLimits{rate: rate.Limit(perSecond), burst: burst, byConn: map[string]*rate.Limiter{}}
}

// allow takes one token for conn, or says how long until one is free.
func (l *connectionLimits) allow(conn string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.byConn[conn]
	if !ok {
		if len(l.byConn) >= maxTrackedConnections {
			for k, old := range l.byConn {
				if old.TokensAt(now) >= float64(l.burst) {
					delete(l.byConn, k)
				}
			}
		}
		lim = rate.NewLimiter(l.rate, l.burst)
		l.byConn[conn] = lim
	}
	res := lim.ReserveN(now, 1)
	if wait := res.DelayFrom(now); wait > 0 {
		res.CancelAt(now)
		return false, wait
	}
	return true, 0
}
