//go:build browser

package integration

// TrueLayer in a real browser: the redirect to TrueLayer's sign-in and
// back (GET /r/go/… to the auth dialog, which returns to the gateway's
// GET /r/return/truelayer with ?code=…, and on to the repair's hosted
// page), the OAuth 2 state that binds the return to the browser's
// ticket, a return replayed or refused, and the UK's reconfirmation click,
// on the hosted page and with the embeddable button on an app's page of
// another site. The auth dialog is the TrueLayer fake's stand-in
// (truelayerfake: GET /dialog, whose Sign in goes back to redirect_uri
// with a code and Cancel with error=access_denied, each with the link's
// state); the redirect URI is
// the test gateway's own return route.

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/truelayer"
	"github.com/relink-dev/relink/activities/truelayer/truelayerfake"
	"github.com/relink-dev/relink/workflows"
)

// newTrueLayerBrowserStack is a TrueLayer stack whose redirect URI is the
// gateway's own return route, as RELINK_PUBLIC_URL makes it by default.
func newTrueLayerBrowserStack(t *testing.T, settings map[string]string) *trueLayerStack {
	return newTrueLayerStackWith(t, settings, func(gateway string) string { return gateway + truelayer.ReturnPath })
}

// broken has a connection of the mock user (john/doe: a sign-in;
// ReconfirmOnly: a reconfirmation) whose consent ran out, and the app's
// manual start of its repair, and waits for the repair to wait for the
// user.
func (s *trueLayerStack) broken(c truelayerfake.Connection) {
	s.t.Helper()
	c.ConsentExpired = true
	s.put(c)
	s.start(c.ID)
	s.waitForStatusOf(truelayer.Name, c.ID, workflows.StatusAwaitingUser)
}

// calls are the fake's requests to a path.
func (s *trueLayerStack) calls(path string) []truelayerfake.Request {
	var out []truelayerfake.Request
	for _, r := range s.fake.Requests() {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// waitAt waits for the tab's top document to be at a URL starting with
// prefix (a navigation away from the page, or a redirect chain's end).
func (b *tab) waitAt(what, prefix string) {
	b.t.Helper()
	b.waitUntil(what, `location.href.startsWith(`+jsString(prefix)+`)`, waitTimeout)
}

// url is the tab's top document's URL.
func (b *tab) url() string {
	b.t.Helper()
	return eval[string](b, `location.href`)
}

// returnCookies are the browser's cookies the gateway's return route
// would be sent.
func (b *tab) returnCookies(gateway string) []*network.Cookie {
	b.t.Helper()
	res, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{gateway + truelayer.ReturnPath}})
	require.NoError(b.t, err)
	return res.Cookies
}

// freshTab is a tab of the same browser in a new browser context: no
// cookie, no storage of the test's other tab (another browser, as far as
// the gateway can tell).
func (b *tab) freshTab() *tab {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("open a tab in a new browser context: %v", err)
	}
	return &tab{t: b.t, ctx: ctx}
}

// waitConnected waits for the repair's hosted page to say the bank is
// connected: the return usually finds the repair REPAIRED already (the
// code is exchanged and /me answers within the completion), and the page
// tells the outcome ("ended"); a slower close leaves it COMPLETING, and
// the page follows it to REPAIRED ("repaired"), with the same words.
func (b *tab) waitConnected() {
	b.t.Helper()
	b.waitUntil("the hosted page to say the bank is connected",
		`['repaired', 'ended'].includes(document.getElementById('page')?.dataset.state) && document.getElementById('title').innerText === 'Your bank is connected'`, waitTimeout)
	assert.Equal(b.t, "REPAIRED", b.backLink().Get("status"))
	assert.Equal(b.t, truelayer.Name, b.backLink().Get("provider"))
}

func TestBrowserTrueLayerRedirectAndReturnOnTheHostedPage(t *testing.T) {
	s := newTrueLayerBrowserStack(t, nil)
	b := newBrowser(t)
	s.broken(truelayerfake.Connection{ID: "tl_b1", Username: truelayerfake.UserJohn, Password: truelayerfake.PasswordDoe})
	link := s.eventLink("tl_b1", activities.EventActionRequired)

	require.Equal(t, int64(http.StatusOK), b.open(link))
	b.waitState("ready")
	assert.Equal(t, "Reconnect your bank", b.text("title"))
	b.click("reconnect")

	// The page leaves for TrueLayer's sign-in through the gateway's
	// GET /r/go, which keeps the return ticket in a cookie of the return
	// route only, out of the page's reach.
	b.waitAt("TrueLayer's sign-in", s.fake.URL+"/dialog?session=")
	cookies := b.returnCookies(s.gateway.URL)
	require.Len(t, cookies, 1)
	assert.Equal(t, "relink_return_truelayer", cookies[0].Name)
	assert.Equal(t, "/r/return/", cookies[0].Path)
	assert.True(t, cookies[0].HTTPOnly)
	assert.Equal(t, network.CookieSameSiteLax, cookies[0].SameSite)
	// The sign-in was opened with the ticket's state (not the ticket).
	dialog, err := url.Parse(b.url())
	require.NoError(t, err)
	state := dialog.Query().Get("state")
	require.NotEmpty(t, state)
	assert.NotContains(t, b.url(), cookies[0].Value)
	assert.Equal(t, workflows.StatusAwaitingUser, s.stateOf(truelayer.Name, "tl_b1").Status, "nothing completes before the return")
	assert.Empty(t, s.calls("/connect/token"))

	// The user signs in; TrueLayer sends the browser back with a code; the
	// gateway completes the repair and sends the browser on to the
	// repair's hosted page, which follows it to REPAIRED.
	b.click("approve")
	b.waitConnected()
	returns := s.fake.Returns()
	require.Len(t, returns, 1)
	back, err := url.Parse(returns[0])
	require.NoError(t, err)
	assert.Equal(t, s.gateway.URL+truelayer.ReturnPath, back.Scheme+"://"+back.Host+back.Path)
	assert.NotEmpty(t, back.Query().Get("code"))
	assert.Equal(t, state, back.Query().Get("state"), "TrueLayer sent the state back")
	landed, err := url.Parse(b.url())
	require.NoError(t, err)
	assert.Equal(t, s.gateway.URL, landed.Scheme+"://"+landed.Host)
	assert.True(t, strings.HasPrefix(landed.Path, "/r/") && !strings.HasPrefix(landed.Path, "/r/return/"), "on the hosted page: %s", landed)
	assert.Empty(t, b.returnCookies(s.gateway.URL), "the return took the cookie")

	st := s.waitForStatusOf(truelayer.Name, "tl_b1", workflows.StatusRepaired)
	assert.Equal(t, 1, st.Attempt)
	assert.Equal(t, 1, st.SessionsIssued)
	assert.Zero(t, st.Exits)
	// The code was exchanged once, with the redirect URI the sign-in was
	// opened with, and the new tokens went to the app's endpoint once.
	exchanges := s.calls("/connect/token")
	require.Len(t, exchanges, 1)
	assert.Equal(t, back.Query().Get("code"), exchanges[0].Form.Get("code"))
	assert.Equal(t, s.gateway.URL+truelayer.ReturnPath, exchanges[0].Form.Get("redirect_uri"))
	now, _ := s.fake.Get("tl_b1")
	delivered := s.tokens.Deliveries()
	require.Len(t, delivered, 1)
	assert.Equal(t, "tl_b1", delivered[0].ConnectionID)
	assert.Equal(t, now.RefreshToken, delivered[0].RefreshToken)
	assert.Equal(t, now.AccessToken, delivered[0].AccessToken)
	assert.Empty(t, b.pageErrors())
}

func TestBrowserTrueLayerRefusesAReplayedReturnAndReportsACanceledSignIn(t *testing.T) {
	s := newTrueLayerBrowserStack(t, nil)
	b := newBrowser(t)
	s.broken(truelayerfake.Connection{ID: "tl_b2", Username: truelayerfake.UserJohn, Password: truelayerfake.PasswordDoe})
	link := s.mintLink(truelayer.Name, "tl_b2")

	// The user cancels at TrueLayer's sign-in: TrueLayer returns with
	// error=access_denied; the gateway reports the exit, and the hosted
	// page offers the reconnect again. The repair still waits.
	b.open(link)
	b.waitState("ready")
	b.click("reconnect")
	b.waitAt("TrueLayer's sign-in", s.fake.URL+"/dialog?session=")
	b.click("deny")
	b.waitState("ready")
	assert.True(t, strings.HasPrefix(b.url(), s.gateway.URL+"/r/"), b.url())
	assert.True(t, b.shown("reconnect"))
	denied := s.fake.Returns()
	require.Len(t, denied, 1)
	require.Contains(t, denied[0], "error=access_denied")
	s.waitFor("the exit to be recorded", func() bool { return s.stateOf(truelayer.Name, "tl_b2").Exits == 1 })
	st := s.stateOf(truelayer.Name, "tl_b2")
	assert.Equal(t, workflows.StatusAwaitingUser, st.Status)
	require.NotNil(t, st.LastExit)
	assert.Equal(t, "user_exit", st.LastExit.Reason)
	assert.Equal(t, "access_denied", st.LastExit.ErrorCode)
	assert.Empty(t, s.calls("/connect/token"))
	assert.Len(t, b.returnCookies(s.gateway.URL), 1, "an exit keeps the cookie: the user may still sign in from TrueLayer's page")
	assert.Contains(t, denied[0], "state=")

	// The denied return opened again in another browser (no cookie), with
	// the right state: the refusal page, and no second exit.
	other := b.freshTab()
	deniedURL := s.gateway.URL + truelayer.ReturnPath + "?" + mustQuery(t, denied[0])
	assert.Equal(t, int64(http.StatusBadRequest), other.open(deniedURL))
	other.waitState("invalid")
	assert.Equal(t, "This sign-in can't be used", other.text("title"))
	assert.False(t, other.shown("reconnect"))

	// Then the user tries again. While they are at TrueLayer's sign-in,
	// another site's page sends their browser to the return route with a
	// code of its own sign-in (login CSRF: SameSite=Lax sends the cookie
	// on that top-level GET). Its state is not this browser's ticket's:
	// refused, nothing exchanged, and the user's cookie is kept.
	b.click("reconnect")
	b.waitAt("TrueLayer's sign-in", s.fake.URL+"/dialog?session=")
	dialog := b.url()
	require.Len(t, b.returnCookies(s.gateway.URL), 1)
	foreign := s.gateway.URL + truelayer.ReturnPath + "?" + url.Values{
		"code": {"code_of_another_sign_in"}, "state": {"u3Lh0cJb7Y3pQG9m0Hj0V7Zc0yq2lq3Q3Zb8Zr8xk1A"}}.Encode()
	assert.Equal(t, int64(http.StatusBadRequest), b.open(foreign))
	b.waitState("invalid")
	assert.Equal(t, "This sign-in can't be used", b.text("title"))
	withoutState := s.gateway.URL + truelayer.ReturnPath + "?code=code_of_another_sign_in"
	assert.Equal(t, int64(http.StatusBadRequest), b.open(withoutState))
	b.waitState("invalid")
	assert.Len(t, b.returnCookies(s.gateway.URL), 1, "the user's own return can still come")
	assert.Empty(t, s.calls("/connect/token"))

	// The user goes back to TrueLayer's page and signs in.
	b.open(dialog)
	b.waitAt("TrueLayer's sign-in", s.fake.URL+"/dialog?session=")
	b.click("approve")
	b.waitConnected()
	s.waitForStatusOf(truelayer.Name, "tl_b2", workflows.StatusRepaired)
	returns := s.fake.Returns()
	require.Len(t, returns, 2)
	taken := s.gateway.URL + truelayer.ReturnPath + "?" + mustQuery(t, returns[1])

	// The taken return replayed, with its right state: in another browser
	// (no cookie), and in the same one (the return cleared its cookie).
	// Each is refused with the refusal page, and nothing is exchanged or
	// delivered again.
	assert.Equal(t, int64(http.StatusBadRequest), other.open(taken))
	other.waitState("invalid")
	assert.Equal(t, "This sign-in can't be used", other.text("title"))
	assert.Equal(t, int64(http.StatusBadRequest), b.open(taken))
	b.waitState("invalid")

	st = s.stateOf(truelayer.Name, "tl_b2")
	assert.Equal(t, workflows.StatusRepaired, st.Status)
	assert.Equal(t, 1, st.Exits)
	assert.Len(t, s.calls("/connect/token"), 1, "the code is exchanged once")
	assert.Len(t, s.tokens.Deliveries(), 1)
	assert.Empty(t, b.pageErrors())
}

// mustQuery is a URL's raw query.
func mustQuery(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u.RawQuery
}

func TestBrowserTrueLayerReconfirmationOnTheHostedPage(t *testing.T) {
	s := newTrueLayerBrowserStack(t, nil)
	b := newBrowser(t)
	s.broken(truelayerfake.Connection{ID: "tl_b3", Username: truelayerfake.UserJohn, Password: truelayerfake.PasswordDoe, ReconfirmOnly: true})
	link := s.eventLink("tl_b3", activities.EventActionRequired)

	b.open(link)
	b.waitState("ready")
	b.click("reconnect")
	// No sign-in: the page asks the user to confirm, on Relink's page.
	b.waitState("reconfirm")
	assert.Equal(t, "Keep sharing your account data?", b.text("title"))
	assert.Contains(t, b.text("message"), "another 90 days")
	assert.Equal(t, "Confirm and keep sharing", b.text("reconnect"))
	assert.True(t, strings.HasPrefix(b.url(), s.gateway.URL+"/r/"), "the page is not left: %s", b.url())
	assert.Equal(t, workflows.StatusAwaitingUser, s.stateOf(truelayer.Name, "tl_b3").Status)

	b.click("reconnect")
	b.waitState("repaired")
	assert.Equal(t, "Your bank is connected", b.text("title"))
	assert.Equal(t, "REPAIRED", b.backLink().Get("status"))

	st := s.stateOf(truelayer.Name, "tl_b3")
	assert.Equal(t, workflows.StatusRepaired, st.Status)
	assert.Zero(t, st.Exits)
	// Extend asked (the reconfirmation needed), then extended again with
	// the user's reconfirmation: new tokens, to the app; no sign-in.
	extends := s.calls("/connections/extend")
	require.Len(t, extends, 2)
	assert.Equal(t, false, extends[0].Body["user_has_reconfirmed_consent"])
	assert.Equal(t, true, extends[1].Body["user_has_reconfirmed_consent"])
	assert.Empty(t, s.calls("/connect/token"))
	assert.Empty(t, s.fake.Returns())
	now, _ := s.fake.Get("tl_b3")
	delivered := s.tokens.Deliveries()
	require.Len(t, delivered, 1)
	assert.Equal(t, now.RefreshToken, delivered[0].RefreshToken)
	assert.Empty(t, b.pageErrors())
}

func TestBrowserButtonTrueLayerRedirectAndReconfirmOnAnotherSitesPage(t *testing.T) {
	app := newEmbedApp(t)
	s := newTrueLayerBrowserStack(t, map[string]string{"RELINK_CORS_ORIGINS": app.URL})
	b := newBrowser(t)
	s.broken(truelayerfake.Connection{ID: "tl_b4c", Username: truelayerfake.UserJohn, Password: truelayerfake.PasswordDoe, ReconfirmOnly: true})
	s.broken(truelayerfake.Connection{ID: "tl_b4r", Username: truelayerfake.UserJohn, Password: truelayerfake.PasswordDoe})
	// Nothing framed: the app's CSP allows no frame at all.
	app.show(s.gateway.URL, appCSP(s.gateway.URL, nil, []string{"'none'"}), nil,
		embedButton{ID: "reconnect-c", Provider: truelayer.Name, Connection: "tl_b4c", Token: s.clientToken(truelayer.Name, "tl_b4c")},
		embedButton{ID: "reconnect-r", Provider: truelayer.Name, Connection: "tl_b4r", Token: s.clientToken(truelayer.Name, "tl_b4r")})
	b.openApp(app)

	// Reconfirmation: the button's modal dialog over the app's page; the
	// user cancels it first (an exit), then confirms.
	b.click("reconnect-c")
	b.waitUntil("the reconfirmation dialog", `document.querySelector('[data-relink-overlay] [data-relink-confirm]')`, waitTimeout)
	assert.Equal(t, "Keep sharing your account data?", eval[string](b, `document.querySelector('[data-relink-overlay] [role=dialog]').getAttribute('aria-label')`))
	assert.True(t, eval[bool](b, `document.activeElement.hasAttribute('data-relink-confirm')`), "the focus is on Confirm")
	b.clickCSS("[data-relink-overlay] [data-relink-close]")
	exit := b.waitEvent("relink:exit", 1)
	assert.Equal(t, map[string]any{"provider": truelayer.Name, "connectionId": "tl_b4c", "reason": "user_closed"}, exit.Detail)
	assert.False(t, eval[bool](b, `!!document.querySelector('[data-relink-overlay]')`))
	s.waitFor("the exit to be recorded", func() bool { return s.stateOf(truelayer.Name, "tl_b4c").Exits == 1 })

	b.click("reconnect-c")
	b.waitUntil("the reconfirmation dialog again", `document.querySelector('[data-relink-overlay] [data-relink-confirm]')`, waitTimeout)
	b.clickCSS("[data-relink-overlay] [data-relink-confirm]")
	repaired := b.waitEvent("relink:repaired", 1)
	assert.Equal(t, map[string]any{"provider": truelayer.Name, "connectionId": "tl_b4c", "status": "REPAIRED"}, repaired.Detail)
	assert.False(t, repaired.Disabled)
	assert.False(t, eval[bool](b, `!!document.querySelector('[data-relink-overlay]')`), "the dialog is gone")
	assert.Equal(t, "reconnect-c", b.focused(), "the focus is back on the button")
	var widgets []any
	for _, e := range b.events() {
		if e.Type == "relink:status" && e.Detail["state"] == "widget" {
			widgets = append(widgets, e.Detail["widget"])
		}
	}
	assert.Equal(t, []any{"reconfirm", "reconfirm"}, widgets)
	st := s.stateOf(truelayer.Name, "tl_b4c")
	assert.Equal(t, workflows.StatusRepaired, st.Status)
	assert.Equal(t, 1, st.Exits)
	var reconfirmed []any
	for _, r := range s.calls("/connections/extend") {
		reconfirmed = append(reconfirmed, r.Body["user_has_reconfirmed_consent"])
	}
	assert.Contains(t, reconfirmed, true, "extended with the user's reconfirmation")
	b.assertCleanPage()

	// The redirect: the browser leaves the app's page for TrueLayer's
	// sign-in (through the gateway's GET /r/go), and comes back to the
	// repair's hosted page on the gateway.
	b.click("reconnect-r")
	b.waitAt("TrueLayer's sign-in", s.fake.URL+"/dialog?session=")
	require.Len(t, b.returnCookies(s.gateway.URL), 1, "the gateway's return cookie, set on the top-level navigation from the app's page")
	b.click("approve")
	b.waitConnected()
	assert.True(t, strings.HasPrefix(b.url(), s.gateway.URL+"/r/"), b.url())
	st = s.waitForStatusOf(truelayer.Name, "tl_b4r", workflows.StatusRepaired)
	assert.Equal(t, 1, st.SessionsIssued)
	assert.Len(t, s.calls("/connect/token"), 1)
	deliveredTo := map[string]int{}
	for _, d := range s.tokens.Deliveries() {
		deliveredTo[d.ConnectionID]++
	}
	assert.Equal(t, map[string]int{"tl_b4c": 1, "tl_b4r": 1}, deliveredTo)
	assert.Empty(t, b.pageErrors())
}
