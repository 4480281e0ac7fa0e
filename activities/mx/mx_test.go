package mx_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/mx"
	"github.com/relink-dev/relink/activities/mx/mxfake"
)

const (
	clientID     = "mx_client_test"
	apiKey       = "mx_key_test"
	user         = "USR-1"
	hookUser     = "mx-webhooks"
	hookPassword = "a-long-webhook-password-for-tests"
)

// setup starts a fake with user USR-1's members MBR-broken (CHALLENGED)
// and MBR-ok (CONNECTED), and the adapter pointed at it.
func setup(t *testing.T) (*mxfake.Server, *mx.Provider) {
	t.Helper()
	fake := mxfake.New(clientID, apiKey)
	t.Cleanup(fake.Close)
	fake.Put(mxfake.Member{GUID: "MBR-broken", UserGUID: user, Name: "MX Bank", InstitutionCode: "mxbank", Status: mx.StatusChallenged})
	fake.Put(mxfake.Member{GUID: "MBR-ok", UserGUID: user, Name: "MX Bank", InstitutionCode: "mxbank", Status: mx.StatusConnected})
	return fake, &mx.Provider{APIURL: fake.URL, ClientID: clientID, APIKey: apiKey, HTTP: http.DefaultClient}
}

func ref(member string) aggregator.ConnectionRef {
	return aggregator.ConnectionRef{Provider: mx.Name, ConnectionID: member, ProfileID: user}
}

func TestInitializeOpensTheWidgetOnTheMember(t *testing.T) {
	fake, p := setup(t)
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	p.Now = func() time.Time { return now }
	s, err := p.Initialize(context.Background(), ref("MBR-broken"))
	require.NoError(t, err)
	assert.Equal(t, aggregator.ConnectorActionRequired, s.ConnectorStatus)
	assert.True(t, strings.HasPrefix(s.WidgetURL, mxfake.DefaultWidgetURL), s.WidgetURL)
	assert.True(t, strings.HasPrefix(s.ConnectorToken, "mxw_"), s.ConnectorToken)
	assert.NotContains(t, s.ConnectorToken, "widget", "the token names the URL without repeating it")
	assert.Equal(t, now.Add(mx.SessionHandout), s.ExpiresAt, "reported expiring soon, so it is never handed out twice")

	reqs := fake.Requests()
	require.Len(t, reqs, 2)
	assert.Equal(t, "/users/USR-1/members/MBR-broken", reqs[0].Path)
	assert.Equal(t, "/users/USR-1/widget_urls", reqs[1].Path)
	assert.Equal(t, map[string]any{"widget_url": map[string]any{
		"widget_type": "connect_widget", "mode": "aggregation", "current_member_guid": "MBR-broken",
		"disable_institution_search": true, "ui_message_version": float64(4),
	}}, reqs[1].Body)
	for _, r := range reqs {
		assert.Equal(t, mxfake.BasicAuth(clientID, apiKey), r.Authorization)
		assert.Equal(t, mx.Accept, r.Accept, "the media type names the API version")
	}

	// MX's URL works once: the next session is a new URL, with a token of
	// its own.
	again, err := p.Initialize(context.Background(), ref("MBR-broken"))
	require.NoError(t, err)
	assert.NotEqual(t, s.WidgetURL, again.WidgetURL)
	assert.NotEqual(t, s.ConnectorToken, again.ConnectorToken)
}

func TestInitializeOutcomes(t *testing.T) {
	for _, tc := range []struct {
		status     string
		aggregated bool // being aggregated already
		proactive  bool
		want       aggregator.ConnectorStatus
		healthy    bool
		aggregates bool   // calls aggregate
		errType    string // the error's type, for statuses Relink cannot repair
	}{
		{status: mx.StatusChallenged, want: aggregator.ConnectorActionRequired},
		{status: mx.StatusDenied, want: aggregator.ConnectorActionRequired},
		{status: mx.StatusPrevented, want: aggregator.ConnectorActionRequired},
		{status: mx.StatusRejected, want: aggregator.ConnectorActionRequired},
		{status: mx.StatusExpired, want: aggregator.ConnectorActionRequired},
		{status: mx.StatusImpeded, want: aggregator.ConnectorActionRequired},
		{status: mx.StatusImpaired, want: aggregator.ConnectorActionRequired},
		{status: mx.StatusImported, want: aggregator.ConnectorActionRequired},
		{status: mx.StatusPending, want: aggregator.ConnectorActionRequired},
		{status: "SOMETHING_NEW", want: aggregator.ConnectorActionRequired},
		{status: mx.StatusConnected, want: aggregator.ConnectorContinue, healthy: true},
		{status: mx.StatusConnected, proactive: true, want: aggregator.ConnectorActionRequired},
		{status: mx.StatusCreated, want: aggregator.ConnectorContinue, aggregates: true},
		{status: mx.StatusUpdated, want: aggregator.ConnectorContinue, aggregates: true},
		{status: mx.StatusResumed, want: aggregator.ConnectorContinue, aggregates: true},
		{status: mx.StatusReconnected, want: aggregator.ConnectorContinue, aggregates: true},
		{status: mx.StatusDelayed, want: aggregator.ConnectorContinue, aggregates: true},
		{status: mx.StatusDelayed, aggregated: true, want: aggregator.ConnectorContinue},
		{status: mx.StatusFailed, want: aggregator.ConnectorContinue, aggregates: true},
		{status: mx.StatusDegraded, want: aggregator.ConnectorContinue, aggregates: true},
		{status: mx.StatusDisconnected, want: aggregator.ConnectorContinue, aggregates: true},
		{status: mx.StatusDisabled, want: aggregator.ConnectorContinue},
		{status: mx.StatusLocked, errType: aggregator.ErrTypeNotRepairable},
		{status: mx.StatusClosed, errType: aggregator.ErrTypeNotRepairable},
		{status: mx.StatusDiscontinued, errType: aggregator.ErrTypeNotRepairable},
		{status: "", errType: aggregator.ErrTypeNotRepairable},
	} {
		name := tc.status
		if tc.aggregated {
			name += "/aggregating"
		}
		if tc.proactive {
			name += "/proactive"
		}
		t.Run(name, func(t *testing.T) {
			fake, p := setup(t)
			fake.Put(mxfake.Member{GUID: "MBR-x", UserGUID: user, Name: "MX Bank", Status: tc.status, BeingAggregated: tc.aggregated})
			r := ref("MBR-x")
			r.Proactive = tc.proactive
			s, err := p.Initialize(context.Background(), r)
			if tc.errType != "" {
				require.Error(t, err)
				assert.Equal(t, tc.errType, aggregator.TypeOf(err))
				assert.Contains(t, err.Error(), "MBR-x")
				if tc.status != "" {
					assert.Contains(t, err.Error(), tc.status, "the reason names MX's status")
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, s.ConnectorStatus)
			assert.Equal(t, tc.healthy, s.Healthy)
			if tc.want == aggregator.ConnectorContinue {
				assert.Empty(t, s.WidgetURL)
				assert.Zero(t, fake.Count(http.MethodPost, "/users/USR-1/widget_urls"))
			} else {
				assert.NotEmpty(t, s.WidgetURL)
			}
			n := fake.Count(http.MethodPost, "/users/USR-1/members/MBR-x/aggregate")
			if tc.aggregates {
				assert.Equal(t, 1, n, "aggregated again without the user")
			} else {
				assert.Zero(t, n)
			}
		})
	}
}

func TestTheLockedReasonSaysWhatToDo(t *testing.T) {
	fake, p := setup(t)
	fake.Put(mxfake.Member{GUID: "MBR-lk", UserGUID: user, Status: mx.StatusLocked})
	_, err := p.Initialize(context.Background(), ref("MBR-lk"))
	pe := aggregator.Named(err)
	require.NotNil(t, pe)
	assert.Equal(t, aggregator.ErrTypeNotRepairable, pe.Type)
	assert.Contains(t, pe.Message, "contact it")
}

func TestAnAggregationOfAnotherKindRunningIsFine(t *testing.T) {
	fake, p := setup(t)
	fake.Put(mxfake.Member{GUID: "MBR-d", UserGUID: user, Status: mx.StatusDegraded})
	fake.AggregateStatus = http.StatusConflict
	s, err := p.Initialize(context.Background(), ref("MBR-d"))
	require.NoError(t, err)
	assert.Equal(t, aggregator.ConnectorContinue, s.ConnectorStatus)

	fake.AggregateStatus = http.StatusBadGateway
	_, err = p.Initialize(context.Background(), ref("MBR-d"))
	require.Error(t, err)
	assert.Empty(t, aggregator.TypeOf(err), "retried")
}

func TestARepairNeedsTheMembersUser(t *testing.T) {
	fake, p := setup(t)
	_, err := p.Initialize(context.Background(), aggregator.ConnectionRef{Provider: mx.Name, ConnectionID: "MBR-broken"})
	assert.Equal(t, aggregator.ErrTypeInvalidInput, aggregator.TypeOf(err))
	assert.Contains(t, err.Error(), "profileId")
	_, err = p.ConnectionStatus(context.Background(), aggregator.ConnectionRef{Provider: mx.Name, ConnectionID: "MBR-broken"})
	assert.Equal(t, aggregator.ErrTypeInvalidInput, aggregator.TypeOf(err))
	assert.Empty(t, fake.Requests(), "nothing asked of MX")

	// Another user's member is unknown to MX under this one.
	_, err = p.Initialize(context.Background(), aggregator.ConnectionRef{Provider: mx.Name, ConnectionID: "MBR-broken", ProfileID: "USR-other"})
	assert.Equal(t, aggregator.ErrTypeConnectionNotFound, aggregator.TypeOf(err))
	assert.Contains(t, err.Error(), "We were unable to find the record you requested.", "MX's error message")
}

func TestTransientFailuresAreRetryable(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable,
		http.StatusUnauthorized, http.StatusForbidden} {
		fake, p := setup(t)
		fake.SetHTTPStatus(status)
		_, err := p.Initialize(context.Background(), ref("MBR-broken"))
		require.Error(t, err, "%d", status)
		assert.Empty(t, aggregator.TypeOf(err), "%d is retried", status)
		_, err = p.ConnectionStatus(context.Background(), ref("MBR-broken"))
		assert.Empty(t, aggregator.TypeOf(err), "%d is retried", status)
	}
}

func TestRateLimitCarriesRetryAfter(t *testing.T) {
	fake, p := setup(t)
	fake.RateLimitNext(1, "7")
	_, err := p.ConnectionStatus(context.Background(), ref("MBR-broken"))
	rl, ok := aggregator.IsRateLimited(err)
	require.True(t, ok, "%v", err)
	assert.Equal(t, 7*time.Second, rl.RetryAfter)
}

func TestCloseChecksTheWidgetConnectedThisMember(t *testing.T) {
	fake, p := setup(t)
	ctx := context.Background()
	closeWith := func(meta string) error {
		req := aggregator.CloseRequest{ConnectionRef: ref("MBR-broken"), ConnectorToken: "mxw_1"}
		if meta != "" {
			req.Metadata = json.RawMessage(meta)
		}
		return p.Close(ctx, req)
	}
	assert.NoError(t, closeWith(`{"user_guid":"USR-1","member_guid":"MBR-broken","session_guid":"SES-1"}`))
	assert.NoError(t, closeWith(`{}`), "the frontend may send no metadata: the status read decides")
	assert.NoError(t, closeWith(""))
	for _, meta := range []string{`{"member_guid":"MBR-other"}`, `{"user_guid":"USR-2","member_guid":"MBR-broken"}`, `[1]`} {
		err := closeWith(meta)
		assert.Equal(t, aggregator.ErrTypeReconnectRejected, aggregator.TypeOf(err), meta)
	}
	assert.Empty(t, fake.Requests(), "MX has no close call")
}

func TestConnectionStatus(t *testing.T) {
	fake, p := setup(t)
	for status, want := range map[string]aggregator.Health{
		mx.StatusConnected:  aggregator.HealthHealthy,
		mx.StatusChallenged: aggregator.HealthRepairable, mx.StatusDenied: aggregator.HealthRepairable,
		mx.StatusPrevented: aggregator.HealthRepairable, mx.StatusRejected: aggregator.HealthRepairable,
		mx.StatusExpired: aggregator.HealthRepairable, mx.StatusImpeded: aggregator.HealthRepairable,
		mx.StatusImpaired: aggregator.HealthRepairable, mx.StatusImported: aggregator.HealthRepairable,
		mx.StatusPending: aggregator.HealthRepairable,
		mx.StatusCreated: aggregator.HealthSyncing, mx.StatusUpdated: aggregator.HealthSyncing,
		mx.StatusResumed: aggregator.HealthSyncing, mx.StatusReconnected: aggregator.HealthSyncing,
		mx.StatusDelayed: aggregator.HealthSyncing, "SOMETHING_NEW": aggregator.HealthSyncing,
		mx.StatusDegraded: aggregator.HealthDegraded, mx.StatusFailed: aggregator.HealthDegraded,
		mx.StatusDisconnected: aggregator.HealthDegraded, mx.StatusDisabled: aggregator.HealthDegraded,
		mx.StatusLocked: aggregator.HealthDisconnected, mx.StatusClosed: aggregator.HealthDisconnected,
		mx.StatusDiscontinued: aggregator.HealthDisconnected, "": aggregator.HealthDisconnected,
	} {
		fake.Put(mxfake.Member{GUID: "MBR-s", UserGUID: user, Status: status})
		st, err := p.ConnectionStatus(context.Background(), ref("MBR-s"))
		require.NoError(t, err)
		assert.Equal(t, want, st.Health, status)
		if status == "" {
			assert.Equal(t, "NONE", st.ProviderStatus)
		} else {
			assert.Equal(t, status, st.ProviderStatus)
		}
	}
	last := fake.Requests()[len(fake.Requests())-1]
	assert.Equal(t, "/users/USR-1/members/MBR-s/status", last.Path, "MX's read for polling a member")
}

func TestSettings(t *testing.T) {
	ok := mx.Settings{ClientID: "c", APIKey: "k", WebhookUsername: "u", WebhookPassword: hookPassword}
	assert.NoError(t, ok.Validate())
	assert.True(t, ok.Enabled())
	assert.NoError(t, (&mx.Settings{}).Validate())
	assert.False(t, (&mx.Settings{}).Enabled())
	for name, s := range map[string]mx.Settings{
		"key without id":           {APIKey: "k"},
		"id without key":           {ClientID: "c", WebhookUsername: "u", WebhookPassword: hookPassword},
		"no webhook credentials":   {ClientID: "c", APIKey: "k"},
		"no webhook password":      {ClientID: "c", APIKey: "k", WebhookUsername: "u"},
		"a short webhook password": {ClientID: "c", APIKey: "k", WebhookUsername: "u", WebhookPassword: "short"},
		"negative dedupe window":   {ClientID: "c", APIKey: "k", WebhookUsername: "u", WebhookPassword: hookPassword, DedupeWindow: -time.Second},
	} {
		assert.Error(t, s.Validate(), name)
	}
}

func TestInstitutionIsTheMembersInstitutionCode(t *testing.T) {
	fake, p := setup(t)
	fake.Put(mxfake.Member{GUID: "MBR-other", UserGUID: user, Name: "Other Bank", InstitutionCode: "otherbank", Status: mx.StatusConnected})

	got, err := p.Institution(context.Background(), ref("MBR-other"))
	require.NoError(t, err)
	assert.Equal(t, "otherbank", got)
	got, err = p.Institution(context.Background(), ref("MBR-broken"))
	require.NoError(t, err)
	assert.Equal(t, "mxbank", got)

	_, err = p.Institution(context.Background(), ref("MBR-missing"))
	assert.Equal(t, aggregator.ErrTypeConnectionNotFound, aggregator.TypeOf(err), "%v", err)
	_, err = p.Institution(context.Background(), aggregator.ConnectionRef{Provider: mx.Name, ConnectionID: "MBR-other"})
	assert.Equal(t, aggregator.ErrTypeInvalidInput, aggregator.TypeOf(err), "MX needs the user guid: %v", err)
}
