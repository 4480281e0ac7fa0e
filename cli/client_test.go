package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
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

	// state without -provider asks the API first (TestStateFindsTheProvider).
	out, err := run("state", "-provider", "sandbox", "conn 1")
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
	// The generated client writes parameters in the document's order, not
	// sorted: compare the query's values.
	listed, err := url.ParseRequestURI(got.uri)
	require.NoError(t, err)
	assert.Equal(t, "/v1/repairs", listed.Path)
	assert.Equal(t, url.Values{"provider": {"quiltt"}, "status": {"AWAITING_USER"}}, listed.Query())

	_, err = run("cancel", "-reason", "left", "c1")
	require.NoError(t, err)
	assert.Equal(t, "/v1/repairs/sandbox/c1/cancel", got.uri)
	assert.JSONEq(t, `{"reason":"left","requestedBy":"relink CLI"}`, got.body)

	_, err = run("simulate-error", "-profile", "p1", "c9")
	require.NoError(t, err)
	assert.Equal(t, "/sandbox/connections/c9/break", got.uri)

	_, err = run("state", "-provider", "sandbox", "gone")
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

// fakeGateway answers each "METHOD /path" it is given with JSON (status
// 200 unless the answer's key says "201 POST /…"), and records the
// requests it saw.
func fakeGateway(t *testing.T, answers map[string]string) (*httptest.Server, *[]string) {
	t.Helper()
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Method+" "+r.URL.RequestURI())
		for key, body := range answers {
			status := http.StatusOK
			route := key
			if n, rest, ok := strings.Cut(key, " "); ok && len(n) == 3 && n[0] >= '1' && n[0] <= '5' {
				status, _ = strconv.Atoi(n)
				route = rest
			}
			method, pattern, _ := strings.Cut(route, " ")
			if method == r.Method && (pattern == r.URL.RequestURI() || pattern == r.URL.Path) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				_, _ = w.Write([]byte(body))
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"no route in the fake"}}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

func summary(provider, conn string) string {
	return `{"id":"repair:` + provider + `:` + conn + `","runId":"r","provider":"` + provider + `","connectionId":"` + conn +
		`","status":"AWAITING_USER","attempts":1,"running":true,"startedAt":"2026-12-01T00:00:00Z"}`
}

// Without -provider, state, client-token and reconnect-link find the
// connection's provider by listing its repairs through the API (every
// page), and refuse to guess when there is none or more than one.
func TestStateFindsTheProviderOfTheConnection(t *testing.T) {
	srv, seen := fakeGateway(t, map[string]string{
		"GET /v1/repairs?connectionId=item_1&pageSize=1000":          `{"repairs":[` + summary("plaid", "item_1") + `,` + summary("plaid", "item_1") + `]}`,
		"GET /v1/repairs/plaid/item_1":                               `{"repair":{"status":"AWAITING_USER"}}`,
		"GET /v1/repairs?connectionId=gone&pageSize=1000":            `{"repairs":[]}`,
		"GET /v1/repairs?connectionId=c2&pageSize=1000":              `{"repairs":[` + summary("quiltt", "c2") + `],"nextPageToken":"p2"}`,
		"GET /v1/repairs?connectionId=c2&pageSize=1000&pageToken=p2": `{"repairs":[` + summary("meld", "c2") + `]}`,
		"201 POST /v1/repairs/plaid/item_1/client-token":             `{"token":"eyJ.tok.en","expiresAt":"2026-12-01T01:00:00Z"}`,
		"201 POST /v1/repairs/plaid/item_1/reconnect-link":           `{"url":"https://relink.example/r/abc","expiresAt":"2026-12-15T00:00:00Z"}`,
	})
	run := func(cmd string, args ...string) (string, error) {
		var out bytes.Buffer
		err := runClient(context.Background(), cmd, append([]string{"-url", srv.URL, "-api-key", "k"}, args...), &out)
		return out.String(), err
	}

	out, err := run("state", "item_1")
	require.NoError(t, err)
	assert.Equal(t, []string{"GET /v1/repairs?connectionId=item_1&pageSize=1000", "GET /v1/repairs/plaid/item_1"}, *seen)
	assert.Equal(t, "{\n  \"repair\": {\n    \"status\": \"AWAITING_USER\"\n  }\n}\n", out)

	out, err = run("client-token", "item_1")
	require.NoError(t, err)
	assert.Equal(t, "eyJ.tok.en\n", out, "the token alone, for a script")
	out, err = run("reconnect-link", "item_1")
	require.NoError(t, err)
	assert.Equal(t, "https://relink.example/r/abc\n", out, "the link alone, to send the user")

	*seen = nil
	_, err = run("client-token", "-provider", "plaid", "item_1")
	require.NoError(t, err)
	assert.Equal(t, []string{"POST /v1/repairs/plaid/item_1/client-token"}, *seen, "-provider asks no list")

	_, err = run("state", "gone")
	assert.EqualError(t, err, "no repair of connection gone with any provider (give -provider to ask one)")

	_, err = run("reconnect-link", "c2")
	assert.ErrorIs(t, err, ErrUsage)
	assert.ErrorContains(t, err, "connection c2 has repairs with several providers (meld, quiltt): give -provider")
}

// stats and reconcile read the document's answers: the table, the sweep
// started and the last sweeps; the gateway's errors say their code.
func TestStatsAndReconcileReadTheGatewaysAnswers(t *testing.T) {
	srv, seen := fakeGateway(t, map[string]string{
		"GET /v1/stats": `{"total":3,"byStatus":{"AWAITING_USER":2,"REPAIRED":1},` +
			`"byProvider":{"plaid":{"AWAITING_USER":2},"sandbox":{"REPAIRED":1}}}`,
		"202 POST /v1/reconcile/sandbox": `{"id":"relink-reconcile-sandbox-manual","runId":"run1"}`,
		"GET /v1/reconcile/sandbox": `{"provider":"sandbox","source":"inventory","sweeps":[{"id":"relink-reconcile-sandbox-manual",` +
			`"runId":"run1","status":"Failed","running":false,"startedAt":"2026-12-01T00:00:00Z","finishedAt":"2026-12-01T00:01:00Z",` +
			`"checked":5,"needUser":2,"found":1,"errors":1,"expiryArranged":0,"pages":1,"error":"the inventory refused the token"}]}`,
	})
	common := []string{"-url", srv.URL, "-api-key", "k"}

	var out bytes.Buffer
	require.NoError(t, runStats(context.Background(), append(common, "-provider", "plaid", "-since", "24h"), &out))
	assert.Equal(t, "GET /v1/stats?provider=plaid&since=24h", (*seen)[0])
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 4, out.String())
	assert.Regexp(t, `^\s*plaid\s+0\s+2\s`, lines[1])
	assert.Regexp(t, `^\s*all\s+0\s+2\s+0\s+0\s+1\s+0\s+0\s+0\s+3$`, lines[3])

	out.Reset()
	require.NoError(t, runReconcile(context.Background(), append(common, "-provider", "sandbox"), &out))
	assert.Contains(t, out.String(), "sweeping sandbox: relink-reconcile-sandbox-manual (run run1)\n")
	assert.Contains(t, out.String(), "sandbox (from its inventory):")
	assert.Regexp(t, `Failed\s+5\s+2\s+1\s+1\s+0`, out.String())
	assert.Contains(t, out.String(), "relink-reconcile-sandbox-manual (started ")
	assert.Contains(t, out.String(), "the inventory refused the token")

	err := runReconcile(context.Background(), append(common, "-provider", "meld"), &out)
	assert.EqualError(t, err, "sweep meld: no route in the fake (HTTP 404, not_found)")
}
