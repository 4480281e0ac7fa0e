package gateway

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/clienttoken"
	"github.com/relink-dev/relink/keyring"
)

// Like the rest of this package's tests, these need no Temporal: every
// request here is decided before the gateway calls it. Allowed browser
// calls are exercised end to end in integration/security_test.go.

func withTokens(t *testing.T, g *Gateway, clock *time.Time) *Gateway {
	t.Helper()
	k, err := keyring.Generate("k1")
	require.NoError(t, err)
	g.ClientTokens, err = clienttoken.New([]keyring.Key{k}, 30*time.Minute, func() time.Time { return *clock })
	require.NoError(t, err)
	return g
}

func request(method, path, bearer, body string) *http.Request {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if bearer != "" {
		r.Header.Set("Authorization", "Bearer "+bearer)
	}
	return r
}

func TestEveryAPIKeyIsAccepted(t *testing.T) {
	g := newTestGateway()
	g.APIKeys = []string{"old-key", "new-key"}
	for _, key := range []string{"old-key", "new-key"} {
		// 400 for the empty start request: the key was accepted.
		rec, e := do(t, g, request(http.MethodPost, "/v1/repairs", key, `{}`))
		assert.Equal(t, http.StatusBadRequest, rec.Code, key)
		assert.Equal(t, codeBadRequest, e.Code)
	}
	for _, key := range []string{"", "old-keyX", "new-ke"} {
		rec, e := do(t, g, request(http.MethodPost, "/v1/repairs", key, `{}`))
		assert.Equal(t, http.StatusUnauthorized, rec.Code, key)
		assert.Equal(t, codeUnauthorized, e.Code)
	}
}

func mint(t *testing.T, g *Gateway, provider, conn string) string {
	t.Helper()
	rec, _ := do(t, g, request(http.MethodPost, "/v1/repairs/"+provider+"/"+conn+"/client-token", testKey, ""))
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	var body struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expiresAt"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	assert.Equal(t, now.Add(30*time.Minute), body.ExpiresAt.UTC())
	return body.Token
}

func TestClientTokensAreScopedToOneConnection(t *testing.T) {
	clock := now
	g := withTokens(t, newTestGateway(), &clock)
	token := mint(t, g, "quiltt", "conn_1")

	for _, r := range []*http.Request{
		request(http.MethodGet, "/v1/repairs", token, ""),
		request(http.MethodPost, "/v1/repairs", token, `{"provider":"quiltt","connectionId":"conn_1"}`),
		request(http.MethodPost, "/v1/repairs/quiltt/conn_1/cancel", token, `{}`),
		request(http.MethodPost, "/v1/repairs/quiltt/conn_1/client-token", token, ""),
		request(http.MethodGet, "/v1/repairs/quiltt/conn_2", token, ""),
		request(http.MethodPost, "/v1/repairs/quiltt/conn_2/reconnect", token, ""),
		request(http.MethodPost, "/v1/repairs/quiltt/conn_2/complete", token, `{"connectorToken":"x"}`),
		request(http.MethodPost, "/v1/repairs/quiltt/conn_2/exit", token, `{}`),
		request(http.MethodGet, "/v1/repairs/meld/conn_1", token, ""),
		request(http.MethodPost, "/codec/decode", token, `{"payloads":[]}`),
	} {
		rec, e := do(t, g, r)
		assert.Equal(t, http.StatusForbidden, rec.Code, r.Method+" "+r.URL.Path)
		assert.Equal(t, codeForbidden, e.Code)
	}

	parts := strings.Split(token, ".")
	other := withTokens(t, newTestGateway(), &clock)
	foreign := mint(t, other, "quiltt", "conn_1")
	k2, err := keyring.Generate("k2")
	require.NoError(t, err)
	other.ClientTokens, err = clienttoken.New([]keyring.Key{k2}, 30*time.Minute, func() time.Time { return clock })
	require.NoError(t, err)
	unknownKey := mint(t, other, "quiltt", "conn_1")
	for name, bad := range map[string]string{
		"tampered claims": parts[0] + "." + strings.TrimSuffix(parts[1], parts[1][len(parts[1])-2:]) + "AA." + parts[2],
		"another signer":  foreign,
		"unknown key id":  unknownKey,
		"not a token":     "a.b.c",
	} {
		rec, e := do(t, g, request(http.MethodGet, "/v1/repairs/quiltt/conn_1", bad, ""))
		assert.Equal(t, http.StatusUnauthorized, rec.Code, name)
		assert.Equal(t, codeUnauthorized, e.Code, name)
	}
	clock = now.Add(31 * time.Minute)
	rec, e := do(t, g, request(http.MethodGet, "/v1/repairs/quiltt/conn_1", token, ""))
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.Contains(t, e.Message, "expired")
}

// A client token stops working at the expiresAt the API returned, by the
// gateway's clock: no leeway past it. (A token for conn_1 asking for
// conn_2 is 403 while it is good, 401 once expired: decided before
// Temporal.)
func TestAClientTokenStopsAtItsExpiresAt(t *testing.T) {
	clock := now
	g := withTokens(t, newTestGateway(), &clock)
	token := mint(t, g, "quiltt", "conn_1") // expiresAt: now + 30m
	expiresAt := now.Add(30 * time.Minute)

	clock = expiresAt.Add(-time.Second)
	rec, e := do(t, g, request(http.MethodGet, "/v1/repairs/quiltt/conn_2", token, ""))
	assert.Equal(t, http.StatusForbidden, rec.Code, "good until its expiresAt")
	assert.Equal(t, codeForbidden, e.Code)
	for _, at := range []time.Duration{0, time.Second, 4 * time.Second} {
		clock = expiresAt.Add(at)
		rec, e := do(t, g, request(http.MethodGet, "/v1/repairs/quiltt/conn_2", token, ""))
		assert.Equal(t, http.StatusUnauthorized, rec.Code, "%s past expiresAt", at)
		assert.Contains(t, e.Message, "expired")
	}
}

func TestClientTokensOff(t *testing.T) {
	g := newTestGateway()
	rec, e := do(t, g, request(http.MethodPost, "/v1/repairs/quiltt/conn_1/client-token", testKey, ""))
	assert.Equal(t, http.StatusNotImplemented, rec.Code)
	assert.Equal(t, codeNotEnabled, e.Code)
	rec, _ = do(t, g, request(http.MethodPost, "/v1/repairs/quiltt/conn%201/client-token", testKey, ""))
	assert.Equal(t, http.StatusBadRequest, rec.Code, "ids are checked first")
}

func preflight(path, origin, method string) *http.Request {
	r := httptest.NewRequest(http.MethodOptions, path, nil)
	r.Header.Set("Origin", origin)
	r.Header.Set("Access-Control-Request-Method", method)
	r.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
	return r
}

func TestCORSOnTheBrowserRoutesOnly(t *testing.T) {
	g := newTestGateway()
	g.CORSOrigins = []string{"https://app.example.com"}
	for path, method := range map[string]string{
		"/v1/repairs/quiltt/conn_1":           http.MethodGet,
		"/v1/repairs/quiltt/conn_1/reconnect": http.MethodPost,
		"/v1/repairs/quiltt/conn_1/complete":  http.MethodPost,
		"/v1/repairs/quiltt/conn_1/exit":      http.MethodPost,
	} {
		rec, _ := do(t, g, preflight(path, "https://app.example.com", method))
		assert.Equal(t, http.StatusNoContent, rec.Code, path)
		assert.Equal(t, "https://app.example.com", rec.Header().Get("Access-Control-Allow-Origin"), path)
		assert.Equal(t, method, rec.Header().Get("Access-Control-Allow-Methods"), path)
		assert.Contains(t, rec.Header().Get("Access-Control-Allow-Headers"), "Authorization")

		rec, _ = do(t, g, preflight(path, "https://evil.example.com", method))
		assert.Equal(t, http.StatusForbidden, rec.Code, path)
		assert.Empty(t, rec.Header().Get("Access-Control-Allow-Origin"), path)
		assert.Empty(t, rec.Header().Get("Access-Control-Allow-Methods"), path)
	}
	for _, path := range []string{"/v1/repairs", "/v1/repairs/quiltt/conn_1/cancel", "/v1/repairs/quiltt/conn_1/client-token", "/codec/decode"} {
		rec, _ := do(t, g, preflight(path, "https://app.example.com", http.MethodPost))
		assert.Empty(t, rec.Header().Get("Access-Control-Allow-Origin"), path)
		assert.NotEqual(t, http.StatusNoContent, rec.Code, path)
	}
	// An actual call from an allowed page carries the header even when it
	// fails, so the page can read the error.
	r := request(http.MethodGet, "/v1/repairs/quiltt/conn_1", "wrong", "")
	r.Header.Set("Origin", "https://app.example.com")
	rec, _ := do(t, g, r)
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.Equal(t, "https://app.example.com", rec.Header().Get("Access-Control-Allow-Origin"))
	assert.Contains(t, rec.Header().Values("Vary"), "Origin")
	// From any other origin, no CORS headers: the browser hides the answer.
	r = request(http.MethodGet, "/v1/repairs/quiltt/conn_1", "wrong", "")
	r.Header.Set("Origin", "https://evil.example.com")
	rec, _ = do(t, g, r)
	assert.Empty(t, rec.Header().Get("Access-Control-Allow-Origin"))
	// An id with an encoded "/" is one path segment, as the router sees it.
	rec, _ = do(t, g, preflight("/v1/repairs/quiltt/a%2Fb", "https://app.example.com", http.MethodGet))
	assert.Equal(t, http.StatusNoContent, rec.Code)
	assert.Equal(t, http.MethodGet, rec.Header().Get("Access-Control-Allow-Methods"))
	rec, _ = do(t, g, preflight("/v1/repairs/quiltt/x%2Fexit", "https://app.example.com", http.MethodGet))
	assert.Equal(t, http.MethodGet, rec.Header().Get("Access-Control-Allow-Methods"))
}

func TestConnectionLimits(t *testing.T) {
	l := newConnectionLimits(1, 3)
	for i := range 3 {
		ok, _ := l.allow("quiltt/c1", now)
		assert.True(t, ok, i)
	}
	ok, wait := l.allow("quiltt/c1", now)
	assert.False(t, ok)
	assert.Equal(t, time.Second, wait)
	ok, _ = l.allow("quiltt/c2", now)
	assert.True(t, ok, "each connection has its own bucket")
	ok, _ = l.allow("quiltt/c1", now.Add(time.Second))
	assert.True(t, ok, "the bucket refills")

	for i := range maxTrackedConnections + 10 {
		l.allow("quiltt/many-"+string(rune('a'+i%26))+strings.Repeat("x", i/26), now)
	}
	l.allow("quiltt/late", now.Add(time.Hour))
	assert.LessOrEqual(t, len(l.byConn), maxTrackedConnections+1, "idle connections are forgotten")
}

func TestRequestIDsInAnswersAndLogs(t *testing.T) {
	var logs strings.Builder
	g := newTestGateway()
	g.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	r := request(http.MethodPost, "/v1/repairs", testKey, `{}`)
	r.Header.Set("X-Request-Id", "lb-7f3a")
	rec, _ := do(t, g, r)
	assert.Equal(t, "lb-7f3a", rec.Header().Get("X-Request-Id"), "the caller's id comes back")

	rec, _ = do(t, g, request(http.MethodPost, "/webhooks/quiltt", "", `not json`))
	generated := rec.Header().Get("X-Request-Id")
	assert.Len(t, generated, 24)

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m))
		lines = append(lines, m)
	}
	var access, rejected int
	for _, m := range lines {
		if m["msg"] == "http request" && m["requestId"] == "lb-7f3a" {
			access++
			assert.Equal(t, "POST /v1/repairs", m["route"])
			assert.EqualValues(t, 400, m["status"])
			assert.Equal(t, "app", m["client"])
		}
		if m["msg"] == "webhook rejected" {
			rejected++
			assert.Equal(t, generated, m["requestId"], "every line of the request carries its id")
		}
	}
	assert.Equal(t, 1, access)
	assert.Equal(t, 1, rejected)
	assert.NotContains(t, logs.String(), testKey, "credentials are never logged")
}
