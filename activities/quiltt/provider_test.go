package quiltt_test

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
	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/activities/quiltt/quilttfake"
)

const secret = "quiltt_sk_test"

func setup(t *testing.T) (*quilttfake.Server, *quiltt.Provider) {
	t.Helper()
	fake := quilttfake.New(secret)
	t.Cleanup(fake.Close)
	fake.Put(quilttfake.Connection{ID: "conn_plaid", ProfileID: "p_1", Provider: "PLAID", Status: "ERROR_REPAIRABLE"})
	fake.Put(quilttfake.Connection{ID: "conn_mx", ProfileID: "p_1", Provider: "MX", Status: "ERROR_REPAIRABLE"})
	fake.Put(quilttfake.Connection{ID: "conn_ok", ProfileID: "p_1", Provider: "PLAID", Status: "SYNCED"})
	fake.Put(quilttfake.Connection{ID: "conn_gone", ProfileID: "p_1", Provider: "PLAID", Status: "DISCONNECTED"})
	p := &quiltt.Provider{APIURL: fake.URL, AuthURL: fake.URL, APISecret: secret, HTTP: fake.Client(), Now: time.Now}
	return fake, p
}

func ref(conn, connector string) aggregator.ConnectionRef {
	return aggregator.ConnectionRef{Provider: quiltt.Name, ConnectionID: conn, ProfileID: "p_1", Connector: connector}
}

func TestInitializePlaidInUpdateMode(t *testing.T) {
	fake, p := setup(t)

	s, err := p.Initialize(context.Background(), ref("conn_plaid", "PLAID"))

	require.NoError(t, err)
	assert.Equal(t, aggregator.ConnectorActionRequired, s.ConnectorStatus)
	assert.NotEmpty(t, s.ConnectorToken)
	assert.True(t, strings.HasPrefix(s.LinkToken, "link-sandbox-"))
	assert.WithinDuration(t, time.Now().Add(30*time.Minute), s.ExpiresAt, time.Minute)
	reqs := fake.Requests()
	require.Len(t, reqs, 1)
	assert.True(t, strings.HasPrefix(reqs[0].Authorization, "Bearer session_"), "a profile session token, never the API secret")
	assert.Contains(t, reqs[0].Query, "connectorPlaidInitialize")
	assert.Equal(t, map[string]any{"connectionId": "conn_plaid", "featuresRequired": []any{}}, reqs[0].Input())
}

func TestInitializeMXReturnsTheWidgetURL(t *testing.T) {
	fake, p := setup(t)
	s, err := p.Initialize(context.Background(), ref("conn_mx", "MX"))
	require.NoError(t, err)
	assert.Equal(t, aggregator.ConnectorActionRequired, s.ConnectorStatus)
	assert.Contains(t, s.WidgetURL, "moneydesktop")
	assert.Contains(t, fake.Requests()[0].Query, "connectorMxInitialize")
}

func TestConnectorIsLookedUpWhenUnknown(t *testing.T) {
	fake, p := setup(t)
	_, err := p.Initialize(context.Background(), ref("conn_mx", ""))
	require.NoError(t, err)
	reqs := fake.Requests()
	require.Len(t, reqs, 2)
	assert.Contains(t, reqs[0].Query, "connection(id")
	assert.Contains(t, reqs[1].Query, "connectorMxInitialize")
}

func TestContinueWhenQuilttRepairsItself(t *testing.T) {
	_, p := setup(t)
	s, err := p.Initialize(context.Background(), ref("conn_ok", "PLAID"))
	require.NoError(t, err)
	assert.Equal(t, aggregator.Session{ConnectorStatus: aggregator.ConnectorContinue}, s)
}

func TestOlderSchemaNamesAreAccepted(t *testing.T) {
	fake, p := setup(t)
	fake.Legacy = true

	s, err := p.Initialize(context.Background(), ref("conn_plaid", "PLAID"))
	require.NoError(t, err)
	assert.NotEmpty(t, s.ConnectorToken)
	_, err = p.Initialize(context.Background(), ref("conn_plaid", "PLAID"))
	require.NoError(t, err)

	reqs := fake.Requests()
	require.Len(t, reqs, 3, "one rejected try, then the older names, remembered")
	assert.Contains(t, reqs[1].Query, "record { status token")
	assert.Contains(t, reqs[2].Query, "record { status token")
}

func TestConcurrentCallsFindTheOlderSchemaTogether(t *testing.T) {
	fake, p := setup(t)
	fake.Legacy = true
	errs := make(chan error, 20)
	for range 20 {
		go func() {
			_, err := p.Initialize(context.Background(), ref("conn_plaid", "PLAID"))
			errs <- err
		}()
	}
	for range 20 {
		assert.NoError(t, <-errs)
	}
	assert.Equal(t, 1, fake.SessionRequests(), "one session minted for the profile, not one per call")
}

func TestCloseSendsWhatTheWidgetReturned(t *testing.T) {
	fake, p := setup(t)
	ctx := context.Background()
	s, err := p.Initialize(ctx, ref("conn_plaid", "PLAID"))
	require.NoError(t, err)
	meta := json.RawMessage(`{"institution":{"name":"Chase","institution_id":"ins_3"},"link_session_id":"ls_1"}`)

	err = p.Close(ctx, aggregator.CloseRequest{ConnectionRef: ref("conn_plaid", "PLAID"),
		ConnectorToken: s.ConnectorToken, PublicToken: "public-sandbox-1", Metadata: meta})

	require.NoError(t, err)
	last := fake.Requests()[len(fake.Requests())-1]
	assert.Contains(t, last.Query, "connectorPlaidClose")
	var wantMeta map[string]any
	require.NoError(t, json.Unmarshal(meta, &wantMeta))
	assert.Equal(t, map[string]any{"connectorToken": s.ConnectorToken, "publicToken": "public-sandbox-1", "metadata": wantMeta}, last.Input())
	assert.Equal(t, "SYNCING", fake.Get("conn_plaid").Status)
}

func TestCloseMXSendsNoPublicToken(t *testing.T) {
	fake, p := setup(t)
	ctx := context.Background()
	s, err := p.Initialize(ctx, ref("conn_mx", "MX"))
	require.NoError(t, err)
	require.NoError(t, p.Close(ctx, aggregator.CloseRequest{ConnectionRef: ref("conn_mx", "MX"),
		ConnectorToken: s.ConnectorToken, Metadata: json.RawMessage(`{"member_guid":"MBR-1"}`)}))
	last := fake.Requests()[len(fake.Requests())-1]
	assert.Contains(t, last.Query, "connectorMxClose")
	assert.NotContains(t, last.Input(), "publicToken")
}

func TestErrorsAreClassified(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name     string
		call     func(*quilttfake.Server, *quiltt.Provider) error
		wantType string // "" means retryable
	}{
		{"unknown connection", func(_ *quilttfake.Server, p *quiltt.Provider) error {
			_, err := p.Initialize(ctx, ref("conn_nope", "PLAID"))
			return err
		}, aggregator.ErrTypeConnectionNotFound},
		{"unknown connection, connector looked up", func(_ *quilttfake.Server, p *quiltt.Provider) error {
			_, err := p.Initialize(ctx, ref("conn_nope", ""))
			return err
		}, aggregator.ErrTypeConnectionNotFound},
		{"disconnected", func(_ *quilttfake.Server, p *quiltt.Provider) error {
			_, err := p.Initialize(ctx, ref("conn_gone", "PLAID"))
			return err
		}, aggregator.ErrTypeNotRepairable},
		{"unknown profile", func(_ *quilttfake.Server, p *quiltt.Provider) error {
			r := ref("conn_plaid", "PLAID")
			r.ProfileID = "p_nobody"
			_, err := p.Initialize(ctx, r)
			return err
		}, aggregator.ErrTypeConnectionNotFound},
		{"no profile", func(_ *quilttfake.Server, p *quiltt.Provider) error {
			r := ref("conn_plaid", "PLAID")
			r.ProfileID = ""
			_, err := p.Initialize(ctx, r)
			return err
		}, aggregator.ErrTypeInvalidInput},
		{"wrong API secret", func(_ *quilttfake.Server, p *quiltt.Provider) error {
			p.APISecret = "wrong"
			_, err := p.Initialize(ctx, ref("conn_plaid", "PLAID"))
			return err
		}, ""},
		{"quiltt down", func(f *quilttfake.Server, p *quiltt.Provider) error {
			f.HTTPStatus = http.StatusBadGateway
			_, err := p.Initialize(ctx, ref("conn_plaid", "PLAID"))
			return err
		}, ""},
		{"rate limited", func(f *quilttfake.Server, p *quiltt.Provider) error {
			f.HTTPStatus = http.StatusTooManyRequests
			_, err := p.ConnectionStatus(ctx, ref("conn_plaid", "PLAID"))
			return err
		}, ""},
		{"close with a bad public token", func(_ *quilttfake.Server, p *quiltt.Provider) error {
			s, err := p.Initialize(ctx, ref("conn_plaid", "PLAID"))
			require.NoError(t, err)
			return p.Close(ctx, aggregator.CloseRequest{ConnectionRef: ref("conn_plaid", "PLAID"), ConnectorToken: s.ConnectorToken, PublicToken: "forged"})
		}, aggregator.ErrTypeReconnectRejected},
		{"close with an unknown connector token", func(_ *quilttfake.Server, p *quiltt.Provider) error {
			return p.Close(ctx, aggregator.CloseRequest{ConnectionRef: ref("conn_plaid", "PLAID"), ConnectorToken: "ct_forged", PublicToken: "public-x"})
		}, aggregator.ErrTypeReconnectRejected},
		{"close hits a Plaid outage", func(f *quilttfake.Server, p *quiltt.Provider) error {
			s, err := p.Initialize(ctx, ref("conn_plaid", "PLAID"))
			require.NoError(t, err)
			f.CloseFailsWith = "INTERNAL_SERVER_ERROR"
			return p.Close(ctx, aggregator.CloseRequest{ConnectionRef: ref("conn_plaid", "PLAID"), ConnectorToken: s.ConnectorToken, PublicToken: "public-1"})
		}, ""},
		{"internal GraphQL error with null data", func(f *quilttfake.Server, p *quiltt.Provider) error {
			f.GraphQLError = "Internal server error"
			_, err := p.ConnectionStatus(ctx, ref("conn_plaid", ""))
			return err
		}, ""},
		{"close with a session Quiltt cannot find", func(f *quilttfake.Server, p *quiltt.Provider) error {
			return p.Close(ctx, aggregator.CloseRequest{ConnectionRef: ref("conn_plaid", "PLAID"), ConnectorToken: "ct_expired", PublicToken: "public-x"})
		}, aggregator.ErrTypeReconnectRejected},
		{"status of an unknown connection", func(_ *quilttfake.Server, p *quiltt.Provider) error {
			_, err := p.ConnectionStatus(ctx, ref("conn_nope", ""))
			return err
		}, aggregator.ErrTypeConnectionNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake, p := setup(t)
			err := tc.call(fake, p)
			require.Error(t, err)
			assert.Equal(t, tc.wantType, aggregator.TypeOf(err), err.Error())
			assert.NotContains(t, err.Error(), secret)
			assert.NotContains(t, err.Error(), "session_", "no token in error messages")
		})
	}
}

func TestStatusAndSessionReuse(t *testing.T) {
	fake, p := setup(t)
	ctx := context.Background()
	st, err := p.ConnectionStatus(ctx, ref("conn_ok", ""))
	require.NoError(t, err)
	assert.Equal(t, aggregator.ConnectionStatus{Health: aggregator.HealthHealthy, ProviderStatus: "SYNCED"}, st)
	st, err = p.ConnectionStatus(ctx, ref("conn_plaid", ""))
	require.NoError(t, err)
	assert.Equal(t, aggregator.HealthRepairable, st.Health)
	assert.Equal(t, 1, fake.SessionRequests(), "the profile's session token is reused")
}

func TestSimulateError(t *testing.T) {
	fake, p := setup(t)
	require.NoError(t, p.SimulateError(context.Background(), "p_1", "conn_ok"))
	assert.Equal(t, "ERROR_REPAIRABLE", fake.Get("conn_ok").Status)
	assert.Equal(t, map[string]any{"id": "conn_ok"}, fake.Requests()[0].Input())
}
