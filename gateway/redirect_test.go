package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/truelayer"
	"github.com/relink-dev/relink/clienttoken"
	"github.com/relink-dev/relink/workflows"
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
	// On to the provider with the ticket's state (OAuth 2), which the
	// provider sends back on the return.
	to, err := url.Parse(rec.Header().Get("Location"))
	require.NoError(t, err)
	assert.Equal(t, "https://auth.truelayer.com/", to.Scheme+"://"+to.Host+to.Path)
	assert.Equal(t, url.Values{"session": {"1"}, "state": {returnState(ticket)}}, to.Query())
	assert.Len(t, returnState(ticket), 43, "256 bits")
	assert.NotContains(t, to.String(), ticket, "the ticket does not go to the provider")
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
// expired one, no state or another ticket's (a page sending the user here
// with its own code: login CSRF), or no code.
func TestRedirectReturnRefusesWhatItCannotBind(t *testing.T) {
	clock := time.Now()
	g := withTokens(t, fullGateway(t), &clock)
	mint := func(provider, conn string, ttl time.Duration) string {
		ticket, _, err := g.ClientTokens.MintReturn(clienttoken.Return{Scope: clienttoken.Scope{Provider: provider, ConnectionID: conn},
			Session: "sess_1", URL: "https://auth.truelayer.com/"}, ttl)
		require.NoError(t, err)
		return ticket
	}
	good := mint(truelayer.Name, "conn_1", time.Minute)
	foreign := mint(truelayer.Name, "conn_attacker", time.Minute) // another browser's ticket
	plaid := mint("plaid", "conn_1", time.Minute)
	forged := good[:len(good)-4] + "AAAA"
	cases := map[string]struct {
		cookie, query string
		kept          bool // the cookie stays: the user's own return may still come
	}{
		"no cookie":                  {"", "?code=c1&state=" + returnState(good), false},
		"another provider's":         {plaid, "?code=c1&state=" + returnState(plaid), false},
		"forged":                     {forged, "?code=c1&state=" + returnState(forged), false},
		"no code":                    {good, "?state=" + returnState(good), true},
		"no state":                   {good, "?code=c1", true},
		"an empty state":             {good, "?code=c1&state=", true},
		"another ticket's state":     {good, "?code=c1&state=" + returnState(foreign), true},
		"the ticket itself as state": {good, "?code=c1&state=" + good, true},
		"an exit without state":      {good, "?error=access_denied", true},
		"an exit of another ticket":  {good, "?error=access_denied&state=" + returnState(foreign), true},
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
			if tc.kept {
				assert.Empty(t, rec.Result().Cookies(), "a foreign return does not cost the user their own")
			} else if tc.cookie != "" {
				require.Len(t, rec.Result().Cookies(), 1)
				assert.Equal(t, -1, rec.Result().Cookies()[0].MaxAge, "a ticket of no use is cleared")
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		old := mint(truelayer.Name, "conn_1", time.Second)
		clock = clock.Add(time.Hour) // the authority reads this clock
		r := httptest.NewRequest(http.MethodGet, "/r/return/truelayer?code=c1&state="+returnState(old), nil)
		r.AddCookie(&http.Cookie{Name: "relink_return_truelayer", Value: old})
		rec := httptest.NewRecorder()
		g.Handler().ServeHTTP(rec, r)
		assert.Equal(t, http.StatusBadRequest, rec.Code)
		require.NotEmpty(t, rec.Result().Cookies())
		assert.Equal(t, -1, rec.Result().Cookies()[0].MaxAge)
	})
}

// updatesTemporal answers updates: while down, as an unreachable server;
// else as the repair taking them. It records each update's id.
type updatesTemporal struct {
	client.Client
	mu     sync.Mutex
	down   bool
	refuse string // the error type every update is refused with, if set
	ids    []string
}

func (u *updatesTemporal) UpdateWorkflow(_ context.Context, o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.down {
		return nil, serviceerror.NewUnavailable("down")
	}
	u.ids = append(u.ids, o.UpdateName+" "+o.UpdateID)
	if u.refuse != "" {
		return takenUpdate{err: temporal.NewApplicationError("refused", u.refuse)}, nil
	}
	return takenUpdate{}, nil
}

func (u *updatesTemporal) WorkflowService() workflowservice.WorkflowServiceClient {
	return noPriorities{}
}

func (u *updatesTemporal) taken() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.ids...)
}

type takenUpdate struct {
	client.WorkflowUpdateHandle
	err error
}

func (t takenUpdate) Get(context.Context, any) error { return t.err }

// noPriorities: a server without priorities (the user's update is not
// put ahead).
type noPriorities struct {
	workflowservice.WorkflowServiceClient
}

func (noPriorities) UpdateWorkflowExecutionOptions(context.Context, *workflowservice.UpdateWorkflowExecutionOptionsRequest, ...grpc.CallOption) (*workflowservice.UpdateWorkflowExecutionOptionsResponse, error) {
	return nil, serviceerror.NewUnimplemented("no priorities")
}

// returnRequest is the provider's return to the browser holding ticket.
func returnRequest(ticket, query string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/r/return/truelayer?"+query, nil)
	r.AddCookie(&http.Cookie{Name: "relink_return_truelayer", Value: ticket})
	return r
}

// A return that finds Temporal unavailable keeps its cookie: the reload
// the page asks for completes the repair, with the same update id.
func TestRedirectReturnCompletesOnReloadAfterUnavailable(t *testing.T) {
	clock := time.Now()
	g := withTokens(t, fullGateway(t), &clock)
	tc := &updatesTemporal{down: true}
	g.Temporal = tc
	ticket, _, err := g.ClientTokens.MintReturn(clienttoken.Return{Scope: clienttoken.Scope{Provider: truelayer.Name, ConnectionID: "conn_1"},
		Session: "sess_1", URL: "https://auth.truelayer.com/"}, time.Minute)
	require.NoError(t, err)
	query := "code=c1&state=" + returnState(ticket)

	rec := httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, returnRequest(ticket, query))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Contains(t, rec.Body.String(), "Please reload this page")
	assert.Empty(t, rec.Result().Cookies(), "the cookie stays for the reload")
	assert.Empty(t, tc.taken())

	tc.mu.Lock()
	tc.down = false
	tc.mu.Unlock()
	rec = httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, returnRequest(ticket, query))
	require.Equal(t, http.StatusOK, rec.Code, "taken (no reconnect links here: the checking page)")
	require.Len(t, rec.Result().Cookies(), 1)
	assert.Equal(t, -1, rec.Result().Cookies()[0].MaxAge, "taken: the cookie goes")

	// Replayed with a copy of the cookie: the same update id, which the
	// repair answers with its first outcome.
	rec = httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, returnRequest(ticket, query))
	ids := tc.taken()
	require.Len(t, ids, 2)
	assert.True(t, strings.HasPrefix(ids[0], "complete "), ids[0])
	assert.Equal(t, ids[0], ids[1])
}

// An exit is recorded once per ticket: replays with other error values
// send the same update id. It keeps the cookie: the user may still sign
// in from the provider's page they go back to.
func TestRedirectReturnExitOncePerTicket(t *testing.T) {
	clock := time.Now()
	g := withTokens(t, fullGateway(t), &clock)
	tc := &updatesTemporal{}
	g.Temporal = tc
	mint := func(conn string) string {
		ticket, _, err := g.ClientTokens.MintReturn(clienttoken.Return{Scope: clienttoken.Scope{Provider: truelayer.Name, ConnectionID: conn},
			Session: "sess_1", URL: "https://auth.truelayer.com/"}, time.Minute)
		require.NoError(t, err)
		return ticket
	}
	ticket := mint("conn_1")
	for _, failure := range []string{"access_denied", "server_error", "temporarily_unavailable", strings.Repeat("x", 300)} {
		rec := httptest.NewRecorder()
		g.Handler().ServeHTTP(rec, returnRequest(ticket, url.Values{"error": {failure}, "state": {returnState(ticket)}}.Encode()))
		assert.Equal(t, http.StatusOK, rec.Code, failure)
		assert.Empty(t, rec.Result().Cookies(), "an exit keeps the cookie")
	}
	ids := tc.taken()
	require.Len(t, ids, 4)
	for _, id := range ids {
		assert.Equal(t, ids[0], id, "one exit per ticket")
	}
	assert.True(t, strings.HasPrefix(ids[0], "exit "), ids[0])

	// The sign-in from the same page after the exit completes the repair.
	rec := httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, returnRequest(ticket, "code=c1&state="+returnState(ticket)))
	assert.Equal(t, http.StatusOK, rec.Code)
	ids = tc.taken()
	require.Len(t, ids, 5)
	assert.True(t, strings.HasPrefix(ids[4], "complete "), ids[4])
}

// A refused exit keeps the cookie unless the repair has ended: a user
// over the exits a run keeps may still sign in from the provider's page;
// a refused completion, or an ended repair, clears it.
func TestRedirectReturnRefusedExitKeepsTheCookieUnlessTheRepairEnded(t *testing.T) {
	clock := time.Now()
	g := withTokens(t, fullGateway(t), &clock)
	ticket, _, err := g.ClientTokens.MintReturn(clienttoken.Return{Scope: clienttoken.Scope{Provider: truelayer.Name, ConnectionID: "conn_1"},
		Session: "sess_1", URL: "https://auth.truelayer.com/"}, time.Minute)
	require.NoError(t, err)
	exit := url.Values{"error": {"access_denied"}, "state": {returnState(ticket)}}.Encode()
	for refusal, cleared := range map[string]bool{workflows.ErrTypeTooManyRequests: false, workflows.ErrTypeRepairClosed: true} {
		g.Temporal = &updatesTemporal{refuse: refusal}
		rec := httptest.NewRecorder()
		g.Handler().ServeHTTP(rec, returnRequest(ticket, exit))
		assert.Equal(t, http.StatusConflict, rec.Code, refusal)
		assert.Equal(t, cleared, len(rec.Result().Cookies()) == 1 && rec.Result().Cookies()[0].MaxAge == -1, refusal)
	}
	g.Temporal = &updatesTemporal{refuse: workflows.ErrTypeSessionUnknown}
	rec := httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, returnRequest(ticket, "code=c1&state="+returnState(ticket)))
	assert.Equal(t, http.StatusConflict, rec.Code)
	require.Len(t, rec.Result().Cookies(), 1)
	assert.Equal(t, -1, rec.Result().Cookies()[0].MaxAge, "a refused completion clears it")
}

// The state joins the provider's link without touching the rest of it.
func TestWithStateKeepsTheProvidersQueryAsWritten(t *testing.T) {
	assert.Equal(t, "https://auth.truelayer.com/?response_type=code&scope=info%20accounts+offline_access&z=1&a=2&state=s%2B1",
		withState("https://auth.truelayer.com/?response_type=code&scope=info%20accounts+offline_access&z=1&a=2", "s+1"))
	assert.Equal(t, "https://auth.truelayer.com/?state=s1", withState("https://auth.truelayer.com/", "s1"))
	assert.Equal(t, "https://auth.truelayer.com/?a=1&state=mine", withState("https://auth.truelayer.com/?state=theirs&a=1", "mine"),
		"one state, ours")
}
