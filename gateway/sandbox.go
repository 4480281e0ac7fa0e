package gateway

import (
	"errors"
	"html/template"
	"net/http"
	"strings"

	"github.com/relink-dev/relink/activities/sandbox"
)

// sandboxRoutes are the sandbox provider's controls, the stand-ins for an
// aggregator's sandbox dashboard and for the user in the widget.
func (g *Gateway) sandboxRoutes(mux routeMux) {
	mux.HandleFunc("GET /sandbox/connections/{id}", func(w http.ResponseWriter, r *http.Request) {
		c, err := g.Sandbox.Get(r.PathValue("id"))
		g.sandboxReply(w, c, err)
	})
	// break is connectionSimulateError: the connection becomes
	// ERROR_REPAIRABLE and the sandbox sends the repairable webhook.
	mux.HandleFunc("POST /sandbox/connections/{id}/break", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ProfileID   string `json:"profileId"`
			Institution string `json:"institution"`
			// LoseWebhook loses the repairable webhook: only a
			// reconciliation sweep finds the break.
			LoseWebhook bool `json:"loseWebhook"`
		}
		if !decodeBody(w, r, &req) {
			return
		}
		if !validID(r.PathValue("id")) || (req.ProfileID != "" && !validID(req.ProfileID)) {
			writeError(w, http.StatusBadRequest, codeBadRequest, "connection and profile ids must be printable, without quotes")
			return
		}
		if req.LoseWebhook {
			g.sandboxReply(w, g.Sandbox.BreakLosingWebhook(r.PathValue("id"), req.ProfileID, req.Institution), nil)
			return
		}
		c, err := g.Sandbox.Break(r.Context(), r.PathValue("id"), req.ProfileID, req.Institution)
		g.sandboxReply(w, c, err)
	})
	mux.HandleFunc("PUT /sandbox/connections/{id}/script", func(w http.ResponseWriter, r *http.Request) {
		var s sandbox.Script
		if !decodeBody(w, r, &s) {
			return
		}
		c, err := g.Sandbox.SetScript(r.PathValue("id"), s)
		g.sandboxReply(w, c, err)
	})
	mux.HandleFunc("POST /sandbox/connections/{id}/disconnect", func(w http.ResponseWriter, r *http.Request) {
		err := g.Sandbox.Disconnect(r.Context(), r.PathValue("id"))
		c, _ := g.Sandbox.Get(r.PathValue("id"))
		g.sandboxReply(w, c, err)
	})
	// login is the user signing in to the widget; its answer is the body
	// the frontend sends to /v1/repairs/sandbox/{id}/complete.
	mux.HandleFunc("POST /sandbox/connections/{id}/login", func(w http.ResponseWriter, r *http.Request) {
		login, err := g.Sandbox.LoginUser(r.PathValue("id"))
		g.sandboxReply(w, login, err)
	})
}

func (g *Gateway) sandboxReply(w http.ResponseWriter, v any, err error) {
	switch {
	case errors.Is(err, sandbox.ErrUnknownConnection):
		writeError(w, http.StatusNotFound, codeNotFound, err.Error())
	case errors.Is(err, sandbox.ErrNoOpenSession):
		writeError(w, http.StatusConflict, codeConflict, err.Error())
	case err != nil:
		// A script that does not validate, or the webhook to ourselves failed.
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
	default:
		writeJSON(w, http.StatusOK, v)
	}
}

var widgetPage = template.Must(template.New("widget").Parse(`<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Relink sandbox widget</title>
<link rel="stylesheet" href="/r/assets/reconnect.css">
<main class="card" id="sandbox-widget" data-connection="{{.Connection}}" data-session="{{.Session}}" data-origins="{{.Origins}}">
<p class="institution">Sandbox bank</p>
<h1>Sign in again</h1>
<p>Connection <code>{{.Connection}}</code> needs the user to sign in again.
This simulated widget stands in for the provider's: <strong>Sign in</strong>
succeeds, <strong>Cancel</strong> leaves. A page embedding it hears the
outcome as a message; without one, <code>POST /sandbox/connections/{{.Connection}}/login</code>
(API key) answers the body for <code>POST /v1/repairs/sandbox/{{.Connection}}/complete</code>.</p>
<label for="sandbox-user">Username</label>
<input id="sandbox-user" value="user_good" autocomplete="off">
<button id="sandbox-sign-in" type="button" class="primary">Sign in</button>
<button id="sandbox-cancel" type="button" class="secondary">Cancel</button>
<p id="sandbox-status" role="status" aria-live="polite"></p>
</main>
<script src="/r/assets/sandbox-widget.js"></script>
</html>
`))

// sandboxWidget is the page the sandbox's widget URL opens: the provider's
// widget, simulated. Only pages of the gateway's own origin (the hosted
// page) and of RELINK_CORS_ORIGINS (an app's page with the embeddable
// button) may frame it, and its messages go to those origins only.
func (g *Gateway) sandboxWidget(w http.ResponseWriter, r *http.Request) {
	q, ok := singleQuery(w, r, "connectionId", "session")
	if !ok {
		return
	}
	ancestors := strings.Join(append([]string{"'self'"}, g.CORSOrigins...), " ")
	frameOptions := "SAMEORIGIN"
	if len(g.CORSOrigins) > 0 {
		// X-Frame-Options cannot name other origins; frame-ancestors,
		// which browsers obey over it, does.
		frameOptions = ""
	}
	pageHeaders(w.Header(), frameOptions,
		"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; frame-ancestors "+ancestors+"; base-uri 'none'; form-action 'none'")
	_ = widgetPage.Execute(w, struct {
		Connection, Session, Origins string
	}{q.Get("connectionId"), q.Get("session"), strings.Join(g.CORSOrigins, " ")})
}

// sandboxWidgetLogin is the user signing in inside the simulated widget:
// the widget's session token is the credential, as a real widget's link
// token is, so it needs no API key.
func (g *Gateway) sandboxWidgetLogin(w http.ResponseWriter, r *http.Request) {
	// JSON only: a cross-site form post cannot send it without a preflight.
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, codeUnsupportedMediaType, "send application/json")
		return
	}
	var req struct {
		ConnectionID string `json:"connectionId"`
		Session      string `json:"session"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if !validID(req.ConnectionID) {
		writeError(w, http.StatusBadRequest, codeBadRequest, "connectionId must be printable, without quotes")
		return
	}
	login, err := g.Sandbox.LoginInWidget(req.ConnectionID, req.Session)
	g.sandboxReply(w, login, err)
}
