//go:build browser

package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/mx"
	"github.com/relink-dev/relink/activities/mx/mxfake"
	"github.com/relink-dev/relink/workflows"
)

// mxConnectStandIn serves a stand-in for MX's Connect widget at
// /md/connect/{token}, the page the widget URLs of MX's widget_urls call
// open, on an origin of its own. Like MX's (ui_message_version 4), it
// posts {mx: true, type, metadata} to its parent: mx/connect/loaded on
// load, mx/connect/memberConnected for member of user on Connect
// (#mx-standin-connect), and mx/connect/oauthError on "Bank said no"
// (#mx-standin-oauth-error). Like MX's, a URL works once: opened again it
// shows an expired page and posts nothing. opened are the tokens it was
// opened with, in order.
func mxConnectStandIn(t *testing.T, user, member string) (srv *httptest.Server, opened func() []string) {
	var (
		mu     sync.Mutex
		tokens []string
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /md/connect/{token}", func(w http.ResponseWriter, r *http.Request) {
		token := r.PathValue("token")
		mu.Lock()
		used := false
		for _, tk := range tokens {
			used = used || tk == token
		}
		tokens = append(tokens, token)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if used {
			fmt.Fprint(w, `<!doctype html><html lang="en"><meta charset="utf-8"><title>MX Connect (stand-in)</title>
<body><h1 id="mx-standin-expired">This session has expired.</h1></body></html>`)
			return
		}
		meta := fmt.Sprintf(`{ user_guid: %s, session_guid: 'SES-standin', member_guid: %s }`, jsString(user), jsString(member))
		fmt.Fprintf(w, `<!doctype html><html lang="en"><meta charset="utf-8"><title>MX Connect (stand-in)</title>
<body><h1>MX Connect stand-in</h1><p>Answer MX Bank's challenge.</p>
<button type="button" id="mx-standin-connect">Connect</button>
<button type="button" id="mx-standin-oauth-error">Bank said no</button>
<script>
(() => {
  const send = (type, metadata) => window.parent.postMessage({ mx: true, type, metadata }, '*');
  const meta = %s;
  document.getElementById('mx-standin-connect').addEventListener('click', () => send('mx/connect/memberConnected', meta));
  document.getElementById('mx-standin-oauth-error').addEventListener('click', () => send('mx/connect/oauthError', meta));
  send('mx/connect/loaded', { user_guid: meta.user_guid, session_guid: meta.session_guid, initial_step: 'mfa' });
})();
</script></body></html>`, meta)
	})
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), tokens...)
	}
}

func TestBrowserRepairsAnMXMemberThroughItsConnectWidget(t *testing.T) {
	const member = "MBR-bmx1"
	widget, opened := mxConnectStandIn(t, mxUser, member)
	fake := mxfake.New(mxClientID, mxAPIKey)
	t.Cleanup(fake.Close)
	fake.WidgetURL = widget.URL + "/md/connect/"
	s := newLinkStack(t, merged(mxSettings(fake), map[string]string{
		"RELINK_CLIENT_TOKEN_KEYS":       newKey(t, "links-mx"),
		"RELINK_RECONNECT_FRAME_ORIGINS": widget.URL,
	}))
	b := newBrowser(t)
	m := putMX(fake, member, mx.StatusChallenged)
	s.breakMX(m)
	link := s.eventLink(member, activities.EventActionRequired)

	require.Equal(t, int64(http.StatusOK), b.open(link))
	b.waitState("ready")
	b.recordCalls()
	b.click("reconnect")
	b.waitState("widget")
	first := eval[string](b, `document.getElementById('widget-frame').src`)
	assert.True(t, strings.HasPrefix(first, widget.URL+"/md/connect/"), first)

	// The bank refuses the OAuth sign-in: an exit with MX's message type,
	// and the page offers to try again.
	b.clickInWidget("widget-frame", "mx-standin-oauth-error")
	b.waitState("ready")
	assert.Equal(t, "Try again", b.text("reconnect"))
	assert.Contains(t, b.text("message"), "stopped with an error")
	s.waitFor("the exit to be recorded", func() bool { return s.stateOf(mx.Name, member).Exits == 1 })
	st := s.stateOf(mx.Name, member)
	require.NotNil(t, st.LastExit)
	assert.Equal(t, "error", st.LastExit.Reason)
	assert.Equal(t, "mx/connect/oauthError", st.LastExit.ErrorCode)
	assert.Equal(t, workflows.StatusAwaitingUser, st.Status)

	// Trying again opens a new URL (MX's work once: the used one would
	// show MX's expired page), and the user connects.
	b.click("reconnect")
	b.waitState("widget")
	second := eval[string](b, `document.getElementById('widget-frame').src`)
	assert.NotEqual(t, first, second, "a used widget URL is never opened again")
	fake.Set(member, mx.StatusConnected) // MX connects the member, then the widget says so
	b.clickInWidget("widget-frame", "mx-standin-connect")
	b.waitState("repaired")
	assert.Equal(t, "Your bank is connected", b.text("title"))
	assert.False(t, b.shown("widget-frame"))

	st = s.stateOf(mx.Name, member)
	assert.Equal(t, workflows.StatusRepaired, st.Status)
	assert.Equal(t, workflows.ReasonConfirmedOnClose, st.ReasonCode, st.Reason)
	assert.Equal(t, 1, st.Exits)
	// What the page told the API: the exit with MX's message type, and the
	// completion with the widget's metadata, the fields Relink keeps.
	exits := b.callsTo(http.MethodPost, "/exit")
	require.Len(t, exits, 1)
	assert.Equal(t, map[string]any{"reason": "error", "errorCode": "mx/connect/oauthError"}, exits[0].Body)
	completes := b.callsTo(http.MethodPost, "/complete")
	require.Len(t, completes, 1)
	assert.Equal(t, map[string]any{"user_guid": mxUser, "member_guid": member, "session_guid": "SES-standin"}, completes[0].Body["metadata"])
	assert.True(t, strings.HasPrefix(completes[0].Body["connectorToken"].(string), "mxw_"))
	// Each URL was opened once; none showed MX's expired page.
	tokens := opened()
	require.Len(t, tokens, 2)
	assert.NotEqual(t, tokens[0], tokens[1])
	assert.Equal(t, "REPAIRED", b.backLink().Get("status"))
	assert.Equal(t, "mx", b.backLink().Get("provider"))
	assert.Equal(t, member, b.backLink().Get("connectionId"))
	assert.Empty(t, b.pageErrors())
}
