package integration

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/clienttoken"
	"github.com/relink-dev/relink/keyring"
	"github.com/relink-dev/relink/workflows"
)

// newLinkStack is a stack whose events carry reconnect links.
func newLinkStack(t *testing.T, settings map[string]string) *stack {
	env := map[string]string{
		"RELINK_CLIENT_TOKEN_KEYS":    newKey(t, "links1"),
		"RELINK_RECONNECT_RETURN_URL": "https://app.example.com/connections?from=relink",
	}
	for k, v := range settings {
		env[k] = v
	}
	return newStackWith(t, env)
}

// eventLink waits for the connection's event of that type and returns its
// reconnect link.
func (s *stack) eventLink(conn, eventType string) string {
	s.t.Helper()
	var link string
	s.waitFor(eventType+" with a reconnect link", func() bool {
		s.app.mu.Lock()
		defer s.app.mu.Unlock()
		for _, ev := range s.app.events {
			if ev.Repair.ConnectionID == conn && ev.Type == eventType {
				link = ev.Repair.ReconnectURL
				return link != ""
			}
		}
		return false
	})
	return link
}

// page GETs a hosted page as a browser would, with no credential.
func page(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(body)
}

var pageToken = regexp.MustCompile(`data-token="([^"]+)"`)

func TestTheActionRequiredEventLinksToAWorkingPage(t *testing.T) {
	s := newLinkStack(t, nil)
	s.breakConnection("conn_link", "profile_link")
	link := s.eventLink("conn_link", activities.EventActionRequired)
	require.True(t, strings.HasPrefix(link, s.gateway.URL+"/r/"), link)

	status, h, body := page(t, link)
	require.Equal(t, http.StatusOK, status, body)
	assert.Contains(t, body, `id="reconnect"`)
	assert.Contains(t, body, "Reconnect First Sandbox Bank")
	assert.Equal(t, "no-store", h.Get("Cache-Control"))
	assert.Equal(t, "no-referrer", h.Get("Referrer-Policy"))
	assert.Equal(t, "DENY", h.Get("X-Frame-Options"))
	csp := h.Get("Content-Security-Policy")
	assert.Contains(t, csp, "script-src 'self';")
	assert.Contains(t, csp, "frame-ancestors 'none'")
	assert.NotContains(t, csp, "unsafe-inline")

	// The page's token acts on this connection, and on nothing else.
	m := pageToken.FindStringSubmatch(body)
	require.Len(t, m, 2)
	var got struct{ Repair workflows.RepairState }
	require.Equal(t, http.StatusOK, send(t, s.gateway, m[1], "", http.MethodGet, "/v1/repairs/sandbox/conn_link", nil, &got).status)
	assert.Equal(t, workflows.StatusAwaitingUser, got.Repair.Status)
	assert.Equal(t, http.StatusForbidden, send(t, s.gateway, m[1], "", http.MethodGet, "/v1/repairs/sandbox/conn_other", nil, nil).status)
	assert.Equal(t, http.StatusForbidden, send(t, s.gateway, m[1], "", http.MethodGet, "/v1/repairs", nil, nil).status)

	// The user finishes; the same link then shows the outcome, with the
	// way back to the app.
	s.repairConnection("conn_link")
	s.waitForStatus("conn_link", workflows.StatusRepaired)
	status, _, body = page(t, link)
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, "Your bank is connected")
	assert.NotContains(t, body, `id="reconnect"`)
	assert.NotContains(t, body, "data-token=\"ey", "an ended repair's page holds no token")
	assert.Contains(t, body, `href="https://app.example.com/connections?connectionId=conn_link&amp;from=relink&amp;provider=sandbox&amp;status=REPAIRED"`)
}

func TestReconnectLinksTheAppMints(t *testing.T) {
	s := newLinkStack(t, map[string]string{"RELINK_RECONNECT_LINK_TTL": "1h"})
	var minted struct {
		URL       string    `json:"url"`
		ExpiresAt time.Time `json:"expiresAt"`
	}
	assert.Equal(t, http.StatusNotFound, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_mint/reconnect-link", nil, nil), "no repair yet")
	s.breakConnection("conn_mint", "profile_mint")
	s.waitForStatus("conn_mint", workflows.StatusAwaitingUser)
	require.Equal(t, http.StatusCreated, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_mint/reconnect-link", nil, &minted))
	assert.WithinDuration(t, time.Now().Add(time.Hour), minted.ExpiresAt, time.Minute, "RELINK_RECONNECT_LINK_TTL")
	status, _, body := page(t, minted.URL)
	require.Equal(t, http.StatusOK, status, body)

	// A link cut short, or altered, says so in plain words.
	status, _, body = page(t, minted.URL[:len(minted.URL)-3])
	assert.Equal(t, http.StatusNotFound, status)
	assert.Contains(t, body, "This link doesn&#39;t work")
	status, _, _ = page(t, s.gateway.URL+"/r/not-a-token")
	assert.Equal(t, http.StatusNotFound, status)

	// A browser token is not a link, nor the reverse.
	var ct struct{ Token string }
	require.Equal(t, http.StatusCreated, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_mint/client-token", nil, &ct))
	status, _, _ = page(t, s.gateway.URL+"/r/"+ct.Token)
	assert.Equal(t, http.StatusNotFound, status)
	linkToken := strings.TrimPrefix(minted.URL, s.gateway.URL+"/r/")
	assert.Equal(t, http.StatusUnauthorized, send(t, s.gateway, linkToken, "", http.MethodGet, "/v1/repairs/sandbox/conn_mint", nil, nil).status)

	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_mint/cancel", nil, nil))
	s.waitForStatus("conn_mint", workflows.StatusCanceled)
	assert.Equal(t, http.StatusConflict, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_mint/reconnect-link", nil, nil), "the repair has ended")
	status, _, body = page(t, minted.URL)
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, "No longer needed")
}

// A link stays good across continue-as-new and new sessions, and a new
// break (a new repair) replaces it.
func TestALinkOutlivesContinueAsNewButNotItsRepair(t *testing.T) {
	s := newLinkStack(t, nil)
	s.breakQuietly("conn_carry")
	s.startDirect("conn_carry", workflows.RepairOptions{MinRefreshInterval: time.Nanosecond, ContinueAsNewAfterEvents: 60})
	s.waitForStatus("conn_carry", workflows.StatusAwaitingUser)
	var minted struct{ URL string }
	require.Equal(t, http.StatusCreated, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_carry/reconnect-link", nil, &minted))
	for range 15 {
		require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_carry/reconnect",
			map[string]bool{"forceNewSession": true}, nil))
	}
	st := s.state("conn_carry")
	require.Greater(t, st.Runs, 1, "the repair continued as new")
	status, _, body := page(t, minted.URL)
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, `id="reconnect"`, "the link still opens the repair")

	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_carry/cancel", nil, nil))
	s.waitForStatus("conn_carry", workflows.StatusCanceled)
	s.breakConnection("conn_carry", "profile_carry")
	s.waitForStatus("conn_carry", workflows.StatusAwaitingUser)
	status, _, body = page(t, minted.URL)
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, "This link has been replaced")
	assert.NotContains(t, body, `id="reconnect"`)
}

func TestAnExpiredLinkSaysWhatToDo(t *testing.T) {
	key := newKey(t, "links-exp")
	s := newLinkStack(t, map[string]string{"RELINK_CLIENT_TOKEN_KEYS": key})
	s.breakConnection("conn_old_link", "profile_old")
	st := s.waitForStatus("conn_old_link", workflows.StatusAwaitingUser)
	// A link minted 22 days ago with the gateway's own key (the longest a
	// link lives is 21).
	keys, err := keyring.Parse("test", key)
	require.NoError(t, err)
	past, err := clienttoken.New(keys, time.Minute, func() time.Time { return time.Now().Add(-22 * 24 * time.Hour) })
	require.NoError(t, err)
	token, _, err := past.MintLink(clienttoken.Scope{Provider: "sandbox", ConnectionID: "conn_old_link"}, st.RepairRunID, clienttoken.MaxLinkTTL)
	require.NoError(t, err)

	status, h, body := page(t, s.gateway.URL+"/r/"+token)
	assert.Equal(t, http.StatusGone, status)
	assert.Contains(t, body, "This link has expired")
	assert.Contains(t, body, "get a new one")
	assert.NotContains(t, body, `id="reconnect"`)
	assert.Equal(t, "no-store", h.Get("Cache-Control"))
}

// An ask the app has not taken yet (its endpoint is down) is withdrawn
// when the repair ends: the app is not asked about a finished repair.
func TestAnAskStillInDeliveryIsWithdrawnWhenTheRepairEnds(t *testing.T) {
	var mu sync.Mutex
	var asked, afterEnd int
	ended := false
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Relink-Event-Type") == activities.EventActionRequired {
			asked++
			if ended {
				afterEnd++
			}
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	s := newStackWith(t, map[string]string{"RELINK_NOTIFY_URL": down.URL, "RELINK_NOTIFY_TIMEOUT": "3s"})
	s.breakConnection("conn_withdrawn", "profile_withdrawn")
	s.waitForStatus("conn_withdrawn", workflows.StatusAwaitingUser)
	s.waitFor("the ask to be tried", func() bool { mu.Lock(); defer mu.Unlock(); return asked > 0 })

	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_withdrawn/cancel", nil, nil))
	s.waitForStatus("conn_withdrawn", workflows.StatusCanceled)
	mu.Lock()
	ended = true
	mu.Unlock()
	id := workflows.WorkflowID(sandbox.Name, "conn_withdrawn")
	s.waitFor("the run to close", func() bool {
		desc, err := s.temporal.DescribeWorkflowExecution(context.Background(), id, "")
		return err == nil && desc.GetWorkflowExecutionInfo().GetCloseTime() != nil
	})
	events := s.history(id, "")
	assert.Equal(t, 1, countEvents(events, enums.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED), "the ask's delivery was withdrawn")
	mu.Lock()
	assert.Zero(t, afterEnd, "no ask reached the app after the outcome")
	mu.Unlock()
	s.recordHistory(id, "withdrawn")
}

// A link's page asks the repair for its state on every load (a query):
// loads of one repair's links are rate-limited like a connection's client
// token (RELINK_BROWSER_RATE_LIMIT and _BURST, per gateway), so a link
// reloaded in a loop, or shared, costs a bounded number of queries. Other
// repairs' links are not affected.
func TestReloadingALinkIsRateLimited(t *testing.T) {
	const burst = 3
	// One load every 1000 s past the burst: none refills during the test.
	key := newKey(t, "links-reload")
	s := newLinkStack(t, map[string]string{"RELINK_CLIENT_TOKEN_KEYS": key,
		"RELINK_BROWSER_RATE_LIMIT": "0.001", "RELINK_BROWSER_RATE_BURST": "3"})
	s.breakConnection("conn_reload", "profile_reload")
	s.breakConnection("conn_calm", "profile_calm")
	link := s.eventLink("conn_reload", activities.EventActionRequired)
	other := s.eventLink("conn_calm", activities.EventActionRequired)
	st := s.waitForStatus("conn_reload", workflows.StatusAwaitingUser)
	s.waitForStatus("conn_calm", workflows.StatusAwaitingUser)
	// Another link to the same repair (another lifetime, so another
	// token) shares the bound.
	keys, err := keyring.Parse("test", key)
	require.NoError(t, err)
	tokens, err := clienttoken.New(keys, time.Minute, time.Now)
	require.NoError(t, err)
	token, _, err := tokens.MintLink(clienttoken.Scope{Provider: "sandbox", ConnectionID: "conn_reload"}, st.RepairRunID, time.Hour)
	require.NoError(t, err)
	second := s.gateway.URL + "/r/" + token
	require.NotEqual(t, link, second)

	queries := func() float64 {
		return sample(s.scrape(), "temporal_request_total", map[string]string{"operation": "QueryWorkflow"})
	}
	before := queries()
	var statuses []int
	for range 10 {
		status, h, body := page(t, link)
		statuses = append(statuses, status)
		if status == http.StatusTooManyRequests {
			retry, err := strconv.Atoi(h.Get("Retry-After"))
			require.NoError(t, err, "Retry-After")
			assert.Positive(t, retry)
			assert.Equal(t, "text/html; charset=utf-8", h.Get("Content-Type"))
			assert.Equal(t, "no-store", h.Get("Cache-Control"))
			assert.Contains(t, body, "opened too many times")
			assert.NotContains(t, body, `id="reconnect"`)
			assert.NotContains(t, body, "data-token=\"ey", "no client token past the bound")
		} else {
			assert.Contains(t, body, `id="reconnect"`)
		}
	}
	want := []int{200, 200, 200, 429, 429, 429, 429, 429, 429, 429}
	assert.Equal(t, want, statuses)
	status, _, _ := page(t, second)
	assert.Equal(t, http.StatusTooManyRequests, status, "the bound is per repair, not per link")
	assert.LessOrEqual(t, queries()-before, float64(burst), "at most the burst's loads asked the repair")

	status, _, body := page(t, other)
	assert.Equal(t, http.StatusOK, status, "another repair's link is unaffected")
	assert.Contains(t, body, `id="reconnect"`)
}
