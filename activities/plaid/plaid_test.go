package plaid_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/plaid"
	"github.com/relink-dev/relink/activities/plaid/plaidfake"
)

const (
	clientID    = "client_test"
	secret      = "secret_test"
	accessToken = "access-sandbox-5f1c0c2e-item-1"
)

func setup(t *testing.T) (*plaidfake.Server, *plaid.Provider) {
	t.Helper()
	fake := plaidfake.New(clientID, secret)
	t.Cleanup(fake.Close)
	fake.Put(plaidfake.Item{ID: "item_1", AccessToken: accessToken, ErrorCode: plaid.CodeItemLoginRequired})
	p := &plaid.Provider{APIURL: fake.URL, ClientID: clientID, Secret: secret, ClientName: "Acme", Language: "en",
		CountryCodes: []string{"US"}, LinkWebhookURL: "https://relink.example.com/webhooks/plaid",
		Tokens: plaid.StaticAccessTokens{"item_1": accessToken}, HTTP: fake.Client()}
	return fake, p
}

func ref(item string) aggregator.ConnectionRef {
	return aggregator.ConnectionRef{Provider: plaid.Name, ConnectionID: item, ProfileID: "user_42"}
}

func TestInitializeCreatesAnUpdateModeLinkToken(t *testing.T) {
	fake, p := setup(t)

	s, err := p.Initialize(context.Background(), ref("item_1"))

	require.NoError(t, err)
	assert.Equal(t, aggregator.ConnectorActionRequired, s.ConnectorStatus)
	assert.True(t, strings.HasPrefix(s.LinkToken, "link-sandbox-"))
	assert.Equal(t, s.LinkToken, s.ConnectorToken)
	assert.WithinDuration(t, time.Now().Add(30*time.Minute), s.ExpiresAt, time.Minute)
	require.Len(t, fake.Requests(), 2)
	assert.Equal(t, "/item/get", fake.Requests()[0].Path, "first: is the Item really broken?")
	req := fake.Requests()[1]
	assert.Equal(t, "/link/token/create", req.Path)
	assert.Equal(t, map[string]any{
		"client_id": clientID, "secret": secret, "client_name": "Acme", "language": "en",
		"country_codes": []any{"US"}, "user": map[string]any{"client_user_id": "user_42"},
		"access_token": accessToken, "webhook": "https://relink.example.com/webhooks/plaid",
	}, req.Body, "update mode: the Item's access token and no products")
}

func TestInitializeOfAHealthyItemAsksNobody(t *testing.T) {
	fake, p := setup(t)
	fake.Put(plaidfake.Item{ID: "item_ok", AccessToken: "access-sandbox-ok"})
	p.Tokens = plaid.StaticAccessTokens{"item_ok": "access-sandbox-ok"}

	s, err := p.Initialize(context.Background(), ref("item_ok"))

	require.NoError(t, err)
	assert.Equal(t, aggregator.ConnectorContinue, s.ConnectorStatus)
	assert.True(t, s.Healthy, "a redelivered ITEM_LOGIN_REQUIRED for a repaired Item repairs nothing")
	for _, req := range fake.Requests() {
		assert.NotEqual(t, "/link/token/create", req.Path, "no link token, so no user is asked")
	}

	proactive := ref("item_ok")
	proactive.Proactive = true
	s, err = p.Initialize(context.Background(), proactive)
	require.NoError(t, err)
	assert.Equal(t, aggregator.ConnectorActionRequired, s.ConnectorStatus, "consent expiring: the user is needed although nothing broke")
}

func TestAccessTokensComeFromTheApp(t *testing.T) {
	fake, p := setup(t)
	var gotAuth, gotItem string
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotItem = r.Header.Get("Authorization"), r.URL.Query().Get("item_id")
		if gotItem != "item_1" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"access_token": accessToken})
	}))
	defer app.Close()
	p.Tokens = &plaid.HTTPAccessTokens{URL: app.URL + "/plaid/access-token", Secret: "app-secret", HTTP: app.Client()}

	_, err := p.Initialize(context.Background(), ref("item_1"))
	require.NoError(t, err)
	assert.Equal(t, "Bearer app-secret", gotAuth)
	assert.Equal(t, "item_1", gotItem)
	assert.Equal(t, accessToken, fake.Requests()[0].Body["access_token"])

	_, err = p.Initialize(context.Background(), ref("item_unknown"))
	assert.Equal(t, aggregator.ErrTypeConnectionNotFound, aggregator.TypeOf(err))
}

func TestItemStatus(t *testing.T) {
	fake, p := setup(t)
	ctx := context.Background()
	st, err := p.ConnectionStatus(ctx, ref("item_1"))
	require.NoError(t, err)
	assert.Equal(t, aggregator.ConnectionStatus{Health: aggregator.HealthRepairable, ProviderStatus: plaid.CodeItemLoginRequired}, st)

	fake.SetError("item_1", "")
	st, err = p.ConnectionStatus(ctx, ref("item_1"))
	require.NoError(t, err)
	assert.Equal(t, aggregator.HealthHealthy, st.Health)

	fake.SetError("item_1", "INSTITUTION_DOWN")
	st, err = p.ConnectionStatus(ctx, ref("item_1"))
	require.NoError(t, err)
	assert.Equal(t, aggregator.HealthDegraded, st.Health)
}

func TestErrorsAreClassifiedWithoutLeakingTokens(t *testing.T) {
	ctx := context.Background()
	cases := map[string]struct {
		prepare  func(*plaidfake.Server, *plaid.Provider)
		wantType string
	}{
		"unknown item": {func(_ *plaidfake.Server, p *plaid.Provider) { p.Tokens = plaid.StaticAccessTokens{} }, aggregator.ErrTypeConnectionNotFound},
		"revoked token": {func(f *plaidfake.Server, _ *plaid.Provider) {
			f.Put(plaidfake.Item{ID: "item_1", AccessToken: "other"})
		}, aggregator.ErrTypeConnectionNotFound},
		"rate limited":      {func(f *plaidfake.Server, _ *plaid.Provider) { f.HTTPStatus = http.StatusTooManyRequests }, ""},
		"plaid down":        {func(f *plaidfake.Server, _ *plaid.Provider) { f.HTTPStatus = http.StatusInternalServerError }, ""},
		"wrong credentials": {func(_ *plaidfake.Server, p *plaid.Provider) { p.Secret = "wrong" }, ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			fake, p := setup(t)
			tc.prepare(fake, p)
			for _, call := range []func() error{
				func() error { _, err := p.Initialize(ctx, ref("item_1")); return err },
				func() error { _, err := p.ConnectionStatus(ctx, ref("item_1")); return err },
			} {
				err := call()
				require.Error(t, err)
				assert.Equal(t, tc.wantType, aggregator.TypeOf(err), err.Error())
				assert.NotContains(t, err.Error(), accessToken)
				assert.NotContains(t, err.Error(), secret)
			}
		})
	}
}

func TestCloseIsANoOp(t *testing.T) {
	fake, p := setup(t)
	require.NoError(t, p.Close(context.Background(), aggregator.CloseRequest{ConnectionRef: ref("item_1"), PublicToken: "public-x"}))
	assert.Empty(t, fake.Requests(), "update mode exchanges no public token")
}

func receiver(fake *plaidfake.Server, proactive bool) *plaid.WebhookReceiver {
	return &plaid.WebhookReceiver{
		Keys:      &plaid.VerificationKeys{APIURL: fake.URL, ClientID: clientID, Secret: secret, HTTP: fake.Client(), Now: fake.Now},
		Now:       fake.Now,
		Proactive: proactive,
	}
}

func webhookBody(code, errorCode string) []byte {
	hook := map[string]any{"webhook_type": "ITEM", "webhook_code": code, "item_id": "item_1", "environment": "sandbox"}
	if errorCode != "" {
		hook["error"] = map[string]any{"error_type": "ITEM_ERROR", "error_code": errorCode, "error_message": "…", "status": 400}
	}
	b, _ := json.MarshalIndent(hook, "", "  ")
	return b
}

func request(body []byte, token string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/webhooks/plaid", bytes.NewReader(body))
	if token != "" {
		req.Header.Set(plaid.HeaderVerification, token)
	}
	return req
}

func TestWebhookCodesAreNormalised(t *testing.T) {
	cases := []struct {
		code, errorCode string
		proactive       bool
		want            aggregator.EventKind
	}{
		{plaid.CodeError, plaid.CodeItemLoginRequired, false, aggregator.EventKindRepairable},
		{plaid.CodeError, "INSTITUTION_DOWN", false, aggregator.EventKindErrored},
		{plaid.CodePendingExpiration, "", true, aggregator.EventKindProactive},
		{plaid.CodePendingDisconnect, "", true, aggregator.EventKindProactive},
		{plaid.CodePendingExpiration, "", false, ""},
		{plaid.CodeLoginRepaired, "", false, aggregator.EventKindRepairedElsewhere},
		{plaid.CodePermissionRevoked, "", false, aggregator.EventKindDisconnected},
		{"WEBHOOK_UPDATE_ACKNOWLEDGED", "", false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.code+"/"+tc.errorCode, func(t *testing.T) {
			fake, _ := setup(t)
			body := webhookBody(tc.code, tc.errorCode)
			events, err := receiver(fake, tc.proactive).Receive(request(body, fake.Sign(body)), body)
			require.NoError(t, err)
			if tc.want == "" {
				assert.Empty(t, events)
				return
			}
			require.Len(t, events, 1)
			assert.Equal(t, tc.want, events[0].Kind)
			assert.Equal(t, "item_1", events[0].ConnectionID)
		})
	}
}

func TestWebhookVerification(t *testing.T) {
	body := webhookBody(plaid.CodeError, plaid.CodeItemLoginRequired)
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	cases := map[string]func(*plaidfake.Server) *http.Request{
		"missing header": func(*plaidfake.Server) *http.Request { return request(body, "") },
		"tampered body": func(f *plaidfake.Server) *http.Request {
			tampered := bytes.Replace(body, []byte("item_1"), []byte("item_2"), 1)
			return request(tampered, f.Sign(body))
		},
		"stale iat": func(f *plaidfake.Server) *http.Request {
			return request(body, f.SignAt(body, time.Now().Add(-6*time.Minute)))
		},
		"wrong key, same kid": func(f *plaidfake.Server) *http.Request {
			return request(body, plaidfake.Sign(otherKey, f.KeyID, body, time.Now()))
		},
		"unknown kid": func(f *plaidfake.Server) *http.Request {
			return request(body, plaidfake.Sign(otherKey, "kid-unknown", body, time.Now()))
		},
		"HS256 instead of ES256": func(f *plaidfake.Server) *http.Request {
			// Fresh and over this very body: only the algorithm is wrong.
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: bytes.Repeat([]byte("k"), 32)},
				(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", f.KeyID))
			require.NoError(t, err)
			sum := sha256.Sum256(body)
			claims, _ := json.Marshal(map[string]any{"iat": time.Now().Unix(), "request_body_sha256": hex.EncodeToString(sum[:])})
			obj, err := signer.Sign(claims)
			require.NoError(t, err)
			token, err := obj.CompactSerialize()
			require.NoError(t, err)
			return request(body, token)
		},
		"not a JWT": func(*plaidfake.Server) *http.Request { return request(body, "hello") },
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			fake, _ := setup(t)
			req := build(fake)
			sent, err := io.ReadAll(req.Body)
			require.NoError(t, err)
			_, err = receiver(fake, false).Receive(req, sent)
			assert.ErrorIs(t, err, aggregator.ErrWebhookSignature)
		})
	}
}

// clock is a settable time source shared by the fake and the receiver.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func TestVerificationKeysAreCachedAndRetired(t *testing.T) {
	fake, _ := setup(t)
	c := &clock{now: time.Now()}
	fake.Now = c.Now
	r := receiver(fake, false)
	body := webhookBody(plaid.CodeLoginRepaired, "")
	for range 3 {
		_, err := r.Receive(request(body, fake.Sign(body)), body)
		require.NoError(t, err)
	}
	assert.Equal(t, 1, fake.KeyRequests(), "one fetch per key id")

	// Plaid retires the key; the same receiver stops trusting it once its
	// cache entry is due again.
	retired := c.now.Unix()
	fake.KeyExpiredAt = &retired
	c.now = c.now.Add(61 * time.Minute)
	_, err := r.Receive(request(body, fake.Sign(body)), body)
	assert.ErrorIs(t, err, aggregator.ErrWebhookSignature, "a retired key verifies nothing")
	assert.Equal(t, 2, fake.KeyRequests())
}

func TestUnknownKeyIDsAreRememberedBriefly(t *testing.T) {
	fake, _ := setup(t)
	r := receiver(fake, false)
	body := webhookBody(plaid.CodeLoginRepaired, "")
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	for range 5 {
		_, err := r.Receive(request(body, plaidfake.Sign(other, "kid-forged", body, time.Now())), body)
		assert.ErrorIs(t, err, aggregator.ErrWebhookSignature)
	}
	assert.Equal(t, 1, fake.KeyRequests(), "forged key ids do not each cost a call to Plaid")
}

func TestKeyFetchWithBadCredentialsAsksForRedelivery(t *testing.T) {
	fake, _ := setup(t)
	r := receiver(fake, false)
	r.Keys.Secret = "wrong"
	body := webhookBody(plaid.CodeLoginRepaired, "")
	_, err := r.Receive(request(body, fake.Sign(body)), body)
	assert.ErrorIs(t, err, aggregator.ErrWebhookUnavailable, "our credentials, not the sender, are wrong")
}

func TestKeyEndpointDownAsksForRedelivery(t *testing.T) {
	fake, _ := setup(t)
	body := webhookBody(plaid.CodeLoginRepaired, "")
	token := fake.Sign(body)
	fake.HTTPStatus = http.StatusServiceUnavailable
	_, err := receiver(fake, false).Receive(request(body, token), body)
	assert.ErrorIs(t, err, aggregator.ErrWebhookUnavailable)
}

func TestRedeliveriesShareAnEventID(t *testing.T) {
	fake, _ := setup(t)
	c := &clock{now: time.Now()}
	fake.Now = c.Now
	r := receiver(fake, false)
	body := webhookBody(plaid.CodeError, plaid.CodeItemLoginRequired)
	receive := func(b []byte) aggregator.WebhookEvent {
		t.Helper()
		events, err := r.Receive(request(b, fake.Sign(b)), b)
		require.NoError(t, err)
		require.Len(t, events, 1)
		return events[0]
	}

	first := receive(body)
	c.now = c.now.Add(9*time.Minute + 40*time.Second) // Plaid's retry, freshly signed
	retry := receive(body)
	assert.Equal(t, first.EventID, retry.EventID, "Plaid sends no id: a retry within the window is the same event")
	assert.Equal(t, first.At, retry.At, "and keeps the first delivery's time")

	other := webhookBody(plaid.CodeLoginRepaired, "")
	assert.NotEqual(t, first.EventID, receive(other).EventID, "another code is another event")

	c.now = c.now.Add(11 * time.Minute)
	again := receive(body)
	assert.NotEqual(t, first.EventID, again.EventID, "the same code after the window is a new event")
}

func TestConnectionStatusReadsConsentExpiration(t *testing.T) {
	fake, p := setup(t)
	st, err := p.ConnectionStatus(context.Background(), ref("item_1"))
	require.NoError(t, err)
	assert.True(t, st.ConsentExpiresAt.IsZero(), "null: no expiry known")

	at := time.Date(2027, 1, 15, 13, 25, 17, 766e6, time.UTC)
	fake.SetConsentExpiration("item_1", at)
	st, err = p.ConnectionStatus(context.Background(), ref("item_1"))
	require.NoError(t, err)
	assert.True(t, at.Equal(st.ConsentExpiresAt), "%s", st.ConsentExpiresAt)
	assert.Equal(t, aggregator.HealthRepairable, st.Health)
}

func TestRateLimitExceededIsRateLimited(t *testing.T) {
	fake, p := setup(t)
	fake.RateLimitNext(1)

	_, err := p.ConnectionStatus(context.Background(), ref("item_1"))

	rl, ok := aggregator.IsRateLimited(err)
	require.True(t, ok, "%v", err)
	assert.Contains(t, rl.Message, "ITEM_GET_LIMIT")
	assert.Zero(t, rl.RetryAfter, "Plaid says no Retry-After")
	assert.Empty(t, aggregator.TypeOf(err), "retryable")
	assert.NotContains(t, err.Error(), accessToken)
	_, err = p.ConnectionStatus(context.Background(), ref("item_1"))
	assert.NoError(t, err)
}

func TestRevocationsEndTheRepairAndNewAccountsAreOptIn(t *testing.T) {
	fake, _ := setup(t)
	post := func(r *plaid.WebhookReceiver, hook map[string]any) []aggregator.WebhookEvent {
		t.Helper()
		body, _ := json.MarshalIndent(hook, "", "  ")
		events, err := r.Receive(request(body, fake.Sign(body)), body)
		require.NoError(t, err)
		return events
	}
	r := receiver(fake, true)
	revoked := func(account string) map[string]any {
		return map[string]any{"webhook_type": "ITEM", "webhook_code": "USER_ACCOUNT_REVOKED", "item_id": "item_1",
			"account_id": account, "environment": "production"}
	}
	first := post(r, revoked("acc_checking"))
	require.Len(t, first, 1)
	assert.Equal(t, aggregator.EventKindDisconnected, first[0].Kind, "the user withdrew consent: not repaired behind their back")
	assert.Equal(t, plaid.CodeAccountRevoked, first[0].ProviderStatus, "the repair's lastProviderStatus")
	assert.Equal(t, "ITEM USER_ACCOUNT_REVOKED (account acc_checking)", first[0].Type)
	assert.Equal(t, first[0].EventID, post(r, revoked("acc_checking"))[0].EventID, "Plaid's retry is the same event")
	assert.NotEqual(t, first[0].EventID, post(r, revoked("acc_savings"))[0].EventID, "another account's revocation is another event")

	perm := post(r, map[string]any{"webhook_type": "ITEM", "webhook_code": "USER_PERMISSION_REVOKED", "item_id": "item_1",
		"error": map[string]any{"error_type": "ITEM_ERROR", "error_code": "USER_PERMISSION_REVOKED"}, "environment": "production"})
	require.Len(t, perm, 1)
	assert.Equal(t, aggregator.EventKindDisconnected, perm[0].Kind)
	assert.Equal(t, plaid.CodePermissionRevoked, perm[0].ProviderStatus, "the code once, not USER_PERMISSION_REVOKED/USER_PERMISSION_REVOKED")

	newAccounts := map[string]any{"webhook_type": "ITEM", "webhook_code": "NEW_ACCOUNTS_AVAILABLE", "item_id": "item_1", "environment": "production"}
	assert.Empty(t, post(r, newAccounts), "off by default (PLAID_NEW_ACCOUNTS_REPAIRS)")
	r.NewAccounts = true
	ev := post(r, newAccounts)
	require.Len(t, ev, 1)
	assert.Equal(t, aggregator.EventKindProactive, ev[0].Kind, "a proactive repair: nothing is broken")
	assert.Equal(t, "ITEM NEW_ACCOUNTS_AVAILABLE", ev[0].Type)
}

func TestProactiveSessionsSelectAccountsWhenNewAccountsAreOn(t *testing.T) {
	fake, p := setup(t)
	fake.RedirectURIs = []string{"https://relink.example.com/r/oauth"}
	p.RedirectURI = "https://relink.example.com/r/oauth"
	proactive := ref("item_1")
	proactive.Proactive = true

	s, err := p.Initialize(context.Background(), proactive)
	require.NoError(t, err)
	lt, ok := fake.LinkToken(s.LinkToken)
	require.True(t, ok)
	assert.False(t, lt.AccountSelection, "PLAID_NEW_ACCOUNTS_REPAIRS off: no account selection")
	assert.Equal(t, "https://relink.example.com/r/oauth", lt.RedirectURI)

	p.AccountSelection = true
	s, err = p.Initialize(context.Background(), proactive)
	require.NoError(t, err)
	lt, _ = fake.LinkToken(s.LinkToken)
	assert.True(t, lt.AccountSelection)
	last := fake.Requests()[len(fake.Requests())-1]
	assert.Equal(t, map[string]any{"account_selection_enabled": true}, last.Body["update"])

	s, err = p.Initialize(context.Background(), ref("item_1"))
	require.NoError(t, err)
	lt, _ = fake.LinkToken(s.LinkToken)
	assert.False(t, lt.AccountSelection, "a broken Item's repair re-authenticates only")

	p.RedirectURI = "https://elsewhere.example.com/oauth"
	_, err = p.Initialize(context.Background(), ref("item_1"))
	require.Error(t, err)
	assert.Empty(t, aggregator.TypeOf(err), "an unregistered redirect URI is the operator's to fix: retried")
	assert.Contains(t, err.Error(), "INVALID_FIELD")
}

func TestInitializeOfARevokedItemIsNotRepairable(t *testing.T) {
	fake, p := setup(t)
	fake.SetError("item_1", plaid.CodePermissionRevoked)

	_, err := p.Initialize(context.Background(), ref("item_1"))

	assert.Equal(t, aggregator.ErrTypeNotRepairable, aggregator.TypeOf(err))
	assert.Contains(t, err.Error(), "USER_PERMISSION_REVOKED")
	for _, req := range fake.Requests() {
		assert.NotEqual(t, "/link/token/create", req.Path, "the user is not asked to undo their revocation")
	}
}

func TestRedirectURIMustBeAbsoluteWithoutQuery(t *testing.T) {
	s := &plaid.Settings{ClientID: "c", Secret: "s", ClientName: "Acme", AccessTokens: map[string]string{"i": "t"}, DedupeWindow: time.Minute}
	require.NoError(t, s.Validate())
	for _, bad := range []string{"/r/oauth", "https://relink.example.com/r/oauth?x=1", "ftp://relink.example.com/r/oauth"} {
		s.RedirectURI = bad
		assert.Error(t, s.Validate(), bad)
	}
	s.RedirectURI = "https://relink.example.com/r/oauth"
	assert.NoError(t, s.Validate())
}

func TestInstitutionIsTheItemsInstitutionID(t *testing.T) {
	fake, p := setup(t)
	fake.Put(plaidfake.Item{ID: "item_2", AccessToken: "access-sandbox-2", InstitutionID: "ins_109508"})
	p.Tokens = plaid.StaticAccessTokens{"item_1": accessToken, "item_2": "access-sandbox-2", "item_gone": "access-sandbox-gone"}

	got, err := p.Institution(context.Background(), ref("item_2"))
	require.NoError(t, err)
	assert.Equal(t, "ins_109508", got)
	last := fake.Requests()[len(fake.Requests())-1]
	assert.Equal(t, "/item/get", last.Path)
	assert.Equal(t, "access-sandbox-2", last.Body["access_token"])

	got, err = p.Institution(context.Background(), ref("item_1"))
	require.NoError(t, err)
	assert.Equal(t, "ins_3", got, "a broken Item still says its institution")

	_, err = p.Institution(context.Background(), ref("item_gone"))
	assert.Equal(t, aggregator.ErrTypeConnectionNotFound, aggregator.TypeOf(err), "Plaid no longer has the Item: %v", err)
	_, err = p.Institution(context.Background(), ref("item_unknown"))
	assert.Equal(t, aggregator.ErrTypeConnectionNotFound, aggregator.TypeOf(err), "the app knows no access token: %v", err)

	fake.RateLimitNext(1)
	_, err = p.Institution(context.Background(), ref("item_2"))
	_, limited := aggregator.IsRateLimited(err)
	assert.True(t, limited, "retryable, and said to be a rate limit: %v", err)
}
