package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/workflows"
)

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
	assert.NotContains(t, widget, "frameOrigins", "the CSP's origins are the gateway's business")

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
