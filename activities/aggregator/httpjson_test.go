package aggregator

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDoJSONAcceptsJSONUnlessTheCallerNamesAMediaType(t *testing.T) {
	var accepts []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		accepts = append(accepts, r.Header.Get("Accept"))
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	for _, h := range []http.Header{nil, {"Accept": {"application/vnd.mx.api.v1+json"}}} {
		status, _, err := DoJSON(context.Background(), srv.Client(), JSONRequest{Method: http.MethodGet, URL: srv.URL, Header: h}, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status)
	}
	assert.Equal(t, []string{"application/json", "application/vnd.mx.api.v1+json"}, accepts)
}
