package gateway

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/relink-dev/relink/codec"
	"github.com/relink-dev/relink/keyring"
)

// identityProvider is a local stand-in for the Web UI's sign-in provider:
// it publishes a JWKS and signs access tokens.
type identityProvider struct {
	*httptest.Server
	key     *rsa.PrivateKey
	fetches atomic.Int32
}

func newIdentityProvider(t *testing.T) *identityProvider {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	idp := &identityProvider{key: key}
	idp.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		idp.fetches.Add(1)
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "idp-1", Algorithm: "RS256", Use: "sig"}}})
	}))
	t.Cleanup(idp.Close)
	return idp
}

func (idp *identityProvider) token(t *testing.T, kid, audience string, exp time.Time) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: idp.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	require.NoError(t, err)
	tok, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: "https://idp.example.com", Audience: jwt.Audience{audience},
		Subject: "operator@example.com", Expiry: jwt.NewNumericDate(exp)}).Serialize()
	require.NoError(t, err)
	return tok
}

func codecGateway(t *testing.T, idp *identityProvider) *Gateway {
	t.Helper()
	k, err := keyring.Generate("k1")
	require.NoError(t, err)
	enc, err := codec.NewEncryption([]keyring.Key{k})
	require.NoError(t, err)
	g := newTestGateway()
	g.Namespace = "default"
	g.Codec = enc
	g.OperatorTokens = &OperatorTokens{JWKSURL: idp.URL, Issuer: "https://idp.example.com", Audience: "temporal-ui",
		HTTP: idp.Client(), Now: func() time.Time { return now }}
	return g
}

func sealedBody(t *testing.T, g *Gateway) string {
	t.Helper()
	p, err := converter.GetDefaultDataConverter().ToPayload(map[string]string{"connectorToken": "ctok_1"})
	require.NoError(t, err)
	sealed, err := g.Codec.Encode([]*commonpb.Payload{p})
	require.NoError(t, err)
	b, err := protojson.Marshal(&commonpb.Payloads{Payloads: sealed})
	require.NoError(t, err)
	return string(b)
}

func TestCodecAdmitsSignedInOperators(t *testing.T) {
	idp := newIdentityProvider(t)
	g := codecGateway(t, idp)
	body := sealedBody(t, g)
	decode := func(bearer string) (*httptest.ResponseRecorder, errorDetail) {
		r := request(http.MethodPost, "/codec/decode?preserveStorageRefs=true", bearer, body)
		r.Header.Set("X-Namespace", "default")
		return do(t, g, r)
	}

	rec, _ := decode(idp.token(t, "idp-1", "temporal-ui", now.Add(time.Hour)))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var out commonpb.Payloads
	require.NoError(t, protojson.Unmarshal(rec.Body.Bytes(), &out))
	assert.Contains(t, string(out.Payloads[0].Data), "ctok_1")

	rec, _ = decode(testKey)
	assert.Equal(t, http.StatusOK, rec.Code, "an API key works too")

	for name, bearer := range map[string]string{
		"expired":          idp.token(t, "idp-1", "temporal-ui", now.Add(-time.Hour)),
		"another audience": idp.token(t, "idp-1", "someone-else", now.Add(time.Hour)),
		"unknown key id":   idp.token(t, "idp-2", "temporal-ui", now.Add(time.Hour)),
		"no credential":    "",
	} {
		rec, e := decode(bearer)
		assert.Equal(t, http.StatusUnauthorized, rec.Code, name)
		assert.Equal(t, codeUnauthorized, e.Code, name)
		assert.NotContains(t, rec.Body.String(), "ctok_1", name)
	}
	assert.LessOrEqual(t, idp.fetches.Load(), int32(1), "an unknown kid does not make every request fetch the keys")

	// A browser's client token is refused, not mistaken for an operator's.
	clock := now
	withTokens(t, g, &clock)
	rec, e := decode(mint(t, g, "quiltt", "conn_1"))
	assert.Equal(t, http.StatusForbidden, rec.Code)
	assert.Equal(t, codeForbidden, e.Code)
}

// A caller who sends a forged key id and hangs up does not lock operators
// out: the fetch it triggered completes, and its result is shared.
func TestOperatorKeysSurviveAHangUp(t *testing.T) {
	idp := newIdentityProvider(t)
	g := codecGateway(t, idp)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.Error(t, g.OperatorTokens.Check(ctx, idp.token(t, "forged", "temporal-ui", now.Add(time.Hour))))
	assert.NoError(t, g.OperatorTokens.Check(context.Background(), idp.token(t, "idp-1", "temporal-ui", now.Add(time.Hour))))
	assert.Equal(t, int32(1), idp.fetches.Load())
}

func TestCodecRefusesOtherNamespacesAndBadBodies(t *testing.T) {
	g := codecGateway(t, newIdentityProvider(t))
	r := request(http.MethodPost, "/codec/decode", testKey, sealedBody(t, g))
	r.Header.Set("X-Namespace", "payments")
	rec, e := do(t, g, r)
	assert.Equal(t, http.StatusBadRequest, rec.Code)
	assert.Contains(t, e.Message, "namespace")

	rec, _ = do(t, g, request(http.MethodPost, "/codec/decode", testKey, `{"payloads":"nope"}`))
	assert.Equal(t, http.StatusBadRequest, rec.Code)
	rec, _ = do(t, g, request(http.MethodGet, "/codec/decode", testKey, ""))
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	g.Codec = nil
	rec, e = do(t, g, request(http.MethodPost, "/codec/decode", testKey, `{"payloads":[]}`))
	assert.Equal(t, http.StatusNotImplemented, rec.Code)
	assert.Equal(t, codeNotEnabled, e.Code)
}
