package integration

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/truelayer"
	"github.com/relink-dev/relink/activities/truelayer/truelayerfake"
	"github.com/relink-dev/relink/workflows"
)

// TrueLayer on the real server: no webhooks, so repairs start by hand (the
// app's Data API call failed) or proactively; the tokens are the app's,
// read from and delivered to its token endpoint.

const (
	tlClientID    = "sandbox-relink-it"
	tlSecret      = "tl_secret_it"
	tlTokenSecret = "tl_app_secret_it"
	tlRedirectURI = "https://relink.example.com/r/return/truelayer"
)

type trueLayerStack struct {
	*stack
	fake   *truelayerfake.Server
	tokens *truelayer.MemoryTokens
	// worker is the stack's first worker.
	worker worker.Worker
	// appDown makes the app's token endpoint answer 503 to deliveries
	// (POST), counted in refused.
	appDown atomic.Bool
	refused atomic.Int64
}

func newTrueLayerStack(t *testing.T) *trueLayerStack {
	return newTrueLayerStackWith(t, nil, func(string) string { return tlRedirectURI })
}

// newTrueLayerStackWith is a stack with TrueLayer (the fake, the app's
// token endpoint) and reconnect links, more settings, and redirect(the
// gateway's URL) as the redirect URI, set on the adapter before the
// worker starts (the gateway's address is known only once it serves).
func newTrueLayerStackWith(t *testing.T, settings map[string]string, redirect func(gatewayURL string) string) *trueLayerStack {
	fake := truelayerfake.New(tlClientID, tlSecret)
	t.Cleanup(fake.Close)
	tokens := &truelayer.MemoryTokens{}
	tl := &trueLayerStack{fake: fake, tokens: tokens}
	// The app's token endpoint, both ways, behind its bearer secret.
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+tlTokenSecret {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			if tl.appDown.Load() {
				tl.refused.Add(1)
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			var body struct {
				truelayer.NewTokens
				ConsentReconfirmedAt time.Time `json:"consent_reconfirmed_at"`
			}
			_ = json.NewDecoder(r.Body).Decode(&body)
			if body.AccessToken == "" {
				_ = tokens.Reconfirmed(r.Context(), body.ConnectionID, body.ConsentReconfirmedAt)
			} else {
				_ = tokens.Store(r.Context(), body.NewTokens)
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		c, err := tokens.Credentials(r.Context(), r.URL.Query().Get("connection_id"))
		if err != nil {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(c)
	}))
	t.Cleanup(app.Close)
	s := newBareStack(t, merged(map[string]string{
		"RELINK_CLIENT_TOKEN_KEYS":    newKey(t, "links1"),
		"RELINK_PAYLOAD_KEYS":         newKey(t, "payload1"), // required with TrueLayer
		"RELINK_RECONNECT_RETURN_URL": "https://app.example.com/connections?from=relink",
		"TRUELAYER_CLIENT_ID":         tlClientID, "TRUELAYER_CLIENT_SECRET": tlSecret,
		"TRUELAYER_AUTH_URL": fake.URL, "TRUELAYER_API_URL": fake.URL,
		"TRUELAYER_TOKEN_URL": app.URL, "TRUELAYER_TOKEN_SECRET": tlTokenSecret,
		// The stand-in's sign-in page is where the redirect may go.
		"RELINK_RECONNECT_FRAME_ORIGINS": fake.URL,
	}, settings))
	uri := redirect(s.gateway.URL)
	for _, api := range s.providers.APIs {
		if p, ok := api.(*truelayer.Provider); ok {
			p.RedirectURI = uri
		}
	}
	tl.stack = s
	tl.worker = s.startWorker(s.providers.APIs...)
	return tl
}

// anotherWorker starts a worker whose TrueLayer adapter is a copy of the
// first's: nothing in memory shared with it.
func (s *trueLayerStack) anotherWorker() worker.Worker {
	s.t.Helper()
	apis := append([]aggregator.Provider(nil), s.providers.APIs...)
	for i, api := range apis {
		if p, ok := api.(*truelayer.Provider); ok {
			fresh := *p
			apis[i] = &fresh
		}
	}
	return s.startWorker(apis...)
}

func (s *trueLayerStack) put(c truelayerfake.Connection) {
	c = s.fake.Put(c)
	s.tokens.Put(c.ID, truelayer.Credentials{AccessToken: c.AccessToken, RefreshToken: c.RefreshToken,
		User: &truelayer.User{Name: "John Doe", Email: "john@example.com"}})
}

func (s *trueLayerStack) start(conn string) {
	require.Equal(s.t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs",
		map[string]any{"provider": truelayer.Name, "connectionId": conn}, nil))
}

// john/eternal whose consent ran out: extend answers no_action_needed;
// the repair ends without the user and the new tokens are the app's.
func TestTrueLayerContinue(t *testing.T) {
	s := newTrueLayerStack(t)
	s.put(truelayerfake.Connection{ID: "tl_eternal", Username: "john", Password: "eternal", ConsentExpired: true})
	s.start("tl_eternal")
	st := s.waitForStatusOf(truelayer.Name, "tl_eternal", workflows.StatusRepaired)
	assert.Equal(t, workflows.ReasonCode("repaired_without_user"), st.ReasonCode)
	now, _ := s.fake.Get("tl_eternal")
	got := s.tokens.Deliveries()
	require.Len(t, got, 1)
	assert.Equal(t, now.RefreshToken, got[0].RefreshToken)

	// TrueLayer sends no webhooks: its route says so (404 not_found), and
	// starts nothing.
	resp, err := http.Post(s.gateway.URL+"/webhooks/"+truelayer.Name, "application/json",
		strings.NewReader(`{"type":"repairable","connectionId":"tl_other"}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	var refused struct {
		Error struct{ Code, Message string }
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&refused))
	assert.Equal(t, "not_found", refused.Error.Code)
	assert.Contains(t, refused.Error.Message, "sends no webhooks")
}

// john/doe: the reconnect answers a redirect; the gateway's /r/go keeps a
// return ticket in a cookie; the return with TrueLayer's code completes
// the repair (once: a replay is refused), close exchanges the code, and
// the repair ends REPAIRED with the app holding the new tokens.
func TestTrueLayerRedirectAndReturn(t *testing.T) {
	s := newTrueLayerStack(t)
	s.put(truelayerfake.Connection{ID: "tl_doe", Username: "john", Password: "doe", ConsentExpired: true})
	s.start("tl_doe")
	s.waitForStatusOf(truelayer.Name, "tl_doe", workflows.StatusAwaitingUser)

	var answer struct {
		Session struct{ ConnectorToken, WidgetURL, Widget string }
		Widget  struct{ RedirectURL string }
	}
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/truelayer/tl_doe/reconnect", nil, &answer))
	assert.Equal(t, "redirect", answer.Session.Widget)
	require.True(t, strings.HasPrefix(answer.Widget.RedirectURL, "/r/go/"), answer.Widget.RedirectURL)

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noFollow.Get(s.gateway.URL + answer.Widget.RedirectURL)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	// On to TrueLayer's link, with the OAuth 2 state of the ticket.
	signIn := res.Header.Get("Location")
	to, err := url.Parse(signIn)
	require.NoError(t, err)
	state := to.Query().Get("state")
	require.NotEmpty(t, state)
	want, err := url.Parse(answer.Session.WidgetURL)
	require.NoError(t, err)
	q := want.Query()
	q.Set("state", state)
	want.RawQuery = q.Encode()
	assert.Equal(t, want.String(), signIn)
	cookies := res.Cookies()
	require.Len(t, cookies, 1)

	back, err := s.fake.Approve(signIn) // the user signs in at the bank
	require.NoError(t, err)
	u, err := url.Parse(back)
	require.NoError(t, err)
	assert.Equal(t, state, u.Query().Get("state"), "TrueLayer sends the state back")
	returnURL := s.gateway.URL + "/r/return/truelayer?" + u.RawQuery

	// Without the cookie (another browser, a forged link): refused.
	res, err = noFollow.Get(returnURL)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusBadRequest, res.StatusCode)

	// With the cookie, but the code without its state, or with another
	// sign-in's (a page sending the user here with its own code): refused,
	// and the cookie is kept for the user's own return.
	for _, forged := range []string{"code=" + u.Query().Get("code"), "code=" + u.Query().Get("code") + "&state=" + strings.Repeat("A", len(state))} {
		req, _ := http.NewRequest(http.MethodGet, s.gateway.URL+"/r/return/truelayer?"+forged, nil)
		req.AddCookie(cookies[0])
		res, err = noFollow.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		assert.Equal(t, http.StatusBadRequest, res.StatusCode, forged)
		assert.Empty(t, res.Cookies(), "the cookie is kept")
	}

	req, _ := http.NewRequest(http.MethodGet, returnURL, nil)
	req.AddCookie(cookies[0])
	res, err = noFollow.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	assert.Contains(t, res.Header.Get("Location"), "/r/", "on to the repair's hosted page")

	st := s.waitForStatusOf(truelayer.Name, "tl_doe", workflows.StatusRepaired)
	assert.Equal(t, 1, st.Attempt)
	require.Len(t, s.tokens.Deliveries(), 1)
	now, _ := s.fake.Get("tl_doe")
	assert.Equal(t, now.RefreshToken, s.tokens.Deliveries()[0].RefreshToken)

	// The same return replayed with the cookie it had (the browser dropped
	// it; a copy stolen from it): the same update id, which Temporal
	// answers with the first outcome, so nothing is exchanged again.
	req, _ = http.NewRequest(http.MethodGet, returnURL, nil)
	req.AddCookie(cookies[0])
	res, err = noFollow.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	exchanges := 0
	for _, r := range s.fake.Requests() {
		if r.Path == "/connect/token" {
			exchanges++
		}
	}
	assert.Equal(t, 1, exchanges)
	assert.Len(t, s.tokens.Deliveries(), 1)
}

// Each Data API error the app's call failed with, on a manual start.
func TestTrueLayerManualStartErrors(t *testing.T) {
	s := newTrueLayerStack(t)
	for _, code := range []string{"wrong_credentials", "user_input_required", "account_permanently_locked"} {
		s.put(truelayerfake.Connection{ID: "tl_" + code, Username: "error." + code, Password: "error"})
		s.start("tl_" + code)
	}
	// The user revoked the app's access at TrueLayer: the app's tokens are
	// dead (the access token refused by /me, the refresh token by extend:
	// invalid_grant), and no sign-in in update mode brings them back.
	s.put(truelayerfake.Connection{ID: "tl_revoked", Username: "john", Password: "doe"})
	s.tokens.Put("tl_revoked", truelayer.Credentials{AccessToken: "at_revoked", RefreshToken: "rt_revoked",
		User: &truelayer.User{Name: "John Doe", Email: "john@example.com"}})
	s.start("tl_revoked")
	s.waitForStatusOf(truelayer.Name, "tl_wrong_credentials", workflows.StatusAwaitingUser)
	s.waitForStatusOf(truelayer.Name, "tl_user_input_required", workflows.StatusAwaitingUser)
	st := s.waitForStatusOf(truelayer.Name, "tl_account_permanently_locked", workflows.StatusUnrepairable)
	assert.Equal(t, workflows.ReasonCode("not_repairable"), st.ReasonCode)
	st = s.waitForStatusOf(truelayer.Name, "tl_revoked", workflows.StatusUnrepairable)
	assert.Equal(t, workflows.ReasonCode("not_repairable"), st.ReasonCode)
	assert.Contains(t, st.Reason, "invalid_grant")
}

// A temporarily locked account and a TrueLayer outage: the repair waits
// (initialize retried), and goes on once it clears.
func TestTrueLayerOutageAndTemporaryLock(t *testing.T) {
	s := newTrueLayerStack(t)
	s.put(truelayerfake.Connection{ID: "tl_locked", Username: "error.account_temporarily_locked", Password: "error"})
	s.put(truelayerfake.Connection{ID: "tl_down", Username: "john", Password: "eternal", ConsentExpired: true})
	s.fake.HTTPStatus = http.StatusServiceUnavailable
	s.start("tl_locked")
	s.start("tl_down")
	time.Sleep(3 * time.Second)
	assert.Equal(t, workflows.StatusPending, s.stateOf(truelayer.Name, "tl_down").Status)
	s.fake.HTTPStatus = 0
	s.waitForStatusOf(truelayer.Name, "tl_down", workflows.StatusRepaired)
	assert.Equal(t, workflows.StatusPending, s.stateOf(truelayer.Name, "tl_locked").Status, "still waiting for the bank to unlock it")
	s.fake.Update("tl_locked", func(c *truelayerfake.Connection) { c.Username, c.Password, c.ConsentExpired = "john", "eternal", true })
	s.waitForStatusOf(truelayer.Name, "tl_locked", workflows.StatusRepaired)
}

// The app's token endpoint refuses deliveries, and the worker that
// extended dies: TrueLayer retired the refresh token the app holds, and
// the new tokens are in the activity's checkpoint (its heartbeat details),
// not the dead worker's memory. Another worker's attempts deliver them
// first, and never extend with the retired refresh token; once the app is
// back, it takes them and the repair ends REPAIRED.
func TestTrueLayerTokensOutliveTheWorkerWhileTheAppIsDown(t *testing.T) {
	s := newTrueLayerStack(t)
	s.put(truelayerfake.Connection{ID: "tl_app_down", Username: "john", Password: "eternal", ConsentExpired: true})
	s.appDown.Store(true)
	s.start("tl_app_down")
	s.waitFor("a delivery refused", func() bool { return s.refused.Load() >= 1 })
	rotated, _ := s.fake.Get("tl_app_down")
	s.worker.Stop() // a crash: the attempt is cut off

	s.anotherWorker()
	s.waitFor("the second worker's attempt refused too", func() bool { return s.refused.Load() >= 4 })
	assert.Equal(t, workflows.StatusPending, s.stateOf(truelayer.Name, "tl_app_down").Status)
	extends := func() int {
		n := 0
		for _, r := range s.fake.Requests() {
			if r.Path == "/connections/extend" {
				n++
			}
		}
		return n
	}
	assert.Equal(t, 1, extends(), "no extend with the refresh token TrueLayer retired")
	s.appDown.Store(false)

	st := s.waitForStatusOf(truelayer.Name, "tl_app_down", workflows.StatusRepaired)
	assert.Equal(t, workflows.ReasonCode("repaired_without_user"), st.ReasonCode)
	got := s.tokens.Deliveries()
	require.Len(t, got, 1)
	assert.Equal(t, rotated.RefreshToken, got[0].RefreshToken, "the tokens of the dead worker's extend")
	now, _ := s.fake.Get("tl_app_down")
	assert.Equal(t, now.RefreshToken, got[0].RefreshToken, "the app holds TrueLayer's current tokens")
	assert.Equal(t, 1, extends())
}

// A manual start after the consent ran out: the app's access token expired
// long ago, so /me answers 401; extend decides, and the user is asked.
func TestTrueLayerManualStartWithAnExpiredAccessToken(t *testing.T) {
	s := newTrueLayerStack(t)
	s.put(truelayerfake.Connection{ID: "tl_stale", Username: "john", Password: "doe", ConsentExpired: true,
		AccessTokenExpiresAt: time.Now().Add(-89 * 24 * time.Hour)})
	s.start("tl_stale")
	st := s.waitForStatusOf(truelayer.Name, "tl_stale", workflows.StatusAwaitingUser)
	assert.Equal(t, "ACTION_REQUIRED", string(st.ConnectorStatus))
}

// The UK reconfirmation, after which the bank also wants a sign-in: the
// click's close is rejected (an attempt), the app keeps the
// reconfirmation, and the next session, from another worker, is
// TrueLayer's sign-in (not the reconfirmation again), whose return
// repairs the connection.
func TestTrueLayerReconfirmationThenSignInOnAnotherWorker(t *testing.T) {
	s := newTrueLayerStack(t)
	s.put(truelayerfake.Connection{ID: "tl_uk", Username: "john", Password: "doe", ConsentExpired: true, ReconfirmThenSignIn: true})
	s.start("tl_uk")
	s.waitForStatusOf(truelayer.Name, "tl_uk", workflows.StatusAwaitingUser)

	var answer struct {
		Session struct{ ConnectorToken, WidgetURL, Widget string }
		Widget  struct{ RedirectURL string }
	}
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/truelayer/tl_uk/reconnect", nil, &answer))
	require.Equal(t, "reconfirm", answer.Session.Widget)
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/truelayer/tl_uk/complete", map[string]any{
		"connectorToken": answer.Session.ConnectorToken, "metadata": map[string]any{"reconfirmed": true}}, nil))
	s.waitFor("the reconfirmation's close rejected", func() bool {
		st := s.stateOf(truelayer.Name, "tl_uk")
		return st.Status == workflows.StatusAwaitingUser && st.Attempt == 2
	})
	assert.Contains(t, s.stateOf(truelayer.Name, "tl_uk").LastError, "sign in")
	s.worker.Stop()
	s.anotherWorker()

	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/truelayer/tl_uk/reconnect", nil, &answer))
	require.Equal(t, "redirect", answer.Session.Widget, "the sign-in, not the reconfirmation again")
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noFollow.Get(s.gateway.URL + answer.Widget.RedirectURL)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	cookies := res.Cookies()
	require.Len(t, cookies, 1)
	back, err := s.fake.Approve(res.Header.Get("Location")) // TrueLayer's link, as the gateway sends the browser
	require.NoError(t, err)
	u, err := url.Parse(back)
	require.NoError(t, err)
	req, _ := http.NewRequest(http.MethodGet, s.gateway.URL+"/r/return/truelayer?"+u.RawQuery, nil)
	req.AddCookie(cookies[0])
	res, err = noFollow.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusSeeOther, res.StatusCode)

	st := s.waitForStatusOf(truelayer.Name, "tl_uk", workflows.StatusRepaired)
	assert.Equal(t, 2, st.Attempt)
	var reconfirmed []any
	for _, r := range s.fake.Requests() {
		if r.Path == "/connections/extend" {
			reconfirmed = append(reconfirmed, r.Body["user_has_reconfirmed_consent"])
		}
	}
	assert.Equal(t, []any{false, true, true}, reconfirmed, "asked; the click; the sign-in's extend, with the kept reconfirmation")
	now, _ := s.fake.Get("tl_uk")
	require.Len(t, s.tokens.Deliveries(), 1)
	assert.Equal(t, now.RefreshToken, s.tokens.Deliveries()[0].RefreshToken)
}
