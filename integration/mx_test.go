package integration

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/mx"
	"github.com/relink-dev/relink/activities/mx/mxfake"
	"github.com/relink-dev/relink/workflows"
)

// MX, directly: its CONNECTION_STATUS webhook (HTTP basic credentials, no
// signature) through the real gateway starts the repair on a real
// Temporal server; every path of the adapter end to end: the widget and
// its success (confirmed straight after close, by a status poll, or by
// MX's AGGREGATION webhook), CONTINUE, each status Relink cannot repair,
// and MX down for a while.

const (
	mxClientID     = "mx_client_it"
	mxAPIKey       = "mx_key_it"
	mxUser         = "USR-it"
	mxHookUser     = "relink-it"
	mxHookPassword = "mx-webhook-password-it"
)

func newMXStack(t *testing.T, settings map[string]string) (*stack, *mxfake.Server) {
	fake := mxfake.New(mxClientID, mxAPIKey)
	t.Cleanup(fake.Close)
	return newStackWith(t, merged(mxSettings(fake), settings)), fake
}

// mxSettings enable MX against its fake.
func mxSettings(fake *mxfake.Server) map[string]string {
	return map[string]string{
		"MX_CLIENT_ID":        mxClientID,
		"MX_API_KEY":          mxAPIKey,
		"MX_API_URL":          fake.URL,
		"MX_WEBHOOK_USERNAME": mxHookUser,
		"MX_WEBHOOK_PASSWORD": mxHookPassword,
	}
}

// putMX puts a member of mxUser at the fake.
func putMX(fake *mxfake.Server, member, status string) mxfake.Member {
	m := mxfake.Member{GUID: member, UserGUID: mxUser, Name: "MX Bank", InstitutionCode: "mxbank", Status: status}
	fake.Put(m)
	return m
}

// postMX delivers an MX webhook body as MX does: with the HTTP basic
// credentials it was given.
func (s *stack) postMX(body []byte) webhookSummary {
	s.t.Helper()
	return s.postWebhook(mx.Name, body, map[string]string{
		"Content-Type":  "application/json",
		"Authorization": mxfake.BasicAuth(mxHookUser, mxHookPassword),
	})
}

// breakMX sends the CONNECTION_STATUS webhook of m's status.
func (s *stack) breakMX(m mxfake.Member) webhookSummary {
	s.t.Helper()
	return s.postMX(mxfake.ConnectionStatusBody(m))
}

// completeMX reports the Connect widget's mx/connect/memberConnected, as
// the hosted page maps it.
func (s *stack) completeMX(member string, session *workflows.ReconnectResult) {
	s.t.Helper()
	require.NotNil(s.t, session.Session)
	require.Equal(s.t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/mx/"+member+"/complete", map[string]any{
		"connectorToken": session.Session.ConnectorToken,
		"metadata":       map[string]string{"user_guid": mxUser, "member_guid": member, "session_guid": "SES-it"},
	}, nil))
}

func TestMXEndToEnd(t *testing.T) {
	s, fake := newMXStack(t, nil)
	m := putMX(fake, "MBR-it1", mx.StatusChallenged)

	// A delivery without MX's credentials, or with wrong ones, starts nothing.
	for _, auth := range []string{"", mxfake.BasicAuth(mxHookUser, "not-the-password-it")} {
		req, err := http.NewRequest(http.MethodPost, s.gateway.URL+"/webhooks/mx", bytes.NewReader(mxfake.ConnectionStatusBody(m)))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	}
	assert.Equal(t, http.StatusNotFound, s.call(http.MethodGet, "/v1/repairs/mx/MBR-it1", nil, nil), "nothing started")

	assert.Equal(t, 1, s.breakMX(m).Received)
	st := s.waitForStatusOf(mx.Name, "MBR-it1", workflows.StatusAwaitingUser)
	assert.Equal(t, mxUser, st.ProfileID, "the member's user, from MX's webhook")
	assert.Equal(t, "CONNECTION_STATUS CHALLENGED", st.TriggerReason)
	// MX retries a delivery it thinks failed: the same member and status
	// within the window is the same event, dropped as a duplicate.
	assert.Equal(t, 1, s.breakMX(m).Duplicates)

	// Each reconnect gets a URL of its own: MX's work once.
	var first, rec workflows.ReconnectResult
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/mx/MBR-it1/reconnect", nil, &first))
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/mx/MBR-it1/reconnect", nil, &rec))
	require.NotNil(t, rec.Session)
	assert.True(t, strings.HasPrefix(rec.Session.WidgetURL, mxfake.DefaultWidgetURL), rec.Session.WidgetURL)
	assert.NotEqual(t, first.Session.WidgetURL, rec.Session.WidgetURL, "a single-use URL is never handed out twice")
	var widgetURLs int
	for _, r := range fake.Requests() {
		if r.Path == "/users/"+mxUser+"/widget_urls" {
			widgetURLs++
			assert.Equal(t, "MBR-it1", r.Body["widget_url"].(map[string]any)["current_member_guid"])
		}
	}
	assert.Equal(t, 3, widgetURLs, "the probe's, and one for each reconnect")

	// The user answers MX's challenge in the widget: MX connects the
	// member and the widget says mx/connect/memberConnected.
	fake.Set("MBR-it1", mx.StatusConnected)
	s.completeMX("MBR-it1", &rec)

	st = s.waitForStatusOf(mx.Name, "MBR-it1", workflows.StatusRepaired)
	assert.Equal(t, workflows.ReasonConfirmedOnClose, st.ReasonCode, st.Reason)
	assert.Equal(t, mx.StatusConnected, st.LastProviderStatus)
	assert.Equal(t, 1, fake.Count(http.MethodGet, "/users/"+mxUser+"/members/MBR-it1/status"), "the status read after close")
}

// userFinishesMX breaks member (status broken), takes its repair through
// the widget to VERIFYING, the member being in status meanwhile (MX still
// at work after memberConnected), and returns it as MX's webhooks name it.
func (s *stack) userFinishesMX(fake *mxfake.Server, member, broken, meanwhile string) mxfake.Member {
	s.t.Helper()
	m := putMX(fake, member, broken)
	s.breakMX(m)
	s.waitForStatusOf(mx.Name, member, workflows.StatusAwaitingUser)
	var rec workflows.ReconnectResult
	require.Equal(s.t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/mx/"+member+"/reconnect", nil, &rec))
	fake.Set(member, meanwhile)
	s.completeMX(member, &rec)
	s.waitForStatusOf(mx.Name, member, workflows.StatusVerifying)
	return m
}

func TestMXConfirmedByPollingTheMembersStatus(t *testing.T) {
	s, fake := newMXStack(t, map[string]string{"RELINK_VERIFY_QUIET_PERIOD": "1s", "RELINK_VERIFY_POLL_INTERVAL": "1s"})
	// The widget reports the member connected while MX is still checking
	// the new credentials.
	s.userFinishesMX(fake, "MBR-it2", mx.StatusDenied, mx.StatusResumed)

	fake.Set("MBR-it2", mx.StatusConnected)
	st := s.waitForStatusOf(mx.Name, "MBR-it2", workflows.StatusRepaired)
	assert.Equal(t, workflows.ReasonConfirmedByStatus, st.ReasonCode, st.Reason)
}

// MX's AGGREGATION webhook is not signed: it confirms nothing on its word
// (a forger with a captured body could close any repair), and the
// member's status still decides.
func TestMXAggregationWebhookConfirmsNothing(t *testing.T) {
	s, fake := newMXStack(t, map[string]string{"RELINK_VERIFY_QUIET_PERIOD": "1s", "RELINK_VERIFY_POLL_INTERVAL": "1s"})
	m := s.userFinishesMX(fake, "MBR-it3", mx.StatusPrevented, mx.StatusUpdated)

	// Still PREVENTED at MX: an aggregation webhook changes nothing.
	fake.Set("MBR-it3", mx.StatusPrevented)
	sum := s.postMX(mxfake.AggregationBody(m, time.Now().Add(time.Second)))
	assert.Equal(t, webhookSummary{}, sum, "no event Relink acts on")
	// The status read says what happened: PREVENTED, so the attempt failed.
	st := s.waitForStatusOf(mx.Name, "MBR-it3", workflows.StatusAwaitingUser)
	assert.Equal(t, 2, st.Attempt, "confirmed by reading the member, not by the webhook")
}

func TestMXStillChallengedAfterTheWidgetCountsTheAttempt(t *testing.T) {
	s, fake := newMXStack(t, map[string]string{"RELINK_VERIFY_QUIET_PERIOD": "1s", "RELINK_VERIFY_POLL_INTERVAL": "1s"})
	m := s.userFinishesMX(fake, "MBR-it4", mx.StatusChallenged, mx.StatusResumed)

	// The MFA answer was wrong: MX says REJECTED, and its webhook says so.
	m.Status = mx.StatusRejected
	fake.Set("MBR-it4", mx.StatusRejected)
	s.breakMX(m)
	st := s.waitForStatusOf(mx.Name, "MBR-it4", workflows.StatusAwaitingUser)
	assert.Equal(t, 2, st.Attempt)
	assert.Contains(t, st.LastError, "still reports the connection broken (REJECTED)")
}

// CONTINUE: by the time Relink reads the member, it is MX's to retry
// (aggregated again, the repair done without the user), or connected
// already (nothing to repair, and the app told nothing).
func TestMXContinueWithoutTheUser(t *testing.T) {
	s, fake := newMXStack(t, nil)
	for member, status := range map[string]string{"MBR-it-degraded": mx.StatusDegraded, "MBR-it-fine": mx.StatusConnected} {
		m := putMX(fake, member, mx.StatusChallenged)
		fake.Set(member, status)
		s.breakMX(m)
	}

	st := s.waitForStatusOf(mx.Name, "MBR-it-degraded", workflows.StatusRepaired)
	assert.Equal(t, workflows.ReasonRepairedWithoutUser, st.ReasonCode, st.Reason)
	assert.Equal(t, 1, fake.Count(http.MethodPost, "/users/"+mxUser+"/members/MBR-it-degraded/aggregate"), "MX aggregates it again")

	st = s.waitForStatusOf(mx.Name, "MBR-it-fine", workflows.StatusRepaired)
	assert.Equal(t, workflows.ReasonNothingToRepair, st.ReasonCode, st.Reason)
	assert.True(t, st.Quiet)
	assert.Zero(t, fake.Count(http.MethodPost, "/users/"+mxUser+"/members/MBR-it-fine/aggregate"))
	assert.Zero(t, fake.Count(http.MethodPost, "/users/"+mxUser+"/widget_urls"), "no widget for anyone")
}

// Each way a repair cannot succeed ends it UNREPAIRABLE, with a reason
// that says why: what only the institution or MX can clear, a member MX
// does not know, and a repair that does not name the member's user.
func TestMXUnrepairableReasons(t *testing.T) {
	s, fake := newMXStack(t, nil)
	for member, status := range map[string]string{
		"MBR-it-locked": mx.StatusLocked, "MBR-it-closed": mx.StatusClosed, "MBR-it-discontinued": mx.StatusDiscontinued,
	} {
		m := putMX(fake, member, status)
		// MX sends LOCKED itself; the others a repair finds on its read.
		if status != mx.StatusLocked {
			m.Status = mx.StatusDenied
		}
		s.breakMX(m)
	}
	// A manual member (connection_status null), started from the API.
	putMX(fake, "MBR-it-manual", "")
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs",
		map[string]any{"provider": mx.Name, "connectionId": "MBR-it-manual", "profileId": mxUser}, nil))
	// A member MX does not know.
	s.breakMX(mxfake.Member{GUID: "MBR-it-gone", UserGUID: mxUser, Status: mx.StatusDenied})
	// A repair started without the member's user.
	putMX(fake, "MBR-it-nouser", mx.StatusDenied)
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs",
		map[string]any{"provider": mx.Name, "connectionId": "MBR-it-nouser"}, nil))

	for member, want := range map[string]struct {
		code workflows.ReasonCode
		says string
	}{
		"MBR-it-locked":       {workflows.ReasonNotRepairable, "contact it"},
		"MBR-it-closed":       {workflows.ReasonNotRepairable, "CLOSED"},
		"MBR-it-discontinued": {workflows.ReasonNotRepairable, "DISCONTINUED"},
		"MBR-it-manual":       {workflows.ReasonNotRepairable, "manual member"},
		"MBR-it-gone":         {workflows.ReasonConnectionNotFound, "We were unable to find the record you requested."},
		"MBR-it-nouser":       {workflows.ReasonInvalidInput, "profileId"},
	} {
		st := s.waitForStatusOf(mx.Name, member, workflows.StatusUnrepairable)
		assert.Equal(t, want.code, st.ReasonCode, "%s: %s", member, st.Reason)
		assert.Contains(t, st.Reason, want.says, member)
	}
	assert.Zero(t, fake.Count(http.MethodPost, "/users/"+mxUser+"/widget_urls"), "nobody was sent to a widget that cannot help")
}

// MX down for a while when the break arrives, and again when the user
// finishes: the repair waits it out each time and ends right (the second
// time by polling the member's status once MX is back).
func TestMXOutageThenRepaired(t *testing.T) {
	s, fake := newMXStack(t, map[string]string{"RELINK_VERIFY_QUIET_PERIOD": "1s", "RELINK_VERIFY_POLL_INTERVAL": "1s"})
	m := putMX(fake, "MBR-it5", mx.StatusImpeded)

	fake.SetHTTPStatus(http.StatusServiceUnavailable)
	s.breakMX(m)
	memberPath, statusPath := "/users/"+mxUser+"/members/MBR-it5", "/users/"+mxUser+"/members/MBR-it5/status"
	s.waitFor("initialize to be tried again in the outage", func() bool { return fake.Count(http.MethodGet, memberPath) >= 2 })
	assert.Equal(t, workflows.StatusPending, s.stateOf(mx.Name, "MBR-it5").Status, "no answer yet, no ask")
	fake.SetHTTPStatus(0)
	s.waitForStatusOf(mx.Name, "MBR-it5", workflows.StatusAwaitingUser)

	var rec workflows.ReconnectResult
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/mx/MBR-it5/reconnect", nil, &rec))
	fake.Set("MBR-it5", mx.StatusConnected)
	fake.SetHTTPStatus(http.StatusBadGateway)
	s.completeMX("MBR-it5", &rec)
	// Close is done (MX has none); the status it cannot read yet is
	// read again while verifying.
	s.waitForStatusOf(mx.Name, "MBR-it5", workflows.StatusVerifying)
	s.waitFor("a status poll to meet the outage", func() bool { return fake.Count(http.MethodGet, statusPath) >= 2 })
	fake.SetHTTPStatus(0)

	st := s.waitForStatusOf(mx.Name, "MBR-it5", workflows.StatusRepaired)
	assert.Equal(t, workflows.ReasonConfirmedByStatus, st.ReasonCode, st.Reason)
	assert.Equal(t, 1, st.Attempt, "the outage cost the user no attempt")
}

// A member that broke with its webhook lost is found in MX's members
// listing (every user's members, read page by page), repaired with its
// user's guid, and its late webhook joins the repair; connected members
// and those only the institution can clear start nothing.
func TestMXSweepFindsALostBreakInTheMembersListing(t *testing.T) {
	s, fake := newMXStack(t, nil)
	putMX(fake, "MBR-it-sw-ok", mx.StatusConnected)
	putMX(fake, "MBR-it-sw-locked", mx.StatusLocked)
	lost := putMX(fake, "MBR-it-sw-lost", mx.StatusDenied)
	fake.RateLimitNext(1, "1")

	sw := s.sweep(mx.Name)
	assert.Equal(t, "Completed", sw.Status, sw.Error)
	assert.Equal(t, 1, sw.Checked, "the listing keeps only what needs the user")
	assert.Equal(t, 1, sw.Found)
	st := s.waitForStatusOf(mx.Name, "MBR-it-sw-lost", workflows.StatusAwaitingUser)
	assert.Equal(t, mxUser, st.ProfileID, "the member's user, from the listing")
	assert.Equal(t, 1, s.breakMX(lost).Received)
	assert.Len(t, s.runs(workflows.WorkflowID(mx.Name, "MBR-it-sw-lost")), 1, "the late webhook joins the sweep's repair")
	for _, id := range []string{"MBR-it-sw-ok", "MBR-it-sw-locked"} {
		assert.Equal(t, http.StatusNotFound, s.call(http.MethodGet, "/v1/repairs/mx/"+id, nil, nil), id)
	}
}
