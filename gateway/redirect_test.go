package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/truelayer"
	"github.com/relink-dev/relink/clienttoken"
)

// A redirect session gets a GET /r/go path only for a URL of the
// provider's own sign-in hosts.
func TestRedirectPathOnlyForTheProvidersHosts(t *testing.T) {
	clock := time.Now()
	g := withTokens(t, fullGateway(t), &clock)
	s := &aggregator.Session{ConnectorStatus: aggregator.ConnectorActionRequired, ConnectorToken: "sess_1",
		Widget: aggregator.WidgetRedirect, WidgetURL: "https://auth.truelayer.com/?session=1"}
	path := g.redirectPath(truelayer.Name, "conn_1", truelayer.Browser, s)
	require.True(t, strings.HasPrefix(path, "/r/go/"), path)
	ret, err := g.ClientTokens.CheckReturn(strings.TrimPrefix(path, "/r/go/"))
	require.NoError(t, err)
	assert.Equal(t, clienttoken.Return{Scope: clienttoken.Scope{Provider: truelayer.Name, ConnectionID: "conn_1"}, Session: "sess_1", URL: s.WidgetURL}, ret)

	s.WidgetURL = "https://evil.example.com/phish"
	assert.Empty(t, g.redirectPath(truelayer.Name, "conn_1", truelayer.Browser, s), "no open redirect")
	g.ReconnectFrameOrigins = []string{"https://evil.example.com"}
	assert.NotEmpty(t, g.redirectPath(truelayer.Name, "conn_1", truelayer.Browser, s), "unless the operator allows that origin")
}

// GET /r/go keeps the ticket in a cookie of the return route only, and
// sends the browser on; a forged ticket goes nowhere.
func TestRedirectGoSetsTheReturnCookie(t *testing.T) {
	clock := time.Now()
	g := withTokens(t, fullGateway(t), &clock)
	ticket, _, err := g.ClientTokens.MintReturn(clienttoken.Return{Scope: clienttoken.Scope{Provider: truelayer.Name, ConnectionID: "conn_1"},
		Session: "sess_1", URL: "https://auth.truelayer.com/?session=1"}, time.Minute)
	require.NoError(t, err)

	rec := httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/r/go/"+ticket, nil))
	require.Equal(t, http.StatusSeeOther, rec.Code)
	assert.Equal(t, "https://auth.truelayer.com/?session=1", rec.Header().Get("Location"))
	cookies := rec.Result().Cookies()
	require.Len(t, cookies, 1)
	c := cookies[0]
	assert.Equal(t, "relink_return_truelayer", c.Name)
	assert.Equal(t, ticket, c.Value)
	assert.Equal(t, "/r/return/", c.Path)
	assert.True(t, c.HttpOnly)
	assert.Equal(t, http.SameSiteLaxMode, c.SameSite)

	rec = httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/r/go/"+ticket[:len(ticket)-4]+"AAAA", nil))
	assert.Equal(t, http.StatusNotFound, rec.Code)
	assert.Empty(t, rec.Header().Get("Location"))

	// A link token or a client token is no return ticket.
	link, _, err := g.ClientTokens.MintLink(clienttoken.Scope{Provider: truelayer.Name, ConnectionID: "conn_1"}, "run_1", time.Hour)
	require.NoError(t, err)
	rec = httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/r/go/"+link, nil))
	assert.Equal(t, http.StatusNotFound, rec.Code)
}

// A return the gateway cannot bind to a repair started in this browser is
// refused before Temporal is asked: no cookie (a foreign return, or a
// replay of one already taken), another provider's ticket, a forged or
// expired one, or no code.
func TestRedirectReturnRefusesWhatItCannotBind(t *testing.T) {
	clock := time.Now()
	g := withTokens(t, fullGateway(t), &clock)
	mint := func(provider string, ttl time.Duration) string {
		ticket, _, err := g.ClientTokens.MintReturn(clienttoken.Return{Scope: clienttoken.Scope{Provider: provider, ConnectionID: "conn_1"},
			Session: "sess_1", URL: "https://auth.truelayer.com/"}, ttl)
		require.NoError(t, err)
		return ticket
	}
	good := mint(truelayer.Name, time.Minute)
	cases := map[string]struct {
		cookie, query string
	}{
		"no cookie":          {"", "?code=c1"},
		"another provider's": {mint("plaid", time.Minute), "?code=c1"},
		"forged":             {good[:len(good)-4] + "AAAA", "?code=c1"},
		"no code":            {good, ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/r/return/truelayer"+tc.query, nil)
			if tc.cookie != "" {
				r.AddCookie(&http.Cookie{Name: "relink_return_truelayer", Value: tc.cookie})
			}
			rec := httptest.NewRecorder()
			g.Handler().ServeHTTP(rec, r)
			assert.Equal(t, http.StatusBadRequest, rec.Code)
			assert.Contains(t, rec.Body.String(), "This sign-in can")
			assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
		})
	}
	t.Run("expired", func(t *testing.T) {
		old := mint(truelayer.Name, time.Second)
		clock = clock.Add(time.Hour) // the authority reads this clock
		r := httptest.NewRequest(http.MethodGet, "/r/return/truelayer?code=c1", nil)
		r.AddCookie(&http.Cookie{Name: "relink_return_truelayer", Value: old})
		rec := httptest.NewRecorder()
		g.Handler().ServeHTTP(rec, r)
		assert.Equal(t, http.StatusBadRequest, rec.Code)
		// The cookie is cleared whatever happens: a return is used once.
		require.NotEmpty(t, rec.Result().Cookies())
		assert.Equal(t, -1, rec.Result().Cookies()[0].MaxAge)
	})
}
