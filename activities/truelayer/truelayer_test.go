package truelayer_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/truelayer"
	"github.com/relink-dev/relink/activities/truelayer/truelayerfake"
)

const (
	clientID     = "sandbox-relink-1"
	clientSecret = "tl-secret"
	redirectURI  = "https://relink.example.com/r/return/truelayer"
)

func setup(t *testing.T) (*truelayerfake.Server, *truelayer.MemoryTokens, *truelayer.Provider) {
	t.Helper()
	fake := truelayerfake.New(clientID, clientSecret)
	t.Cleanup(fake.Close)
	tokens := &truelayer.MemoryTokens{}
	return fake, tokens, &truelayer.Provider{AuthURL: fake.URL, APIURL: fake.URL, ClientID: clientID, ClientSecret: clientSecret,
		RedirectURI: redirectURI, Tokens: tokens, HTTP: fake.Client()}
}

// put adds a connection to the fake and its tokens to the app's store.
func put(fake *truelayerfake.Server, tokens *truelayer.MemoryTokens, c truelayerfake.Connection) aggregator.ConnectionRef {
	c = fake.Put(c)
	tokens.Put(c.ID, truelayer.Credentials{AccessToken: c.AccessToken, RefreshToken: c.RefreshToken,
		User: &truelayer.User{Name: "John Doe", Email: "john@example.com"}})
	return ref(c.ID)
}

func ref(id string) aggregator.ConnectionRef {
	return aggregator.ConnectionRef{Provider: truelayer.Name, ConnectionID: id}
}

// john/eternal: extend answers no_action_needed with new tokens, which go
// to the app; the repair continues without the user.
func TestEternalUserExtendsWithoutTheUser(t *testing.T) {
	fake, tokens, p := setup(t)
	r := put(fake, tokens, truelayerfake.Connection{ID: "conn_1", Username: "john", Password: "eternal"})
	r.Proactive = true // a consent about to expire: no health read first

	s, err := p.Initialize(context.Background(), r)

	require.NoError(t, err)
	assert.Equal(t, aggregator.ConnectorContinue, s.ConnectorStatus)
	assert.Empty(t, s.ConnectorToken)
	got := tokens.Deliveries()
	require.Len(t, got, 1)
	now, _ := fake.Get("conn_1")
	assert.Equal(t, now.RefreshToken, got[0].RefreshToken, "the rotated refresh token reached the app")
	assert.Equal(t, now.AccessToken, got[0].AccessToken)
	reqs := fake.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, "/connections/extend", reqs[0].Path)
	assert.Equal(t, redirectURI, reqs[0].Body["redirect_uri"])
	assert.Equal(t, false, reqs[0].Body["user_has_reconfirmed_consent"])
	assert.Equal(t, map[string]any{"name": "John Doe", "email": "john@example.com"}, reqs[0].Body["user"])
}

// john/doe: authentication_needed is a redirect to user_input_link; the
// code the sign-in returns is exchanged at /connect/token and the tokens
// go to the app.
func TestDoeUserSignsInThroughARedirect(t *testing.T) {
	fake, tokens, p := setup(t)
	r := put(fake, tokens, truelayerfake.Connection{ID: "conn_1", Username: "john", Password: "doe", ConsentExpired: true})
	ctx := context.Background()

	s, err := p.Initialize(ctx, r)
	require.NoError(t, err)
	assert.Equal(t, aggregator.ConnectorActionRequired, s.ConnectorStatus)
	assert.Equal(t, aggregator.WidgetRedirect, s.Widget)
	assert.True(t, strings.HasPrefix(s.WidgetURL, fake.URL+"/dialog?session="), s.WidgetURL)
	assert.Len(t, s.ConnectorToken, 24)

	code := signIn(t, fake, s)
	require.NoError(t, p.Close(ctx, aggregator.CloseRequest{ConnectionRef: r, ConnectorToken: s.ConnectorToken, PublicToken: code}))
	st, err := p.ConnectionStatus(ctx, r)
	require.NoError(t, err)
	assert.Equal(t, aggregator.HealthHealthy, st.Health)
	assert.False(t, st.ConsentExpiresAt.IsZero(), "the consent's new expiry, for the next expiry-timed repair")
	last := fake.Requests()[len(fake.Requests())-2]
	assert.Equal(t, "/connect/token", last.Path)
	assert.Equal(t, "authorization_code", last.Form.Get("grant_type"))
	assert.Equal(t, redirectURI, last.Form.Get("redirect_uri"))
	require.Len(t, tokens.Deliveries(), 1)

	// The code was single use: a replayed close is refused.
	err = p.Close(ctx, aggregator.CloseRequest{ConnectionRef: r, ConnectorToken: s.ConnectorToken, PublicToken: code})
	assert.Equal(t, aggregator.ErrTypeReconnectRejected, aggregator.TypeOf(err), "%v", err)
}

// The UK's renewal that needs only a reconfirmation is a click: its close
// extends with user_has_reconfirmed_consent: true.
func TestReconfirmationIsAClick(t *testing.T) {
	fake, tokens, p := setup(t)
	r := put(fake, tokens, truelayerfake.Connection{ID: "conn_uk", Username: "john", Password: "doe", ReconfirmOnly: true})
	r.Proactive = true
	ctx := context.Background()

	s, err := p.Initialize(ctx, r)
	require.NoError(t, err)
	assert.Equal(t, aggregator.ConnectorActionRequired, s.ConnectorStatus)
	assert.Equal(t, aggregator.WidgetReconfirm, s.Widget)
	assert.Empty(t, s.WidgetURL)

	require.NoError(t, p.Close(ctx, aggregator.CloseRequest{ConnectionRef: r, ConnectorToken: s.ConnectorToken, Metadata: json.RawMessage(`{"reconfirmed":true}`)}))
	reqs := fake.Requests()
	assert.Equal(t, true, reqs[len(reqs)-1].Body["user_has_reconfirmed_consent"])
	require.Len(t, tokens.Deliveries(), 1)
}

// A manual start after the app's Data API call failed: each error the
// mock bank's error.<code> users produce maps onto what the repair does.
func TestManualStartAfterADataAPIError(t *testing.T) {
	ctx := context.Background()
	cases := map[string]struct {
		status    aggregator.ConnectorStatus
		errType   string
		retryable bool
	}{
		"wrong_credentials":          {status: aggregator.ConnectorActionRequired},
		"user_input_required":        {status: aggregator.ConnectorActionRequired},
		"account_temporarily_locked": {retryable: true},
		"account_permanently_locked": {errType: aggregator.ErrTypeNotRepairable},
		"provider_error":             {retryable: true},
	}
	for code, tc := range cases {
		t.Run(code, func(t *testing.T) {
			fake, tokens, p := setup(t)
			r := put(fake, tokens, truelayerfake.Connection{ID: "conn_1", Username: "error." + code, Password: "error"})
			s, err := p.Initialize(ctx, r)
			switch {
			case tc.retryable:
				require.Error(t, err)
				assert.Nil(t, aggregator.Named(err), "retried while it lasts: %v", err)
			case tc.errType != "":
				assert.Equal(t, tc.errType, aggregator.TypeOf(err), "%v", err)
			default:
				require.NoError(t, err)
				assert.Equal(t, tc.status, s.ConnectorStatus)
			}
		})
	}
}

// A refresh token TrueLayer no longer accepts cannot be extended.
func TestRevokedRefreshTokenIsNotRepairable(t *testing.T) {
	fake, tokens, p := setup(t)
	put(fake, tokens, truelayerfake.Connection{ID: "conn_1", Username: "john", Password: "doe"})
	tokens.Put("conn_1", truelayer.Credentials{RefreshToken: "rt_revoked"})
	_, err := p.Initialize(context.Background(), aggregator.ConnectionRef{Provider: truelayer.Name, ConnectionID: "conn_1", Proactive: true})
	assert.Equal(t, aggregator.ErrTypeNotRepairable, aggregator.TypeOf(err), "%v", err)
}

// New tokens the app did not take are kept and delivered before the
// connection's next call, which uses them: TrueLayer has retired the old
// refresh token.
func TestTokensTheAppMissedAreDeliveredAgain(t *testing.T) {
	fake, tokens, p := setup(t)
	r := put(fake, tokens, truelayerfake.Connection{ID: "conn_1", Username: "john", Password: "eternal"})
	r.Proactive = true
	tokens.Fail = errors.New("app down")
	_, err := p.Initialize(context.Background(), r) // three tries, a second apart
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "rt_", "no token in an error message")
	assert.Nil(t, aggregator.Named(err), "retryable")

	tokens.Fail = nil
	s, err := p.Initialize(context.Background(), r)
	require.NoError(t, err)
	assert.Equal(t, aggregator.ConnectorContinue, s.ConnectorStatus)
	got := tokens.Deliveries()
	require.Len(t, got, 2, "the missed tokens first, then the next extend's")
	now, _ := fake.Get("conn_1")
	assert.Equal(t, now.RefreshToken, got[1].RefreshToken)
}

// The app's token endpoint: GET for a connection's tokens, POST for new
// ones, both with the bearer secret.
func TestHTTPTokens(t *testing.T) {
	var posted truelayer.NewTokens
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer app-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch {
		case r.Method == http.MethodGet && r.URL.Query().Get("connection_id") == "conn_1":
			_, _ = w.Write([]byte(`{"access_token":"at_1","refresh_token":"rt_1","user":{"name":"John Doe","email":"j@example.com"}}`))
		case r.Method == http.MethodGet:
			w.WriteHeader(http.StatusNotFound)
		case r.Method == http.MethodPost:
			_ = json.NewDecoder(r.Body).Decode(&posted)
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer app.Close()
	h := &truelayer.HTTPTokens{URL: app.URL, Secret: "app-secret", HTTP: app.Client()}
	ctx := context.Background()

	c, err := h.Credentials(ctx, "conn_1")
	require.NoError(t, err)
	assert.Equal(t, "rt_1", c.RefreshToken)
	assert.Equal(t, "John Doe", c.User.Name)
	_, err = h.Credentials(ctx, "conn_2")
	assert.Equal(t, aggregator.ErrTypeConnectionNotFound, aggregator.TypeOf(err))
	require.NoError(t, h.Store(ctx, truelayer.NewTokens{ConnectionID: "conn_1", AccessToken: "at_2", RefreshToken: "rt_2"}))
	assert.Equal(t, "rt_2", posted.RefreshToken)
	bad := &truelayer.HTTPTokens{URL: app.URL, Secret: "wrong", HTTP: app.Client()}
	_, err = bad.Credentials(ctx, "conn_1")
	require.Error(t, err)
	assert.Nil(t, aggregator.Named(err), "a wrong secret is retried while an operator fixes it")
}

func TestSettings(t *testing.T) {
	s := &truelayer.Settings{ClientID: "id", ClientSecret: "secret"}
	assert.ErrorContains(t, s.Validate(), "TRUELAYER_TOKEN_URL")
	s.TokenURL, s.TokenSecret = "https://app.example.com/truelayer/tokens", "x"
	assert.NoError(t, s.Validate())
	assert.Equal(t, "https://relink.example.com/r/return/truelayer", truelayer.RedirectURI(s, "https://relink.example.com/"))
}
