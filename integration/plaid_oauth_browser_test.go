//go:build browser

package integration

// Plaid Link's OAuth return in a real browser: Link leaves the page for
// an OAuth institution's site, in the same tab, and the bank sends the
// user back to the link token's redirect_uri with ?oauth_state_id=…, in
// that tab or another of the same browser (a bank's app on a phone opens
// a new one); there Link must open again with the same link token and
// receivedRedirectUri, and finish (plaid.com/docs/link/oauth). The
// stand-in's server plays the bank: /oauth/start reads the redirect_uri
// the link token was created with (from the Plaid fake) and shows an
// Authorize link back to it; a return in another tab is that link opened
// in a new tab of the browser.

import (
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/plaid"
	"github.com/relink-dev/relink/activities/plaid/plaidfake"
	"github.com/relink-dev/relink/gateway"
	"github.com/relink-dev/relink/workflows"
)

// oauthBank is the stand-in's bank: the hand-offs it saw.
type oauthBank struct {
	fake *plaidfake.Server
	mu   sync.Mutex
	// handoffs are the link tokens Link left for the bank with, and the
	// oauth_state_id each return carries.
	handoffs []struct{ Token, State, Return string }
}

var bankPage = template.Must(template.New("bank").Parse(`<!doctype html>
<html lang="en"><meta charset="utf-8"><title>First Platypus OAuth Bank</title>
<h1>First Platypus OAuth Bank</h1><p>Share your accounts with Acme?</p>
<a id="bank-authorize" href="{{.}}">Authorize</a>
</html>
`))

func (k *oauthBank) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/oauth/start" {
		http.NotFound(w, r)
		return
	}
	token := r.URL.Query().Get("token")
	lt, ok := k.fake.LinkToken(token)
	if !ok || lt.RedirectURI == "" {
		// What Plaid does: an OAuth institution needs a redirect_uri.
		http.Error(w, "link token without redirect_uri: OAuth institutions need one", http.StatusBadRequest)
		return
	}
	k.mu.Lock()
	state := fmt.Sprintf("oauth-state-%d", len(k.handoffs)+1)
	back := lt.RedirectURI + "?oauth_state_id=" + url.QueryEscape(state)
	k.handoffs = append(k.handoffs, struct{ Token, State, Return string }{token, state, back})
	k.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = bankPage.Execute(w, back)
}

func (k *oauthBank) seen() []struct{ Token, State, Return string } {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append(k.handoffs[:0:0], k.handoffs...)
}

// returnFor is the URL the bank sends the user back to from the hand-off
// of a link token.
func (k *oauthBank) returnFor(t *testing.T, token string) string {
	t.Helper()
	for _, h := range k.seen() {
		if h.Token == token {
			return h.Return
		}
	}
	t.Fatalf("no hand-off to the bank with the link token %s", token)
	return ""
}

// keptOAuth are the Plaid Link sessions the widget engine keeps for an
// OAuth return in the page's origin (its localStorage, and this tab's
// sessionStorage, where it goes if localStorage refuses), by key.
func (b *tab) keptOAuth() map[string]string {
	b.t.Helper()
	return eval[map[string]string](b, `(() => {
		const kept = {};
		for (const store of [localStorage, sessionStorage]) {
			for (let i = 0; i < store.length; i++) {
				const k = store.key(i);
				if (k === 'relink.plaid-oauth' || k.startsWith('relink.plaid-oauth/')) kept[k] = store.getItem(k);
			}
		}
		return kept;
	})()`)
}

// plaidLinkOpened waits for Plaid Link's stand-in over the page and
// returns the link tokens it was created with so far.
func (b *tab) plaidLinkOpened(what string) []string {
	b.t.Helper()
	b.waitUntil(what, `document.getElementById('plaid-standin')`, waitTimeout)
	return eval[[]string](b, `window.__plaidStandIn.created`)
}

// newHostedPlaidOAuthStack is newPlaidOAuthStack with the hosted page's
// return route (GET /r/oauth) as Plaid's redirect_uri.
func newHostedPlaidOAuthStack(t *testing.T) (*stack, *plaidfake.Server, *oauthBank) {
	return newPlaidOAuthStack(t, func(gw string) string { return gw + gateway.OAuthReturnPath }, nil)
}

// openHostedPage opens the hosted reconnect page of a Plaid Item, ready.
func (b *tab) openHostedPage(s *stack, item string) {
	b.t.Helper()
	b.open(s.mintLink(plaid.Name, item))
	b.waitState("ready")
}

// leaveForBank clicks the button that opens Plaid Link and goes on in
// Link to the OAuth bank's page; it returns the link token Link opened
// with.
func (b *tab) leaveForBank(button, what string) string {
	b.t.Helper()
	b.click(button)
	token := b.plaidLinkOpened(what)[0]
	b.click("plaid-standin-continue")
	b.waitUntil("the bank's page", `document.getElementById('bank-authorize')`, waitTimeout)
	return token
}

// newPlaidOAuthStack is a stack with Plaid (Item item_p1 broken, its
// repair waiting for the user; item_p2's access token known, for
// brokenPlaidItem2), reconnect links, Plaid Link's stand-in in
// the mode "oauth", and PLAID_REDIRECT_URI set to redirect(gateway URL),
// registered with the fake.
func newPlaidOAuthStack(t *testing.T, redirect func(gatewayURL string) string, settings map[string]string) (*stack, *plaidfake.Server, *oauthBank) {
	t.Helper()
	fake := plaidfake.New(plaidClientID, plaidSecret)
	t.Cleanup(fake.Close)
	fake.Put(plaidfake.Item{ID: "item_p1", AccessToken: plaidAccessToken, ErrorCode: plaid.CodeItemLoginRequired})
	bank := &oauthBank{fake: fake}
	link := plaidStandInWith(t, "oauth", bank)
	env := map[string]string{
		"PLAID_CLIENT_ID":              plaidClientID,
		"PLAID_SECRET":                 plaidSecret,
		"PLAID_API_URL":                fake.URL,
		"PLAID_CLIENT_NAME":            "Acme",
		"PLAID_ACCESS_TOKENS":          "item_p1:" + plaidAccessToken + ",item_p2:" + plaidAccessToken2,
		"RELINK_CLIENT_TOKEN_KEYS":     newKey(t, "links1"),
		"RELINK_RECONNECT_RETURN_URL":  "https://app.example.com/connections?from=relink",
		"RELINK_PLAID_LINK_SCRIPT_URL": link.URL + "/link/v2/stable/link-initialize.js",
	}
	s := newBareStack(t, merged(env, settings))
	// The redirect URI names the gateway, whose address is known only now:
	// set on the adapter before any worker uses it.
	uri := redirect(s.gateway.URL)
	fake.RedirectURIs = []string{uri}
	for _, api := range s.providers.APIs {
		if p, ok := api.(*plaid.Provider); ok {
			p.RedirectURI = uri
		}
	}
	s.startWorker(s.providers.APIs...)
	s.postPlaid(fake, map[string]any{"webhook_type": "ITEM", "webhook_code": "ERROR", "item_id": "item_p1",
		"error": map[string]any{"error_type": "ITEM_ERROR", "error_code": "ITEM_LOGIN_REQUIRED", "status": 400}, "environment": "sandbox"})
	s.waitForStatusOf(plaid.Name, "item_p1", workflows.StatusAwaitingUser)
	return s, fake, bank
}

// plaidAccessToken2 is item_p2's (brokenPlaidItem2).
const plaidAccessToken2 = "access-sandbox-it-item-p2"

// brokenPlaidItem2 has Plaid report item_p2 broken too, and waits for its
// repair to wait for the user: a second repair in the same browser.
func (s *stack) brokenPlaidItem2(fake *plaidfake.Server) {
	s.t.Helper()
	fake.Put(plaidfake.Item{ID: "item_p2", AccessToken: plaidAccessToken2, ErrorCode: plaid.CodeItemLoginRequired})
	s.postPlaid(fake, map[string]any{"webhook_type": "ITEM", "webhook_code": "ERROR", "item_id": "item_p2",
		"error": map[string]any{"error_type": "ITEM_ERROR", "error_code": "ITEM_LOGIN_REQUIRED", "status": 400}, "environment": "sandbox"})
	s.waitForStatusOf(plaid.Name, "item_p2", workflows.StatusAwaitingUser)
}

// plaidConfirms has Plaid clear the Item's error and confirm, once the
// user's reconnect was reported.
func (s *stack) plaidConfirms(fake *plaidfake.Server, item string) {
	s.t.Helper()
	s.waitForStatusOf(plaid.Name, item, workflows.StatusVerifying)
	fake.SetError(item, "")
	s.postPlaid(fake, map[string]any{"webhook_type": "ITEM", "webhook_code": "LOGIN_REPAIRED", "item_id": item, "environment": "sandbox"})
}

func TestBrowserPlaidOAuthReturnFinishesOnTheHostedPage(t *testing.T) {
	s, fake, bank := newHostedPlaidOAuthStack(t)
	b := newBrowser(t)

	b.openHostedPage(s, "item_p1")
	b.click("reconnect")
	b.waitUntil("Plaid Link to open", `document.getElementById('plaid-standin')`, waitTimeout)
	token := eval[[]string](b, `window.__plaidStandIn.created`)[0]
	lt, ok := fake.LinkToken(token)
	require.True(t, ok)
	assert.Equal(t, s.gateway.URL+"/r/oauth", lt.RedirectURI, "the link token carries the hosted page's redirect_uri")

	// The user picks an OAuth bank: Link leaves for it, in this tab.
	b.click("plaid-standin-continue")
	b.waitUntil("the bank's page", `document.getElementById('bank-authorize')`, waitTimeout)
	b.click("bank-authorize")

	// Back on the hosted page at the redirect URI: Link opens again by
	// itself, with the same link token and the URL the bank returned to.
	b.waitUntil("Plaid Link to open again", `document.getElementById('plaid-standin')`, waitTimeout)
	handoffs := bank.seen()
	require.Len(t, handoffs, 1)
	assert.Equal(t, token, handoffs[0].Token)
	assert.Equal(t, []string{token}, eval[[]string](b, `window.__plaidStandIn.created`), "the same link token, not a new session")
	assert.Equal(t, []string{handoffs[0].Return}, eval[[]string](b, `window.__plaidStandIn.received`), "receivedRedirectUri is the whole return URL")
	assert.Equal(t, "", eval[string](b, `location.search`), "oauth_state_id is dropped once Link has it: a reload cannot finish twice")
	assert.Equal(t, "widget", b.state())

	b.click("plaid-standin-continue")
	s.plaidConfirms(fake, "item_p1")
	b.waitState("repaired")
	st := s.stateOf(plaid.Name, "item_p1")
	assert.Equal(t, workflows.StatusRepaired, st.Status)
	assert.Equal(t, 1, st.SessionsIssued, "one link token all along")
	back := b.backLink()
	assert.Equal(t, "REPAIRED", back.Get("status"))
	assert.Equal(t, "item_p1", back.Get("connectionId"))
	assert.Equal(t, "plaid", back.Get("provider"))
	assert.Empty(t, b.keptOAuth(), "the kept session is forgotten")
	assert.Empty(t, b.pageErrors())

	// A return with no session kept (none left for a bank from this
	// browser, or it is finished, or too late) says so rather than
	// guessing.
	b.open(s.gateway.URL + "/r/oauth?oauth_state_id=unknown")
	b.waitState("expired")
	assert.Contains(t, b.text("message"), "Open the link from your message again")
	assert.Empty(t, b.pageErrors())
}

// plaidButtonPage is an app's page, Plaid's redirect_uri, with the
// Reconnect button of item_p1 (an Item at an OAuth bank), open in a tab.
func plaidButtonPage(t *testing.T) (*stack, *plaidfake.Server, *oauthBank, *tab) {
	app := newEmbedApp(t)
	s, fake, bank := newPlaidOAuthStack(t, func(string) string { return app.URL + "/" }, map[string]string{"RELINK_CORS_ORIGINS": app.URL})
	b := newBrowser(t)
	linkOrigin := strings.TrimSuffix(s.cfg.Gateway.PlaidLinkScriptURL, "/link/v2/stable/link-initialize.js")
	app.show(s.gateway.URL, appCSP(s.gateway.URL, []string{linkOrigin}, []string{linkOrigin}), nil,
		embedButton{ID: "reconnect-item_p1", Provider: plaid.Name, Connection: "item_p1", Token: s.clientToken(plaid.Name, "item_p1")})
	b.openApp(app)
	return s, fake, bank, b
}

func TestBrowserButtonPlaidOAuthReturnFinishesOnTheAppsPage(t *testing.T) {
	s, fake, bank, b := plaidButtonPage(t)

	token := b.leaveForBank("reconnect-item_p1", "Plaid Link to open")
	b.click("bank-authorize")

	// The app's page again (its PLAID_REDIRECT_URI), which renders its
	// button as always: the script finishes the reconnect by itself.
	b.waitUntil("Plaid Link to open again", `document.getElementById('plaid-standin')`, waitTimeout)
	handoffs := bank.seen()
	require.Len(t, handoffs, 1)
	assert.Equal(t, []string{token}, eval[[]string](b, `window.__plaidStandIn.created`))
	assert.Equal(t, []string{handoffs[0].Return}, eval[[]string](b, `window.__plaidStandIn.received`))
	assert.True(t, eval[bool](b, `document.getElementById('reconnect-item_p1').disabled`), "the button is busy while Link finishes")

	b.click("plaid-standin-continue")
	s.plaidConfirms(fake, "item_p1")
	repaired := b.waitEvent("relink:repaired", 1)
	assert.Equal(t, map[string]any{"provider": "plaid", "connectionId": "item_p1", "status": "REPAIRED"}, repaired.Detail)
	assert.Equal(t, 1, s.stateOf(plaid.Name, "item_p1").SessionsIssued)
	b.assertCleanPage()
}

// The bank's return in another tab of the same browser (on a phone, the
// bank's app opens the redirect URI in a new tab): the session kept in
// localStorage finishes there, and is gone once Link has it.
func TestBrowserPlaidOAuthReturnInAnotherTabFinishesOnTheHostedPage(t *testing.T) {
	s, fake, bank := newHostedPlaidOAuthStack(t)
	first := newBrowser(t)

	first.openHostedPage(s, "item_p1")
	first.click("reconnect")
	token := first.plaidLinkOpened("Plaid Link to open")[0]
	assert.Empty(t, first.keptOAuth(), "nothing kept before Link leaves for an OAuth bank")
	first.click("plaid-standin-continue")
	first.waitUntil("the bank's page", `document.getElementById('bank-authorize')`, waitTimeout)

	// The return lands in a new tab, which has no sessionStorage of the
	// first's: Link opens again there with the kept session.
	other := first.newTab()
	other.open(bank.returnFor(t, token))
	assert.Equal(t, []string{token}, other.plaidLinkOpened("Plaid Link to open in the other tab"), "the same link token, not a new session")
	assert.Equal(t, []string{bank.returnFor(t, token)}, eval[[]string](other, `window.__plaidStandIn.received`))
	assert.Equal(t, "", eval[string](other, `location.search`))
	assert.Empty(t, other.keptOAuth(), "taken once Link has the return: the same return cannot finish twice")

	other.click("plaid-standin-continue")
	s.plaidConfirms(fake, "item_p1")
	other.waitState("repaired")
	st := s.stateOf(plaid.Name, "item_p1")
	assert.Equal(t, workflows.StatusRepaired, st.Status)
	assert.Equal(t, 1, st.SessionsIssued, "one link token all along")
	assert.Equal(t, "item_p1", other.backLink().Get("connectionId"))
	assert.Empty(t, other.keptOAuth(), "nothing left in localStorage")
	assert.Empty(t, other.pageErrors())

	// The bank's Authorize followed in the first tab as well: the session
	// is taken, so it says to open the link again.
	first.click("bank-authorize")
	first.waitState("expired")
	assert.Contains(t, first.text("message"), "Open the link from your message again")
	assert.Len(t, bank.seen(), 1, "Link left for the bank once")
	assert.Empty(t, first.pageErrors())
}

// Two repairs in one browser, each away at its bank: each keeps its own
// entry. A return in the tab that left takes that tab's session, though
// the other is more recent; a return in a new tab takes the most recent
// still kept.
func TestBrowserPlaidOAuthReturnsOfTwoRepairsInOneBrowserKeepToTheirOwn(t *testing.T) {
	s, fake, bank := newHostedPlaidOAuthStack(t)
	s.brokenPlaidItem2(fake)
	first := newBrowser(t)
	second := first.newTab()
	leave := func(b *tab, item string) string {
		t.Helper()
		b.openHostedPage(s, item)
		return b.leaveForBank("reconnect", "Plaid Link to open for "+item)
	}
	token1 := leave(first, "item_p1")
	token2 := leave(second, "item_p2")

	// Both kept, under their provider and connection, with what the
	// hosted page needs to go on.
	other := first.newTab()
	other.open(s.gateway.URL + gateway.OAuthReturnPath)
	other.waitState("expired") // no oauth_state_id: not a return
	kept := other.keptOAuth()
	require.Len(t, kept, 2)
	for key, token := range map[string]string{"relink.plaid-oauth/plaid/item_p1": token1, "relink.plaid-oauth/plaid/item_p2": token2} {
		var saved struct{ LinkToken, Via, Token string }
		require.NoError(t, json.Unmarshal([]byte(kept[key]), &saved), key)
		assert.Equal(t, token, saved.LinkToken, key)
		assert.Equal(t, "page", saved.Via, key)
		assert.NotEmpty(t, saved.Token, "the hosted page's client token")
	}
	// Any load of the page forgets a session past its link token's life.
	eval[chromedp.Void](other, `localStorage.setItem('relink.plaid-oauth/plaid/item_p0', JSON.stringify({
		provider: 'plaid', connection: 'item_p0', via: 'page', linkToken: 'link-expired', savedAt: Date.now() - 31 * 60 * 1000 }))`)
	other.open(s.gateway.URL + gateway.OAuthReturnPath)
	other.waitState("expired")
	assert.Equal(t, []string{"relink.plaid-oauth/plaid/item_p1", "relink.plaid-oauth/plaid/item_p2"}, slices.Sorted(maps.Keys(other.keptOAuth())))

	// item_p1's bank sends the user back to the first tab: its own
	// session, not item_p2's, the more recent.
	first.click("bank-authorize")
	assert.Equal(t, []string{token1}, first.plaidLinkOpened("Plaid Link to open again in the first tab"))
	first.click("plaid-standin-continue")
	s.plaidConfirms(fake, "item_p1")
	first.waitState("repaired")
	assert.Equal(t, "item_p1", first.backLink().Get("connectionId"))
	assert.Equal(t, []string{"relink.plaid-oauth/plaid/item_p2"}, slices.Sorted(maps.Keys(first.keptOAuth())), "item_p2's session is still kept")

	// item_p2's bank sends the user back to a new tab: the one left.
	other.open(bank.returnFor(t, token2))
	assert.Equal(t, []string{token2}, other.plaidLinkOpened("Plaid Link to open again in a new tab"))
	other.click("plaid-standin-continue")
	s.plaidConfirms(fake, "item_p2")
	other.waitState("repaired")
	assert.Equal(t, "item_p2", other.backLink().Get("connectionId"))
	assert.Empty(t, other.keptOAuth())

	for _, item := range []string{"item_p1", "item_p2"} {
		st := s.stateOf(plaid.Name, item)
		assert.Equal(t, workflows.StatusRepaired, st.Status, item)
		assert.Equal(t, 1, st.SessionsIssued, item)
	}
	for _, b := range []*tab{first, second, other} {
		assert.Empty(t, b.pageErrors())
	}
}

func TestBrowserButtonPlaidOAuthReturnInAnotherTabFinishesOnTheAppsPage(t *testing.T) {
	s, fake, bank, first := plaidButtonPage(t)

	token := first.leaveForBank("reconnect-item_p1", "Plaid Link to open")

	// The app's page in a new tab, at the bank's return: the script
	// finishes the reconnect there, on the button of that connection.
	other := first.newTab()
	other.open(bank.returnFor(t, token))
	assert.Equal(t, []string{token}, other.plaidLinkOpened("Plaid Link to open in the other tab"))
	assert.Equal(t, []string{bank.returnFor(t, token)}, eval[[]string](other, `window.__plaidStandIn.received`))
	assert.True(t, eval[bool](other, `document.getElementById('reconnect-item_p1').disabled`), "the button is busy while Link finishes")

	other.click("plaid-standin-continue")
	s.plaidConfirms(fake, "item_p1")
	repaired := other.waitEvent("relink:repaired", 1)
	assert.Equal(t, map[string]any{"provider": "plaid", "connectionId": "item_p1", "status": "REPAIRED"}, repaired.Detail)
	assert.Equal(t, 1, s.stateOf(plaid.Name, "item_p1").SessionsIssued)
	assert.Empty(t, other.keptOAuth(), "nothing left in the app origin's localStorage")
	other.assertCleanPage()
}

// localStorage off (it throws, as in some private modes): the session is
// kept in the tab's sessionStorage instead, so a return in the same tab
// finishes, as before, and one in another tab says to open the link
// again.
func TestBrowserPlaidOAuthReturnWithoutLocalStorageFinishesInTheSameTab(t *testing.T) {
	s, fake, bank := newHostedPlaidOAuthStack(t)
	first := newBrowser(t)
	_, err := chromedp.Call(first.ctx, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{
		Source: `Object.defineProperty(window, 'localStorage', { configurable: true, get() { throw new DOMException('The operation is insecure.', 'SecurityError'); } });`,
	})
	require.NoError(t, err)

	first.openHostedPage(s, "item_p1")
	token := first.leaveForBank("reconnect", "Plaid Link to open")

	other := first.newTab()
	other.open(bank.returnFor(t, token))
	other.waitState("expired")
	assert.Contains(t, other.text("message"), "Open the link from your message again")
	assert.Empty(t, other.keptOAuth(), "nothing in localStorage")

	first.click("bank-authorize")
	assert.Equal(t, []string{token}, first.plaidLinkOpened("Plaid Link to open again in the same tab"))
	first.click("plaid-standin-continue")
	s.plaidConfirms(fake, "item_p1")
	first.waitState("repaired")
	assert.Equal(t, workflows.StatusRepaired, s.stateOf(plaid.Name, "item_p1").Status)
	assert.Empty(t, eval[[]string](first, `Object.keys(sessionStorage).filter((k) => k.startsWith('relink.plaid-oauth'))`), "forgotten from sessionStorage")
	assert.Empty(t, first.pageErrors())
	assert.Empty(t, other.pageErrors())
}
