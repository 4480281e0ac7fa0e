package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/clienttoken"
	"github.com/relink-dev/relink/workflows"
)

// A redirect widget (aggregator.WidgetRedirect: TrueLayer's sign-in) sends
// the browser away and takes it back on a return route of the gateway's.
//
//  1. reconnect answers such a session with widget.redirectUrl, the path
//     GET /r/go/{ticket}: a return ticket (clienttoken.MintReturn, signed
//     like client tokens, 30 minutes) naming the connection, the session's
//     connector token and the provider's URL.
//  2. GET /r/go/{ticket} puts the ticket in a cookie of the return route
//     (HttpOnly, SameSite=Lax, Path=/r/return/) and sends the browser on
//     to the provider's URL with an OAuth 2 state (RFC 6749, 4.1.1) bound
//     to the ticket: returnState, a hash of it. Being a top-level
//     navigation to the gateway, this works from the hosted page and from
//     an app's page (the button) alike.
//  3. The provider sends the browser to GET /r/return/{provider}?code=…
//     &state=… (or ?error=…&state=…). The gateway takes the cookie's
//     ticket (none, another provider's, or a forged or expired one:
//     refused) and requires the state to be the ticket's (missing or
//     another's: refused, the cookie kept), then completes the repair
//     with the ticket's connector token and the code. The state is what
//     binds the code to this browser's sign-in: SameSite=Lax sends the
//     cookie on any site's top-level GET, so without it a page could send
//     the user, while they sign in, to the return route with its own
//     code (login CSRF) and have another bank's tokens taken as theirs.
//     The workflow is the durable, single-use record across gateway
//     replicas: the completion's update id is derived from the connector
//     token, and the repair takes a session's success once (a replay is a
//     duplicate, a session of another repair is refused by its validator).
//     The cookie is cleared once the completion is taken or refused for
//     good, not before: a return that found Temporal unavailable (503)
//     completes on reload. An exit (?error=) keeps it, so the user may
//     still sign in from the provider's page they went back to; the
//     exit's update id is the ticket's, so it is recorded once per ticket.
//  4. The browser lands on the repair's hosted page, which follows the
//     repair to its outcome.
//
// A ticket planted in another browser (someone sends a victim their own
// /r/go link) is not stopped: it asks the victim to sign in to a bank for
// the sender's repair, as the sender's hosted-page link would, both being
// bearer links by design. The state makes sure such a planted cookie can
// not take the victim's own sign-in: that return's state is not the
// planted ticket's, and is refused.

// returnTicketTTL bounds how long a user may stay at the provider's
// sign-in.
const returnTicketTTL = 30 * time.Minute

// returnCookie names the cookie holding a provider's return ticket.
func returnCookie(provider string) string { return "relink_return_" + provider }

// redirectPath is the GET /r/go path for a redirect session, or "" when
// the session opens no redirect this gateway can send the browser to.
func (g *Gateway) redirectPath(provider, conn string, b aggregator.Browser, s *aggregator.Session) string {
	if g.ClientTokens == nil || s == nil || s.Widget != aggregator.WidgetRedirect || !b.Has(aggregator.WidgetRedirect) {
		return ""
	}
	u, err := url.Parse(s.WidgetURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	origin := u.Scheme + "://" + u.Host
	if !slices.Contains(b.RedirectOrigins, origin) && !slices.Contains(g.ReconnectFrameOrigins, origin) {
		return ""
	}
	ticket, _, err := g.ClientTokens.MintReturn(clienttoken.Return{
		Scope:   clienttoken.Scope{Provider: provider, ConnectionID: conn},
		Session: s.ConnectorToken, URL: s.WidgetURL,
	}, returnTicketTTL)
	if err != nil {
		return ""
	}
	return LinkPathPrefix + "go/" + ticket
}

// redirectGo is GET /r/go/{ticket}.
func (g *Gateway) redirectGo(w http.ResponseWriter, r *http.Request) {
	if g.ClientTokens == nil {
		g.renderReturnProblem(w, http.StatusNotFound, "")
		return
	}
	ticket := r.PathValue("ticket")
	ret, err := g.ClientTokens.CheckReturn(ticket)
	if err != nil {
		g.renderReturnProblem(w, http.StatusNotFound, "")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: returnCookie(ret.Provider), Value: ticket, Path: LinkPathPrefix + "return/",
		MaxAge: int(returnTicketTTL / time.Second), HttpOnly: true, Secure: g.secureCookies(r), SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, withState(ret.URL, returnState(ticket)), http.StatusSeeOther)
}

// returnState is the OAuth 2 state of a return ticket's sign-in: a hash of
// the ticket, so only a browser holding the ticket (its cookie) can
// present a return with it, and the ticket itself never reaches the
// provider. The ticket carries an Ed25519 signature by the gateway's key,
// so its state can not be guessed by one who has not seen the ticket.
func returnState(ticket string) string {
	sum := sha256.Sum256([]byte("relink-return-state\x00" + ticket))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// withState is the provider's URL with state set in its query.
// The provider's own query is kept byte for byte (a link it composed may
// be read as written); only a state it already carries is replaced.
func withState(raw, state string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw // CheckReturn's URL was parsed when minted
	}
	if u.Query().Has("state") {
		q := u.Query()
		q.Set("state", state)
		u.RawQuery = q.Encode()
		return u.String()
	}
	param := "state=" + url.QueryEscape(state)
	if u.RawQuery == "" {
		u.RawQuery = param
	} else {
		u.RawQuery += "&" + param
	}
	return u.String()
}

// secureCookies: cookies only over https where the gateway is served so.
func (g *Gateway) secureCookies(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	return g.Links != nil && strings.HasPrefix(g.Links.PublicURL, "https://")
}

// redirectReturn is GET /r/return/{provider}.
func (g *Gateway) redirectReturn(w http.ResponseWriter, r *http.Request) {
	provider := r.PathValue("provider")
	c, err := r.Cookie(returnCookie(provider))
	if err != nil || g.ClientTokens == nil {
		// Not started from this browser: a foreign return, a replay of
		// one already taken (its cookie is gone), or one past its time.
		g.renderReturnProblem(w, http.StatusBadRequest, provider)
		return
	}
	// The cookie stays until the return is taken or refused for good: a
	// reload after a 503 completes.
	clearCookie := func() {
		http.SetCookie(w, &http.Cookie{Name: returnCookie(provider), Value: "", Path: LinkPathPrefix + "return/", MaxAge: -1,
			HttpOnly: true, Secure: g.secureCookies(r), SameSite: http.SameSiteLaxMode})
	}
	ret, err := g.ClientTokens.CheckReturn(c.Value)
	if err != nil || ret.Provider != provider {
		clearCookie() // of no use to any return
		g.renderReturnProblem(w, http.StatusBadRequest, provider)
		return
	}
	// The return must carry this ticket's state: a return of another
	// sign-in (a page sending the user here with its own code, a ticket
	// planted in this browser) is refused, and the user's own sign-in,
	// whose cookie this is, can still come back.
	state := returnState(c.Value)
	if got := r.URL.Query().Get("state"); subtle.ConstantTimeCompare([]byte(got), []byte(state)) != 1 {
		g.logger(r.Context()).Warn("redirect return refused: state missing or not this browser's ticket's",
			"provider", ret.Provider, "connectionId", ret.ConnectionID)
		g.renderReturnProblem(w, http.StatusBadRequest, provider)
		return
	}
	q := r.URL.Query()
	code, failure := q.Get("code"), q.Get("error")
	if code == "" && failure == "" {
		g.renderReturnProblem(w, http.StatusBadRequest, provider)
		return
	}
	if !g.hasTemporal() {
		g.renderReturnUnavailable(w, ret.Provider)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), interactiveBudget)
	defer cancel()
	id := workflows.WorkflowID(ret.Provider, ret.ConnectionID)
	if failure != "" {
		// The user left the provider's sign-in, or it failed: the repair
		// keeps waiting for them.
		exit := workflows.ReconnectExited{Reason: "error", ErrorCode: workflows.ClipUTF8(failure, workflows.MaxExitFieldBytes), At: g.now().UTC()}
		if failure == "access_denied" {
			exit.Reason = "user_exit"
		}
		for {
			err = g.update(ctx, id, workflows.UpdateExit, updateID("exit", ret.Provider, ret.ConnectionID, ret.Session, state), exit, nil)
			if !isMoving(err) {
				break
			}
		}
	} else {
		done := workflows.ReconnectCompleted{ConnectorToken: ret.Session, PublicToken: code}
		if len(code) > workflows.MaxTokenBytes {
			g.renderReturnProblem(w, http.StatusBadRequest, provider)
			return
		}
		for {
			err = g.update(ctx, id, workflows.UpdateComplete, updateID("complete", ret.Provider, ret.ConnectionID, ret.Session), done, nil)
			if !isMoving(err) {
				break
			}
		}
	}
	var appErr *temporal.ApplicationError
	if err != nil && !(errors.As(err, &appErr) && appErr.Type() == workflows.ErrTypeAlreadyCompleted) {
		g.logger(r.Context()).Warn("redirect return not taken", "provider", ret.Provider, "connectionId", ret.ConnectionID, "error", err)
		if errors.As(err, &appErr) {
			// The repair refused it (not its session, or it has ended). A
			// refused exit keeps the cookie unless the repair has ended:
			// the user may still sign in from the provider's page.
			if failure == "" || appErr.Type() == workflows.ErrTypeRepairClosed {
				clearCookie()
			}
			g.renderReturnProblem(w, http.StatusConflict, provider)
			return
		}
		g.renderReturnUnavailable(w, ret.Provider)
		return
	}
	if failure == "" {
		clearCookie() // taken (or taken before: the same update id)
	}
	g.logger(r.Context()).Info("redirect return taken", "provider", ret.Provider, "connectionId", ret.ConnectionID, "completed", failure == "")
	// On to the repair's hosted page, which follows it to its outcome.
	if g.Links != nil {
		if view, err := g.readRepair(ctx, ret.Provider, ret.ConnectionID); err == nil && view.RepairRunID != "" {
			if link, _, err := g.Links.URL(ret.Provider, ret.ConnectionID, view.RepairRunID, view.ExpiresAt); err == nil {
				w.Header().Set("Cache-Control", "no-store")
				http.Redirect(w, r, link, http.StatusSeeOther)
				return
			}
		}
	}
	g.renderHosted(w, http.StatusOK, hostedView{State: "ended", Provider: ret.Provider, Connection: ret.ConnectionID,
		Title: "Thanks, we're checking with your bank", Message: "You can close this page and go back to the app: it will let you know when your bank is connected.",
		ReturnURL: g.returnURL(ret.Scope, string(workflows.StatusVerifying))})
}

func (g *Gateway) renderReturnProblem(w http.ResponseWriter, status int, provider string) {
	g.renderHosted(w, status, hostedView{State: "invalid", Provider: provider, Title: "This sign-in can't be used",
		Message: "It was already used, has expired, or was not started from this browser. Go back to the app, or open the latest message about your bank connection, to try again."})
}

func (g *Gateway) renderReturnUnavailable(w http.ResponseWriter, provider string) {
	w.Header().Set("Retry-After", "30")
	g.renderHosted(w, http.StatusServiceUnavailable, hostedView{State: "unavailable", Provider: provider,
		Title: "We can't reach your connection right now", Message: "Please reload this page in a minute."})
}
