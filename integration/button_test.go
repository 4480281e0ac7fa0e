//go:build browser

package integration

// The embeddable Reconnect button in a real browser, on an app's page of
// another site than the gateway's (the app on http://localhost:…, the
// gateway on http://127.0.0.1:…), under the strict Content-Security-Policy
// a real app would set, calling the gateway across origins with CORS. Run
// with the other browser tests:
//
//	go test -tags browser -count=1 -run '^TestBrowser' ./integration/

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/meld"
	"github.com/relink-dev/relink/activities/meld/meldfake"
	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/clienttoken"
	"github.com/relink-dev/relink/keyring"
	"github.com/relink-dev/relink/workflows"
)

// embedApp is an app's own web server: one page with Reconnect buttons,
// the app's script (which records the button's events), and the button's
// script from the gateway. Its URL names localhost, so the page is of
// another site than the gateway (127.0.0.1).
type embedApp struct {
	t   *testing.T
	URL string

	mu      sync.Mutex
	gateway string
	csp     string
	headers map[string]string
	buttons []embedButton
}

// embedButton is one Reconnect button of the app's page.
type embedButton struct {
	ID, Provider, Connection, Token string
}

func newEmbedApp(t *testing.T) *embedApp {
	t.Helper()
	a := &embedApp{t: t}
	srv := httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(srv.Close)
	a.URL = strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	return a
}

// show sets what the page has: the gateway it loads the button's script
// from, its CSP, more headers, and its buttons.
func (a *embedApp) show(gateway, csp string, headers map[string]string, buttons ...embedButton) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gateway, a.csp, a.headers, a.buttons = gateway, csp, headers, buttons
}

// appCSP is the policy a careful app sets: its own scripts, the gateway's
// (the button) and Plaid Link's; calls to the gateway only; frames from
// the widgets' origins only; nothing inline.
func appCSP(gateway string, scripts, frames []string) string {
	return "default-src 'none'; script-src 'self' " + strings.Join(append([]string{gateway}, scripts...), " ") +
		"; connect-src " + gateway + "; frame-src " + strings.Join(frames, " ") +
		"; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

var embedPage = template.Must(template.New("app").Parse(`<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>Acme Money</title>
<h1>Your accounts</h1>
{{range .Buttons}}<p>A bank connection needs you.
<button type="button" id="{{.ID}}" data-relink-provider="{{.Provider}}" data-relink-connection="{{.Connection}}" data-relink-token="{{.Token}}">Reconnect</button></p>
{{end}}<ol id="log"></ol>
<script src="/app.js"></script>
<script src="{{.Gateway}}/r/assets/relink-button.js" async></script>
</html>
`))

// embedAppJS is the app's own script: it listens to the buttons' events,
// as an app would, and keeps them (with whether the button was disabled
// when each came) in window.__events, and the page's CSP violations in
// window.__violations.
const embedAppJS = `(() => {
  'use strict';
  const log = document.getElementById('log');
  window.__events = [];
  window.__violations = [];
  for (const type of ['relink:status', 'relink:repaired', 'relink:exit', 'relink:error']) {
    document.addEventListener(type, (e) => {
      window.__events.push({ type: e.type, target: e.target.id, detail: e.detail, disabled: e.target.disabled === true });
      const li = document.createElement('li');
      li.textContent = e.type + ' ' + JSON.stringify(e.detail);
      log.append(li);
    });
  }
  document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
})();
`

func (a *embedApp) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch r.URL.Path {
	case "/":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", a.csp)
		w.Header().Set("Cache-Control", "no-store")
		for k, v := range a.headers {
			w.Header().Set(k, v)
		}
		_ = embedPage.Execute(w, struct {
			Gateway string
			Buttons []embedButton
		}{a.gateway, a.buttons})
	case "/app.js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		_, _ = w.Write([]byte(embedAppJS))
	default:
		http.NotFound(w, r)
	}
}

// clientToken mints a client token for the connection, as the app's
// backend does.
func (s *stack) clientToken(provider, conn string) string {
	s.t.Helper()
	var minted struct{ Token string }
	require.Equal(s.t, http.StatusCreated, s.call(http.MethodPost, "/v1/repairs/"+provider+"/"+conn+"/client-token", nil, &minted))
	return minted.Token
}

// embedEvent is one relink:* event the app's page heard.
type embedEvent struct {
	Type, Target string
	Detail       map[string]any
	Disabled     bool
}

// events are the relink:* events the page heard so far.
func (b *tab) events() []embedEvent {
	b.t.Helper()
	return eval[[]embedEvent](b, `window.__events`)
}

// waitEvent waits for the nth (from 1) event of a type and returns it.
func (b *tab) waitEvent(typ string, nth int) embedEvent {
	b.t.Helper()
	b.waitUntil("the page to hear "+typ, `window.__events.filter((e) => e.type === `+jsString(typ)+`).length >= `+strconv.Itoa(nth), waitTimeout)
	var seen []embedEvent
	for _, e := range b.events() {
		if e.Type == typ {
			seen = append(seen, e)
		}
	}
	return seen[nth-1]
}

// statesHeard are the states of the relink:status events heard so far.
func (b *tab) statesHeard() []string {
	b.t.Helper()
	var out []string
	for _, e := range b.events() {
		if e.Type == "relink:status" {
			out = append(out, e.Detail["state"].(string))
		}
	}
	return out
}

// openApp opens the app's page and waits for the button's script.
func (b *tab) openApp(app *embedApp) {
	b.t.Helper()
	require.Equal(b.t, int64(http.StatusOK), b.open(app.URL+"/"))
	b.waitUntil("the button's script to load", `window[Symbol.for('relink.button')] === true`, waitTimeout)
}

// clickInOtherSiteFrame clicks selector in the iframe whose document's URL
// starts with urlPrefix, an iframe of another site than the page: Chromium
// runs it in a process of its own, a target the page's DOM does not reach,
// so the click attaches to that target (and detaches after, leaving it).
func (b *tab) clickInOtherSiteFrame(urlPrefix, selector string) {
	b.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		err := func() error {
			infos, err := chromedp.Targets(b.ctx)
			if err != nil {
				return err
			}
			for _, info := range infos {
				if info.Type != "iframe" || !strings.HasPrefix(info.URL, urlPrefix) {
					continue
				}
				frameCtx, cancel := chromedp.NewContext(b.ctx, chromedp.WithTargetID(info.TargetID), chromedp.WithDetachOnCancel())
				defer cancel()
				ctx, cancelTry := context.WithTimeout(frameCtx, 3*time.Second)
				defer cancelTry()
				return chromedp.Do(ctx, chromedp.Click(chromedp.CSS(selector)))
			}
			return errors.New("no frame at " + urlPrefix)
		}()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || b.ctx.Err() != nil {
			b.t.Fatalf("click %s in the frame at %s: %v", selector, urlPrefix, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clickCSS clicks the element selector finds, with the mouse.
func (b *tab) clickCSS(selector string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(selector))); err != nil {
		b.t.Fatalf("click %s: %v", selector, err)
	}
}

// assertCleanPage checks the app's page had no uncaught exception and
// broke none of its CSP.
func (b *tab) assertCleanPage() {
	b.t.Helper()
	assert.Empty(b.t, eval[[]string](b, `window.__violations`), "CSP violations on the app's page")
	assert.Empty(b.t, b.pageErrors())
}

// sandboxButtonPage is a stack that allows the app's origin, a sandbox
// connection broken and waiting for the user, and the app's page with its
// button (id reconnect-{conn}) open in a browser.
func sandboxButtonPage(t *testing.T, conn string) (*stack, *tab) {
	t.Helper()
	app := newEmbedApp(t)
	s := newLinkStack(t, map[string]string{"RELINK_CORS_ORIGINS": app.URL})
	b := newBrowser(t)
	s.breakConnection(conn, "profile_"+conn)
	s.waitForStatus(conn, workflows.StatusAwaitingUser)
	app.show(s.gateway.URL, appCSP(s.gateway.URL, nil, []string{s.gateway.URL}), nil,
		embedButton{ID: "reconnect-" + conn, Provider: "sandbox", Connection: conn, Token: s.clientToken("sandbox", conn)})
	b.openApp(app)
	return s, b
}

func TestBrowserButtonRepairsThroughTheSandboxWidgetOnAnotherSitesPage(t *testing.T) {
	s, b := sandboxButtonPage(t, "conn_be1")
	b.click("reconnect-conn_be1")
	// The sandbox's widget opens over the app's page, in the button's
	// overlay, from the gateway.
	b.waitUntil("the widget's overlay", `document.querySelector('[data-relink-overlay] iframe[data-relink-frame]')`, waitTimeout)
	assert.True(t, strings.HasPrefix(eval[string](b, `document.querySelector('[data-relink-frame]').src`), s.gateway.URL+"/sandbox/widget?"))
	assert.Equal(t, "dialog", eval[string](b, `document.querySelector('[data-relink-overlay] [role=dialog]').getAttribute('role')`))
	assert.True(t, eval[bool](b, `document.getElementById('reconnect-conn_be1').disabled`), "the button is disabled while the widget is open")
	assert.Equal(t, "true", eval[string](b, `document.getElementById('reconnect-conn_be1').getAttribute('aria-busy')`))

	b.clickInOtherSiteFrame(s.gateway.URL+"/sandbox/widget", "#sandbox-sign-in")
	repaired := b.waitEvent("relink:repaired", 1)
	assert.Equal(t, map[string]any{"provider": "sandbox", "connectionId": "conn_be1", "status": "REPAIRED"}, repaired.Detail)
	assert.Equal(t, "reconnect-conn_be1", repaired.Target)
	assert.False(t, repaired.Disabled, "the button works again when the app hears the outcome")
	assert.Equal(t, []string{"opening", "widget", "verifying"}, b.statesHeard())
	for _, e := range b.events() {
		if e.Type == "relink:status" {
			assert.True(t, e.Disabled, "busy while %v", e.Detail["state"])
		}
	}
	widget := b.events()[1]
	assert.Equal(t, "frame", widget.Detail["widget"])
	assert.False(t, eval[bool](b, `!!document.querySelector('[data-relink-overlay]')`), "the overlay is gone")
	assert.Equal(t, "reconnect-conn_be1", b.focused(), "the focus is back on the button")
	assert.Nil(t, eval[any](b, `document.getElementById('reconnect-conn_be1').getAttribute('aria-busy')`))

	st := s.state("conn_be1")
	assert.Equal(t, workflows.StatusRepaired, st.Status)
	assert.Equal(t, 1, st.SessionsIssued)
	assert.Zero(t, st.Exits)
	b.assertCleanPage()
}

func TestBrowserButtonReportsAnExitAndTheRepairKeepsWaiting(t *testing.T) {
	s, b := sandboxButtonPage(t, "conn_be2")
	overlay := `document.querySelector('[data-relink-overlay]')`

	// The user closes the overlay…
	b.click("reconnect-conn_be2")
	b.waitUntil("the widget's overlay", overlay, waitTimeout)
	b.clickCSS("[data-relink-close]")
	exit := b.waitEvent("relink:exit", 1)
	assert.Equal(t, map[string]any{"provider": "sandbox", "connectionId": "conn_be2", "reason": "user_closed"}, exit.Detail)
	assert.False(t, exit.Disabled)
	assert.False(t, eval[bool](b, `!!`+overlay))

	// …leaves from inside the widget (its Cancel)…
	b.click("reconnect-conn_be2")
	b.waitUntil("the widget's overlay", overlay, waitTimeout)
	b.clickInOtherSiteFrame(s.gateway.URL+"/sandbox/widget", "#sandbox-cancel")
	exit = b.waitEvent("relink:exit", 2)
	assert.Equal(t, "user_exit", exit.Detail["reason"])
	assert.False(t, eval[bool](b, `!!`+overlay))

	// …and presses Escape.
	b.click("reconnect-conn_be2")
	b.waitUntil("the widget's overlay", overlay, waitTimeout)
	eval[chromedp.Void](b, `document.querySelector('[data-relink-close]').focus()`)
	b.key(kb.Escape)
	exit = b.waitEvent("relink:exit", 3)
	assert.Equal(t, "user_closed", exit.Detail["reason"])
	assert.False(t, eval[bool](b, `!!`+overlay))
	assert.False(t, eval[bool](b, `document.getElementById('reconnect-conn_be2').disabled`))

	// Each was an exit to the repair, which still waits for the user (the
	// same exit told again, user_closed without a time, is one: the
	// gateway's update id).
	s.waitFor("the exits", func() bool { return s.state("conn_be2").Exits == 2 })
	st := s.state("conn_be2")
	assert.Equal(t, workflows.StatusAwaitingUser, st.Status)
	assert.Equal(t, "user_exit", st.LastExit.Reason, "the last exit recorded")
	assert.Equal(t, 1, st.SessionsIssued, "the session is reused")
	for _, e := range b.events() {
		assert.NotEqual(t, "relink:repaired", e.Type)
		assert.NotEqual(t, "relink:error", e.Type)
	}
	b.assertCleanPage()
}

func TestBrowserButtonRepairsThroughPlaidLink(t *testing.T) {
	app := newEmbedApp(t)
	link := plaidStandIn(t, "normal")
	s, fake := newQuilttLinkStack(t, map[string]string{
		"RELINK_CORS_ORIGINS":          app.URL,
		"RELINK_PLAID_LINK_SCRIPT_URL": link.URL + "/link/v2/stable/link-initialize.js",
	})
	b := newBrowser(t)
	s.brokenQuiltt(fake, "conn_bep", "PLAID")
	app.show(s.gateway.URL, appCSP(s.gateway.URL, []string{link.URL}, []string{link.URL}), nil,
		embedButton{ID: "reconnect-bep", Provider: quiltt.Name, Connection: "conn_bep", Token: s.clientToken(quiltt.Name, "conn_bep")})
	b.openApp(app)

	// Plaid Link loads from where the gateway says (its widget record) and
	// opens over the app's page; the user leaves it first…
	b.click("reconnect-bep")
	b.waitUntil("Plaid Link to open", `document.getElementById('plaid-standin')`, waitTimeout)
	assert.Equal(t, "plaid-link", b.waitEvent("relink:status", 2).Detail["widget"])
	b.click("plaid-standin-exit")
	exit := b.waitEvent("relink:exit", 1)
	assert.Equal(t, map[string]any{"provider": quiltt.Name, "connectionId": "conn_bep", "reason": "requires_credentials"}, exit.Detail)

	// …then comes back and finishes.
	b.click("reconnect-bep")
	b.waitUntil("Plaid Link to open again", `document.getElementById('plaid-standin')`, waitTimeout)
	b.click("plaid-standin-continue")
	repaired := b.waitEvent("relink:repaired", 1)
	assert.Equal(t, map[string]any{"provider": quiltt.Name, "connectionId": "conn_bep", "status": "REPAIRED"}, repaired.Detail)

	st := s.stateOf(quiltt.Name, "conn_bep")
	assert.Equal(t, workflows.StatusRepaired, st.Status)
	assert.Equal(t, 1, st.Exits)
	assert.Equal(t, 1, countRequests(fake, "connectorPlaidClose"))
	assert.Equal(t, 1, eval[int](b, `document.querySelectorAll('script[src*="link-initialize.js"]').length`), "Link's script is loaded once")
	assert.Equal(t, 1, eval[int](b, `window.__plaidStandIn.destroyed`))
	b.assertCleanPage()
}

func TestBrowserButtonOnAnOriginTheGatewayDoesNotAllowDoesNothing(t *testing.T) {
	allowed, other := newEmbedApp(t), newEmbedApp(t)
	s := newLinkStack(t, map[string]string{"RELINK_CORS_ORIGINS": allowed.URL})
	b := newBrowser(t)
	s.breakConnection("conn_be4", "profile_be4")
	before := s.waitForStatus("conn_be4", workflows.StatusAwaitingUser)
	// A page that requires every resource to allow it (COEP): the button's
	// script loads all the same (CORP cross-origin).
	other.show(s.gateway.URL, appCSP(s.gateway.URL, nil, []string{s.gateway.URL}),
		map[string]string{"Cross-Origin-Embedder-Policy": "require-corp"},
		embedButton{ID: "reconnect-be4", Provider: "sandbox", Connection: "conn_be4", Token: s.clientToken("sandbox", "conn_be4")})
	b.openApp(other)

	b.click("reconnect-be4")
	failed := b.waitEvent("relink:error", 1)
	assert.Equal(t, "network", failed.Detail["code"])
	assert.Contains(t, failed.Detail["message"], "RELINK_CORS_ORIGINS")
	assert.Equal(t, "conn_be4", failed.Detail["connectionId"])
	assert.False(t, failed.Disabled)
	assert.Equal(t, []string{"opening"}, b.statesHeard())
	assert.False(t, eval[bool](b, `!!document.querySelector('[data-relink-overlay]')`))

	// The gateway refused the preflight: no call reached the repair.
	st := s.state("conn_be4")
	assert.Equal(t, workflows.StatusAwaitingUser, st.Status)
	assert.Equal(t, before.SessionsIssued, st.SessionsIssued)
	assert.Zero(t, st.Exits)
	assert.Empty(t, eval[[]string](b, `window.__violations`))
}

func TestBrowserButtonSaysWhenItsTokenIsRefusedAndTakesANewOne(t *testing.T) {
	app := newEmbedApp(t)
	key := newKey(t, "button-tokens")
	s := newLinkStack(t, map[string]string{"RELINK_CORS_ORIGINS": app.URL, "RELINK_CLIENT_TOKEN_KEYS": key})
	b := newBrowser(t)
	s.breakConnection("conn_be5", "profile_be5")
	before := s.waitForStatus("conn_be5", workflows.StatusAwaitingUser)
	keys, err := keyring.Parse("test", key)
	require.NoError(t, err)
	past, err := clienttoken.New(keys, time.Minute, func() time.Time { return time.Now().Add(-time.Hour) })
	require.NoError(t, err)
	expired, _, err := past.Mint(clienttoken.Scope{Provider: "sandbox", ConnectionID: "conn_be5"})
	require.NoError(t, err)
	app.show(s.gateway.URL, appCSP(s.gateway.URL, nil, []string{s.gateway.URL}), nil,
		embedButton{ID: "reconnect-be5", Provider: "sandbox", Connection: "conn_be5", Token: expired})
	b.openApp(app)
	setToken := func(token string) {
		eval[chromedp.Void](b, `document.getElementById('reconnect-be5').setAttribute('data-relink-token', `+jsString(token)+`)`)
	}

	// An expired token: 401, which the app answers with a new token.
	b.click("reconnect-be5")
	failed := b.waitEvent("relink:error", 1)
	assert.Equal(t, "unauthorized", failed.Detail["code"])
	assert.Equal(t, float64(http.StatusUnauthorized), failed.Detail["httpStatus"])
	assert.Contains(t, failed.Detail["message"], "expired")
	assert.False(t, failed.Disabled)

	// One cut short, and one for another connection.
	setToken("not-a-token")
	b.click("reconnect-be5")
	assert.Equal(t, "unauthorized", b.waitEvent("relink:error", 2).Detail["code"])
	setToken(s.clientToken("sandbox", "conn_other"))
	b.click("reconnect-be5")
	forbidden := b.waitEvent("relink:error", 3)
	assert.Equal(t, "forbidden", forbidden.Detail["code"])
	assert.Equal(t, float64(http.StatusForbidden), forbidden.Detail["httpStatus"])
	assert.Equal(t, before.SessionsIssued, s.state("conn_be5").SessionsIssued, "no session for a refused token")

	// A fresh token for the connection opens the widget.
	setToken(s.clientToken("sandbox", "conn_be5"))
	b.click("reconnect-be5")
	b.waitUntil("the widget's overlay", `document.querySelector('[data-relink-overlay]')`, waitTimeout)
	b.clickCSS("[data-relink-close]")
	b.waitEvent("relink:exit", 1)

	// A repair that has ended meanwhile says how it ended.
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_be5/cancel", nil, nil))
	s.waitForStatus("conn_be5", workflows.StatusCanceled)
	b.click("reconnect-be5")
	ended := b.waitEvent("relink:error", 4)
	assert.Equal(t, map[string]any{"provider": "sandbox", "connectionId": "conn_be5", "code": "repair_ended", "status": "CANCELED",
		"message": "the repair has ended: CANCELED"}, ended.Detail)
	b.assertCleanPage()
}

// meldButtonPage breaks Meld connection conn, waits for its repair to wait
// for the user, and opens an app's page of another site with its button;
// Meld Connect is a stand-in of its own origin, which the app's CSP
// allows, and the gateway too when hostKnown (RELINK_RECONNECT_FRAME_ORIGINS).
func meldButtonPage(t *testing.T, conn string, hostKnown bool) (*stack, *meldfake.Server, string, *tab) {
	t.Helper()
	app := newEmbedApp(t)
	widget, _ := meldStandIn(t)
	settings := map[string]string{"RELINK_CORS_ORIGINS": app.URL}
	if hostKnown {
		settings["RELINK_RECONNECT_FRAME_ORIGINS"] = widget.URL
	}
	s, fake := newMeldLinkStack(t, settings)
	fake.WidgetURL = widget.URL + "/"
	b := newBrowser(t)
	fake.Put(meldfake.Connection{ID: conn, CustomerID: "cus_m", ExternalCustomerID: "user_m", InstitutionName: "Chase",
		Status: meld.StatusReconnectRequired, StatusReason: "LOGIN_REQUIRED"})
	s.postMeld("evt_"+conn+"_broke", conn, meld.StatusReconnectRequired, "LOGIN_REQUIRED")
	s.waitForStatusOf(meld.Name, conn, workflows.StatusAwaitingUser)
	app.show(s.gateway.URL, appCSP(s.gateway.URL, nil, []string{widget.URL}), nil,
		embedButton{ID: "reconnect-" + conn, Provider: meld.Name, Connection: conn, Token: s.clientToken(meld.Name, conn)})
	b.openApp(app)
	return s, fake, widget.URL, b
}

func TestBrowserButtonRepairsAMeldConnectionThroughItsFramedWidget(t *testing.T) {
	// Meld Connect is framed from its own origin, which the gateway knows.
	s, fake, widget, b := meldButtonPage(t, "conn_bem", true)

	// Meld's widget reports an error: an exit, with Meld's reason.
	b.click("reconnect-conn_bem")
	b.clickInOtherSiteFrame(widget+"/?connectToken=", "#meld-standin-error")
	exit := b.waitEvent("relink:exit", 1)
	assert.Equal(t, map[string]any{"provider": meld.Name, "connectionId": "conn_bem", "reason": "error", "errorCode": "INSTITUTION_DOWN"}, exit.Detail)
	assert.False(t, eval[bool](b, `!!document.querySelector('[data-relink-overlay]')`))

	// Then the user connects, and the button follows the repair until Meld
	// confirms.
	b.click("reconnect-conn_bem")
	b.clickInOtherSiteFrame(widget+"/?connectToken=", "#meld-standin-connect")
	b.waitUntil("the button to check with the bank", `window.__events.some((e) => e.detail.state === 'verifying')`, waitTimeout)
	s.waitForStatusOf(meld.Name, "conn_bem", workflows.StatusVerifying)
	fake.Set("conn_bem", meld.StatusActive, "")
	s.postMeld("evt_bem_active", "conn_bem", meld.StatusActive, "")
	repaired := b.waitEvent("relink:repaired", 1)
	assert.Equal(t, map[string]any{"provider": meld.Name, "connectionId": "conn_bem", "status": "REPAIRED"}, repaired.Detail)
	st := s.stateOf(meld.Name, "conn_bem")
	assert.Equal(t, workflows.StatusRepaired, st.Status)
	assert.Equal(t, 1, st.Exits)
	assert.Equal(t, "INSTITUTION_DOWN", st.LastExit.ErrorCode)
	b.assertCleanPage()
}

// A widget URL from a host that is not the provider's (nor in
// RELINK_RECONNECT_FRAME_ORIGINS) is not framed, even on an app's page
// whose own CSP would let it: the provider's answer is not trusted as
// such.
func TestBrowserButtonFramesOnlyTheProvidersWidgetHosts(t *testing.T) {
	s, _, _, b := meldButtonPage(t, "conn_bef", false)

	b.click("reconnect-conn_bef")
	refused := b.waitEvent("relink:error", 1)
	assert.Equal(t, "no_widget", refused.Detail["code"])
	assert.False(t, eval[bool](b, `!!document.querySelector('[data-relink-overlay]')`), "nothing framed")
	assert.Equal(t, workflows.StatusAwaitingUser, s.stateOf(meld.Name, "conn_bef").Status)
}
