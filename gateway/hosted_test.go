package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/plaid"
	"github.com/relink-dev/relink/activities/providers"
	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/workflows"
)

// getAsset GETs /r/assets/{name}, with If-None-Match if etag is set, and
// checks the answer against the OpenAPI document.
func getAsset(t *testing.T, name, etag string) *httptest.ResponseRecorder {
	t.Helper()
	router, doc := openAPIRouter(t)
	req := httptest.NewRequest(http.MethodGet, "/r/assets/"+name, nil)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	rec := httptest.NewRecorder()
	fullGateway(t).Handler().ServeHTTP(rec, req)
	validateAnswer(t, doc, router, req, rec)
	return rec
}

// The embeddable button's script loads on pages of other origins: served
// as JavaScript that is never sniffed, allowed to cross origins (CORP,
// for pages with Cross-Origin-Embedder-Policy), cached a while and then
// revalidated.
func TestTheButtonScriptIsServedForPagesOfOtherOrigins(t *testing.T) {
	rec := getAsset(t, "relink-button.js", "")
	require.Equal(t, http.StatusOK, rec.Code)
	h := rec.Header()
	assert.Equal(t, "text/javascript; charset=utf-8", h.Get("Content-Type"))
	assert.Equal(t, "cross-origin", h.Get("Cross-Origin-Resource-Policy"))
	assert.Equal(t, "nosniff", h.Get("X-Content-Type-Options"))
	assert.Equal(t, "public, max-age=300", h.Get("Cache-Control"))
	etag := h.Get("ETag")
	require.Regexp(t, `^"[A-Za-z0-9_-]{16}"$`, etag)
	assert.Empty(t, h.Get("Access-Control-Allow-Origin"), "a script tag needs no CORS, and the gateway answers CORS on the browser routes only")

	// A copy still current is 304, without a body; a stale one gets the script.
	for _, tag := range []string{etag, "W/" + etag, `"old", ` + etag, "*"} {
		again := getAsset(t, "relink-button.js", tag)
		assert.Equal(t, http.StatusNotModified, again.Code, tag)
		assert.Empty(t, again.Body.Bytes(), tag)
		assert.Equal(t, etag, again.Header().Get("ETag"), tag)
	}
	assert.Equal(t, http.StatusOK, getAsset(t, "relink-button.js", `"old"`).Code)

	// The gateway's own pages' scripts stay theirs.
	for _, name := range []string{"reconnect.js", "reconnect.css", "sandbox-widget.js"} {
		own := getAsset(t, name, "")
		require.Equal(t, http.StatusOK, own.Code, name)
		assert.Equal(t, "same-origin", own.Header().Get("Cross-Origin-Resource-Policy"), name)
		assert.NotEqual(t, etag, own.Header().Get("ETag"), name)
	}
	// The engine is served only inside the scripts that use it.
	assert.Equal(t, http.StatusNotFound, getAsset(t, "engine.js", "").Code)
}

// One widget engine: the hosted page's script and the button's are each
// engine.js and their own file, whole, in one strict function scope that
// leaves no global behind.
func TestThePageAndTheButtonShareOneWidgetEngine(t *testing.T) {
	engine, err := hostedAssets.ReadFile("hosted/engine.js")
	require.NoError(t, err)
	require.Contains(t, string(engine), "function relinkEngine(")
	for script, own := range map[string]string{"reconnect.js": "reconnect.js", "relink-button.js": "relink-button.js"} {
		body := getAsset(t, script, "").Body.Bytes()
		part, err := hostedAssets.ReadFile("hosted/" + own)
		require.NoError(t, err)
		assert.Equal(t, 1, bytes.Count(body, engine), "%s has the engine once", script)
		assert.Equal(t, 1, bytes.Count(body, part), "%s has its own part", script)
		assert.Less(t, bytes.Index(body, engine), bytes.Index(body, part), "%s: the engine first", script)
		assert.True(t, bytes.HasPrefix(body, []byte("/* Relink: engine.js + "+own+" */\n(() => {\n'use strict';\n")), script)
		assert.True(t, bytes.HasSuffix(body, []byte("})();\n")), script)
		assert.Contains(t, string(part), "relinkEngine({", "%s runs the engine", own)
		assert.NotContains(t, string(part), "Plaid.create", "%s leaves the widgets to the engine", own)
		assert.NotContains(t, string(part), "postMessage", "%s leaves the widgets to the engine", own)
	}
}

// offeredSession answers every reconnect query with offer.
type offeredSession struct {
	client.Client
	offer workflows.ReconnectOffer
}

func (o offeredSession) QueryWorkflow(context.Context, string, string, string, ...any) (converter.EncodedValue, error) {
	raw, err := json.Marshal(o.offer)
	return jsonValue(raw), err
}

// reconnect's answer carries the provider's widget record with a session:
// what the embeddable button (and the hosted page) open it with, Plaid
// Link's script where the provider's sessions open Plaid Link.
func TestReconnectAnswersWithTheProvidersWidgetRecord(t *testing.T) {
	g := fullGateway(t)
	g.Browsers = map[string]aggregator.Browser{quiltt.Name: quiltt.Browser, sandbox.Name: sandbox.Browser}
	g.Receivers = map[string]aggregator.WebhookReceiver{quiltt.Name: &quiltt.WebhookReceiver{}, sandbox.Name: &quiltt.WebhookReceiver{}}
	g.PlaidLinkScriptURL = "https://cdn.plaid.com/link/v2/stable/link-initialize.js"
	g.ReconnectFrameOrigins = []string{"https://frames.example.com"}
	router, doc := openAPIRouter(t)
	reconnect := func(provider string, result workflows.ReconnectResult) map[string]any {
		t.Helper()
		g.Temporal = offeredSession{offer: workflows.ReconnectOffer{Result: &result}}
		req := httptest.NewRequest(http.MethodPost, "/v1/repairs/"+provider+"/conn_1/reconnect", strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		g.Handler().ServeHTTP(rec, req)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		validateAnswer(t, doc, router, req, rec)
		var out map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out))
		return out
	}
	session := &aggregator.Session{ConnectorStatus: aggregator.ConnectorActionRequired, ConnectorToken: "ct_1", LinkToken: "link-sandbox-1"}

	out := reconnect(quiltt.Name, workflows.ReconnectResult{Status: workflows.StatusAwaitingUser, ConnectorStatus: aggregator.ConnectorActionRequired, Session: session})
	assert.Equal(t, "link-sandbox-1", out["session"].(map[string]any)["linkToken"])
	widget := out["widget"].(map[string]any)
	assert.Equal(t, []any{"plaid-link", "frame"}, widget["widgets"])
	assert.Equal(t, "https://cdn.plaid.com/link/v2/stable/link-initialize.js", widget["plaidLinkScript"])
	rules := widget["messages"].([]any)
	require.Len(t, rules, 1)
	assert.Equal(t, map[string]any{"mx": true, "type": "mx/connect/memberConnected"}, rules[0].(map[string]any)["match"])
	// Where a session's widgetUrl may be framed from: the hosted page's
	// frame-src, for an app's page that may set none.
	var frames []any
	for _, o := range append(slices.Clone(quiltt.Browser.FrameOrigins), "https://frames.example.com") {
		frames = append(frames, o)
	}
	assert.Equal(t, frames, widget["frameOrigins"])
	assert.NotContains(t, widget, "connectOrigins", "the API origins are the CSP's business")

	out = reconnect(sandbox.Name, workflows.ReconnectResult{Status: workflows.StatusAwaitingUser, ConnectorStatus: aggregator.ConnectorActionRequired,
		Session: &aggregator.Session{ConnectorStatus: aggregator.ConnectorActionRequired, ConnectorToken: "ct_2", WidgetURL: "https://relink.example.com/sandbox/widget"}})
	widget = out["widget"].(map[string]any)
	assert.Equal(t, []any{"frame"}, widget["widgets"])
	assert.NotContains(t, widget, "plaidLinkScript", "no Plaid Link for a provider that never opens it")

	// Nothing for the user to do: no session, no widget.
	out = reconnect(sandbox.Name, workflows.ReconnectResult{Status: workflows.StatusVerifying, ConnectorStatus: aggregator.ConnectorContinue})
	assert.NotContains(t, out, "widget")
	assert.NotContains(t, out, "session")
}

// The sandbox's simulated widget may be framed by the gateway's own pages
// and by the app's origins (a page with the embeddable button), no others.
func TestTheSandboxWidgetMayBeFramedByTheAppsOrigins(t *testing.T) {
	widget := func(g *Gateway) http.Header {
		t.Helper()
		rec := httptest.NewRecorder()
		g.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/sandbox/widget?connectionId=conn_1&session=s_1", nil))
		require.Equal(t, http.StatusOK, rec.Code)
		assert.Contains(t, rec.Body.String(), `data-origins="`+strings.Join(g.CORSOrigins, " ")+`"`)
		return rec.Header()
	}
	g := fullGateway(t)
	g.CORSOrigins = []string{"https://app.example.com", "http://localhost:3000"}
	h := widget(g)
	assert.Contains(t, h.Get("Content-Security-Policy"), "; frame-ancestors 'self' https://app.example.com http://localhost:3000;")
	assert.Empty(t, h.Get("X-Frame-Options"), "X-Frame-Options cannot name the app's origins")

	g = fullGateway(t)
	g.CORSOrigins = nil
	h = widget(g)
	assert.Contains(t, h.Get("Content-Security-Policy"), "; frame-ancestors 'self';")
	assert.Equal(t, "SAMEORIGIN", h.Get("X-Frame-Options"))
}

// The README's table of what an app's Content-Security-Policy needs for
// the embeddable button names, for every registered provider, the origins
// its Browser record has (the hosted page's own policy allows the same),
// each in its directive's column.
func TestTheREADMEListsTheOriginsAButtonsPageAllows(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	section := string(readme)
	start := strings.Index(section, "## Embedding the Reconnect button")
	require.GreaterOrEqual(t, start, 0)
	section = section[start:]
	section = section[:strings.Index(section, "\n## ")]
	var rows [][]string // provider, script-src, connect-src, frame-src
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) == 4 && strings.HasPrefix(strings.TrimSpace(cells[0]), "`") {
			rows = append(rows, cells)
		}
	}
	require.NotEmpty(t, rows, "the README has the table")
	listed := func(provider string, column int, origin string) bool {
		for _, r := range rows {
			if strings.Contains(r[0], "`"+provider+"`") && slices.Contains(strings.Fields(strings.ReplaceAll(r[column], "`", " ")), origin) {
				return true
			}
		}
		return false
	}
	for _, reg := range providers.All {
		named := slices.ContainsFunc(rows, func(r []string) bool { return strings.Contains(r[0], "`"+reg.Name+"`") })
		assert.True(t, named, "a row for %s", reg.Name)
		for _, o := range reg.Browser.ConnectOrigins {
			assert.True(t, listed(reg.Name, 2, o), "%s: connect-src %s", reg.Name, o)
		}
		for _, o := range reg.Browser.FrameOrigins {
			assert.True(t, listed(reg.Name, 3, o), "%s: frame-src %s", reg.Name, o)
		}
		if reg.Browser.Has(aggregator.WidgetPlaidLink) {
			assert.True(t, listed(reg.Name, 1, "https://cdn.plaid.com"), "%s: script-src Plaid Link's default origin", reg.Name)
		}
	}
}

func TestTheOAuthReturnPageRunsPlaidLinkWithTheKeptSession(t *testing.T) {
	g := fullGateway(t)
	g.Browsers = map[string]aggregator.Browser{quiltt.Name: quiltt.Browser, sandbox.Name: sandbox.Browser, plaid.Name: plaid.Browser}
	g.PlaidLinkScriptURL = "https://cdn.plaid.com/link/v2/stable/link-initialize.js"
	g.ReconnectReturnURL = "https://app.example.com/connections"
	router, doc := openAPIRouter(t)
	get := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, OAuthReturnPath+"?oauth_state_id=6e2c0b8e", nil)
		rec := httptest.NewRecorder()
		g.Handler().ServeHTTP(rec, req)
		validateAnswer(t, doc, router, req, rec)
		return rec
	}

	rec := get()
	assert.Equal(t, http.StatusNotFound, rec.Code, "no reconnect links, no hosted page to return to")
	assert.NotContains(t, rec.Body.String(), "reconnect.js")

	g.Links = &Links{}
	rec = get()
	require.Equal(t, http.StatusOK, rec.Code)
	body := rec.Body.String()
	assert.Contains(t, body, `data-state="oauth"`)
	assert.Contains(t, body, `data-token=""`, "the page carries no credential: the tab kept its own")
	assert.Contains(t, body, `<script src="/r/assets/reconnect.js">`)
	csp := rec.Header().Get("Content-Security-Policy")
	assert.Contains(t, csp, "script-src 'self' https://cdn.plaid.com;", "Plaid Link's script")
	assert.Contains(t, csp, "https://production.plaid.com", "Plaid Link's API")
	assert.Contains(t, csp, "frame-ancestors 'none'")
	assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	assert.Equal(t, "no-referrer", rec.Header().Get("Referrer-Policy"))
}
