// Package gateway is Relink's HTTP front door: provider webhooks
// (POST /webhooks/{provider}), the JSON API the app and its frontend use
// (/v1/repairs…), health checks, and in the dev stack the sandbox's
// controls (/sandbox/…). Underneath it only starts, signals, updates and
// queries ConnectionRepair workflows.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/clienttoken"
	"github.com/relink-dev/relink/intake"
	"github.com/relink-dev/relink/metrics"
	"github.com/relink-dev/relink/workflows"
)

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 1 << 20

// Gateway serves Relink's HTTP API.
type Gateway struct {
	Temporal  client.Client
	Namespace string
	TaskQueue string
	// APIKeys are the app backend's bearer keys: any of them opens every
	// route (several, so a key rotates without downtime).
	APIKeys []string
	// ClientTokens mints and checks browser tokens; nil turns them off.
	ClientTokens *clienttoken.Authority
	// CORSOrigins may call the browser routes from a page.
	CORSOrigins []string
	// BrowserRate and BrowserBurst bound each connection's client-token
	// calls per second in this process (429 past them).
	BrowserRate  float64
	BrowserBurst int
	// StartsInFlight bounds the repair starts (for a repairable webhook,
	// a manual start) under way at Temporal at once in this process; more
	// wait, up to StartWait per request, then get 503 (admission.go).
	// 0: no bound (the settings require one).
	StartsInFlight int
	StartWait      time.Duration
	// WebhookBudget bounds the time one webhook delivery is applied for
	// (0: webhookBudget, 15 s); what is left is answered 503.
	WebhookBudget time.Duration
	// Codec encrypts payloads; it serves /codec. Nil: encryption is off.
	Codec converter.PayloadCodec
	// CodecOrigins are the Web UI origins that may call /codec.
	CodecOrigins []string
	// OperatorTokens, if set, admits Web UI users' access tokens on /codec.
	OperatorTokens *OperatorTokens
	// DevCodecOrigins are the dev stack's embedded Web UI, which may call
	// /codec without a key. Never set in production.
	DevCodecOrigins []string
	// Now is the clock for tokens and rate limits (time.Now if nil).
	Now func() time.Time
	// Receivers verify and parse webhooks, by provider name.
	Receivers map[string]aggregator.WebhookReceiver
	// Browsers are what a browser needs for each provider's widget (its
	// registration's Browser record), by name: the widget record of
	// reconnect's answer (which the hosted page and the embeddable button
	// read) and the hosted page's Content-Security-Policy.
	Browsers map[string]aggregator.Browser
	// Institutions are the enabled providers that can say which
	// institution a connection is at, by name: the connection lookup
	// (POST /v1/connections/lookup, lookup.go) calls them.
	Institutions map[string]InstitutionLookup
	// Sweeps are the reconciliation sweeps an operator may start, by
	// provider: the input of a new sweep of each swept provider.
	Sweeps map[string]workflows.SweepInput
	// Defaults are the options new repairs start with.
	Defaults workflows.RepairOptions
	// Sandbox enables /sandbox/… when set (dev stack only).
	Sandbox *sandbox.Provider
	Logger  *slog.Logger
	// Metrics records the gateway's metrics and serves GET /metrics (API
	// key); nil records none.
	Metrics *metrics.Registry
	// Links mints reconnect links and turns on the hosted reconnect page
	// (hosted.go); nil: neither.
	Links *Links
	// ReconnectReturnURL is the hosted page's way back to the app.
	ReconnectReturnURL string
	// PlaidLinkScriptURL is where the hosted page loads Plaid Link from.
	PlaidLinkScriptURL string
	// ReconnectFrameOrigins are more origins the hosted page may frame (a
	// provider's other widget hosts).
	ReconnectFrameOrigins []string

	limitsOnce sync.Once
	// handledEvents are the webhook events this process handled lately
	// (recentEvents), so a redelivery of a delivery answered 503 part-way
	// spends its budget on the rest.
	handledEvents recentEvents
	startsOnce    sync.Once
	starts        *semaphore.Weighted
	intakeOnce    sync.Once
	intakeDesk    *intake.Intake
	collectorOnce sync.Once
	browserLimits *connectionLimits
	// linkLimits bound the loads of each repair's reconnect links (each
	// asks the repair for its state), at the browser routes' rate.
	linkLimits *connectionLimits
	// reconnectQueries coalesces identical concurrent reconnect queries
	// (reconnectOffer); reconnectWaiting counts the callers joined to one
	// and still waiting, which lets a test know they all joined.
	reconnectQueries singleflight.Group
	reconnectWaiting atomic.Int64
	// instance names this gateway process to the repairs it asks, which
	// learn how far its clock runs ahead (workflows.ReconnectRequest).
	instanceOnce sync.Once
	instance     string
	// lookupSlots bound the provider calls of the connection lookups
	// under way (lookupCallsInFlight); lookupBudget, when set, replaces
	// lookupBudget (tests).
	lookupOnce   sync.Once
	lookupSlots  *semaphore.Weighted
	lookupBudget time.Duration
	// temporalUp, when set, closes once Temporal is set: the gateway
	// serves before its client exists (ServeBeforeTemporal, waiting.go).
	temporalUp chan struct{}
}

func (g *Gateway) instanceID() string {
	g.instanceOnce.Do(func() { g.instance = rand.Text() })
	return g.instance
}

func (g *Gateway) now() time.Time {
	if g.Now == nil {
		return time.Now()
	}
	return g.Now()
}

// Handler returns the gateway's routes.
func (g *Gateway) Handler() http.Handler {
	h, _ := g.handler()
	return h
}

// handler builds the routes and lists the patterns it registered, which
// openapi_test.go holds to the operations of openapi.json.
func (g *Gateway) handler() (http.Handler, []string) {
	var patterns []string
	mux := newRouteMux(&patterns)
	mux.HandleFunc("GET /healthz", g.healthz)
	mux.HandleFunc("GET /readyz", g.readyz)
	mux.HandleFunc("POST /webhooks/{provider}", g.needsTemporal(g.webhook))
	mux.HandleFunc("GET /openapi.json", serveOpenAPI)
	mux.HandleFunc("GET /r/{token}", g.reconnectPage)
	mux.HandleFunc("GET "+OAuthReturnPath, g.oauthReturnPage)
	mux.HandleFunc("GET /r/assets/{name}", hostedAsset)
	mux.HandleFunc("GET /r/go/{ticket}", g.redirectGo)
	mux.HandleFunc("GET /r/return/{provider}", g.redirectReturn)

	g.limitsOnce.Do(func() {
		if g.BrowserRate > 0 && g.BrowserBurst > 0 {
			g.browserLimits = newConnectionLimits(g.BrowserRate, g.BrowserBurst)
			g.linkLimits = newConnectionLimits(g.BrowserRate, g.BrowserBurst)
		}
	})
	api := newRouteMux(&patterns)
	// The app's routes (API key only). Those that call Temporal answer 503
	// while the gateway is still connecting (needsTemporal).
	api.Handle("POST /v1/repairs", appOnly(g.needsTemporal(g.startRepair)))
	api.Handle("GET /v1/repairs", appOnly(g.needsTemporal(g.listRepairs)))
	api.Handle("GET /v1/stats", appOnly(g.needsTemporal(g.stats)))
	api.Handle("POST /v1/connections/lookup", appOnly(g.needsTemporal(g.lookupConnections)))
	api.Handle("POST /v1/reconcile/{provider}", appOnly(g.needsTemporal(g.triggerSweep)))
	api.Handle("GET /v1/reconcile/{provider}", appOnly(g.needsTemporal(g.listSweeps)))
	api.Handle("POST /v1/repairs/{provider}/{connectionId}/cancel", appOnly(g.needsTemporal(g.cancel)))
	api.Handle("POST /v1/repairs/{provider}/{connectionId}/client-token", appOnly(http.HandlerFunc(g.clientToken)))
	api.Handle("POST /v1/repairs/{provider}/{connectionId}/reconnect-link", appOnly(g.needsTemporal(g.reconnectLink)))
	// The browser routes (the app, or a client token for that connection).
	api.Handle("GET /v1/repairs/{provider}/{connectionId}", g.forConnection(g.needsTemporal(g.getRepair)))
	api.Handle("POST /v1/repairs/{provider}/{connectionId}/reconnect", g.forConnection(g.needsTemporal(g.reconnect)))
	api.Handle("POST /v1/repairs/{provider}/{connectionId}/complete", g.forConnection(g.needsTemporal(g.complete)))
	api.Handle("POST /v1/repairs/{provider}/{connectionId}/exit", g.forConnection(g.needsTemporal(g.exit)))
	mux.Handle("/v1/", g.authenticated(jsonErrors(api.ServeMux)))
	codec := newRouteMux(&patterns)
	codec.HandleFunc("POST /codec/encode", g.codecEndpoint(true))
	codec.HandleFunc("POST /codec/decode", g.codecEndpoint(false))
	mux.Handle("/codec/", g.codecAuthenticated(jsonErrors(codec.ServeMux)))
	if g.Metrics != nil {
		g.collectorOnce.Do(func() {
			if err := g.Metrics.Register(newOpenRepairsCollector(g)); err != nil {
				g.Logger.Warn("open-repairs gauge not registered", "error", err)
			}
		})
		mux.Handle("GET /metrics", g.authenticated(appOnly(g.Metrics.HTTPHandler())))
	}
	if g.Sandbox != nil {
		sb := newRouteMux(&patterns)
		g.sandboxRoutes(sb)
		mux.Handle("/sandbox/", g.authenticated(appOnly(jsonErrors(sb.ServeMux))))
		mux.HandleFunc("GET /sandbox/widget", g.sandboxWidget)
		mux.HandleFunc("POST /sandbox/widget/login", g.sandboxWidgetLogin)
	}
	// limitBody outermost: http.MaxBytesReader needs the server's own
	// ResponseWriter to close the connection after an oversized body.
	return limitBody(g.observe(cleanPathsOnly(g.cors(jsonErrors(mux.ServeMux))))), patterns
}

// cleanPathsOnly answers 404 for a path not in its clean form: with a "."
// or ".." segment or an empty one ("//"), as sent or once percent-decoded
// (an id of "../.." is not one Relink can serve). ServeMux would redirect
// it to the clean path (307), which is another route than the one asked
// for: a client should not be sent there, with or without its credential.
// It runs before CORS and authentication, so no prefix answers otherwise.
func cleanPathsOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isCleanPath(r.URL.EscapedPath()) || !isCleanPath(r.URL.Path) {
			writeError(w, http.StatusNotFound, codeNotFound,
				"no route "+r.Method+" "+r.URL.EscapedPath()+": paths are taken as sent, without . or .. segments or //")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// isCleanPath says whether p is what ServeMux's cleaning leaves as it is.
func isCleanPath(p string) bool {
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean == p
}

// muxRedirect is the type of handler ServeMux picks when it would redirect
// (a mount's path without its slash, /v1 to /v1/), which jsonErrors
// answers 404 instead: the API's paths are matched as sent.
var muxRedirect = reflect.TypeOf(http.RedirectHandler("/", http.StatusTemporaryRedirect))

// jsonErrors answers the paths and methods mux has no route for in the
// API's error format: 404 for an unknown path (or one mux would redirect),
// 405 with Allow for a known path and another method.
func jsonErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if reflect.TypeOf(h) == muxRedirect {
			writeError(w, http.StatusNotFound, codeNotFound, "no route "+r.Method+" "+r.URL.Path)
			return
		}
		if pattern != "" {
			if !strings.HasSuffix(pattern, "/") {
				infoOf(r.Context()).route = pattern // the most specific mux's, for logs and metrics
			}
			mux.ServeHTTP(w, r) // sets the path values h reads
			return
		}
		probe := &statusProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		if probe.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", probe.header.Get("Allow"))
			writeError(w, http.StatusMethodNotAllowed, codeMethodNotAllowed,
				r.Method+" is not allowed on "+r.URL.Path+"; allowed: "+probe.header.Get("Allow"))
			return
		}
		writeError(w, http.StatusNotFound, codeNotFound, "no route "+r.Method+" "+r.URL.Path)
	})
}

// statusProbe records what ServeMux's own 404/405 handler would answer.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header         { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(status int)      { p.status = status }

func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

func (g *Gateway) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz reports whether Temporal answers.
func (g *Gateway) readyz(w http.ResponseWriter, r *http.Request) {
	if !g.hasTemporal() {
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "Temporal is not reachable yet: the gateway is still connecting (see its log)")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if _, err := g.Temporal.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		g.logger(r.Context()).Warn("readiness check failed", "error", err)
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "Temporal is not reachable")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// Error codes in {"error":{"code","message"}}.
const (
	codeBadRequest       = "bad_request"
	codeUnauthorized     = "unauthorized"
	codeForbidden        = "forbidden"
	codeNotEnabled       = "not_enabled"
	codeNotFound         = "not_found"
	codeMethodNotAllowed = "method_not_allowed"
	codeConflict         = "conflict"
	codeTooLarge         = "payload_too_large"
	// codeUnsupportedMediaType: a body of a media type the route does not
	// take (415), told apart from a malformed one (bad_request).
	codeUnsupportedMediaType = "unsupported_media_type"
	codeSessionUnknown       = "session_unknown"
	codeTooManyRequests      = "too_many_requests"
	codeUnavailable          = "unavailable"
	codeInternal             = "internal"
	codeUnknownProvider      = "unknown_provider"
	codeNotSwept             = "not_swept"
	// codeNotSupported: the provider cannot answer what was asked (a
	// connection lookup of a provider with no institution reader).
	codeNotSupported = "not_supported"
)

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: msg}})
}

// writeRetry is writeError with Retry-After, for 429 and 503.
func writeRetry(w http.ResponseWriter, status int, code, msg string, after time.Duration) {
	setRetryAfter(w.Header(), after)
	writeError(w, status, code, msg)
}

// setRetryAfter sets Retry-After to after in whole seconds, at least 1.
func setRetryAfter(h http.Header, after time.Duration) {
	h.Set("Retry-After", strconv.Itoa(max(1, int((after+time.Second-1)/time.Second))))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decodeBody reads a JSON body into v; an empty body leaves v as it is.
// The body is one JSON value: anything after it but white space is
// refused, not ignored (it is not what the caller meant to send). It
// writes the error response itself and reports whether to go on.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if errors.Is(err, io.EOF) {
		return true
	}
	if err == nil {
		if _, err = dec.Token(); errors.Is(err, io.EOF) {
			return true
		}
		if err == nil {
			err = errors.New("more than one JSON value")
		}
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, "request body over 1 MiB")
		return false
	}
	writeError(w, http.StatusBadRequest, codeBadRequest, "invalid JSON body: "+err.Error())
	return false
}

// singleQuery is r's query, each of whose names may be sent once: none of
// the API's query parameters takes several values, and taking the first of
// two would answer a question the caller did not ask. A repeated one is
// answered 400 naming it, as is a query that does not parse (URL.Query
// would drop the pairs it cannot read: ?status=%zz would list every
// repair). It reports whether to go on.
func singleQuery(w http.ResponseWriter, r *http.Request, names ...string) (url.Values, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, "the query does not parse: "+err.Error())
		return nil, false
	}
	for _, name := range names {
		if len(q[name]) > 1 {
			writeError(w, http.StatusBadRequest, codeBadRequest,
				fmt.Sprintf("query parameter %s is repeated: send it once", name))
			return nil, false
		}
	}
	return q, true
}

// temporalError maps a Temporal error onto the API's error responses.
func (g *Gateway) temporalError(w http.ResponseWriter, r *http.Request, err error, provider, conn string) {
	var (
		notFound   *serviceerror.NotFound
		invalid    *serviceerror.InvalidArgument
		appErr     *temporal.ApplicationError
		canceled   *temporal.CanceledError
		timeout    *client.WorkflowUpdateServiceTimeoutOrCanceledError
		deadline   *serviceerror.DeadlineExceeded
		down       *serviceerror.Unavailable
		overloaded *serviceerror.ResourceExhausted
	)
	switch {
	case errors.Is(err, errStartsBusy):
		g.logger(r.Context()).Warn("repair not started: too many repairs starting", "provider", provider, "connectionId", conn)
		writeRetry(w, http.StatusServiceUnavailable, codeUnavailable, "too many repairs are starting at once; retry", busyRetryAfter())
	case errors.As(err, &canceled):
		// An update that was waiting when the repair ended.
		writeError(w, http.StatusConflict, codeConflict, "the repair was canceled")
	case errors.As(err, &appErr):
		g.workflowError(w, r, appErr)
	case errors.As(err, &timeout) || errors.As(err, &deadline) || errors.As(err, &down) || errors.As(err, &overloaded):
		writeRetry(w, http.StatusServiceUnavailable, codeUnavailable, "Temporal or its worker did not answer in time; retry", 2*time.Second)
	case errors.As(err, &invalid):
		writeError(w, http.StatusBadRequest, codeBadRequest, "Temporal refused the request: "+invalid.Message)
	case errors.As(err, &notFound):
		// An update or signal to a closed run is "not found" too: tell a
		// closed repair (409) from none at all (404).
		if provider != "" {
			if info, derr := g.describe(r.Context(), workflows.WorkflowID(provider, conn)); derr == nil {
				writeError(w, http.StatusConflict, codeConflict, fmt.Sprintf("the repair is %s", info.Status))
				return
			}
		}
		writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("no repair for %s connection %s", provider, conn))
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		writeRetry(w, http.StatusServiceUnavailable, codeUnavailable, "Temporal or its worker did not answer in time; retry", 2*time.Second)
	default:
		g.logger(r.Context()).Error("temporal call failed", "provider", provider, "connectionId", conn, "path", r.URL.Path, "error", err)
		writeError(w, http.StatusInternalServerError, codeInternal, "internal error; see the gateway log")
	}
}

// workflowError maps an update's refusal or failure onto HTTP.
func (g *Gateway) workflowError(w http.ResponseWriter, r *http.Request, e *temporal.ApplicationError) {
	switch e.Type() {
	case workflows.ErrTypeRepairClosed, workflows.ErrTypeNotAwaitingUser:
		writeError(w, http.StatusConflict, codeConflict, e.Message())
	case workflows.ErrTypeSessionUnknown:
		writeError(w, http.StatusUnprocessableEntity, codeSessionUnknown, e.Message())
	case workflows.ErrTypeInvalidMessage:
		writeError(w, http.StatusBadRequest, codeBadRequest, e.Message())
	case workflows.ErrTypeTooLarge:
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, e.Message())
	case workflows.ErrTypeTooManyRequests:
		writeRetry(w, http.StatusTooManyRequests, codeTooManyRequests, e.Message(), time.Minute)
	case workflows.ErrTypeProviderUnavailable, workflows.ErrTypeRepairMoving:
		msg := e.Message() // may quote the provider: the app's only
		if !principalOf(r).app {
			msg = pageUnavailable
		}
		writeRetry(w, http.StatusServiceUnavailable, codeUnavailable, msg, 2*time.Second)
	default:
		g.logger(r.Context()).Error("unexpected workflow error", "errorType", e.Type(), "error", e)
		writeError(w, http.StatusInternalServerError, codeInternal, "internal error; see the gateway log")
	}
}
