//go:build browser

package integration

// The hosted reconnect page in a real browser: headless Chromium, driven
// over the DevTools protocol (chromedp), against the real gateway, worker
// and Temporal of the other integration tests. Behind the build tag
// `browser`, so `go test ./...` needs nothing but Go:
//
//	go test -tags browser -count=1 -run '^TestBrowser' ./integration/
//
// CHROME_PATH names the browser (default /usr/bin/chromium); without one
// the tests fail. RELINK_SCREENSHOTS=1 rewrites docs/hosted/*.png.
//
// The page runs under its own strict CSP (no eval), so waits are Go-side
// polls of Runtime.evaluate (which the CSP does not govern), each with a
// deadline; chromedp's Poll compiles its predicate with new Function in
// the page and so cannot run there.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/meld"
	"github.com/relink-dev/relink/activities/meld/meldfake"
	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/activities/quiltt/quilttfake"
	"github.com/relink-dev/relink/clienttoken"
	"github.com/relink-dev/relink/keyring"
	"github.com/relink-dev/relink/workflows"
)

// browserDeadline bounds each test's time in the browser; waitTimeout
// bounds one wait for the page.
const (
	browserDeadline = 2 * time.Minute
	waitTimeout     = 30 * time.Second
)

// tab is one browser tab of a test's own headless Chromium.
type tab struct {
	t   *testing.T
	ctx context.Context

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// newBrowser starts headless Chromium for one test and opens its tab.
// The machine's network is closed: the flags keep Chromium from calling
// home (updates, sync, QUIC probes), which would only flood refused
// connections. chromedp gives it a fresh --user-data-dir (a temporary
// directory it removes when the browser ends).
func newBrowser(t *testing.T) *tab {
	t.Helper()
	path := os.Getenv("CHROME_PATH")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(path); err != nil {
		t.Fatalf("no browser at %s (install Chromium, or set CHROME_PATH): %v", path, err)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.WindowSize(1280, 800),
	)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc() // waits for the browser to exit and its directory to go
	})
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	// The browser lives until the test ends; its actions, until the deadline.
	ctx, cancel := context.WithTimeout(browserCtx, browserDeadline)
	t.Cleanup(cancel)
	b := &tab{t: t, ctx: ctx}
	b.listen()
	return b
}

// listen records the tab's console (pageErrors reads it), and logs it if
// the test fails.
func (b *tab) listen() {
	t := b.t
	messages := chromedp.Console(b.ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			b.mu.Lock()
			defer b.mu.Unlock()
			for _, m := range b.console {
				t.Logf("browser console: %s %s (%s:%d)", m.Type, m.Text, m.URL, m.Line+1)
			}
		}
	})
}

// newTab opens another tab of the same browser, in the same browser
// context: it shares b's cookies and localStorage (not its
// sessionStorage, which is a tab's own), as a tab the user, or a bank's
// app sending them back, opens.
func (b *tab) newTab() *tab {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("open another tab: %v", err)
	}
	nb := &tab{t: b.t, ctx: ctx}
	nb.listen()
	return nb
}

// do runs actions in the tab, failing the test on an error.
func (b *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v (page: %s)", what, err, b.describe())
	}
}

// eval evaluates a JavaScript expression in the page (not subject to the
// page's CSP) and decodes its value.
func eval[T any](b *tab, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// open navigates to url and returns the page's HTTP status.
func (b *tab) open(url string) int64 {
	b.t.Helper()
	resp, err := chromedp.Run(b.ctx, chromedp.NavigateResponse(url))
	if err != nil {
		b.t.Fatalf("open %s: %v", url, err)
	}
	return resp.Status
}

// waitUntil polls a JavaScript condition until it holds, failing the test
// after timeout.
func (b *tab) waitUntil(what, cond string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!(`+cond+`)`))
		cancel()
		if err == nil && ok {
			return
		}
		lastErr = err
		if time.Now().After(deadline) || b.ctx.Err() != nil {
			b.t.Fatalf("waited %v for %s (last error: %v); page: %s", timeout, what, lastErr, b.describe())
		}
		select {
		case <-b.ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitState waits for the page's data-state.
func (b *tab) waitState(state string) {
	b.t.Helper()
	b.waitUntil("the page to be "+state, `document.getElementById('page')?.dataset.state === `+jsString(state), waitTimeout)
}

// state is the page's data-state now.
func (b *tab) state() string {
	b.t.Helper()
	return eval[string](b, `document.getElementById('page').dataset.state`)
}

// text is an element's visible text ("" if it is missing).
func (b *tab) text(id string) string {
	b.t.Helper()
	return eval[string](b, `document.getElementById(`+jsString(id)+`)?.innerText ?? ''`)
}

// shown tells whether an element is present and rendered.
func (b *tab) shown(id string) bool {
	b.t.Helper()
	return eval[bool](b, `(e => !!e && e.getClientRects().length > 0)(document.getElementById(`+jsString(id)+`))`)
}

// describe summarizes the page for a failure message.
func (b *tab) describe() string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(b.ctx), 3*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => {
		const p = document.getElementById('page');
		return location.pathname.slice(0, 12) + '… state=' + (p ? p.dataset.state : '?') +
			' title=' + JSON.stringify(document.getElementById('title')?.innerText) +
			' message=' + JSON.stringify(document.getElementById('message')?.innerText);
	})()`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// click clicks an element of the page with the mouse, as a user would.
func (b *tab) click(id string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#"+id))); err != nil {
		b.t.Fatalf("click #%s: %v (page: %s)", id, err, b.describe())
	}
}

// clickInFrame clicks an element inside the same-site iframe #frameID once
// the frame's document has it. The frame's node is read afresh on each try:
// chromedp's copy of the DOM learns of the frame's new document from
// events that may trail what the page's script already sees.
func (b *tab) clickInFrame(frameID, id string) {
	b.t.Helper()
	b.waitUntil("#"+id+" in the frame", `document.getElementById(`+jsString(frameID)+`).contentDocument?.getElementById(`+jsString(id)+`)`, waitTimeout)
	b.clickInWidget(frameID, id)
}

// key presses keys (kb.Tab, kb.Enter, …) on whatever has the focus.
func (b *tab) key(keys string) {
	b.t.Helper()
	b.do(fmt.Sprintf("press %q", keys), chromedp.KeyEvent(keys))
}

// focused is the id of the element with the focus.
func (b *tab) focused() string {
	b.t.Helper()
	return eval[string](b, `document.activeElement?.id ?? ''`)
}

// backLink is the "Back to the app" link's query, checked to go to the app.
func (b *tab) backLink() url.Values {
	b.t.Helper()
	require.True(b.t, b.shown("back"), "the way back to the app is shown")
	href := eval[string](b, `document.getElementById('back').href`)
	u, err := url.Parse(href)
	require.NoError(b.t, err)
	assert.Equal(b.t, "https://app.example.com/connections", u.Scheme+"://"+u.Host+u.Path, href)
	return u.Query()
}

// pageErrors are the page's uncaught exceptions and CSP violations so far.
func (b *tab) pageErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.console {
		if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
			out = append(out, string(m.Type)+": "+m.Text)
		}
	}
	return out
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// mintLink asks the API for a reconnect link to the repair.
func (s *stack) mintLink(provider, conn string) string {
	s.t.Helper()
	var minted struct{ URL string }
	require.Equal(s.t, http.StatusCreated, s.call(http.MethodPost, "/v1/repairs/"+provider+"/"+conn+"/reconnect-link", nil, &minted))
	return minted.URL
}

// setScript scripts a sandbox connection's behaviour.
func (s *stack) setScript(conn string, script map[string]any) {
	s.t.Helper()
	require.Equal(s.t, http.StatusOK, s.call(http.MethodPut, "/sandbox/connections/"+conn+"/script", script, nil))
}

// expiredLink is a link to the repair signed with the gateway's key 22 days
// ago (the longest a link lives is 21).
func expiredLink(t *testing.T, s *stack, key, conn, repairRunID string) string {
	t.Helper()
	keys, err := keyring.Parse("test", key)
	require.NoError(t, err)
	past, err := clienttoken.New(keys, time.Minute, func() time.Time { return time.Now().Add(-22 * 24 * time.Hour) })
	require.NoError(t, err)
	token, _, err := past.MintLink(clienttoken.Scope{Provider: "sandbox", ConnectionID: conn}, repairRunID, clienttoken.MaxLinkTTL)
	require.NoError(t, err)
	return s.gateway.URL + "/r/" + token
}

func TestBrowserRepairsASandboxConnectionFromTheEmailedLink(t *testing.T) {
	s := newLinkStack(t, nil)
	b := newBrowser(t)
	s.breakConnection("conn_br1", "profile_br1")
	link := s.eventLink("conn_br1", activities.EventActionRequired)

	require.Equal(t, int64(http.StatusOK), b.open(link))
	b.waitState("ready")
	assert.Equal(t, "Reconnect First Sandbox Bank", b.text("title"))
	assert.Equal(t, "Reconnect First Sandbox Bank", b.text("reconnect"))
	assert.False(t, b.shown("back"), "no way back before an outcome")

	// The user opens the sign-in and closes it; opens it again and leaves
	// it from inside (the widget's Cancel): each is an exit, and the page
	// offers to try again.
	b.click("reconnect")
	b.waitState("widget")
	assert.True(t, b.shown("widget-frame"))
	assert.False(t, b.shown("reconnect"))
	b.click("close-widget")
	b.waitState("ready")
	assert.Equal(t, "Try again", b.text("reconnect"))
	assert.False(t, b.shown("widget-frame"))
	b.waitUntil("the closed widget to be unloaded", `!document.getElementById('widget-frame').contentDocument?.getElementById('sandbox-sign-in')`, waitTimeout)
	b.click("reconnect")
	b.waitState("widget")
	b.clickInFrame("widget-frame", "sandbox-cancel")
	b.waitState("ready")
	assert.Contains(t, b.text("message"), "You left before finishing")
	b.waitUntil("the left widget to be unloaded", `!document.getElementById('widget-frame').contentDocument?.getElementById('sandbox-sign-in')`, waitTimeout)
	s.waitFor("two exits", func() bool { return s.state("conn_br1").Exits == 2 })
	assert.Equal(t, "user_exit", s.state("conn_br1").LastExit.Reason)

	b.click("reconnect")
	b.waitState("widget")
	// The user signs in inside the provider's (simulated) widget, which
	// tells the page; the page reports it and follows the repair.
	b.clickInFrame("widget-frame", "sandbox-sign-in")
	b.waitState("repaired")
	assert.Equal(t, "Your bank is connected", b.text("title"))
	assert.False(t, b.shown("widget-frame"))

	st := s.state("conn_br1")
	assert.Equal(t, workflows.StatusRepaired, st.Status)
	assert.Equal(t, 1, st.SessionsIssued)
	assert.Equal(t, 2, st.Exits)
	q := b.backLink()
	assert.Equal(t, "REPAIRED", q.Get("status"))
	assert.Equal(t, "conn_br1", q.Get("connectionId"))
	assert.Equal(t, "sandbox", q.Get("provider"))
	assert.Equal(t, "relink", q.Get("from"), "the app's own query is kept")
	assert.Empty(t, b.pageErrors())
}

func TestBrowserShowsExpiredInvalidAndEndedLinks(t *testing.T) {
	key := newKey(t, "links-br2")
	s := newLinkStack(t, map[string]string{"RELINK_CLIENT_TOKEN_KEYS": key})
	b := newBrowser(t)
	s.breakConnection("conn_br2", "profile_br2")
	st := s.waitForStatus("conn_br2", workflows.StatusAwaitingUser)

	// A link past its time says so, with what to do, and offers nothing.
	assert.Equal(t, int64(http.StatusGone), b.open(expiredLink(t, s, key, "conn_br2", st.RepairRunID)))
	b.waitState("expired")
	assert.Equal(t, "This link has expired", b.text("title"))
	assert.Contains(t, b.text("message"), "get a new one")
	assert.False(t, b.shown("reconnect"))

	// A link cut short.
	assert.Equal(t, int64(http.StatusNotFound), b.open(s.gateway.URL+"/r/not-a-token"))
	b.waitState("invalid")
	assert.Equal(t, "This link doesn't work", b.text("title"))
	assert.False(t, b.shown("reconnect"))

	// A page open longer than its browser token lives says so; reloaded,
	// it works again. (The token is spoilt here, as if it had expired.)
	s.breakConnection("conn_br2b", "profile_br2")
	s.waitForStatus("conn_br2b", workflows.StatusAwaitingUser)
	stale := s.mintLink("sandbox", "conn_br2b")
	b.open(stale)
	b.waitState("ready")
	eval[chromedp.Void](b, `document.getElementById('page').dataset.token = 'expired.' + document.getElementById('page').dataset.token`)
	b.click("reconnect")
	b.waitState("expired")
	assert.Equal(t, "This page has been open a while", b.text("title"))
	assert.False(t, b.shown("reconnect"))
	b.open(stale)
	b.waitState("ready")
	b.click("reconnect")
	b.waitState("widget")

	// A page left open while the app withdraws the request: the user's
	// click finds the repair over and the page says how it ended.
	link := s.mintLink("sandbox", "conn_br2")
	b.open(link)
	b.waitState("ready")
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_br2/cancel", nil, nil))
	s.waitForStatus("conn_br2", workflows.StatusCanceled)
	b.click("reconnect")
	b.waitState("ended")
	assert.Equal(t, "No longer needed", b.text("title"))
	assert.False(t, b.shown("reconnect"))
	assert.Equal(t, "CANCELED", b.backLink().Get("status"))

	// The same link opened afterwards: the outcome, no Reconnect button.
	assert.Equal(t, int64(http.StatusOK), b.open(link))
	b.waitState("ended")
	assert.Equal(t, "No longer needed", b.text("title"))
	assert.False(t, eval[bool](b, `document.getElementById('reconnect') !== null`), "an ended repair's page has no Reconnect button")
	assert.Equal(t, "CANCELED", b.backLink().Get("status"))
	assert.Empty(t, b.pageErrors())
}

// plaidStandIn serves a stand-in for Plaid Link's link-initialize.js with
// the interface Plaid documents (plaid.com/docs/link/web): Plaid.create
// ({token, onSuccess, onExit, onEvent, onLoad}) returns a handler with
// open(), exit() and destroy(). open() shows a small overlay in the page
// with Continue (onSuccess with a public token and metadata) and Exit
// (onExit with no error). In the mode "invalid-first" the first open()
// fails as Plaid does with an expired link token: onExit with the error
// INVALID_LINK_TOKEN. In the mode "oauth" (plaidOAuthStandIn) Continue
// leaves for the bank, unless Link was created with receivedRedirectUri
// (the return). window.__plaidStandIn records what the page did.
func plaidStandIn(t *testing.T, mode string) *httptest.Server {
	return plaidStandInWith(t, mode, nil)
}

// plaidStandInWith is plaidStandIn whose server also serves more (other
// paths) when more is not nil.
func plaidStandInWith(t *testing.T, mode string, more http.Handler) *httptest.Server {
	script := strings.Replace(plaidStandInJS, "__MODE__", jsString(mode), 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/link/v2/stable/link-initialize.js" {
			if more != nil {
				more.ServeHTTP(w, r)
				return
			}
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(script))
	}))
	t.Cleanup(srv.Close)
	return srv
}

const plaidStandInJS = `(() => {
  'use strict';
  const mode = __MODE__;
  const record = window.__plaidStandIn = { mode, created: [], received: [], opens: 0, destroyed: 0, events: [] };
  // Where this script came from: the stand-in's server, whose /oauth/start
  // plays the bank of an OAuth institution.
  const origin = new URL(document.currentScript.src).origin;
  window.Plaid = {
    version: 'stand-in',
    create(config) {
      if (!config || typeof config.token !== 'string' || !config.token) throw new Error('Plaid.create: token is required');
      if (typeof config.onSuccess !== 'function') throw new Error('Plaid.create: onSuccess is required');
      record.created.push(config.token);
      // An OAuth return: Link opened again with the URL the bank sent the
      // user back to (plaid.com/docs/link/oauth).
      const received = typeof config.receivedRedirectUri === 'string' ? config.receivedRedirectUri : '';
      if (received) {
        if (!new URL(received).searchParams.get('oauth_state_id')) throw new Error('Plaid.create: receivedRedirectUri without oauth_state_id');
        record.received.push(received);
      }
      const linkSessionId = 'ls-standin-' + record.created.length;
      let overlay = null, destroyed = false, requests = 0;
      const meta = (more) => Object.assign({ link_session_id: linkSessionId, request_id: 'req-standin-' + (++requests) }, more);
      const event = (name, more) => {
        record.events.push(name);
        // An event is no request of Link's: it takes no request id.
        if (typeof config.onEvent === 'function') config.onEvent(name, Object.assign({ link_session_id: linkSessionId, timestamp: new Date().toISOString() }, more));
      };
      const close = () => { if (overlay) { overlay.remove(); overlay = null; } };
      const exit = (err, status) => {
        close();
        event('EXIT', { error_code: err ? err.error_code : null, exit_status: status });
        if (typeof config.onExit === 'function') config.onExit(err, meta({ institution: null, status }));
      };
      const button = (id, text, onClick) => {
        const b = document.createElement('button');
        b.type = 'button'; b.id = id; b.textContent = text; b.className = id.endsWith('continue') ? 'primary' : 'secondary';
        b.addEventListener('click', onClick);
        return b;
      };
      const render = () => {
        const o = document.createElement('div');
        o.id = 'plaid-standin';
        o.setAttribute('role', 'dialog');
        o.setAttribute('aria-modal', 'true');
        o.setAttribute('aria-label', 'Plaid Link (stand-in)');
        // CSSOM, not style attributes: the page's CSP allows no inline style.
        Object.assign(o.style, { position: 'fixed', inset: '0', background: 'rgba(0,0,0,.5)', display: 'flex', alignItems: 'center', justifyContent: 'center' });
        const card = document.createElement('div');
        Object.assign(card.style, { background: '#fff', padding: '1.5rem', borderRadius: '12px', width: '20rem' });
        const p = document.createElement('p');
        p.textContent = 'Plaid Link stand-in: sign in to First Platypus Bank.';
        card.append(p,
          button('plaid-standin-continue', 'Continue', () => {
            if (mode === 'oauth' && !received) {
              // An OAuth institution: Link hands the user to the bank, in
              // this tab, which sends them back to the link token's
              // redirect_uri.
              event('OPEN_OAUTH');
              location.assign(origin + '/oauth/start?token=' + encodeURIComponent(config.token));
              return;
            }
            close();
            event('HANDOFF');
            config.onSuccess('public-sandbox-xyz', { institution: { name: 'First Platypus Bank', institution_id: 'ins_109508' },
              accounts: [], link_session_id: linkSessionId, transfer_status: null });
          }),
          button('plaid-standin-exit', 'Exit', () => exit(null, 'requires_credentials')));
        o.append(card);
        document.body.append(o);
        return o;
      };
      if (typeof config.onLoad === 'function') setTimeout(config.onLoad, 0);
      return {
        open() {
          if (destroyed) throw new Error('open() after destroy()');
          record.opens++;
          event('OPEN', { view_name: 'CREDENTIAL' });
          if (mode === 'invalid-first' && record.opens === 1) {
            // What Link does when its link token has expired.
            setTimeout(() => {
              event('ERROR', { error_code: 'INVALID_LINK_TOKEN' });
              exit({ error_type: 'INVALID_INPUT', error_code: 'INVALID_LINK_TOKEN', error_message: 'invalid link_token provided', display_message: null }, null);
            }, 0);
            return;
          }
          overlay = render();
        },
        exit(options) { if (overlay) exit(null, 'requires_credentials'); },
        destroy() { destroyed = true; close(); record.destroyed++; },
        submit() {},
      };
    },
  };
})();
`

// newQuilttLinkStack is newQuilttStack with reconnect links on, and more
// settings.
func newQuilttLinkStack(t *testing.T, settings map[string]string) (*stack, *quilttfake.Server) {
	fake := quilttfake.New(quilttSecret)
	t.Cleanup(fake.Close)
	s := newLinkStack(t, merged(quilttSettings(fake), settings))
	s.syncAfterClose(fake)
	return s, fake
}

// brokenQuiltt has Quiltt report a broken connection and waits for the
// repair to wait for the user.
func (s *stack) brokenQuiltt(fake *quilttfake.Server, conn, connector string) {
	s.t.Helper()
	c := quilttfake.Connection{ID: conn, ProfileID: "p_" + conn, Provider: connector, Status: quiltt.StatusErrorRepairable}
	fake.Put(c)
	s.postQuiltt(quiltt.EventRepairable, c, "evt_break_"+conn)
	s.waitForStatusOf(quiltt.Name, conn, workflows.StatusAwaitingUser)
}

// startQuilttDirect starts a Quiltt repair with options of its own (as
// startDirect does for the sandbox) and waits for it to wait for the user.
func (s *stack) startQuilttDirect(fake *quilttfake.Server, conn, connector string, opts workflows.RepairOptions) {
	s.t.Helper()
	fake.Put(quilttfake.Connection{ID: conn, ProfileID: "p_" + conn, Provider: connector, Status: quiltt.StatusErrorRepairable})
	s.startDirectFor(quiltt.Name, conn, "p_"+conn, opts)
	s.waitForStatusOf(quiltt.Name, conn, workflows.StatusAwaitingUser)
}

func countRequests(fake *quilttfake.Server, operation string) int {
	n := 0
	for _, r := range fake.Requests() {
		if strings.Contains(r.Query, operation) {
			n++
		}
	}
	return n
}

func TestBrowserRepairsThroughPlaidLink(t *testing.T) {
	link := plaidStandIn(t, "normal")
	s, fake := newQuilttLinkStack(t, map[string]string{"RELINK_PLAID_LINK_SCRIPT_URL": link.URL + "/link/v2/stable/link-initialize.js"})
	b := newBrowser(t)
	s.brokenQuiltt(fake, "conn_bp1", "PLAID")

	b.open(s.mintLink(quiltt.Name, "conn_bp1"))
	b.waitState("ready")
	b.click("reconnect")
	// Link opens over the page; the user leaves it first.
	b.waitUntil("Plaid Link to open", `document.getElementById('plaid-standin')`, waitTimeout)
	assert.Equal(t, "widget", b.state())
	assert.Empty(t, b.keptOAuth(), "a bank without OAuth: nothing kept for a return (the client token stays in the page)")
	b.click("plaid-standin-exit")
	b.waitState("ready")
	assert.Equal(t, "Try again", b.text("reconnect"))
	assert.Contains(t, b.text("message"), "You left before finishing")
	s.waitFor("the exit to be recorded", func() bool { return s.stateOf(quiltt.Name, "conn_bp1").Exits == 1 })
	st := s.stateOf(quiltt.Name, "conn_bp1")
	require.NotNil(t, st.LastExit)
	assert.Equal(t, "requires_credentials", st.LastExit.Reason, "Link's exit status")
	assert.Equal(t, 1, eval[int](b, `window.__plaidStandIn.destroyed`), "the page destroys a handler it is done with")

	// Then comes back and finishes.
	b.click("reconnect")
	b.waitUntil("Plaid Link to open again", `document.getElementById('plaid-standin')`, waitTimeout)
	b.click("plaid-standin-continue")
	b.waitState("repaired")

	st = s.stateOf(quiltt.Name, "conn_bp1")
	assert.Equal(t, workflows.StatusRepaired, st.Status)
	assert.Equal(t, "confirmed by the provider's webhook", st.Reason)
	var closes []quilttfake.Request
	for _, r := range fake.Requests() {
		if strings.Contains(r.Query, "connectorPlaidClose") {
			closes = append(closes, r)
		}
	}
	require.Len(t, closes, 1)
	assert.Equal(t, "public-sandbox-xyz", closes[0].Input()["publicToken"])
	created := eval[[]string](b, `window.__plaidStandIn.created`)
	require.Len(t, created, 2)
	assert.True(t, strings.HasPrefix(created[0], "link-sandbox-"), created[0])
	assert.Equal(t, "REPAIRED", b.backLink().Get("status"))
	assert.Empty(t, b.pageErrors())
}

func TestBrowserRetriesPlaidLinkOnceWithANewSessionWhenItsTokenIsInvalid(t *testing.T) {
	link := plaidStandIn(t, "invalid-first")
	s, fake := newQuilttLinkStack(t, map[string]string{"RELINK_PLAID_LINK_SCRIPT_URL": link.URL + "/link/v2/stable/link-initialize.js"})
	b := newBrowser(t)
	// A token Link refuses is usually one that expired with the page left
	// open: a forced new session is then due. (By default a session minted
	// less than 30s ago is handed out again instead, which would make the
	// retry reuse the refused token here.)
	s.startQuilttDirect(fake, "conn_bp2", "PLAID", workflows.RepairOptions{MinRefreshInterval: time.Nanosecond})

	b.open(s.mintLink(quiltt.Name, "conn_bp2"))
	b.waitState("ready")
	b.click("reconnect")
	// Link refuses the first token (INVALID_LINK_TOKEN): the page reports
	// the exit, asks for a new session and opens Link again by itself.
	b.waitUntil("Plaid Link to open with a new token", `window.__plaidStandIn?.opens === 2 && document.getElementById('plaid-standin')`, waitTimeout)
	created := eval[[]string](b, `window.__plaidStandIn.created`)
	require.Len(t, created, 2)
	assert.NotEqual(t, created[0], created[1], "the retry has a new link token")
	assert.Equal(t, 1, eval[int](b, `window.__plaidStandIn.destroyed`))
	st := s.stateOf(quiltt.Name, "conn_bp2")
	assert.Equal(t, 2, st.SessionsIssued, "forceNewSession")
	s.waitFor("the exit to be recorded", func() bool { return s.stateOf(quiltt.Name, "conn_bp2").Exits == 1 })
	st = s.stateOf(quiltt.Name, "conn_bp2")
	require.NotNil(t, st.LastExit)
	assert.Equal(t, "INVALID_LINK_TOKEN", st.LastExit.ErrorCode)
	assert.Equal(t, "error", st.LastExit.Reason)
	assert.Equal(t, "req-standin-1", st.LastExit.ProviderRequestID, "Link's request id")

	b.click("plaid-standin-continue")
	b.waitState("repaired")
	st = s.stateOf(quiltt.Name, "conn_bp2")
	assert.Equal(t, workflows.StatusRepaired, st.Status)
	assert.Equal(t, 2, st.SessionsIssued)
	assert.Equal(t, 2, countRequests(fake, "connectorPlaidInitialize"))
	assert.Equal(t, 1, countRequests(fake, "connectorPlaidClose"))
	assert.Empty(t, b.pageErrors())
}

// mxStandIn serves a stand-in for MX's Connect widget at /md/connect/{token}
// (the page a Quiltt MX connector's session URL opens). It tells its parent
// it loaded, as MX does, and on its parent's command ({cmd:'connect'}) posts
// mx/connect/memberConnected to it with targetOrigin '*'; {cmd:'nested',
// url} opens url in an iframe of its own. /poster is a page that posts a
// memberConnected (member_guid from ?guid=) to the top window.
func mxStandIn(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /md/connect/{token}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html lang="en"><meta charset="utf-8"><title>MX Connect (stand-in)</title>
<body><h1>MX Connect stand-in</h1><p>Sign in to MX Bank.</p>
<script>
(() => {
  const send = (msg) => window.parent.postMessage(msg, '*');
  window.addEventListener('message', (e) => {
    if (e.source !== window.parent || !e.data) return;
    if (e.data.cmd === 'nested') {
      const f = document.createElement('iframe');
      f.src = e.data.url;
      document.body.appendChild(f);
    }
    if (e.data.cmd === 'connect') {
      send({ mx: true, type: 'mx/connect/memberConnected', metadata: { user_guid: 'USR-1', member_guid: 'MBR-1' } });
    }
  });
  send({ mx: true, type: 'mx/connect/loaded', metadata: { initial_step: 'credentials' } });
})();
</script></body></html>`)
	})
	mux.HandleFunc("GET /poster", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html lang="en"><meta charset="utf-8"><title>poster</title><script>
window.top.postMessage({ mx: true, type: 'mx/connect/memberConnected', metadata: { member_guid: %s } }, '*');
</script></html>`, jsString(r.URL.Query().Get("guid")))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestBrowserRepairsThroughAFramedWidgetAndIgnoresOtherOrigins(t *testing.T) {
	widget, other := mxStandIn(t), mxStandIn(t)
	s, fake := newQuilttLinkStack(t, map[string]string{"RELINK_RECONNECT_FRAME_ORIGINS": widget.URL})
	fake.MXWidgetURL = widget.URL + "/md/connect/"
	b := newBrowser(t)
	s.brokenQuiltt(fake, "conn_bm1", "MX")

	b.open(s.mintLink(quiltt.Name, "conn_bm1"))
	b.waitState("ready")
	// The test hears every message the page hears, after the page's own
	// listener has handled it.
	eval[chromedp.Void](b, `(window.__seen = [], window.addEventListener('message', (e) => window.__seen.push({
		origin: e.origin, type: e.data && e.data.type, guid: e.data && e.data.metadata && e.data.metadata.member_guid })), undefined)`)
	b.click("reconnect")
	b.waitState("widget")
	// The widget loaded in the frame (the CSP lets its origin be framed).
	b.waitUntil("the widget to load", `window.__seen.some((m) => m.type === 'mx/connect/loaded' && m.origin === `+jsString(widget.URL)+`)`, waitTimeout)
	assert.True(t, strings.HasPrefix(eval[string](b, `document.getElementById('widget-frame').src`), widget.URL+"/md/connect/ct_"))

	heard := func(guid string) string {
		return `window.__seen.some((m) => m.guid === ` + jsString(guid) + `)`
	}
	// A success from the page's own origin (any script of the page's)…
	eval[chromedp.Void](b, `window.postMessage({ mx: true, type: 'mx/connect/memberConnected', metadata: { member_guid: 'MBR-SELF' } }, '*')`)
	b.waitUntil("the page to hear its own message", heard("MBR-SELF"), waitTimeout)
	assert.Equal(t, "widget", b.state(), "a message from the page's own origin is not the widget's")
	// …from a frame of another origin inside the widget…
	eval[chromedp.Void](b, `document.getElementById('widget-frame').contentWindow.postMessage({ cmd: 'nested', url: `+jsString(other.URL+"/poster?guid=MBR-OTHER")+` }, '*')`)
	b.waitUntil("the page to hear the other origin", heard("MBR-OTHER"), waitTimeout)
	assert.Equal(t, "widget", b.state(), "a message from another origin is ignored")
	// …and from a frame of the widget's origin that is not the widget.
	eval[chromedp.Void](b, `document.getElementById('widget-frame').contentWindow.postMessage({ cmd: 'nested', url: `+jsString(widget.URL+"/poster?guid=MBR-NESTED")+` }, '*')`)
	b.waitUntil("the page to hear the nested frame", heard("MBR-NESTED"), waitTimeout)
	assert.Equal(t, "widget", b.state(), "a message from a window other than the widget's is ignored")
	assert.Zero(t, countRequests(fake, "connectorMxClose"))

	// The widget itself reports the member connected.
	eval[chromedp.Void](b, `document.getElementById('widget-frame').contentWindow.postMessage({ cmd: 'connect' }, '*')`)
	b.waitState("repaired")
	seen := eval[[]map[string]string](b, `window.__seen.map((m) => ({ origin: m.origin, guid: m.guid || '' }))`)
	assert.Contains(t, seen, map[string]string{"origin": widget.URL, "guid": "MBR-1"})
	assert.Contains(t, seen, map[string]string{"origin": other.URL, "guid": "MBR-OTHER"})

	st := s.stateOf(quiltt.Name, "conn_bm1")
	assert.Equal(t, workflows.StatusRepaired, st.Status)
	assert.Equal(t, "confirmed by the provider's webhook", st.Reason)
	assert.Equal(t, 1, st.SessionsIssued)
	assert.Equal(t, 1, countRequests(fake, "connectorMxClose"), "one success, the widget's")
	assert.Empty(t, b.pageErrors())
}

// meldStandIn serves a stand-in for Meld Connect, the page the widgetUrl of
// Meld's repair call opens (/?connectToken=…), on an origin of its own. It
// posts Meld's widget events to its parent with targetOrigin '*': Connect
// (#meld-standin-connect) sends connect_complete, and "Bank unavailable"
// (#meld-standin-error) sends an error with the reason INSTITUTION_DOWN.
// tokens are the connect tokens it was opened with, in order.
func meldStandIn(t *testing.T) (srv *httptest.Server, tokens func() []string) {
	var (
		mu     sync.Mutex
		opened []string
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		token := r.URL.Query().Get("connectToken")
		if token == "" {
			http.Error(w, "connectToken is required", http.StatusBadRequest)
			return
		}
		mu.Lock()
		opened = append(opened, token)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprint(w, `<!doctype html><html lang="en"><meta charset="utf-8"><title>Meld Connect (stand-in)</title>
<body><h1>Meld Connect stand-in</h1><p>Sign in to Meld Bank.</p>
<button type="button" id="meld-standin-connect">Connect</button>
<button type="button" id="meld-standin-error">Bank unavailable</button>
<script>
(() => {
  const send = (msg) => window.parent.postMessage(msg, '*');
  document.getElementById('meld-standin-connect').addEventListener('click', () => send({
    domain: 'meld-connect', eventName: 'connect_complete', institutionId: 'ins_1', institutionName: 'Meld Bank', accountCount: 2 }));
  document.getElementById('meld-standin-error').addEventListener('click', () => send({
    domain: 'meld-connect', eventName: 'error', reason: 'INSTITUTION_DOWN' }));
})();
</script></body></html>`)
	})
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), opened...)
	}
}

// clickInWidget clicks an element inside the frame #frameID that shows a
// page of another origin (the page's script cannot see into it; DevTools
// can, the frame being of the same site and so in the same process). The
// click is tried until the frame's current document has the element.
func (b *tab) clickInWidget(frameID, id string) {
	b.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		frames, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSS("#"+frameID)))
		if err == nil && len(frames) > 0 {
			err = chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#"+id), chromedp.FromNode(frames[0])))
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || b.ctx.Err() != nil {
			b.t.Fatalf("click #%s in #%s: %v (page: %s)", id, frameID, err, b.describe())
		}
	}
}

// newMeldLinkStack is newMeldStack with reconnect links on, and more
// settings.
func newMeldLinkStack(t *testing.T, settings map[string]string) (*stack, *meldfake.Server) {
	fake := meldfake.New(meldKey)
	t.Cleanup(fake.Close)
	return newLinkStack(t, merged(meldSettings(fake), settings)), fake
}

// recordCalls records the page's calls to the API (method, path after the
// repair's, and body) from now on, in window.__calls.
func (b *tab) recordCalls() {
	b.t.Helper()
	eval[chromedp.Void](b, `(() => {
		const real = window.fetch;
		window.__calls = [];
		window.fetch = (url, init) => {
			init = init || {};
			window.__calls.push({ method: init.method || 'GET', path: String(url).replace(/^\/v1\/repairs\/[^/]+\/[^/]+/, ''),
				body: init.body === undefined ? null : JSON.parse(init.body) });
			return real(url, init);
		};
	})()`)
}

// pageCall is one call of the page's to the API, as recordCalls keeps it.
type pageCall struct {
	Method, Path string
	Body         map[string]any
}

// callsTo are the page's recorded calls of a method to a path.
func (b *tab) callsTo(method, path string) []pageCall {
	b.t.Helper()
	var out []pageCall
	for _, c := range eval[[]pageCall](b, `window.__calls`) {
		if c.Method == method && c.Path == path {
			out = append(out, c)
		}
	}
	return out
}

func TestBrowserRepairsAMeldConnectionThroughItsFramedWidget(t *testing.T) {
	widget, tokens := meldStandIn(t)
	s, fake := newMeldLinkStack(t, map[string]string{
		"RELINK_CLIENT_TOKEN_KEYS":       newKey(t, "links-meld"),
		"RELINK_RECONNECT_FRAME_ORIGINS": widget.URL,
	})
	fake.WidgetURL = widget.URL + "/"
	b := newBrowser(t)
	fake.Put(meldfake.Connection{ID: "conn_bmeld", CustomerID: "cus_m", ExternalCustomerID: "user_m", InstitutionName: "Chase",
		Status: meld.StatusReconnectRequired, StatusReason: "LOGIN_REQUIRED"})
	s.postMeld("evt_bmeld_broke", "conn_bmeld", meld.StatusReconnectRequired, "LOGIN_REQUIRED")
	link := s.eventLink("conn_bmeld", activities.EventActionRequired)

	require.Equal(t, int64(http.StatusOK), b.open(link))
	b.waitState("ready")
	assert.Equal(t, "Reconnect Chase", b.text("title"), "the institution Meld's webhook named")
	b.recordCalls()
	b.click("reconnect")
	b.waitState("widget")
	assert.True(t, strings.HasPrefix(eval[string](b, `document.getElementById('widget-frame').src`), widget.URL+"/?connectToken="))

	// Meld's widget reports an error (the bank is down): an exit, and the
	// page offers to try again.
	b.clickInWidget("widget-frame", "meld-standin-error")
	b.waitState("ready")
	assert.Equal(t, "Try again", b.text("reconnect"))
	assert.Contains(t, b.text("message"), "stopped with an error")
	assert.False(t, b.shown("widget-frame"))
	s.waitFor("the exit to be recorded", func() bool { return s.stateOf(meld.Name, "conn_bmeld").Exits == 1 })
	st := s.stateOf(meld.Name, "conn_bmeld")
	require.NotNil(t, st.LastExit)
	assert.Equal(t, "error", st.LastExit.Reason)
	assert.Equal(t, "INSTITUTION_DOWN", st.LastExit.ErrorCode, "the reason in Meld's error event")
	assert.Equal(t, workflows.StatusAwaitingUser, st.Status)

	// Then the user tries again and connects.
	b.click("reconnect")
	b.waitState("widget")
	b.clickInWidget("widget-frame", "meld-standin-connect")
	b.waitState("verifying")
	s.waitForStatusOf(meld.Name, "conn_bmeld", workflows.StatusVerifying)
	assert.Equal(t, "verifying", b.state(), "still checking until Meld confirms")

	// Meld reconnects the connection and says so.
	fake.Set("conn_bmeld", meld.StatusActive, "")
	s.postMeld("evt_bmeld_active", "conn_bmeld", meld.StatusActive, "")
	b.waitState("repaired")
	assert.Equal(t, "Your bank is connected", b.text("title"))
	assert.False(t, b.shown("widget-frame"))

	st = s.stateOf(meld.Name, "conn_bmeld")
	assert.Equal(t, workflows.StatusRepaired, st.Status)
	assert.Equal(t, "confirmed by the provider's webhook", st.Reason)
	assert.Equal(t, 1, st.Exits)
	completions := 0
	for _, step := range st.Steps {
		if step.Status == workflows.StatusCompleting {
			completions++
		}
	}
	assert.Equal(t, 1, completions, "one completion: %v", stepStatuses(st))
	// What the page told the API: one exit, with Meld's reason, and one
	// completion, with the institution Meld's widget named.
	exits := b.callsTo(http.MethodPost, "/exit")
	require.Len(t, exits, 1)
	assert.Equal(t, map[string]any{"reason": "error", "errorCode": "INSTITUTION_DOWN"}, exits[0].Body)
	completes := b.callsTo(http.MethodPost, "/complete")
	require.Len(t, completes, 1)
	assert.Equal(t, map[string]any{"institutionId": "ins_1", "institutionName": "Meld Bank", "accountCount": float64(2)}, completes[0].Body["metadata"])
	assert.NotEmpty(t, completes[0].Body["connectorToken"])
	// One session (Try again soon after reuses it): the widget was opened
	// twice with the connect token of Meld's one repair call.
	assert.Equal(t, 1, st.SessionsIssued)
	repairs := 0
	for _, r := range fake.Requests() {
		if r.Method == http.MethodPost && r.Path == "/bank-linking/connect/repair" {
			repairs++
		}
	}
	assert.Equal(t, 1, repairs)
	opened := tokens()
	require.Len(t, opened, 2)
	assert.Equal(t, []any{opened[0], opened[0]}, []any{completes[0].Body["connectorToken"], opened[1]})
	assert.Equal(t, "REPAIRED", b.backLink().Get("status"))
	assert.Equal(t, "meld", b.backLink().Get("provider"))
	assert.Empty(t, b.pageErrors())
}

// viewports are the widths the page is checked, and pictured, at.
var viewports = []struct {
	name          string
	width, height int64
	mobile        bool
}{
	{"phone", 390, 844, true},
	{"desktop", 1280, 800, false},
}

// shoot checks the page's layout at each viewport (nothing wider than the
// screen, the main action within it) and, with RELINK_SCREENSHOTS=1,
// writes docs/hosted/{name}-{viewport}.png.
func (b *tab) shoot(name string) {
	b.t.Helper()
	write := os.Getenv("RELINK_SCREENSHOTS") == "1"
	for _, v := range viewports {
		opts := []chromedp.EmulateViewportOption{}
		if v.mobile {
			opts = append(opts, chromedp.EmulateMobile)
		}
		b.do("viewport "+v.name, chromedp.EmulateViewport(v.width, v.height, opts...))
		assert.LessOrEqual(b.t, eval[int64](b, `document.documentElement.scrollWidth`), v.width, "%s at %s: nothing wider than the screen", name, v.name)
		for _, id := range []string{"reconnect", "back", "title"} {
			if b.shown(id) {
				right := eval[float64](b, `document.getElementById(`+jsString(id)+`).getBoundingClientRect().right`)
				assert.LessOrEqual(b.t, right, float64(v.width), "%s at %s: #%s within the screen", name, v.name, id)
			}
		}
		if !write {
			continue
		}
		png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
		require.NoError(b.t, err)
		dir := filepath.Join("..", "docs", "hosted")
		require.NoError(b.t, os.MkdirAll(dir, 0o755))
		require.NoError(b.t, os.WriteFile(filepath.Join(dir, name+"-"+v.name+".png"), png, 0o644))
	}
	b.do("viewport reset", chromedp.EmulateViewport(1280, 800))
}

// TestBrowserPageStatesAtPhoneAndDesktopWidths takes the page through
// every state it has, and pictures each (RELINK_SCREENSHOTS=1).
func TestBrowserPageStatesAtPhoneAndDesktopWidths(t *testing.T) {
	key := newKey(t, "links-shots")
	s := newLinkStack(t, map[string]string{"RELINK_CLIENT_TOKEN_KEYS": key})
	b := newBrowser(t)
	// Still pictures: the progress bar does not move.
	_, err := chromedp.Call(b.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-reduced-motion", Value: "reduce"}}})
	require.NoError(t, err)
	for _, conn := range []string{"conn_shot", "conn_slow", "conn_fail", "conn_end"} {
		s.breakConnection(conn, "profile_shots")
	}
	// Still syncing long after the user signed in; refused after sign-in.
	s.setScript("conn_slow", map[string]any{"suppressWebhooks": true, "syncingPolls": 1000000})
	s.setScript("conn_fail", map[string]any{"close": "fail_after_close"})
	for _, conn := range []string{"conn_shot", "conn_slow", "conn_fail", "conn_end"} {
		s.waitForStatus(conn, workflows.StatusAwaitingUser)
	}

	b.open(s.mintLink("sandbox", "conn_shot"))
	b.waitState("ready")
	b.shoot("ready")
	b.click("reconnect")
	b.waitState("widget")
	b.waitUntil("the widget to load", `document.getElementById('widget-frame').contentDocument?.getElementById('sandbox-sign-in')`, waitTimeout)
	b.shoot("widget")
	b.clickInFrame("widget-frame", "sandbox-sign-in")
	b.waitState("repaired")
	b.shoot("repaired")

	b.open(s.mintLink("sandbox", "conn_slow"))
	b.waitState("ready")
	b.click("reconnect")
	b.waitState("widget")
	b.clickInFrame("widget-frame", "sandbox-sign-in")
	b.waitState("verifying")
	s.waitForStatus("conn_slow", workflows.StatusVerifying)
	assert.Equal(t, "verifying", b.state(), "still checking while the provider syncs")
	assert.True(t, eval[bool](b, `document.getElementById('progress').getAttribute('aria-busy') === 'true' && document.getElementById('page').getAttribute('aria-busy') === null`))
	b.shoot("verifying")
	// Opened again meanwhile, the link follows the repair from the start.
	b.open(s.mintLink("sandbox", "conn_slow"))
	b.waitState("verifying")
	assert.False(t, b.shown("reconnect"), "the user already did their part")

	b.open(s.mintLink("sandbox", "conn_fail"))
	b.waitState("ready")
	b.click("reconnect")
	b.waitState("widget")
	b.clickInFrame("widget-frame", "sandbox-sign-in")
	b.waitState("failed")
	assert.Equal(t, "That didn’t work", b.text("title"))
	assert.Equal(t, "Try again", b.text("reconnect"))
	assert.Equal(t, 2, s.state("conn_fail").Attempt)
	b.shoot("failed")

	link := s.mintLink("sandbox", "conn_end")
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_end/cancel", nil, nil))
	st := s.waitForStatus("conn_end", workflows.StatusCanceled)
	b.open(link)
	b.waitState("ended")
	b.shoot("ended")

	b.open(expiredLink(t, s, key, "conn_end", st.RepairRunID))
	b.waitState("expired")
	b.shoot("expired")

	b.open(s.gateway.URL + "/r/not-a-token")
	b.waitState("invalid")
	b.shoot("invalid")
	assert.Empty(t, b.pageErrors())
}

// axNode is an element's node in the browser's accessibility tree.
type axNode struct {
	Role, Name string
	Props      map[string]string
	Ignored    bool
}

func (b *tab) ax(selector string) axNode {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitTimeout)
	defer cancel()
	nodes, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSS(selector)))
	require.NoError(b.t, err, selector)
	res, err := chromedp.Call(ctx, accessibility.GetPartialAXTree, accessibility.GetPartialAXTreeParams{
		NodeID: nodes[0].NodeID, FetchRelatives: new(false)})
	require.NoError(b.t, err, selector)
	require.NotEmpty(b.t, res.Nodes, selector)
	n := res.Nodes[0]
	out := axNode{Role: axString(n.Role), Name: axString(n.Name), Props: map[string]string{}, Ignored: n.Ignored}
	for _, p := range n.Properties {
		out.Props[string(p.Name)] = axString(p.Value)
	}
	return out
}

func axString(v *accessibility.Value) string {
	if v == nil || len(v.Value) == 0 {
		return ""
	}
	var s any
	if err := json.Unmarshal([]byte(v.Value), &s); err != nil {
		return string(v.Value)
	}
	return fmt.Sprint(s)
}

// assertNamed checks every rendered button, link and frame of the page has
// an accessible name.
func (b *tab) assertNamed(when string) {
	b.t.Helper()
	ids := eval[[]string](b, `[...document.querySelectorAll('button, a[href], iframe')]
		.filter((e) => e.getClientRects().length > 0).map((e) => e.id)`)
	require.NotEmpty(b.t, ids, when)
	for _, id := range ids {
		require.NotEmpty(b.t, id, "%s: every control has an id", when)
		n := b.ax("#" + id)
		assert.False(b.t, n.Ignored, "%s: #%s is in the accessibility tree", when, id)
		assert.NotEmpty(b.t, strings.TrimSpace(n.Name), "%s: #%s has an accessible name", when, id)
	}
}

// tabTo presses Tab until the element has the focus (at most 10 times)
// and returns how many presses it took.
func (b *tab) tabTo(cond, what string) int {
	b.t.Helper()
	for i := 1; i <= 10; i++ {
		b.key(kb.Tab)
		if eval[bool](b, `!!(`+cond+`)`) {
			return i
		}
	}
	b.t.Fatalf("%s is not reachable with Tab (the focus is on #%s)", what, b.focused())
	return 0
}

func TestBrowserIsUsableWithTheKeyboardAndAScreenReader(t *testing.T) {
	s := newLinkStack(t, nil)
	b := newBrowser(t)
	s.breakConnection("conn_kb", "profile_kb")
	s.waitForStatus("conn_kb", workflows.StatusAwaitingUser)
	b.open(s.mintLink("sandbox", "conn_kb"))
	b.waitState("ready")

	// What a screen reader announces: a heading, a named button, and the
	// status message in a polite live region.
	assert.Equal(t, "title", b.focused(), "the page starts at its heading")
	h := b.ax("#title")
	assert.Equal(t, "heading", h.Role)
	assert.Equal(t, "Reconnect First Sandbox Bank", h.Name)
	msg := b.ax("#message")
	assert.Equal(t, "status", msg.Role)
	assert.Equal(t, "polite", msg.Props["live"])
	assert.Equal(t, "Reconnect First Sandbox Bank", b.ax("#reconnect").Name)
	assert.Equal(t, "button", b.ax("#reconnect").Role)
	b.assertNamed("ready")

	// Tab reaches Reconnect, which shows where the focus is, and Enter
	// presses it.
	presses := b.tabTo(`document.activeElement.id === 'reconnect'`, "#reconnect")
	assert.Equal(t, 1, presses, "Reconnect is the first stop after the heading")
	assert.Equal(t, "solid", eval[string](b, `getComputedStyle(document.activeElement).outlineStyle`), "the focus is visible")
	b.key(kb.Enter)
	b.waitState("widget")
	assert.Equal(t, "widget-frame", b.focused(), "the focus moves to the sign-in")
	frame := b.ax("#widget-frame")
	assert.Equal(t, "Your bank's sign-in", frame.Name)
	assert.Equal(t, "Close", b.ax("#close-widget").Name)
	b.assertNamed("widget")
	assert.Equal(t, "status", b.ax("#message").Role)

	// The whole sign-in works from the keyboard too.
	b.waitUntil("the widget to load", `document.getElementById('widget-frame').contentDocument?.getElementById('sandbox-sign-in')`, waitTimeout)
	b.tabTo(`document.activeElement.id === 'widget-frame' && document.getElementById('widget-frame').contentDocument.activeElement.id === 'sandbox-sign-in'`, "the widget's Sign in")
	b.key(kb.Enter)
	b.waitState("repaired")
	assert.Equal(t, "title", b.focused(), "the outcome's heading takes the focus")
	assert.Equal(t, "Your bank is connected", b.ax("#title").Name)
	msg = b.ax("#message")
	assert.Equal(t, "status", msg.Role)
	assert.Contains(t, b.text("message"), "Thanks!")
	b.tabTo(`document.activeElement.id === 'back'`, "Back to the app")
	back := b.ax("#back")
	assert.Equal(t, "link", back.Role)
	assert.Equal(t, "Back to the app", back.Name)
	b.assertNamed("repaired")
	assert.Equal(t, workflows.StatusRepaired, s.state("conn_kb").Status)

	assert.Empty(t, b.pageErrors())
}
