package meld_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/aggregator/conformance"
	"github.com/relink-dev/relink/activities/meld"
	"github.com/relink-dev/relink/activities/meld/meldfake"
)

const apiKey = "meld_key_test"

func setup(t *testing.T) (*meldfake.Server, *meld.Provider) {
	t.Helper()
	fake := meldfake.New(apiKey)
	t.Cleanup(fake.Close)
	for id, st := range map[string][2]string{
		"conn_broken":   {meld.StatusReconnectRequired, "LOGIN_REQUIRED"},
		"conn_ok":       {meld.StatusActive, ""},
		"conn_expiring": {meld.StatusActive, meld.ReasonAccessExpiringSoon},
		"conn_expired":  {meld.StatusExpired, ""},
		"conn_busy":     {meld.StatusInProgress, ""},
		"conn_degraded": {meld.StatusDegraded, "INSTITUTION_CURRENTLY_UNAVAILABLE"},
	} {
		fake.Put(meldfake.Connection{ID: id, CustomerID: "cus_1", Status: st[0], StatusReason: st[1]})
	}
	return fake, &meld.Provider{APIURL: fake.URL, APIKey: apiKey, Version: meld.DefaultVersion, HTTP: fake.Client()}
}

func ref(id string) aggregator.ConnectionRef {
	return aggregator.ConnectionRef{Provider: meld.Name, ConnectionID: id}
}

func TestInitializeRepairsWithAConnectToken(t *testing.T) {
	fake, p := setup(t)

	s, err := p.Initialize(context.Background(), ref("conn_broken"))

	require.NoError(t, err)
	assert.Equal(t, aggregator.ConnectorActionRequired, s.ConnectorStatus)
	assert.NotEmpty(t, s.ConnectorToken)
	assert.Contains(t, s.WidgetURL, "connectToken=")
	assert.WithinDuration(t, time.Now().Add(3*time.Hour), s.ExpiresAt, time.Minute, "expiry read from the token")
	reqs := fake.Requests()
	require.Len(t, reqs, 2)
	assert.Equal(t, meldfake.Request{Method: "GET", Path: "/bank-linking/connections/conn_broken",
		Authorization: "BASIC " + apiKey, Version: meld.DefaultVersion}, reqs[0])
	assert.Equal(t, "POST", reqs[1].Method)
	assert.Equal(t, "/bank-linking/connect/repair", reqs[1].Path)
	assert.Equal(t, map[string]any{"connectionId": "conn_broken"}, reqs[1].Body)
	assert.Equal(t, meld.DefaultVersion, reqs[1].Version, "Meld-Version pinned on every call")
}

func TestInitializeOutcomes(t *testing.T) {
	ctx := context.Background()
	cases := map[string]struct {
		conn       string
		wantStatus aggregator.ConnectorStatus
		wantType   string
	}{
		"active with nothing to fix": {"conn_ok", aggregator.ConnectorContinue, ""},
		"active, access expiring":    {"conn_expiring", aggregator.ConnectorActionRequired, ""},
		"degraded":                   {"conn_degraded", aggregator.ConnectorActionRequired, ""},
		"unknown":                    {"conn_nope", "", aggregator.ErrTypeConnectionNotFound},
		"expired":                    {"conn_expired", "", aggregator.ErrTypeNotRepairable},
		"in progress (Meld's 409)":   {"conn_busy", "", aggregator.ErrTypeNotRepairable},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, p := setup(t)
			s, err := p.Initialize(ctx, ref(tc.conn))
			if tc.wantType != "" {
				require.Error(t, err)
				assert.Equal(t, tc.wantType, aggregator.TypeOf(err))
				if tc.wantType == aggregator.ErrTypeNotRepairable {
					assert.Contains(t, err.Error(), "start a new connection")
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantStatus, s.ConnectorStatus)
		})
	}
}

func TestRepairConflictIsNotRepairable(t *testing.T) {
	fake, p := setup(t)
	fake.RepairConflict = true // e.g. the connection expired after the status read

	_, err := p.Initialize(context.Background(), ref("conn_broken"))

	assert.Equal(t, aggregator.ErrTypeNotRepairable, aggregator.TypeOf(err))
	assert.Contains(t, err.Error(), "CONNECTION_NOT_REPAIRABLE")
	assert.Contains(t, err.Error(), "start a new connection")
}

func TestTransientFailuresAreRetryable(t *testing.T) {
	for _, status := range []int{http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusUnauthorized} {
		for _, where := range []string{"status read", "repair call"} {
			fake, p := setup(t)
			if where == "status read" {
				fake.HTTPStatus = status
			} else {
				fake.RepairStatus = status
			}
			_, err := p.Initialize(context.Background(), ref("conn_broken"))
			require.Error(t, err)
			assert.Empty(t, aggregator.TypeOf(err), "%d on the %s", status, where)
			assert.NotContains(t, err.Error(), apiKey)
		}
	}
}

func TestCloseIsANoOp(t *testing.T) {
	fake, p := setup(t)
	require.NoError(t, p.Close(context.Background(), aggregator.CloseRequest{ConnectionRef: ref("conn_broken")}))
	assert.Empty(t, fake.Requests(), "Meld has no close call")
}

func TestConnectionStatus(t *testing.T) {
	for conn, want := range map[string]aggregator.Health{
		"conn_ok":       aggregator.HealthHealthy,
		"conn_broken":   aggregator.HealthRepairable,
		"conn_expiring": aggregator.HealthSyncing,
		"conn_expired":  aggregator.HealthDisconnected,
		"conn_degraded": aggregator.HealthDegraded,
	} {
		_, p := setup(t)
		st, err := p.ConnectionStatus(context.Background(), ref(conn))
		require.NoError(t, err)
		assert.Equal(t, want, st.Health, conn)
	}
	_, p := setup(t)
	st, _ := p.ConnectionStatus(context.Background(), ref("conn_broken"))
	assert.Equal(t, "RECONNECT_REQUIRED/LOGIN_REQUIRED", st.ProviderStatus)
}

// Meld's published example (docs.meld.io webhook authentication).
func TestSignatureMatchesMeldsExample(t *testing.T) {
	body := `{"eventType":"WEBHOOK_TEST","eventId":"GDtv8pQgwzc9HuFFBQFrww","timestamp":"2022-05-26T20:23:45.908400Z","accountId":"W9jpQc1HKvwscqMPcLmzUS","profileId":null,"version":"2021-10-27","payload":{"requestId":"7aWW1GXTjWCCtNubzvVX7V"}}`
	got := meld.Sign("42m4NMLS34WQ6BbMfo1KFKqMv4hy", "2022-05-26T20:25:17.682818Z", "https://example.meld.io/webhooks", []byte(body))
	assert.Equal(t, "O4bN5E0U9s88l2DFc0kjt-0w3LLA3Zkv8hXhafc22Hg=", got)
}

const (
	hookSecret = "whsec_meld"
	hookURL    = "https://relink.example.com/webhooks/meld"
)

var now = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func statusChange(id, conn, status, reason string) []byte {
	payload := map[string]any{"connectionId": conn, "customerId": "cus_1", "externalCustomerId": "user_42",
		"institutionName": "Chase", "newStatus": status}
	if reason != "" {
		payload["statusReason"] = reason
	}
	b, _ := json.Marshal(map[string]any{"eventType": meld.EventStatusChange, "eventId": id,
		"timestamp": now.Format(time.RFC3339Nano), "accountId": "acct_1", "profileId": "wp_1", "version": "2025-03-04", "payload": payload})
	return b
}

func signed(body []byte, secret string, at time.Time) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "http://10.0.0.5:8080/webhooks/meld", bytes.NewReader(body))
	ts := at.UTC().Format(time.RFC3339Nano)
	req.Header.Set(meld.HeaderTimestamp, ts)
	req.Header.Set(meld.HeaderSignature, meld.Sign(secret, ts, hookURL, body))
	return req
}

func receiver(proactive bool) *meld.WebhookReceiver {
	return &meld.WebhookReceiver{Secret: hookSecret, URL: hookURL, Now: func() time.Time { return now }, Proactive: proactive}
}

func TestWebhookEventsAreNormalised(t *testing.T) {
	cases := []struct {
		status, reason string
		proactive      bool
		want           aggregator.EventKind // "" means ignored
	}{
		{meld.StatusReconnectRequired, "LOGIN_REQUIRED", false, aggregator.EventKindRepairable},
		{meld.StatusDegraded, meld.ReasonInstitutionActionNeeded, false, aggregator.EventKindRepairable},
		{meld.StatusDegraded, "INSTITUTION_CURRENTLY_UNAVAILABLE", false, aggregator.EventKindErrored},
		{meld.StatusActive, "", false, aggregator.EventKindSynced},
		{meld.StatusActive, meld.ReasonAccessExpiringSoon, true, aggregator.EventKindProactive},
		{meld.StatusActive, meld.ReasonNewAccountsAvailable, true, aggregator.EventKindProactive},
		{meld.StatusActive, meld.ReasonAccessExpiringSoon, false, ""},
		{meld.StatusExpired, "", false, aggregator.EventKindDisconnected},
		{meld.StatusUnrecoverable, "CONTINUED_AGGREGATION_FAILURES", false, aggregator.EventKindDisconnected},
	}
	for _, tc := range cases {
		t.Run(tc.status+"/"+tc.reason, func(t *testing.T) {
			body := statusChange("evt_1", "conn_1", tc.status, tc.reason)
			events, err := receiver(tc.proactive).Receive(signed(body, hookSecret, now), body)
			require.NoError(t, err)
			if tc.want == "" {
				assert.Empty(t, events)
				return
			}
			require.Len(t, events, 1)
			assert.Equal(t, tc.want, events[0].Kind)
			assert.Equal(t, "evt_1", events[0].EventID)
			assert.Equal(t, "conn_1", events[0].ConnectionID)
			assert.Equal(t, "user_42", events[0].ProfileID, "the app's own customer id")
			assert.Equal(t, "Chase", events[0].Institution)
		})
	}
}

func TestWebhookVerification(t *testing.T) {
	body := statusChange("evt_1", "conn_1", meld.StatusReconnectRequired, "")
	cases := map[string]struct {
		req     func() *http.Request
		wantErr error
	}{
		"valid": {func() *http.Request { return signed(body, hookSecret, now) }, nil},
		"unix timestamp": {func() *http.Request {
			req := signed(body, hookSecret, now)
			ts := "1795262400"
			req.Header.Set(meld.HeaderTimestamp, ts)
			req.Header.Set(meld.HeaderSignature, meld.Sign(hookSecret, ts, hookURL, body))
			return req
		}, nil},
		"wrong key": {func() *http.Request { return signed(body, "whsec_other", now) }, aggregator.ErrWebhookSignature},
		"stale":     {func() *http.Request { return signed(body, hookSecret, now.Add(-6*time.Minute)) }, aggregator.ErrWebhookSignature},
		"missing signature": {func() *http.Request {
			req := signed(body, hookSecret, now)
			req.Header.Del(meld.HeaderSignature)
			return req
		}, aggregator.ErrWebhookSignature},
		"signed for another URL": {func() *http.Request {
			req := signed(body, hookSecret, now)
			ts := req.Header.Get(meld.HeaderTimestamp)
			req.Header.Set(meld.HeaderSignature, meld.Sign(hookSecret, ts, "https://evil.example/webhooks/meld", body))
			return req
		}, aggregator.ErrWebhookSignature},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := receiver(false).Receive(tc.req(), body)
			if tc.wantErr == nil {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, tc.wantErr)
			}
		})
	}
	t.Run("tampered", func(t *testing.T) {
		tampered := bytes.Replace(body, []byte("conn_1"), []byte("conn_2"), 1)
		_, err := receiver(false).Receive(signed(body, hookSecret, now), tampered)
		assert.ErrorIs(t, err, aggregator.ErrWebhookSignature)
	})
	t.Run("URL rebuilt from the request behind a proxy", func(t *testing.T) {
		r := &meld.WebhookReceiver{Secret: hookSecret, Now: func() time.Time { return now }}
		req := httptest.NewRequest(http.MethodPost, "http://relink.example.com/webhooks/meld", bytes.NewReader(body))
		req.Header.Set("X-Forwarded-Proto", "https")
		ts := now.Format(time.RFC3339Nano)
		req.Header.Set(meld.HeaderTimestamp, ts)
		req.Header.Set(meld.HeaderSignature, meld.Sign(hookSecret, ts, hookURL, body))
		_, err := r.Receive(req, body)
		assert.NoError(t, err)
	})
	t.Run("malformed", func(t *testing.T) {
		bad := []byte(`{"eventType":"BANK_LINKING_CONNECTION_STATUS_CHANGE","eventId":"e","payload":{}}`)
		_, err := receiver(false).Receive(signed(bad, hookSecret, now), bad)
		assert.ErrorIs(t, err, aggregator.ErrWebhookMalformed)
	})
	t.Run("other event types are ignored", func(t *testing.T) {
		other := []byte(`{"eventType":"BANK_LINKING_TRANSACTIONS_AGGREGATED","eventId":"e","payload":{"connectionId":"c"}}`)
		events, err := receiver(false).Receive(signed(other, hookSecret, now), other)
		require.NoError(t, err)
		assert.Empty(t, events)
	})
}

func TestRateLimitCarriesRetryAfter(t *testing.T) {
	fake, p := setup(t)
	fake.RateLimitNext(1, "42")

	_, err := p.ConnectionStatus(context.Background(), ref("conn_broken"))

	rl, ok := aggregator.IsRateLimited(err)
	require.True(t, ok, "%v", err)
	assert.Equal(t, 42*time.Second, rl.RetryAfter)
	assert.Empty(t, aggregator.TypeOf(err), "retryable")
	_, err = p.ConnectionStatus(context.Background(), ref("conn_broken"))
	assert.NoError(t, err, "only the next request was limited")
}

func TestListNeedingUserPagesThroughTheSearch(t *testing.T) {
	fake, p := setup(t) // conn_broken is RECONNECT_REQUIRED; the others need no customer
	var want []string
	for i := range 7 {
		id := fmt.Sprintf("conn_r%d", i)
		fake.Put(meldfake.Connection{ID: id, CustomerID: "cus_2", ExternalCustomerID: "user_2", InstitutionName: "Chase",
			Status: meld.StatusReconnectRequired, StatusReason: "LOGIN_REQUIRED"})
		want = append(want, id)
	}
	fake.Put(meldfake.Connection{ID: "conn_action", CustomerID: "cus_3", Status: meld.StatusDegraded, StatusReason: meld.ReasonInteractiveRefresh})
	fake.Put(meldfake.Connection{ID: "conn_down", CustomerID: "cus_3", Status: meld.StatusDegraded, StatusReason: "INSTITUTION_CURRENTLY_UNAVAILABLE"})
	want = append(want, "conn_broken", "conn_action")

	ids, pages := conformance.ListAll(t, p, 3)

	assert.ElementsMatch(t, want, ids, "every connection needing the customer, once")
	assert.GreaterOrEqual(t, pages, 3)
	for _, r := range fake.Requests() {
		assert.Equal(t, "/bank-linking/connections", r.Path)
		assert.Equal(t, "BASIC "+apiKey, r.Authorization)
		assert.Equal(t, meld.DefaultVersion, r.Version)
	}

	page, err := p.ListNeedingUser(context.Background(), "", 100)
	require.NoError(t, err)
	assert.Empty(t, page.Next, "all in one page")
	var r0 aggregator.Candidate
	for _, c := range page.Candidates {
		if c.ConnectionID == "conn_r0" {
			r0 = c
		}
	}
	assert.Equal(t, aggregator.Candidate{
		ConnectionRef: aggregator.ConnectionRef{Provider: meld.Name, ConnectionID: "conn_r0", ProfileID: "user_2"},
		Institution:   "Chase",
		Status:        &aggregator.ConnectionStatus{Health: aggregator.HealthRepairable, ProviderStatus: "RECONNECT_REQUIRED/LOGIN_REQUIRED"},
	}, r0, "the profile named as the webhooks name it: the app's own customer id")
}

func TestListNeedingUserAsksMeldForTheStatusesOnly(t *testing.T) {
	fake, p := setup(t)
	_, err := p.ListNeedingUser(context.Background(), "", 500)
	require.NoError(t, err)
	// The fake answers 400 to a limit over 100; the adapter caps it.
	require.Len(t, fake.Requests(), 1)
	_, err = p.ListNeedingUser(context.Background(), "", 0)
	assert.Equal(t, aggregator.ErrTypeInvalidInput, aggregator.TypeOf(err))
}

func TestListNeedingUserRateLimited(t *testing.T) {
	fake, p := setup(t)
	fake.RateLimitNext(1, "Wed, 21 Oct 2099 07:28:00 GMT")

	_, err := p.ListNeedingUser(context.Background(), "", 10)

	rl, ok := aggregator.IsRateLimited(err)
	require.True(t, ok, "%v", err)
	assert.Equal(t, time.Hour, rl.RetryAfter, "an HTTP date, capped")
	page, err := p.ListNeedingUser(context.Background(), "", 10)
	require.NoError(t, err, "the same cursor again, once the limit passed")
	assert.Len(t, page.Candidates, 1)
}
