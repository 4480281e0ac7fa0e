package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
)

// A gateway still connecting to Temporal serves: /healthz says it lives,
// /readyz says it is not ready, every route that calls Temporal answers
// 503 `unavailable` with Retry-After, and every answer, on every route of
// the document, is one the document lists. Once connected it is ready.
func TestAGatewayStillConnectingToTemporalAnswers503WhereTemporalIsNeeded(t *testing.T) {
	doc := loadOpenAPI(t)
	router, err := gorillamux.NewRouter(doc)
	require.NoError(t, err)
	g := fullGateway(t)
	g.Temporal = nil
	connected := g.ServeBeforeTemporal()
	h := g.Handler()
	serve := func(method, path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testKey)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		validateAnswer(t, doc, router, req, rec)
		return rec
	}
	errorCode := func(rec *httptest.ResponseRecorder) string {
		var body errorBody
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), "%s", rec.Body)
		return body.Error.Code
	}

	assert.Equal(t, http.StatusOK, serve(http.MethodGet, "/healthz", "").Code)
	ready := serve(http.MethodGet, "/readyz", "")
	assert.Equal(t, http.StatusServiceUnavailable, ready.Code)
	assert.Equal(t, codeUnavailable, errorCode(ready))
	assert.Contains(t, ready.Body.String(), "still connecting")
	for _, call := range []struct{ method, path string }{
		{http.MethodGet, "/v1/repairs"},
		{http.MethodPost, "/v1/repairs"},
		{http.MethodGet, "/v1/stats"},
		{http.MethodGet, "/v1/repairs/quiltt/conn_1"},
		{http.MethodPost, "/v1/repairs/quiltt/conn_1/reconnect"},
		{http.MethodPost, "/v1/repairs/quiltt/conn_1/cancel"},
		{http.MethodGet, "/v1/reconcile/quiltt"},
		{http.MethodPost, "/webhooks/quiltt"},
	} {
		rec := serve(call.method, call.path, "{}")
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code, "%s %s: %s", call.method, call.path, rec.Body)
		assert.Equal(t, codeUnavailable, errorCode(rec), "%s %s", call.method, call.path)
		assert.Contains(t, rec.Body.String(), "connecting to Temporal", "%s %s", call.method, call.path)
		assert.Equal(t, "5", rec.Header().Get("Retry-After"), "%s %s", call.method, call.path)
	}
	assert.Equal(t, http.StatusOK, serve(http.MethodGet, "/openapi.json", "").Code, "needs no Temporal")
	assert.Equal(t, http.StatusNotImplemented, serve(http.MethodPost, "/codec/encode", `{"payloads":[]}`).Code,
		"answered as usual (no payload keys here)")
	// /metrics counts open repairs at Temporal: without a client it skips them.
	assert.Equal(t, http.StatusOK, serve(http.MethodGet, "/metrics", "").Code)

	// Every documented operation, still connecting, answers as documented.
	for path, item := range doc.Paths.Map() {
		example := pathParam.ReplaceAllString(path, "nope")
		for method := range item.Operations() {
			if method != http.MethodOptions {
				serve(method, example, "{")
			}
		}
	}

	connected(healthyTemporal{})
	assert.Equal(t, http.StatusOK, serve(http.MethodGet, "/readyz", "").Code, "connected: ready")
	assert.Equal(t, http.StatusBadRequest, serve(http.MethodGet, "/v1/repairs?pageSize=0", "").Code,
		"connected: the route's own checks answer")
}

type healthyTemporal struct{ client.Client }

func (healthyTemporal) CheckHealth(context.Context, *client.CheckHealthRequest) (*client.CheckHealthResponse, error) {
	return &client.CheckHealthResponse{}, nil
}
