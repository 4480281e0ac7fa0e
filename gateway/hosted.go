package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/clienttoken"
	"github.com/relink-dev/relink/workflows"
)

// The hosted reconnect page: a link the app can email (repair.reconnectUrl
// on action_required and reminder events, or POST …/reconnect-link) opens
// a page that runs the provider's widget in update mode with a session
// from reconnect, reports success or exit, and shows the outcome. The link
// holds a signed link token naming one repair (clienttoken.MintLink); the
// page acts through the browser routes with a client token it is given,
// so it can do exactly what the app's own page could, for that one
// connection.

// LinkPathPrefix starts every reconnect link's path.
const LinkPathPrefix = "/r/"

// Links mints reconnect links: PublicURL + "/r/" + a link token. It is
// activities.ReconnectLinks for the worker's events, and the gateway's
// reconnect-link route.
type Links struct {
	Tokens    *clienttoken.Authority
	PublicURL string
	// TTL bounds a link's life; 0: until its repair's window ends. Either
	// way at most clienttoken.MaxLinkTTL.
	TTL time.Duration
	Now func() time.Time
}

// URL is the reconnect link of one repair (repair: the run that began it;
// repairExpiresAt: the end of its window, zero if unknown).
func (l *Links) URL(provider, connectionID, repair string, repairExpiresAt time.Time) (string, time.Time, error) {
	ttl := l.TTL
	if ttl == 0 {
		ttl = clienttoken.MaxLinkTTL
		if !repairExpiresAt.IsZero() && l.Now != nil {
			ttl = max(repairExpiresAt.Sub(l.Now()), time.Minute)
		}
	}
	token, exp, err := l.Tokens.MintLink(clienttoken.Scope{Provider: provider, ConnectionID: connectionID}, repair, ttl)
	if err != nil {
		return "", time.Time{}, err
	}
	return strings.TrimRight(l.PublicURL, "/") + LinkPathPrefix + token, exp, nil
}

// loggedPath keeps link tokens out of logs: a reconnect link's path is
// logged without its token.
func loggedPath(path string) string {
	if strings.HasPrefix(path, LinkPathPrefix) && !strings.HasPrefix(path, LinkPathPrefix+"assets/") && path != OAuthReturnPath {
		return LinkPathPrefix + "…"
	}
	return path
}

// reconnectLink is POST /v1/repairs/{provider}/{connectionId}/reconnect-link.
func (g *Gateway) reconnectLink(w http.ResponseWriter, r *http.Request) {
	provider, conn := r.PathValue("provider"), r.PathValue("connectionId")
	if !g.validConnection(w, provider, conn) {
		return
	}
	if g.Links == nil {
		writeError(w, http.StatusNotImplemented, codeNotEnabled, "reconnect links need RELINK_CLIENT_TOKEN_KEYS")
		return
	}
	view, err := g.readRepair(r.Context(), provider, conn)
	if err != nil {
		g.temporalError(w, r, err, provider, conn)
		return
	}
	if view.Status.Terminal() {
		writeError(w, http.StatusConflict, codeConflict, fmt.Sprintf("the repair is %s", view.Status))
		return
	}
	if view.Source == "visibility" || view.RepairRunID == "" {
		// The repair's own state did not answer (no worker?), and without it
		// the run that began the repair is unknown: no link bound to a guess.
		writeRetry(w, http.StatusServiceUnavailable, codeUnavailable, "the repair's state is not available right now", 5*time.Second)
		return
	}
	link, exp, err := g.Links.URL(provider, conn, view.RepairRunID, view.ExpiresAt)
	if err != nil {
		writeError(w, http.StatusInternalServerError, codeInternal, "could not sign the link")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, map[string]any{"url": link, "expiresAt": exp})
}

//go:embed hosted
var hostedAssets embed.FS

var hostedPage = template.Must(template.ParseFS(hostedAssets, "hosted/page.html"))

// hostedView is what the page template shows.
type hostedView struct {
	State       string // open, ended, expired, invalid, unavailable
	Title       string
	Message     string
	Institution string
	Provider    string
	Connection  string
	Status      workflows.Status
	Attempt     int
	ClientToken string
	ReturnURL   string // the app's return URL with the outcome, for ended pages
	ReturnBase  string // the app's return URL, for the page's script
}

// reconnectPage is GET /r/{token}.
func (g *Gateway) reconnectPage(w http.ResponseWriter, r *http.Request) {
	var v hostedView
	status := http.StatusOK
	defer func() { g.renderHosted(w, status, v) }()
	if g.Links == nil {
		status, v.State, v.Title = http.StatusNotFound, "invalid", "This link doesn't work"
		v.Message = "Reconnect links are not enabled here. Go back to the app to reconnect your bank."
		return
	}
	link, err := g.Links.Tokens.CheckLink(r.PathValue("token"))
	switch {
	case errors.Is(err, clienttoken.ErrExpired):
		status, v.State, v.Title = http.StatusGone, "expired", "This link has expired"
		v.Message = "For your security, reconnect links stop working after a while. Open the app, or the latest message about your bank connection, to get a new one."
		return
	case err != nil:
		status, v.State, v.Title = http.StatusNotFound, "invalid", "This link doesn't work"
		v.Message = "The link may have been cut short when it was copied. Open it again from the message you received, or go back to the app."
		return
	}
	// Every load below asks the repair for its state (a query, billable):
	// a link reloaded in a loop, or shared, is bounded per repair, as a
	// client token is per connection.
	if ok, wait := g.linkLimits.allow(link.Provider+"/"+link.ConnectionID+"/"+link.Repair, g.now()); !ok {
		status, v.State, v.Title = http.StatusTooManyRequests, "unavailable", "Please wait a moment"
		v.Message = "This page was opened too many times in a short while. Wait a few seconds, then open the link again."
		setRetryAfter(w.Header(), wait)
		return
	}
	v.Provider, v.Connection = link.Provider, link.ConnectionID
	if !g.hasTemporal() {
		// The gateway is still connecting to Temporal (waiting.go).
		status, v.State, v.Title = http.StatusServiceUnavailable, "unavailable", "We can't reach your connection right now"
		v.Message = "Please try again in a minute."
		w.Header().Set("Retry-After", "30")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), interactiveBudget)
	defer cancel()
	view, err := g.readRepair(ctx, link.Provider, link.ConnectionID)
	if err != nil {
		status, v.State, v.Title = http.StatusServiceUnavailable, "unavailable", "We can't reach your connection right now"
		v.Message = "Please try again in a minute."
		w.Header().Set("Retry-After", "30")
		return
	}
	v.Institution, v.Status, v.Attempt = view.Institution, view.Status, view.Attempt
	if !view.Status.Terminal() && (view.Source == "visibility" || view.RepairRunID == "") {
		// The open repair's state did not answer: it cannot be told from a
		// newer one, so the page neither offers nor refuses the reconnect.
		status, v.State, v.Title = http.StatusServiceUnavailable, "unavailable", "We can't reach your connection right now"
		v.Message = "Please try again in a minute."
		w.Header().Set("Retry-After", "30")
		return
	}
	if view.RepairRunID != link.Repair || view.Status.Terminal() {
		v.State = "ended"
		v.Title, v.Message = endedWords(view, view.RepairRunID == link.Repair)
		v.ReturnURL = g.returnURL(link.Scope, string(view.Status))
		return
	}
	token, _, err := g.ClientTokens.Mint(link.Scope)
	if err != nil {
		status, v.State, v.Title = http.StatusInternalServerError, "unavailable", "Something went wrong on our side"
		return
	}
	v.State, v.ClientToken, v.ReturnBase = "open", token, g.ReconnectReturnURL
	v.Title = "Reconnect your bank"
	if v.Institution != "" {
		v.Title = "Reconnect " + v.Institution
	}
	v.Message = "Your bank connection stopped working, usually after a password or security change. Sign in to your bank again to fix it; it takes a minute."
	if view.Proactive {
		// Nothing is broken yet: invite rather than warn.
		v.Title = "Keep your bank connected"
		if v.Institution != "" {
			v.Title = "Keep " + v.Institution + " connected"
		}
		v.Message = "Your bank needs you to confirm your connection soon, or it will stop updating. Sign in to your bank again now; it takes a minute."
	}
}

// endedWords say what became of a repair the link can no longer act on.
func endedWords(view repairView, same bool) (title, message string) {
	if !same && !view.Status.Terminal() {
		return "This link has been replaced", "A newer request to reconnect this bank was sent. Open the latest message, or go back to the app."
	}
	switch view.Status {
	case workflows.StatusRepaired:
		return "Your bank is connected", "Nothing more to do: the connection works again."
	case workflows.StatusCanceled:
		return "No longer needed", "This request was withdrawn. If your bank still shows as disconnected, go back to the app."
	case workflows.StatusExpired:
		return "This request has expired", "The time to reconnect ran out. Go back to the app to start again."
	default:
		return "This connection can't be repaired here", "Go back to the app to connect your bank again."
	}
}

// returnURL is the app's return URL with the outcome in its query.
func (g *Gateway) returnURL(scope clienttoken.Scope, status string) string {
	if g.ReconnectReturnURL == "" {
		return ""
	}
	u, err := url.Parse(g.ReconnectReturnURL)
	if err != nil {
		return ""
	}
	q := u.Query()
	q.Set("status", status)
	q.Set("provider", scope.Provider)
	q.Set("connectionId", scope.ConnectionID)
	u.RawQuery = q.Encode()
	return u.String()
}

// asset is one file GET /r/assets/{name} serves.
type asset struct {
	body  []byte
	ctype string
	etag  string
	// crossOrigin: pages of other origins load it (the embeddable
	// button's script); the others are for the gateway's own pages.
	crossOrigin bool
}

// assets are what GET /r/assets/{name} serves, built once from hosted/.
// The two scripts that run a provider's widget are each the widget engine
// (engine.js) and their own part in one function scope: the hosted page's
// (reconnect.js) and the embeddable Reconnect button's (relink-button.js).
var assets = func() map[string]asset {
	const js, css = "text/javascript; charset=utf-8", "text/css; charset=utf-8"
	a := map[string]asset{
		"reconnect.js":      {body: bundle("engine.js", "reconnect.js"), ctype: js},
		"relink-button.js":  {body: bundle("engine.js", "relink-button.js"), ctype: js, crossOrigin: true},
		"reconnect.css":     {body: hostedFile("reconnect.css"), ctype: css},
		"sandbox-widget.js": {body: hostedFile("sandbox-widget.js"), ctype: js},
	}
	for name, f := range a {
		sum := sha256.Sum256(f.body)
		f.etag = `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`
		a[name] = f
	}
	return a
}()

func hostedFile(name string) []byte {
	b, err := hostedAssets.ReadFile("hosted/" + name)
	if err != nil {
		panic(err) // embedded: cannot happen
	}
	return b
}

// bundle is one script of the files, in one strict-mode function scope:
// what one declares the later ones see, and nothing reaches the page's
// global scope.
func bundle(files ...string) []byte {
	var b bytes.Buffer
	b.WriteString("/* Relink: " + strings.Join(files, " + ") + " */\n(() => {\n'use strict';\n")
	for _, f := range files {
		b.WriteString("\n// ---- " + f + "\n")
		b.Write(hostedFile(f))
	}
	b.WriteString("})();\n")
	return b.Bytes()
}

// hostedAsset serves the hosted page's script and style, the sandbox
// widget's script, and the embeddable button's script: cached five
// minutes, then revalidated (ETag, 304).
func hostedAsset(w http.ResponseWriter, r *http.Request) {
	a, ok := assets[r.PathValue("name")]
	if !ok {
		writeError(w, http.StatusNotFound, codeNotFound, "no such asset")
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("ETag", a.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if a.crossOrigin {
		// Pages of any origin may load it, those that ask for
		// Cross-Origin-Embedder-Policy too.
		h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	} else {
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
	}
	if etagMatches(r.Header.Get("If-None-Match"), a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", a.ctype)
	_, _ = w.Write(a.body)
}

// etagMatches reads If-None-Match: a list of entity tags, weak or strong
// (compared weakly, RFC 9110 section 13.1.2), or *.
func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

// OAuthReturnPath is where an OAuth bank sends the user back to the
// hosted page: the URL to set as PLAID_REDIRECT_URI (RELINK_PUBLIC_URL +
// OAuthReturnPath) and register in Plaid's dashboard. Plaid allows only
// registered redirect URIs, so it is one fixed path, not a reconnect
// link.
const OAuthReturnPath = LinkPathPrefix + "oauth"

// oauthReturnPage is GET /r/oauth: the bank's return to Plaid Link
// (?oauth_state_id=…), in the tab that left for the bank or another of
// the same browser. The page's script finds, in this origin's
// localStorage, the connection, client token and Link session the
// hosted page kept when Link left for the bank (that tab's own, else the
// most recent), opens Link again with them and receivedRedirectUri, and
// goes on as the hosted page does.
func (g *Gateway) oauthReturnPage(w http.ResponseWriter, r *http.Request) {
	v := hostedView{State: "oauth", Title: "Finishing with your bank", Message: "One moment.", ReturnBase: g.ReconnectReturnURL}
	status := http.StatusOK
	if g.Links == nil {
		status, v.State, v.Title = http.StatusNotFound, "invalid", "This link doesn't work"
		v.Message = "Reconnect links are not enabled here. Go back to the app to reconnect your bank."
		v.ReturnBase = ""
	}
	// Any provider whose widget is Plaid Link may have sent the user here.
	var browsers []aggregator.Browser
	for _, name := range sortedKeys(g.Browsers) {
		if b := g.Browsers[name]; b.Has(aggregator.WidgetPlaidLink) {
			browsers = append(browsers, b)
		}
	}
	pageHeaders(w.Header(), "DENY", g.cspFor(browsers...))
	w.WriteHeader(status)
	_ = hostedPage.Execute(w, v)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (g *Gateway) renderHosted(w http.ResponseWriter, status int, v hostedView) {
	// The page holds a client token: never cached, never framed, never
	// sent on as a referrer; scripts and frames only from where the
	// provider's widget needs them.
	pageHeaders(w.Header(), "DENY", g.hostedCSP(v.Provider))
	w.WriteHeader(status)
	_ = hostedPage.Execute(w, v)
}

// pageHeaders are the headers of a page that may hold a token: HTML,
// never cached, no referrer, framed only as frameOptions (if any) and
// csp's frame-ancestors say, and csp.
func pageHeaders(h http.Header, frameOptions, csp string) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	if frameOptions != "" {
		h.Set("X-Frame-Options", frameOptions)
	}
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", csp)
}

// hostedCSP allows the page's own script and style, the origins the
// provider's widget needs (its registration's Browser record: frames,
// API calls, and Plaid Link's script for providers whose sessions open
// Plaid Link), RELINK_RECONNECT_FRAME_ORIGINS, and the gateway's API
// (same origin); nothing else.
func (g *Gateway) hostedCSP(provider string) string {
	return g.cspFor(g.Browsers[provider])
}

// cspFor is hostedCSP for a page that may run any of the browsers'
// widgets.
func (g *Gateway) cspFor(browsers ...aggregator.Browser) string {
	scripts, frames, connects := []string{"'self'"}, []string{"'self'"}, []string{"'self'"}
	for _, b := range browsers {
		frames = append(frames, b.FrameOrigins...)
		connects = append(connects, b.ConnectOrigins...)
		if b.Has(aggregator.WidgetPlaidLink) {
			if u, err := url.Parse(g.PlaidLinkScriptURL); err == nil && u.Host != "" {
				scripts = append(scripts, u.Scheme+"://"+u.Host)
				frames = append(frames, u.Scheme+"://"+u.Host)
			}
		}
	}
	frames = append(frames, g.ReconnectFrameOrigins...)
	return "default-src 'none'; script-src " + strings.Join(dedupe(scripts), " ") +
		"; style-src 'self'; img-src 'self' data:; connect-src " + strings.Join(dedupe(connects), " ") + "; frame-src " + strings.Join(dedupe(frames), " ") +
		"; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
}

// dedupe drops repeats, keeping the first of each.
func dedupe(list []string) []string {
	seen := map[string]bool{}
	out := list[:0:0]
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
