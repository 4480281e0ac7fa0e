package truelayer_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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

// attempt is the context of one activity attempt: with the activity's
// checkpoint, as the activities layer gives it.
func attempt(cp aggregator.Checkpoint) context.Context {
	return aggregator.WithCheckpoint(context.Background(), cp)
}

// activityCtx is an attempt's context with a checkpoint of its own.
func activityCtx() context.Context { return attempt(&aggregator.MemoryCheckpoint{}) }

func ref(id string) aggregator.ConnectionRef {
	return aggregator.ConnectionRef{Provider: truelayer.Name, ConnectionID: id}
}

// john/eternal: extend answers no_action_needed with new tokens, which go
// to the app; the repair continues without the user.
func TestEternalUserExtendsWithoutTheUser(t *testing.T) {
	fake, tokens, p := setup(t)
	r := put(fake, tokens, truelayerfake.Connection{ID: "conn_1", Username: "john", Password: "eternal"})
	r.Proactive = true // a consent about to expire: no health read first

	s, err := p.Initialize(activityCtx(), r)

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
	ctx := activityCtx()

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
	ctx := activityCtx()

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
	ctx := activityCtx()
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
	_, err := p.Initialize(activityCtx(), aggregator.ConnectionRef{Provider: truelayer.Name, ConnectionID: "conn_1", Proactive: true})
	assert.Equal(t, aggregator.ErrTypeNotRepairable, aggregator.TypeOf(err), "%v", err)
}

// extends counts the fake's extend calls.
func extends(fake *truelayerfake.Server) int {
	n := 0
	for _, r := range fake.Requests() {
		if r.Path == "/connections/extend" {
			n++
		}
	}
	return n
}

// New tokens the app did not take outlive the worker: they are in the
// activity's checkpoint, and the next attempt, on another worker (another
// Provider, sharing nothing but the checkpoint), delivers them before
// anything else; while the app is down it fails, retryable, and never
// extends with the refresh token TrueLayer retired.
func TestTokensTheAppMissedSurviveTheWorker(t *testing.T) {
	fake, tokens, first := setup(t)
	second := *first // another worker's adapter: nothing in memory shared
	second.Tokens = &sharedApp{tokens}
	r := put(fake, tokens, truelayerfake.Connection{ID: "conn_1", Username: "john", Password: "eternal"})
	r.Proactive = true
	cp := &aggregator.MemoryCheckpoint{}

	tokens.SetFail(errors.New("app down"))
	_, err := first.Initialize(attempt(cp), r) // three tries, a second apart
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "rt_", "no token in an error message")
	assert.Nil(t, aggregator.Named(err), "retryable")
	require.Equal(t, 1, cp.Saves, "saved before delivering")
	rotated, _ := fake.Get("conn_1")

	// Still down on the second worker: retryable, and no extend.
	_, err = second.Initialize(attempt(cp), r)
	require.Error(t, err)
	assert.Nil(t, aggregator.Named(err), "retryable, never NotRepairable: %v", err)
	assert.Equal(t, 1, extends(fake), "no extend while the app lacks the new tokens")

	tokens.SetFail(nil)
	s, err := second.Initialize(attempt(cp), r)
	require.NoError(t, err)
	assert.Equal(t, aggregator.ConnectorContinue, s.ConnectorStatus, "the first attempt's extend was the answer")
	assert.False(t, s.Healthy, "repaired, not found healthy")
	got := tokens.Deliveries()
	require.Len(t, got, 1, "the missed tokens")
	assert.Equal(t, rotated.RefreshToken, got[0].RefreshToken)
	assert.Equal(t, 1, extends(fake))

	// Another attempt (its result lost): nothing delivered again.
	s, err = second.Initialize(attempt(cp), r)
	require.NoError(t, err)
	assert.Equal(t, aggregator.ConnectorContinue, s.ConnectorStatus)
	assert.Len(t, tokens.Deliveries(), 1)

	// A later attempt holding the now stale checkpoint delivers nothing:
	// the app holds newer tokens than the checkpoint's.
	stale := &aggregator.MemoryCheckpoint{}
	data, _ := json.Marshal(map[string]any{"tokens": got[0], "replaces": "whatever"})
	require.NoError(t, stale.Save(data))
	_, err = first.ConnectionStatus(attempt(stale), r)
	require.NoError(t, err)
	assert.Len(t, tokens.Deliveries(), 1)
}

// The code exchange's tokens, which the app missed, are delivered by the
// retried close's status read (FinishReconnect's first step on a retry),
// on another worker: the used code is not exchanged again.
func TestExchangedTokensTheAppMissedSurviveTheWorker(t *testing.T) {
	fake, tokens, first := setup(t)
	second := *first
	r := put(fake, tokens, truelayerfake.Connection{ID: "conn_1", Username: "john", Password: "doe", ConsentExpired: true})
	s, err := first.Initialize(activityCtx(), r)
	require.NoError(t, err)
	code := signIn(t, fake, s)
	cp := &aggregator.MemoryCheckpoint{}
	tokens.SetFail(errors.New("app down"))
	err = first.Close(attempt(cp), aggregator.CloseRequest{ConnectionRef: r, ConnectorToken: s.ConnectorToken, PublicToken: code})
	require.Error(t, err)
	assert.Nil(t, aggregator.Named(err), "retryable: %v", err)

	tokens.SetFail(nil)
	st, err := second.ConnectionStatus(attempt(cp), r)
	require.NoError(t, err)
	assert.Equal(t, aggregator.HealthHealthy, st.Health)
	now, _ := fake.Get("conn_1")
	require.Len(t, tokens.Deliveries(), 1)
	assert.Equal(t, now.RefreshToken, tokens.Deliveries()[0].RefreshToken)
}

// Without a checkpoint (a local activity's attempt) nothing that may
// rotate the tokens is called: the health read may still answer.
func TestNoExtendWithoutACheckpoint(t *testing.T) {
	fake, tokens, p := setup(t)
	r := put(fake, tokens, truelayerfake.Connection{ID: "conn_1", Username: "john", Password: "eternal", ConsentExpired: true})
	_, err := p.Initialize(context.Background(), r)
	require.ErrorIs(t, err, aggregator.ErrCheckpointNeeded)
	assert.Nil(t, aggregator.Named(err), "retryable")
	assert.Equal(t, 0, extends(fake))
	err = p.Close(context.Background(), aggregator.CloseRequest{ConnectionRef: r, ConnectorToken: "reconfirm_x"})
	require.ErrorIs(t, err, aggregator.ErrCheckpointNeeded)
	assert.Equal(t, 0, extends(fake))

	healthy := put(fake, tokens, truelayerfake.Connection{ID: "conn_ok", Username: "john", Password: "eternal"})
	s, err := p.Initialize(context.Background(), healthy)
	require.NoError(t, err, "a healthy connection needs no extend")
	assert.True(t, s.Healthy)
}

// A manual start after the consent ran out: the app's access token expired
// too (an hour after it was issued), so /me answers 401, which says
// nothing of the connection; extend decides (ACTION_REQUIRED).
func TestManualStartWithAnExpiredAccessToken(t *testing.T) {
	fake, tokens, p := setup(t)
	r := put(fake, tokens, truelayerfake.Connection{ID: "conn_1", Username: "john", Password: "doe", ConsentExpired: true,
		AccessTokenExpiresAt: time.Now().Add(-89 * 24 * time.Hour)})
	s, err := p.Initialize(activityCtx(), r)
	require.NoError(t, err)
	assert.Equal(t, aggregator.ConnectorActionRequired, s.ConnectorStatus)
	assert.Equal(t, aggregator.WidgetRedirect, s.Widget)
	assert.Equal(t, 1, extends(fake))
}

// The reconfirmation, then a sign-in the bank also needs: the click's
// close is rejected, but the app keeps the reconfirmation, so the next
// initialize, on another worker, extends with it and answers TrueLayer's
// sign-in, whose code repairs the connection.
func TestReconfirmationThenSignInOnAnotherWorker(t *testing.T) {
	fake, tokens, first := setup(t)
	second := *first
	r := put(fake, tokens, truelayerfake.Connection{ID: "conn_uk", Username: "john", Password: "doe", ReconfirmThenSignIn: true, ConsentExpired: true})
	r.Proactive = true

	s, err := first.Initialize(activityCtx(), r)
	require.NoError(t, err)
	require.Equal(t, aggregator.WidgetReconfirm, s.Widget)
	err = first.Close(activityCtx(), aggregator.CloseRequest{ConnectionRef: r, ConnectorToken: s.ConnectorToken})
	assert.Equal(t, aggregator.ErrTypeReconnectRejected, aggregator.TypeOf(err), "%v", err)
	assert.Contains(t, err.Error(), "sign in")
	creds, err := tokens.Credentials(context.Background(), "conn_uk")
	require.NoError(t, err)
	assert.False(t, creds.ConsentReconfirmedAt.IsZero(), "the app keeps the reconfirmation")

	s, err = second.Initialize(activityCtx(), r)
	require.NoError(t, err)
	require.Equal(t, aggregator.WidgetRedirect, s.Widget, "the sign-in, not the reconfirmation again")
	reqs := fake.Requests()
	assert.Equal(t, true, reqs[len(reqs)-1].Body["user_has_reconfirmed_consent"])
	code := signIn(t, fake, s)
	require.NoError(t, second.Close(activityCtx(), aggregator.CloseRequest{ConnectionRef: r, ConnectorToken: s.ConnectorToken, PublicToken: code}))
	st, err := second.ConnectionStatus(context.Background(), r)
	require.NoError(t, err)
	assert.Equal(t, aggregator.HealthHealthy, st.Health)

	// A reconfirmation older than ReconfirmValidity is not sent.
	tokens.Put("conn_old", truelayer.Credentials{})
	old := put(fake, tokens, truelayerfake.Connection{ID: "conn_old", Username: "john", Password: "doe", ReconfirmThenSignIn: true})
	require.NoError(t, tokens.Reconfirmed(context.Background(), "conn_old", time.Now().Add(-truelayer.ReconfirmValidity-time.Minute)))
	old.Proactive = true
	s, err = second.Initialize(activityCtx(), old)
	require.NoError(t, err)
	assert.Equal(t, aggregator.WidgetReconfirm, s.Widget)

	// An app that cannot keep the reconfirmation: retried, not rejected.
	tokens.SetFail(errors.New("app down"))
	err = first.Close(activityCtx(), aggregator.CloseRequest{ConnectionRef: old, ConnectorToken: s.ConnectorToken})
	require.Error(t, err)
	assert.Nil(t, aggregator.Named(err), "retryable: %v", err)
}

// sharedApp is the app's token store as another worker reaches it.
type sharedApp struct{ *truelayer.MemoryTokens }

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
	for _, u := range []string{"http://127.0.0.1:8080/tokens", "http://localhost/tokens", "http://[::1]:9000/tokens"} {
		s.TokenURL = u
		assert.NoError(t, s.Validate(), u)
	}
	for _, u := range []string{"http://app.example.com/truelayer/tokens", "http://10.0.0.5/tokens", "ftp://app.example.com/x", "/tokens"} {
		s.TokenURL = u
		assert.ErrorContains(t, s.Validate(), "TRUELAYER_TOKEN_URL", u)
	}
	s.TokenURL = "http://app.example.com/truelayer/tokens"
	assert.ErrorContains(t, s.Validate(), "use https")
	s.TokenURL = "https://app.example.com/truelayer/tokens"
	assert.Equal(t, "https://relink.example.com/r/return/truelayer", truelayer.RedirectURI(s, "https://relink.example.com/"))
}
