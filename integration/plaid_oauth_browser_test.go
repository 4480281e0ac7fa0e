//go:build browser

package integration

// Plaid Link's OAuth return in a real browser: Link leaves the page for
// an OAuth institution's site, in the same tab, and the bank sends the
// user back to the link token's redirect_uri with ?oauth_state_id=…;
// there Link must open again with the same link token and
// receivedRedirectUri, and finish (plaid.com/docs/link/oauth). The
// stand-in's server plays the bank: /oauth/start reads the redirect_uri
// the link token was created with (from the Plaid fake) and shows an
// Authorize link back to it.

import (
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

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

// newPlaidOAuthStack is a stack with Plaid (Item item_p1 broken, its
// repair waiting for the user), reconnect links, Plaid Link's stand-in in
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
		"PLAID_ACCESS_TOKENS":          "item_p1:" + plaidAccessToken,
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

// plaidConfirms has Plaid clear the Item's error and confirm, once the
// user's reconnect was reported.
func (s *stack) plaidConfirms(fake *plaidfake.Server, item string) {
	s.t.Helper()
	s.waitForStatusOf(plaid.Name, item, workflows.StatusVerifying)
	fake.SetError(item, "")
	s.postPlaid(fake, map[string]any{"webhook_type": "ITEM", "webhook_code": "LOGIN_REPAIRED", "item_id": item, "environment": "sandbox"})
}

func TestBrowserPlaidOAuthReturnFinishesOnTheHostedPage(t *testing.T) {
	s, fake, bank := newPlaidOAuthStack(t, func(gw string) string { return gw + gateway.OAuthReturnPath }, nil)
	b := newBrowser(t)

	b.open(s.mintLink(plaid.Name, "item_p1"))
	b.waitState("ready")
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
	assert.Equal(t, "null", eval[string](b, `String(sessionStorage.getItem('relink.plaid-oauth'))`), "the kept session is forgotten")
	assert.Empty(t, b.pageErrors())

	// A return this tab did not leave from (another tab, or too late)
	// says so rather than guessing.
	b.open(s.gateway.URL + "/r/oauth?oauth_state_id=unknown")
	b.waitState("expired")
	assert.Contains(t, b.text("message"), "Open the link from your message again")
	assert.Empty(t, b.pageErrors())
}

func TestBrowserButtonPlaidOAuthReturnFinishesOnTheAppsPage(t *testing.T) {
	app := newEmbedApp(t)
	s, fake, bank := newPlaidOAuthStack(t, func(string) string { return app.URL + "/" }, map[string]string{"RELINK_CORS_ORIGINS": app.URL})
	b := newBrowser(t)
	linkOrigin := strings.TrimSuffix(s.cfg.Gateway.PlaidLinkScriptURL, "/link/v2/stable/link-initialize.js")
	app.show(s.gateway.URL, appCSP(s.gateway.URL, []string{linkOrigin}, []string{linkOrigin}), nil,
		embedButton{ID: "reconnect-item_p1", Provider: plaid.Name, Connection: "item_p1", Token: s.clientToken(plaid.Name, "item_p1")})
	b.openApp(app)

	b.click("reconnect-item_p1")
	b.waitUntil("Plaid Link to open", `document.getElementById('plaid-standin')`, waitTimeout)
	token := eval[[]string](b, `window.__plaidStandIn.created`)[0]
	b.click("plaid-standin-continue")
	b.waitUntil("the bank's page", `document.getElementById('bank-authorize')`, waitTimeout)
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
