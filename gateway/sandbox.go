package gateway

import (
	"errors"
	"html/template"
	"net/http"

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
		}
		if !decodeBody(w, r, &req) {
			return
		}
		if !validID(r.PathValue("id")) || (req.ProfileID != "" && !validID(req.ProfileID)) {
			writeError(w, http.StatusBadRequest, codeBadRequest, "connection and profile ids must be printable, without quotes")
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
<title>Relink sandbox widget</title>
<h1>Sandbox bank widget</h1>
<p>Connection <code>{{.}}</code> needs the user to sign in again.</p>
<p>In the sandbox, the user's sign-in is simulated with
<code>POST /sandbox/connections/{{.}}/login</code>; its answer is the body for
<code>POST /v1/repairs/sandbox/{{.}}/complete</code>.</p>
`))

// sandboxWidget is the page the sandbox's widget URL opens.
func (g *Gateway) sandboxWidget(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = widgetPage.Execute(w, r.URL.Query().Get("connectionId"))
}
