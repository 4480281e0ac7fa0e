package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/quiltt"
)

// These tests cover everything the gateway decides before it calls
// Temporal; the integration tests cover the rest against a real server.
// The gateway here has no Temporal client: a request that got past
// verification would panic, so each rejection below is also proof that
// nothing was started.

const (
	testSecret = "whsec_test"
	testKey    = "test-api-key"
)

var now = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func newTestGateway() *Gateway {
	return &Gateway{
		APIKeys: []string{testKey},
		Receivers: map[string]aggregator.WebhookReceiver{
			"quiltt": &quiltt.WebhookReceiver{Secret: testSecret, Now: func() time.Time { return now }},
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func do(t *testing.T, g *Gateway, req *http.Request) (*httptest.ResponseRecorder, errorDetail) {
	t.Helper()
	rec := httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, req)
	var body errorBody
	if rec.Code >= 400 {
		require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
		require.NotEmpty(t, body.Error.Code)
		require.NotEmpty(t, body.Error.Message)
	}
	return rec, body.Error
}

// webhook builds a Quiltt webhook request signed with secret at ts.
func webhook(body []byte, secret string, ts time.Time) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/webhooks/quiltt", bytes.NewReader(body))
	stamp := strconv.FormatInt(ts.Unix(), 10)
	req.Header.Set(quiltt.HeaderTimestamp, stamp)
	req.Header.Set(quiltt.HeaderSignature, quiltt.Sign(secret, stamp, body))
	return req
}

// ignoredEvent is a valid envelope whose event Relink does not act on, so a
// verified request completes without Temporal.
var ignoredEvent = []byte(`{"environment":{"id":"env"},"eventTypes":["profile.created"],"events":[{"id":"evt_1","type":"profile.created","at":"2026-11-21T12:00:00Z","profile":{"id":"p_1"},"record":{"id":"p_1"}}]}`)

func TestWebhookSignatures(t *testing.T) {
	g := newTestGateway()

	t.Run("valid", func(t *testing.T) {
		rec, _ := do(t, g, webhook(ignoredEvent, testSecret, now))
		assert.Equal(t, http.StatusOK, rec.Code)
		assert.JSONEq(t, `{"received":0,"applied":0,"duplicates":0,"ignored":0}`, rec.Body.String())
	})
	t.Run("valid at the edge of the tolerance", func(t *testing.T) {
		rec, _ := do(t, g, webhook(ignoredEvent, testSecret, now.Add(-299*time.Second)))
		assert.Equal(t, http.StatusOK, rec.Code)
	})
	t.Run("tampered body", func(t *testing.T) {
		req := webhook(ignoredEvent, testSecret, now)
		tampered := bytes.Replace(ignoredEvent, []byte("p_1"), []byte("p_2"), 1)
		req.Body = io.NopCloser(bytes.NewReader(tampered))
		rec, e := do(t, g, req)
		assert.Equal(t, http.StatusUnauthorized, rec.Code)
		assert.Equal(t, codeUnauthorized, e.Code)
		assert.Contains(t, e.Message, "does not match")
	})
	t.Run("wrong secret", func(t *testing.T) {
		rec, _ := do(t, g, webhook(ignoredEvent, "whsec_other", now))
		assert.Equal(t, http.StatusUnauthorized, rec.Code)
	})
	t.Run("stale", func(t *testing.T) {
		rec, e := do(t, g, webhook(ignoredEvent, testSecret, now.Add(-301*time.Second)))
		assert.Equal(t, http.StatusUnauthorized, rec.Code)
		assert.Contains(t, e.Message, "tolerance")
	})
	t.Run("from the future", func(t *testing.T) {
		rec, _ := do(t, g, webhook(ignoredEvent, testSecret, now.Add(10*time.Minute)))
		assert.Equal(t, http.StatusUnauthorized, rec.Code)
	})
	t.Run("missing signature", func(t *testing.T) {
		req := webhook(ignoredEvent, testSecret, now)
		req.Header.Del(quiltt.HeaderSignature)
		rec, e := do(t, g, req)
		assert.Equal(t, http.StatusUnauthorized, rec.Code)
		assert.Contains(t, e.Message, "missing")
	})
	t.Run("missing timestamp", func(t *testing.T) {
		req := webhook(ignoredEvent, testSecret, now)
		req.Header.Del(quiltt.HeaderTimestamp)
		rec, _ := do(t, g, req)
		assert.Equal(t, http.StatusUnauthorized, rec.Code)
	})
	t.Run("timestamp not a number", func(t *testing.T) {
		req := webhook(ignoredEvent, testSecret, now)
		req.Header.Set(quiltt.HeaderTimestamp, "yesterday")
		rec, _ := do(t, g, req)
		assert.Equal(t, http.StatusUnauthorized, rec.Code)
	})
}

func TestWebhookMalformedAndOversized(t *testing.T) {
	g := newTestGateway()
	for name, body := range map[string]string{
		"not JSON":                `{"events":`,
		"no events":               `{"eventTypes":[],"events":[]}`,
		"repairable, no id":       `{"events":[{"type":"connection.synced.errored.repairable","record":{"id":"c"}}]}`,
		"repairable, no conn":     `{"events":[{"id":"e","type":"connection.synced.errored.repairable"}]}`,
		"quote in connection id":  `{"events":[{"id":"e","type":"connection.synced.errored.repairable","record":{"id":"c'1"}}]}`,
		"second event unusable":   `{"events":[{"id":"e1","type":"connection.disconnected","record":{"id":"ok"}},{"id":"e2","type":"connection.disconnected","record":{"id":"` + strings.Repeat("x", 300) + `"}}]}`,
		"non-ASCII connection id": `{"events":[{"id":"e","type":"connection.synced.errored.repairable","record":{"id":"conn_ü"}}]}`,
		"space in profile id":     `{"events":[{"id":"e","type":"connection.synced.errored.repairable","profile":{"id":"p 1"},"record":{"id":"c"}}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			rec, e := do(t, g, webhook([]byte(body), testSecret, now))
			assert.Equal(t, http.StatusBadRequest, rec.Code)
			assert.Equal(t, codeBadRequest, e.Code)
		})
	}
	t.Run("over 1 MiB", func(t *testing.T) {
		big := append([]byte(`{"events":[],"pad":"`), bytes.Repeat([]byte("x"), MaxBodyBytes)...)
		big = append(big, `"}`...)
		rec, e := do(t, g, webhook(big, testSecret, now))
		assert.Equal(t, http.StatusRequestEntityTooLarge, rec.Code)
		assert.Equal(t, codeTooLarge, e.Code)
	})
	t.Run("unknown provider", func(t *testing.T) {
		req := webhook(ignoredEvent, testSecret, now)
		req.URL.Path = "/webhooks/nosuch"
		rec, e := do(t, g, req)
		assert.Equal(t, http.StatusNotFound, rec.Code)
		assert.Equal(t, codeUnknownProvider, e.Code)
	})
	t.Run("a provider that sends no webhooks", func(t *testing.T) {
		g := newTestGateway()
		g.Receivers["nohooks"] = noWebhooks{}
		req := webhook(ignoredEvent, testSecret, now)
		req.URL.Path = "/webhooks/nohooks"
		rec, e := do(t, g, req)
		assert.Equal(t, http.StatusNotFound, rec.Code, "not a bad signature")
		assert.Equal(t, codeNotFound, e.Code)
		assert.Contains(t, e.Message, "no webhooks")
	})
}

// noWebhooks is the receiver of a provider that sends no webhooks.
type noWebhooks struct{}

func (noWebhooks) Receive(*http.Request, []byte) ([]aggregator.WebhookEvent, error) {
	return nil, fmt.Errorf("%w: breaks come from expiry-timed repairs", aggregator.ErrNoWebhooks)
}

func TestAPIAuthentication(t *testing.T) {
	g := newTestGateway()
	for name, header := range map[string]string{
		"missing":     "",
		"wrong key":   "Bearer nope",
		"not bearer":  "Basic " + testKey,
		"empty token": "Bearer ",
	} {
		t.Run(name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/v1/repairs", nil)
			if header != "" {
				req.Header.Set("Authorization", header)
			}
			rec, e := do(t, g, req)
			assert.Equal(t, http.StatusUnauthorized, rec.Code)
			assert.Equal(t, codeUnauthorized, e.Code)
			assert.Equal(t, `Bearer realm="relink"`, rec.Header().Get("WWW-Authenticate"))
		})
	}
}

// The scheme is case-insensitive (RFC 7235 section 2.1): any spelling of
// "Bearer" with a good key is let in; the key itself is not.
func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	g := newTestGateway()
	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
		// A bad page size is refused after authentication, before Temporal.
		req := httptest.NewRequest(http.MethodGet, "/v1/repairs?pageSize=0", nil)
		req.Header.Set("Authorization", scheme+" "+testKey)
		rec, _ := do(t, g, req)
		assert.Equal(t, http.StatusBadRequest, rec.Code, scheme)
	}
	req := httptest.NewRequest(http.MethodGet, "/v1/repairs?pageSize=0", nil)
	req.Header.Set("Authorization", "bearer "+strings.ToUpper(testKey))
	rec, e := do(t, g, req)
	assert.Equal(t, http.StatusUnauthorized, rec.Code, "the key is compared exactly")
	assert.Equal(t, codeUnauthorized, e.Code)
}

func TestAPIRejectsBadInputBeforeTemporal(t *testing.T) {
	g := newTestGateway()
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"start: no connection", http.MethodPost, "/v1/repairs", `{"provider":"quiltt"}`, 400, codeBadRequest},
		{"start: provider not enabled", http.MethodPost, "/v1/repairs", `{"provider":"meld","connectionId":"c"}`, 400, codeUnknownProvider},
		{"start: bad provider name", http.MethodPost, "/v1/repairs", `{"provider":"Q U","connectionId":"c"}`, 400, codeBadRequest},
		{"start: unknown field", http.MethodPost, "/v1/repairs", `{"provider":"quiltt","connectionId":"c","colour":1}`, 400, codeBadRequest},
		{"start: bad window", http.MethodPost, "/v1/repairs", `{"provider":"quiltt","connectionId":"c","repairWindow":"soon"}`, 400, codeBadRequest},
		{"start: window over 90 days", http.MethodPost, "/v1/repairs", `{"provider":"quiltt","connectionId":"c","repairWindow":"2161h"}`, 400, codeBadRequest},
		{"start: over 20 attempts", http.MethodPost, "/v1/repairs", `{"provider":"quiltt","connectionId":"c","maxAttempts":21}`, 400, codeBadRequest},
		{"start: quote in id", http.MethodPost, "/v1/repairs", `{"provider":"quiltt","connectionId":"c'1"}`, 400, codeBadRequest},
		{"start: id a path could not name (..)", http.MethodPost, "/v1/repairs", `{"provider":"quiltt","connectionId":".."}`, 400, codeBadRequest},
		{"start: id a path could not name (a/../b)", http.MethodPost, "/v1/repairs", `{"provider":"quiltt","connectionId":"a/../b"}`, 400, codeBadRequest},
		{"start: id a path could not name (a//b)", http.MethodPost, "/v1/repairs", `{"provider":"quiltt","connectionId":"a//b"}`, 400, codeBadRequest},
		{"complete: truncated body", http.MethodPost, "/v1/repairs/quiltt/c/complete", `{"metadata":"x"`, 400, codeBadRequest},
		{"list: unknown status", http.MethodGet, "/v1/repairs?status=BROKEN", ``, 400, codeBadRequest},
		{"list: page size", http.MethodGet, "/v1/repairs?pageSize=0", ``, 400, codeBadRequest},
		{"list: page token", http.MethodGet, "/v1/repairs?pageToken=not*base64", ``, 400, codeBadRequest},
		{"list: forged page token", http.MethodGet, "/v1/repairs?pageToken=" + base64.RawURLEncoding.EncodeToString([]byte("0123456789garbage")), ``, 400, codeBadRequest},
		{"get: unicode id", http.MethodGet, "/v1/repairs/quiltt/conn_%C3%BC", ``, 400, codeBadRequest},
		{"reconnect: unicode id", http.MethodPost, "/v1/repairs/quiltt/%E2%98%83/reconnect", ``, 400, codeBadRequest},
		{"complete: empty body", http.MethodPost, "/v1/repairs/quiltt/c/complete", ``, 400, codeBadRequest},
		{"complete: no session", http.MethodPost, "/v1/repairs/quiltt/c/complete", `{"publicToken":"public-1"}`, 400, codeBadRequest},
		{"complete: metadata over 64 KiB", http.MethodPost, "/v1/repairs/quiltt/c/complete",
			`{"connectorToken":"ct","metadata":"` + strings.Repeat("x", 64<<10) + `"}`, 413, codeTooLarge},
		{"exit: field over 512 bytes", http.MethodPost, "/v1/repairs/quiltt/c/exit", `{"reason":"` + strings.Repeat("x", 513) + `"}`, 413, codeTooLarge},
		{"cancel: field over 512 bytes", http.MethodPost, "/v1/repairs/quiltt/c/cancel", `{"reason":"` + strings.Repeat("x", 513) + `"}`, 413, codeTooLarge},
		// One JSON value is the body: what follows it is refused, not
		// ignored (each of these bodies, its first value alone, is
		// refused otherwise: the trailing data is checked first).
		{"start: data after the JSON", http.MethodPost, "/v1/repairs", `{"provider":"meld","connectionId":"c"} x`, 400, codeBadRequest},
		{"start: a second JSON value", http.MethodPost, "/v1/repairs", `{"provider":"meld","connectionId":"c"}{"provider":"quiltt"}`, 400, codeBadRequest},
		{"cancel: data after the JSON", http.MethodPost, "/v1/repairs/quiltt/c/cancel", `{"reason":"` + strings.Repeat("x", 513) + `"} []`, 400, codeBadRequest},
		{"exit: data after the JSON", http.MethodPost, "/v1/repairs/quiltt/c/exit", `{"reason":"` + strings.Repeat("x", 513) + `"} 1`, 400, codeBadRequest},
		{"no route", http.MethodGet, "/v1/nothing", ``, 404, codeNotFound},
		{"sandbox not enabled", http.MethodPost, "/sandbox/connections/c/break", `{}`, 404, codeNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+testKey)
			rec, e := do(t, g, req)
			assert.Equal(t, tc.status, rec.Code, rec.Body.String())
			assert.Equal(t, tc.code, e.Code)
		})
	}
}

func TestWrongMethodIs405WithAllow(t *testing.T) {
	g := newTestGateway()
	for _, tc := range []struct{ method, path, allow string }{
		{http.MethodDelete, "/v1/repairs/quiltt/c", "GET, HEAD"},
		{http.MethodGet, "/v1/repairs/quiltt/c/reconnect", "POST"},
		{http.MethodPut, "/v1/repairs", "GET, HEAD, POST"},
		{http.MethodGet, "/webhooks/quiltt", "POST"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, nil)
			req.Header.Set("Authorization", "Bearer "+testKey)
			rec, e := do(t, g, req)
			assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
			assert.Equal(t, codeMethodNotAllowed, e.Code)
			assert.Equal(t, tc.allow, rec.Header().Get("Allow"))
		})
	}
}

func TestPageTokensRoundTrip(t *testing.T) {
	for _, token := range [][]byte{[]byte("x"), bytes.Repeat([]byte{0xff, 0x00}, 100)} {
		got, ok := openPageToken(sealPageToken(token))
		assert.True(t, ok)
		assert.Equal(t, token, got)
	}
	got, ok := openPageToken("")
	assert.True(t, ok, "no token: the first page")
	assert.Nil(t, got)
}

func TestHealthz(t *testing.T) {
	rec, _ := do(t, newTestGateway(), httptest.NewRequest(http.MethodGet, "/healthz", nil))
	assert.Equal(t, http.StatusOK, rec.Code)
}

// A reconnect link's token is its credential: logs show the path without it.
func TestLinkTokensStayOutOfLogs(t *testing.T) {
	assert.Equal(t, "/r/…", loggedPath("/r/eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJzYW5kYm94L2MxIn0.sig"))
	assert.Equal(t, "/r/assets/reconnect.js", loggedPath("/r/assets/reconnect.js"))
	assert.Equal(t, "/v1/repairs/sandbox/c1", loggedPath("/v1/repairs/sandbox/c1"))
}

// A body that is not JSON where only JSON is taken is 415 with its own
// code, not bad_request: the request may be well formed, only its media
// type is refused.
func TestUnsupportedMediaTypeHasItsOwnCode(t *testing.T) {
	g := fullGateway(t)
	router, doc := openAPIRouter(t)
	req := httptest.NewRequest(http.MethodPost, "/sandbox/widget/login", strings.NewReader("connectionId=c&session=s"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec, e := do(t, g, req)
	assert.Equal(t, http.StatusUnsupportedMediaType, rec.Code)
	assert.Equal(t, codeUnsupportedMediaType, e.Code)
	validateAnswer(t, doc, router, req, rec)
}

// A path that is not in its clean form (a "." or ".." segment, an empty
// one, as sent or percent-encoded), and a mount's path without its slash
// (/v1, /codec, /sandbox), are answered 404 not_found in JSON under every
// prefix, with or without a credential: never ServeMux's redirect to
// another path, which an API client should not follow and the document
// does not have.
func TestUncleanPathsAreNotFoundNeverRedirected(t *testing.T) {
	g := fullGateway(t)
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/v1/repairs/../v1/stats"},
		{http.MethodGet, "/v1/repairs/sandbox/..%2F.."},
		{http.MethodGet, "/v1/repairs/sandbox/.."},
		{http.MethodGet, "/v1//repairs"},
		{http.MethodGet, "/v1/./repairs"},
		{http.MethodGet, "/v1/%2e%2e/v1/stats"},
		{http.MethodPost, "/v1/repairs/quiltt/c/./cancel"},
		{http.MethodOptions, "/v1/repairs/quiltt/c/../c/reconnect"},
		{http.MethodPost, "/webhooks/../webhooks/quiltt"},
		{http.MethodPost, "/webhooks//quiltt"},
		{http.MethodPost, "/webhooks/quiltt/.."},
		{http.MethodGet, "/sandbox/connections/../connections/c"},
		{http.MethodGet, "/sandbox/../sandbox/widget"},
		{http.MethodPost, "/sandbox/widget/./login"},
		{http.MethodPost, "/codec/../codec/encode"},
		{http.MethodOptions, "/codec/./decode"},
		{http.MethodGet, "/r/../healthz"},
		{http.MethodGet, "/r/assets/../assets/reconnect.css"},
		{http.MethodGet, "/r/x/.."},
		{http.MethodGet, "//healthz"},
		{http.MethodGet, "/./openapi.json"},
		{http.MethodGet, "/metrics/."},
		// The mounts without their slash, which ServeMux redirects to it.
		{http.MethodGet, "/v1"},
		{http.MethodPost, "/codec"},
		{http.MethodGet, "/sandbox"},
	} {
		for _, key := range []string{"", testKey} {
			name := tc.method + " " + tc.path
			if key != "" {
				name += " with a key"
			}
			t.Run(name, func(t *testing.T) {
				req := httptest.NewRequest(tc.method, tc.path, strings.NewReader("{}"))
				if key != "" {
					req.Header.Set("Authorization", "Bearer "+key)
				}
				req.Header.Set("Origin", "https://app.example.com")
				req.Header.Set("Access-Control-Request-Method", http.MethodPost)
				rec, e := do(t, g, req)
				assert.Empty(t, rec.Header().Get("Location"))
				assert.Equal(t, http.StatusNotFound, rec.Code, rec.Body.String())
				assert.Equal(t, codeNotFound, e.Code)
				assert.NotEmpty(t, rec.Header().Get("X-Request-Id"))
			})
		}
	}
}

// listingTemporal lists and counts no repairs, so a filter the gateway
// let through is answered 200 with nothing.
type listingTemporal struct{ client.Client }

func (listingTemporal) ListWorkflow(context.Context, *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error) {
	return &workflowservice.ListWorkflowExecutionsResponse{}, nil
}

func (listingTemporal) CountWorkflow(context.Context, *workflowservice.CountWorkflowExecutionsRequest) (*workflowservice.CountWorkflowExecutionsResponse, error) {
	return &workflowservice.CountWorkflowExecutionsResponse{}, nil
}

// A provider filter naming a provider that is not enabled is 400
// unknown_provider on every route that takes one, as a provider in a path
// or a body is, not an empty list: the caller asked for something this
// gateway does not have.
func TestProviderFilterOfAProviderNotEnabled(t *testing.T) {
	g := newTestGateway()
	g.Temporal = listingTemporal{}
	router, doc := openAPIRouter(t)
	for _, path := range []string{"/v1/repairs?provider=meld", "/v1/stats?provider=meld"} {
		t.Run(path, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.Header.Set("Authorization", "Bearer "+testKey)
			rec, e := do(t, g, req)
			assert.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
			assert.Equal(t, codeUnknownProvider, e.Code)
			validateAnswer(t, doc, router, req, rec)
		})
	}
	// An enabled one filters.
	for _, path := range []string{"/v1/repairs?provider=quiltt", "/v1/stats?provider=quiltt"} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+testKey)
		rec, _ := do(t, g, req)
		assert.Equal(t, http.StatusOK, rec.Code, path)
		validateAnswer(t, doc, router, req, rec)
	}
}
