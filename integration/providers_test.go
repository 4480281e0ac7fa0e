package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/meld"
	"github.com/relink-dev/relink/activities/meld/meldfake"
	"github.com/relink-dev/relink/activities/plaid"
	"github.com/relink-dev/relink/activities/plaid/plaidfake"
	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/activities/quiltt/quilttfake"
	relinkapi "github.com/relink-dev/relink/client"
	"github.com/relink-dev/relink/workflows"
)

// One end-to-end test per provider: its signed webhook through the real
// gateway starts the repair on a real Temporal server, the frontend gets a
// session and reports the widget's success, the provider confirms, and the
// repair ends REPAIRED; then the provider's main failure path.

const (
	quilttSecret        = "quiltt_sk_it"
	quilttWebhookSecret = "quiltt_wh_it"
)

func newQuilttStack(t *testing.T) (*stack, *quilttfake.Server) {
	fake := quilttfake.New(quilttSecret)
	t.Cleanup(fake.Close)
	s := newStackWith(t, quilttSettings(fake))
	s.syncAfterClose(fake)
	return s, fake
}

// quilttSettings enable Quiltt against its fake.
func quilttSettings(fake *quilttfake.Server) map[string]string {
	return map[string]string{
		"QUILTT_API_SECRET":     quilttSecret,
		"QUILTT_WEBHOOK_SECRET": quilttWebhookSecret,
		"QUILTT_API_URL":        fake.URL,
		"QUILTT_AUTH_URL":       fake.URL,
	}
}

// syncAfterClose: after a successful close, Quiltt syncs and reports it.
// The webhook goes first, so the status Relink reads straight after close
// is still SYNCING or the webhook is already in its inbox.
func (s *stack) syncAfterClose(fake *quilttfake.Server) {
	fake.OnClose = func(c quilttfake.Connection) {
		c.Status = quiltt.StatusSynced
		s.postQuiltt(quiltt.EventSyncedSuccessful, c, "evt_synced_"+c.ID)
		fake.Put(c)
	}
}

func (s *stack) postQuiltt(eventType string, c quilttfake.Connection, eventID string) {
	ev := quiltt.Event{ID: eventID, Type: eventType, At: time.Now().UTC(),
		Profile: &quiltt.Profile{ID: c.ProfileID}, Record: &quiltt.Record{ID: c.ID, Provider: c.Provider, Status: c.Status}}
	err := quiltt.PostWebhook(context.Background(), http.DefaultClient, s.gateway.URL+"/webhooks/quiltt", quilttWebhookSecret, time.Now(), ev)
	require.NoError(s.t, err)
}

func TestQuilttEndToEnd(t *testing.T) {
	s, fake := newQuilttStack(t)
	conn := quilttfake.Connection{ID: "conn_q1", ProfileID: "p_q", Provider: "PLAID", Status: quiltt.StatusErrorRepairable}
	fake.Put(conn)

	s.postQuiltt(quiltt.EventRepairable, conn, "evt_break_q1")
	s.waitForStatusOf(quiltt.Name, "conn_q1", workflows.StatusAwaitingUser)

	var rec workflows.ReconnectResult
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/quiltt/conn_q1/reconnect", nil, &rec))
	require.Equal(t, aggregator.ConnectorActionRequired, rec.ConnectorStatus)
	require.NotEmpty(t, rec.Session.LinkToken, "the frontend opens Plaid Link with it")
	// Plaid Link's onSuccess, reported by the frontend.
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/quiltt/conn_q1/complete", map[string]any{
		"connectorToken": rec.Session.ConnectorToken, "publicToken": "public-sandbox-q1",
		"metadata": map[string]any{"institution": map[string]string{"name": "Chase", "institution_id": "ins_3"}},
	}, nil))

	st := s.waitForStatusOf(quiltt.Name, "conn_q1", workflows.StatusRepaired)
	assert.Equal(t, "confirmed by the provider's webhook", st.Reason)
	assert.Equal(t, "p_q", st.ProfileID)
	var closes int
	for _, r := range fake.Requests() {
		if strings.Contains(r.Query, "connectorPlaidClose") {
			closes++
			assert.Equal(t, "public-sandbox-q1", r.Input()["publicToken"])
		}
	}
	assert.Equal(t, 1, closes)
}

func TestQuilttDisconnectEndsTheRepair(t *testing.T) {
	s, fake := newQuilttStack(t)
	conn := quilttfake.Connection{ID: "conn_q2", ProfileID: "p_q", Provider: "MX", Status: quiltt.StatusErrorRepairable}
	fake.Put(conn)
	s.postQuiltt(quiltt.EventRepairable, conn, "evt_break_q2")
	s.waitForStatusOf(quiltt.Name, "conn_q2", workflows.StatusAwaitingUser)

	conn.Status = quiltt.StatusDisconnected
	s.postQuiltt(quiltt.EventDisconnected, conn, "evt_gone_q2")

	st := s.waitForStatusOf(quiltt.Name, "conn_q2", workflows.StatusUnrepairable)
	assert.Contains(t, st.Reason, "disconnected")
}

const (
	meldKey           = "meld_key_it"
	meldWebhookSecret = "meld_wh_it"
	// The URL registered with Meld: a proxy in front of the gateway.
	meldPublicURL = "https://relink.example.com/webhooks/meld"
)

func newMeldStack(t *testing.T) (*stack, *meldfake.Server) {
	fake := meldfake.New(meldKey)
	t.Cleanup(fake.Close)
	return newStackWith(t, meldSettings(fake)), fake
}

// meldSettings enable Meld against its fake.
func meldSettings(fake *meldfake.Server) map[string]string {
	return map[string]string{
		"MELD_API_KEY":        meldKey,
		"MELD_WEBHOOK_SECRET": meldWebhookSecret,
		"MELD_API_URL":        fake.URL,
		"MELD_WEBHOOK_URL":    meldPublicURL,
	}
}

// postMeld sends a status change signed over the public URL registered
// with Meld, as Meld does through the proxy.
func (s *stack) postMeld(eventID, conn, status, reason string) webhookSummary {
	s.t.Helper()
	payload, _ := json.Marshal(map[string]any{"connectionId": conn, "customerId": "cus_m", "externalCustomerId": "user_m",
		"institutionName": "Chase", "newStatus": status, "statusReason": reason})
	body, _ := json.Marshal(meld.Envelope{EventType: meld.EventStatusChange, EventID: eventID, Timestamp: time.Now().UTC(),
		AccountID: "acct_m", Version: meld.DefaultVersion, Payload: payload})
	ts := time.Now().UTC().Format(time.RFC3339Nano)
	return s.postWebhook(meld.Name, body, map[string]string{
		meld.HeaderTimestamp: ts,
		meld.HeaderSignature: meld.Sign(meldWebhookSecret, ts, meldPublicURL, body),
	})
}

func TestMeldEndToEnd(t *testing.T) {
	s, fake := newMeldStack(t)
	fake.Put(meldfake.Connection{ID: "conn_m1", CustomerID: "cus_m", Status: meld.StatusReconnectRequired, StatusReason: "LOGIN_REQUIRED"})

	s.postMeld("evt_m1_broke", "conn_m1", meld.StatusReconnectRequired, "LOGIN_REQUIRED")
	st := s.waitForStatusOf(meld.Name, "conn_m1", workflows.StatusAwaitingUser)
	assert.Equal(t, "user_m", st.ProfileID)
	// Meld retries deliveries: the same eventId again is acknowledged as a
	// duplicate and applied to nothing, not even a signal.
	assert.Equal(t, 1, s.postMeld("evt_m1_broke", "conn_m1", meld.StatusReconnectRequired, "LOGIN_REQUIRED").Duplicates)
	assert.Zero(t, countEvents(s.history(workflows.WorkflowID(meld.Name, "conn_m1"), ""), enums.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED))

	var rec workflows.ReconnectResult
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/meld/conn_m1/reconnect", nil, &rec))
	assert.Contains(t, rec.Session.WidgetURL, "connectToken=")
	// The user finishes in Meld's widget; Meld has no close call, and
	// reconnects the connection a moment later.
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/meld/conn_m1/complete",
		map[string]any{"connectorToken": rec.Session.ConnectorToken}, nil))
	s.waitForStatusOf(meld.Name, "conn_m1", workflows.StatusVerifying)
	fake.Set("conn_m1", meld.StatusActive, "")
	s.postMeld("evt_m1_active", "conn_m1", meld.StatusActive, "")

	st = s.waitForStatusOf(meld.Name, "conn_m1", workflows.StatusRepaired)
	assert.Equal(t, "confirmed by the provider's webhook", st.Reason)
}

func TestMeldStillBrokenAfterTheWidgetCountsTheAttempt(t *testing.T) {
	s, fake := newMeldStack(t)
	fake.Put(meldfake.Connection{ID: "conn_m2", CustomerID: "cus_m", Status: meld.StatusReconnectRequired})
	s.postMeld("evt_m2_broke", "conn_m2", meld.StatusReconnectRequired, "")
	s.waitForStatusOf(meld.Name, "conn_m2", workflows.StatusAwaitingUser)
	var rec workflows.ReconnectResult
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/meld/conn_m2/reconnect", nil, &rec))
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/meld/conn_m2/complete",
		map[string]any{"connectorToken": rec.Session.ConnectorToken}, nil))
	s.waitForStatusOf(meld.Name, "conn_m2", workflows.StatusVerifying)

	// Meld reports the connection still needs reconnecting.
	s.postMeld("evt_m2_still", "conn_m2", meld.StatusReconnectRequired, "LOGIN_REQUIRED")

	st := s.waitForStatusOf(meld.Name, "conn_m2", workflows.StatusAwaitingUser)
	assert.Equal(t, 2, st.Attempt)
	assert.Contains(t, st.LastError, "still reports the connection broken")

	// And an expired connection cannot be repaired at all.
	s.postMeld("evt_m2_expired", "conn_m2", meld.StatusExpired, "")
	s.waitForStatusOf(meld.Name, "conn_m2", workflows.StatusUnrepairable)
}

const (
	plaidClientID    = "plaid_client_it"
	plaidSecret      = "plaid_secret_it"
	plaidAccessToken = "access-sandbox-it-item-p1"
)

func newPlaidStack(t *testing.T) (*stack, *plaidfake.Server) {
	return newPlaidStackWith(t, nil)
}

// newPlaidStackWith is newPlaidStack with more settings.
func newPlaidStackWith(t *testing.T, settings map[string]string) (*stack, *plaidfake.Server) {
	fake := plaidfake.New(plaidClientID, plaidSecret)
	t.Cleanup(fake.Close)
	fake.Put(plaidfake.Item{ID: "item_p1", AccessToken: plaidAccessToken, ErrorCode: plaid.CodeItemLoginRequired})
	s := newStackWith(t, merged(map[string]string{
		"PLAID_CLIENT_ID":     plaidClientID,
		"PLAID_SECRET":        plaidSecret,
		"PLAID_API_URL":       fake.URL,
		"PLAID_CLIENT_NAME":   "Acme",
		"PLAID_ACCESS_TOKENS": "item_p1:" + plaidAccessToken,
	}, settings))
	return s, fake
}

// postPlaid sends a webhook signed by the fake's key, as Plaid does.
func (s *stack) postPlaid(fake *plaidfake.Server, hook map[string]any) webhookSummary {
	s.t.Helper()
	body, err := json.MarshalIndent(hook, "", "  ")
	require.NoError(s.t, err)
	return s.postWebhook(plaid.Name, body, map[string]string{plaid.HeaderVerification: fake.Sign(body)})
}

func TestPlaidEndToEnd(t *testing.T) {
	s, fake := newPlaidStack(t)

	s.postPlaid(fake, map[string]any{"webhook_type": "ITEM", "webhook_code": "ERROR", "item_id": "item_p1",
		"error": map[string]any{"error_type": "ITEM_ERROR", "error_code": "ITEM_LOGIN_REQUIRED", "status": 400}, "environment": "sandbox"})
	s.waitForStatusOf(plaid.Name, "item_p1", workflows.StatusAwaitingUser)

	var rec workflows.ReconnectResult
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/plaid/item_p1/reconnect", nil, &rec))
	require.True(t, strings.HasPrefix(rec.Session.LinkToken, "link-sandbox-"))
	assert.WithinDuration(t, time.Now().Add(30*time.Minute), rec.Session.ExpiresAt, time.Minute)
	// The user re-authenticates in Link (update mode); Plaid clears the
	// Item's error a moment later and confirms.
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/plaid/item_p1/complete", map[string]any{
		"connectorToken": rec.Session.LinkToken, "publicToken": "public-sandbox-p1",
		"metadata": map[string]any{"link_session_id": "ls_1"}}, nil))
	s.waitForStatusOf(plaid.Name, "item_p1", workflows.StatusVerifying)
	fake.SetError("item_p1", "")
	s.postPlaid(fake, map[string]any{"webhook_type": "ITEM", "webhook_code": "LOGIN_REPAIRED", "item_id": "item_p1", "environment": "sandbox"})

	st := s.waitForStatusOf(plaid.Name, "item_p1", workflows.StatusRepaired)
	assert.Equal(t, "confirmed by the provider's webhook", st.Reason, "LOGIN_REPAIRED after the user's reconnect confirms it")
	s.assertNotInHistory(workflows.WorkflowID(plaid.Name, "item_p1"), plaidAccessToken, `\"connectionId\":\"item_p1\"`)
}

func TestPlaidPermissionRevokedEndsTheRepair(t *testing.T) {
	s, fake := newPlaidStack(t)
	hook := map[string]any{"webhook_type": "ITEM", "webhook_code": "ERROR", "item_id": "item_p1",
		"error": map[string]any{"error_code": "ITEM_LOGIN_REQUIRED"}, "environment": "sandbox"}
	s.postPlaid(fake, hook)
	// Plaid retries with a fresh JWT and no event id: still one event,
	// and not even a signal.
	assert.Equal(t, 1, s.postPlaid(fake, hook).Duplicates)
	s.waitForStatusOf(plaid.Name, "item_p1", workflows.StatusAwaitingUser)
	assert.Zero(t, countEvents(s.history(workflows.WorkflowID(plaid.Name, "item_p1"), ""), enums.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED))

	s.postPlaid(fake, map[string]any{"webhook_type": "ITEM", "webhook_code": "USER_PERMISSION_REVOKED", "item_id": "item_p1", "environment": "sandbox"})

	st := s.waitForStatusOf(plaid.Name, "item_p1", workflows.StatusUnrepairable)
	assert.Contains(t, st.Reason, "disconnected")
	assert.Equal(t, workflows.ReasonDisconnected, st.ReasonCode)
	assert.Equal(t, plaid.CodePermissionRevoked, st.LastProviderStatus, "Plaid's own word for why")
	assert.Equal(t, 1, st.SessionsIssued)
}

func TestPlaidAccountRevokedEndsTheRepair(t *testing.T) {
	s, fake := newPlaidStack(t)
	s.postPlaid(fake, map[string]any{"webhook_type": "ITEM", "webhook_code": "ERROR", "item_id": "item_p1",
		"error": map[string]any{"error_code": "ITEM_LOGIN_REQUIRED"}, "environment": "sandbox"})
	s.waitForStatusOf(plaid.Name, "item_p1", workflows.StatusAwaitingUser)

	// The user revoked one account at the bank's portal: a deliberate
	// withdrawal of consent, which Relink does not ask them to undo.
	revoked := map[string]any{"webhook_type": "ITEM", "webhook_code": "USER_ACCOUNT_REVOKED", "item_id": "item_p1",
		"account_id": "BxBXxLj1m4HMXBm9WZZmCWVbPjX16EHwv99vp", "environment": "sandbox"}
	assert.Equal(t, 1, s.postPlaid(fake, revoked).Applied)

	st := s.waitForStatusOf(plaid.Name, "item_p1", workflows.StatusUnrepairable)
	assert.Equal(t, workflows.ReasonDisconnected, st.ReasonCode)
	assert.Equal(t, "the connection was disconnected at the provider", st.Reason)
	assert.Equal(t, plaid.CodeAccountRevoked, st.LastProviderStatus)
	assert.Equal(t, 1, s.postPlaid(fake, revoked).Duplicates, "Plaid's retry")
}

func TestPlaidNewAccountsOpenAProactiveRepairWithAccountSelection(t *testing.T) {
	newAccounts := map[string]any{"webhook_type": "ITEM", "webhook_code": "NEW_ACCOUNTS_AVAILABLE", "item_id": "item_p1", "environment": "sandbox"}
	t.Run("off by default", func(t *testing.T) {
		s, fake := newPlaidStack(t)
		fake.SetError("item_p1", "")
		assert.Equal(t, webhookSummary{}, s.postPlaid(fake, newAccounts), "not an event Relink acts on")
	})

	s, fake := newPlaidStackWith(t, map[string]string{"PLAID_NEW_ACCOUNTS_REPAIRS": "true"})
	fake.SetError("item_p1", "") // nothing is broken
	assert.Equal(t, 1, s.postPlaid(fake, newAccounts).Applied)
	st := s.waitForStatusOf(plaid.Name, "item_p1", workflows.StatusAwaitingUser)
	assert.True(t, st.Proactive, "the app can tell an invitation from a break")
	assert.Equal(t, workflows.ReasonUserActionRequired, st.ReasonCode)

	var rec workflows.ReconnectResult
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/plaid/item_p1/reconnect", nil, &rec))
	lt, ok := fake.LinkToken(rec.Session.LinkToken)
	require.True(t, ok)
	assert.True(t, lt.AccountSelection, "Link asks the user to share the new accounts (update.account_selection_enabled)")
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/plaid/item_p1/complete", map[string]any{
		"connectorToken": rec.Session.LinkToken, "publicToken": "public-sandbox-p1", "metadata": map[string]any{"link_session_id": "ls_1"}}, nil))
	st = s.waitForStatusOf(plaid.Name, "item_p1", workflows.StatusRepaired)
	assert.Equal(t, 1, st.SessionsIssued)
}

// assertNotInHistory checks a secret never reached workflow history, in
// which visible (an id the history must hold) does appear: proof the check
// reads the payloads.
func (s *stack) assertNotInHistory(workflowID, secret, visible string) {
	s.t.Helper()
	iter := s.temporal.GetWorkflowHistory(context.Background(), workflowID, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var text strings.Builder
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(s.t, err)
		// The text form prints payload bytes as they are: JSON, readable.
		text.WriteString(prototext.Format(ev))
	}
	assert.Contains(s.t, text.String(), visible)
	assert.NotContains(s.t, text.String(), secret)
}

// Before Link creates an Item, the app asks whether the user already has
// one at the institution they picked: item_p1 at Chase (ins_3, Plaid's
// sandbox), item_p2 at ins_109508. The answer, through the generated
// client, is to repair item_p1 (first with no repair open, then through
// its open one), that item_p2 works, and that nothing is at a third bank.
func TestPlaidLookupBeforeLinkCreatesAnItem(t *testing.T) {
	s, fake := newPlaidStackWith(t, map[string]string{
		"PLAID_ACCESS_TOKENS": "item_p1:" + plaidAccessToken + ",item_p2:access-sandbox-it-item-p2"})
	fake.Put(plaidfake.Item{ID: "item_p2", AccessToken: "access-sandbox-it-item-p2", InstitutionID: "ins_109508"})
	ask := func(institution string) relinkapi.ConnectionLookup {
		t.Helper()
		res, err := s.api.LookupConnectionWithResponse(context.Background(), nil, relinkapi.ConnectionLookupRequest{
			Provider: plaid.Name, InstitutionId: institution, ConnectionIds: []string{"item_p1", "item_p2", "item_gone"}})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode(), string(res.Body))
		assert.Equal(t, []string{"item_gone"}, res.JSON200.UnknownConnectionIds, "no access token for it: not a match")
		return *res.JSON200
	}

	// item_p1's login broke, and no webhook has told Relink yet.
	got := ask("ins_3")
	assert.Equal(t, relinkapi.ConnectionLookupActionRepair, got.Action)
	require.NotNil(t, got.Match)
	assert.Equal(t, "item_p1", got.Match.ConnectionId)
	assert.Equal(t, relinkapi.ConnectionHealth("REPAIRABLE"), got.Match.Health)
	assert.Nil(t, got.Match.Repair, "none open: the app starts one (POST /v1/repairs)")

	s.postPlaid(fake, map[string]any{"webhook_type": "ITEM", "webhook_code": "ERROR", "item_id": "item_p1",
		"error": map[string]any{"error_type": "ITEM_ERROR", "error_code": "ITEM_LOGIN_REQUIRED"}, "environment": "sandbox"})
	s.waitForStatusOf(plaid.Name, "item_p1", workflows.StatusAwaitingUser)
	got = ask("ins_3")
	assert.Equal(t, relinkapi.ConnectionLookupActionRepair, got.Action)
	require.NotNil(t, got.Match)
	require.NotNil(t, got.Match.Repair, "its open repair, to send the user to")
	assert.Equal(t, workflows.WorkflowID(plaid.Name, "item_p1"), got.Match.Repair.Id)
	assert.Equal(t, relinkapi.Status(workflows.StatusAwaitingUser), got.Match.Repair.Status)

	got = ask("ins_109508")
	assert.Equal(t, relinkapi.ConnectionLookupActionHealthy, got.Action, "item_p2 works: do not create another")
	require.NotNil(t, got.Match)
	assert.Equal(t, "item_p2", got.Match.ConnectionId)
	assert.Equal(t, relinkapi.ConnectionHealth("HEALTHY"), got.Match.Health)
	assert.Nil(t, got.Match.Repair)

	got = ask("ins_127989")
	assert.Equal(t, relinkapi.ConnectionLookupActionNone, got.Action, "no Item there: Link creates one")
	assert.Nil(t, got.Match)

	// Plaid down: nothing is known, so nothing is answered.
	fake.HTTPStatus = http.StatusInternalServerError
	res, err := s.api.LookupConnectionWithResponse(context.Background(), nil, relinkapi.ConnectionLookupRequest{
		Provider: plaid.Name, InstitutionId: "ins_3", ConnectionIds: []string{"item_p1"}})
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, res.StatusCode(), string(res.Body))
	assert.NotEmpty(t, res.HTTPResponse.Header.Get("Retry-After"))
}
