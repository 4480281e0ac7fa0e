package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/quiltt/quilttfake"
)

// The client subcommands send the gateway the requests the README's API
// section describes.
func TestClientSubcommands(t *testing.T) {
	type seen struct{ method, uri, auth, body string }
	var got seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = seen{r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"), string(b)}
		if r.URL.Path == "/v1/repairs/sandbox/gone" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"no repair for sandbox connection gone"}}`))
			return
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	common := []string{"-url", srv.URL, "-api-key", "k"}
	run := func(cmd string, args ...string) (string, error) {
		var out bytes.Buffer
		err := runClient(context.Background(), cmd, append(append([]string{}, common...), args...), &out)
		return out.String(), err
	}

	out, err := run("state", "conn 1")
	require.NoError(t, err)
	assert.Equal(t, seen{"GET", "/v1/repairs/sandbox/conn%201", "Bearer k", ""}, got)
	assert.Equal(t, "{\n  \"ok\": true\n}\n", out)

	_, err = run("start", "-profile", "p1", "-reason", "ticket", "c1")
	require.NoError(t, err)
	assert.Equal(t, "POST", got.method)
	assert.Equal(t, "/v1/repairs", got.uri)
	assert.JSONEq(t, `{"provider":"sandbox","connectionId":"c1","profileId":"p1","institution":"","reason":"ticket"}`, got.body)

	_, err = run("list", "-status", "AWAITING_USER", "-provider", "quiltt")
	require.NoError(t, err)
	assert.Equal(t, "/v1/repairs?provider=quiltt&status=AWAITING_USER", got.uri)

	_, err = run("cancel", "-reason", "left", "c1")
	require.NoError(t, err)
	assert.Equal(t, "/v1/repairs/sandbox/c1/cancel", got.uri)
	assert.JSONEq(t, `{"reason":"left","requestedBy":"relink CLI"}`, got.body)

	_, err = run("simulate-error", "-profile", "p1", "c9")
	require.NoError(t, err)
	assert.Equal(t, "/sandbox/connections/c9/break", got.uri)

	_, err = run("state", "gone")
	assert.EqualError(t, err, "no repair for sandbox connection gone (HTTP 404, not_found)")

	_, err = run("state")
	assert.ErrorIs(t, err, ErrUsage)
}

func TestSimulateErrorOnQuiltt(t *testing.T) {
	fake := quilttfake.New("qsk")
	defer fake.Close()
	fake.Put(quilttfake.Connection{ID: "conn_1", ProfileID: "p_1", Provider: "PLAID", Status: "SYNCED"})
	t.Setenv("QUILTT_API_SECRET", "qsk")
	t.Setenv("QUILTT_WEBHOOK_SECRET", "whsec")
	t.Setenv("QUILTT_API_URL", fake.URL)
	t.Setenv("QUILTT_AUTH_URL", fake.URL)
	var out bytes.Buffer

	err := runClient(context.Background(), "simulate-error", []string{"-provider", "quiltt", "-profile", "p_1", "conn_1"}, &out)

	require.NoError(t, err)
	assert.Equal(t, "ERROR_REPAIRABLE", fake.Get("conn_1").Status)
	assert.Contains(t, out.String(), "now ERROR_REPAIRABLE")
	err = runClient(context.Background(), "simulate-error", []string{"-provider", "quiltt", "conn_1"}, &out)
	assert.ErrorIs(t, err, ErrUsage, "a profile is required")
}
