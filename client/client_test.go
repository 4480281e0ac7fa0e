package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/client"
)

// A gateway error answer reaches the caller as the document's Error, code
// and message both (openapi-overlay.yaml is why: without it oapi-codegen
// dropped the message), and path parameters are escaped.
func TestErrorAnswersCarryTheGatewaysCodeAndMessage(t *testing.T) {
	var gotURI, gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotURI, gotAuth = r.URL.RequestURI(), r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"no repair for sandbox connection conn 1"}}`))
	}))
	defer srv.Close()
	c, err := client.NewClientWithResponses(srv.URL, client.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer k")
		return nil
	}))
	require.NoError(t, err)

	res, err := c.GetRepairWithResponse(context.Background(), "sandbox", "conn 1", nil)

	require.NoError(t, err)
	assert.Equal(t, "/v1/repairs/sandbox/conn%201", gotURI)
	assert.Equal(t, "Bearer k", gotAuth)
	assert.Equal(t, http.StatusNotFound, res.StatusCode())
	require.NotNil(t, res.JSON404)
	assert.Equal(t, client.ErrorCodeNotFound, res.JSON404.Error.Code)
	assert.Equal(t, "no repair for sandbox connection conn 1", res.JSON404.Error.Message)
	assert.Nil(t, res.JSON200)
}
