package integration

// The trust boundary, end to end on the real server through the real
// gateway: browser client tokens and what they may do, CORS, rotation of
// every key, encrypted history with the codec endpoint, and a looping page.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/app"
	"github.com/relink-dev/relink/codec"
	"github.com/relink-dev/relink/config"
	"github.com/relink-dev/relink/gateway"
	"github.com/relink-dev/relink/keyring"
	"github.com/relink-dev/relink/workflows"
)

const (
	appOrigin     = "https://app.example.com"
	webUIOrigin   = "https://temporal-ui.example.com"
	rotatedAPIKey = "integration-api-key-2"
)

// testPayloadKey is the key committed for tests only; the encrypted
// histories in workflows/testdata replay with it.
func testPayloadKey(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../workflows/testdata/payload-test-key")
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

func newKey(t *testing.T, id string) string {
	t.Helper()
	k, err := keyring.Generate(id)
	require.NoError(t, err)
	return k.Format()
}

// newSecuredStack is a stack configured as a production deployment with
// every protection on.
func newSecuredStack(t *testing.T, settings map[string]string) *stack {
	t.Helper()
	env := map[string]string{
		"RELINK_PAYLOAD_KEYS":      testPayloadKey(t),
		"RELINK_CLIENT_TOKEN_KEYS": newKey(t, "tok1"),
		"RELINK_API_KEYS":          rotatedAPIKey,
		"RELINK_CORS_ORIGINS":      appOrigin,
		"RELINK_CODEC_ORIGINS":     webUIOrigin,
	}
	for k, v := range settings {
		env[k] = v
	}
	return newStackWith(t, env)
}

// reply is an answer as a browser or a backend sees it.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) errorCode() string {
	var e struct{ Error struct{ Code string } }
	_ = json.Unmarshal(r.body, &e)
	return e.Error.Code
}

// send calls gw with bearer (none if empty), as a page on origin (none if
// empty) would, and decodes a 2xx answer into out.
func send(t *testing.T, gw *httptest.Server, bearer, origin, method, path string, body, out any, headers ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, gw.URL+path, rd)
	require.NoError(t, err)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if out != nil && resp.StatusCode/100 == 2 {
		require.NoError(t, json.Unmarshal(raw, out), string(raw))
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: raw}
}

// clientToken is what the app's backend does for its frontend.
func (s *stack) clientTokenAt(gw *httptest.Server, provider, conn string) string {
	s.t.Helper()
	var out struct {
		Token     string
		ExpiresAt time.Time
	}
	r := send(s.t, gw, apiKey, "", http.MethodPost, "/v1/repairs/"+provider+"/"+conn+"/client-token", nil, &out)
	require.Equal(s.t, http.StatusCreated, r.status, string(r.body))
	assert.WithinDuration(s.t, time.Now().Add(30*time.Minute), out.ExpiresAt, time.Minute)
	return out.Token
}

// gatewayWith serves another replica built from cfg, adjusted by edit.
func (s *stack) gatewayWith(cfg config.Config, tc client.Client, edit func(*gateway.Gateway)) *httptest.Server {
	s.t.Helper()
	gw, err := app.NewGateway(cfg, tc, s.logger, app.NewProviders(cfg, s.sandbox), s.sandbox)
	require.NoError(s.t, err)
	if edit != nil {
		edit(gw)
	}
	srv := httptest.NewServer(validatedByOpenAPI(s.t, gw.Handler()))
	s.t.Cleanup(srv.Close)
	return srv
}

// configWith is the stack's configuration with settings changed.
func (s *stack) configWith(settings map[string]string) config.Config {
	s.t.Helper()
	env := map[string]string{
		"TEMPORAL_ADDRESS":     s.cfg.Temporal.Address,
		"TEMPORAL_CONFIG_FILE": os.DevNull,
		"TEMPORAL_NAMESPACE":   s.cfg.Temporal.Namespace,
		"RELINK_TASK_QUEUE":    s.cfg.Temporal.TaskQueue,
		"RELINK_API_KEY":       apiKey,
		"RELINK_NOTIFY_URL":    s.cfg.Notify.URL,
		"RELINK_NOTIFY_SECRET": notifySecret,
	}
	for k, v := range settings {
		env[k] = v
	}
	cfg, err := config.LoadFrom(context.Background(), envconfig.MapLookuper(env))
	require.NoError(s.t, err)
	return cfg
}

func TestABrowserRepairsItsOwnConnectionAndNothingElse(t *testing.T) {
	s := newSecuredStack(t, nil)
	s.breakConnection("conn_b", "profile_b")
	s.waitForStatus("conn_b", workflows.StatusAwaitingUser)
	token := s.clientTokenAt(s.gateway, "sandbox", "conn_b")
	page := func(method, path string, body, out any) reply {
		return send(t, s.gateway, token, appOrigin, method, path, body, out)
	}

	// What the page may do, for its connection.
	var view struct{ Repair workflows.RepairState }
	r := page(http.MethodGet, "/v1/repairs/sandbox/conn_b", nil, &view)
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, workflows.StatusAwaitingUser, view.Repair.Status)
	assert.Equal(t, appOrigin, r.header.Get("Access-Control-Allow-Origin"))
	var rec workflows.ReconnectResult
	require.Equal(t, http.StatusOK, page(http.MethodPost, "/v1/repairs/sandbox/conn_b/reconnect", nil, &rec).status)
	require.NotNil(t, rec.Session)
	assert.Equal(t, http.StatusAccepted, page(http.MethodPost, "/v1/repairs/sandbox/conn_b/exit",
		map[string]string{"reason": "user closed the widget"}, nil).status)

	// What it may not: every other route, and every other connection.
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/v1/repairs"},
		{http.MethodGet, "/v1/repairs?profileId=profile_b"},
		{http.MethodPost, "/v1/repairs"},
		{http.MethodPost, "/v1/repairs/sandbox/conn_b/cancel"},
		{http.MethodPost, "/v1/repairs/sandbox/conn_b/client-token"},
		{http.MethodGet, "/v1/repairs/sandbox/conn_other"},
		{http.MethodPost, "/v1/repairs/sandbox/conn_other/reconnect"},
		{http.MethodPost, "/v1/repairs/sandbox/conn_other/complete"},
		{http.MethodPost, "/v1/repairs/sandbox/conn_other/exit"},
		{http.MethodPost, "/sandbox/connections/conn_b/login"},
		{http.MethodPost, "/codec/decode"},
	} {
		r := page(c.method, c.path, map[string]string{}, nil)
		assert.Equal(t, http.StatusForbidden, r.status, c.method+" "+c.path)
		assert.Equal(t, "forbidden", r.errorCode(), c.method+" "+c.path)
	}
	assert.Equal(t, workflows.StatusAwaitingUser, s.state("conn_b").Status, "nothing the page was refused happened")

	// Tokens that are not good: 401.
	foreign := s.gatewayWith(s.configWith(map[string]string{"RELINK_CLIENT_TOKEN_KEYS": newKey(t, "tok1")}), s.temporal, nil)
	later := s.gatewayWith(s.cfg, s.temporal, func(g *gateway.Gateway) {
		g.ClientTokens.Now = func() time.Time { return time.Now().Add(31 * time.Minute) }
	})
	parts := strings.Split(token, ".")
	for name, c := range map[string]struct {
		gw     *httptest.Server
		bearer string
	}{
		"no token": {s.gateway, ""},
		"expired":  {later, token},
		"signed with the same kid by another deployment": {foreign, token},
		"tampered signature":                             {s.gateway, parts[0] + "." + parts[1] + "." + flipChar(parts[2])},
		"tampered claims":                                {s.gateway, parts[0] + "." + flipChar(parts[1]) + "." + parts[2]},
	} {
		r := send(t, c.gw, c.bearer, appOrigin, http.MethodGet, "/v1/repairs/sandbox/conn_b", nil, nil)
		assert.Equal(t, http.StatusUnauthorized, r.status, name)
		assert.Equal(t, "unauthorized", r.errorCode(), name)
	}

	// The user signs in; the page reports it with its token.
	var login sandbox.Login
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/sandbox/connections/conn_b/login", nil, &login))
	require.Equal(t, http.StatusAccepted, page(http.MethodPost, "/v1/repairs/sandbox/conn_b/complete", login, nil).status)
	s.waitForStatus("conn_b", workflows.StatusRepaired)
	s.waitFor("the app to hear of the repair", func() bool {
		types := s.app.typesFor("conn_b")
		return len(types) > 0 && types[len(types)-1] == activities.EventRepaired
	})
	assert.Zero(t, s.app.bad, "every event verifies with the official Standard Webhooks library")
}

func TestCORSPreflightsOnTheBrowserRoutes(t *testing.T) {
	s := newSecuredStack(t, nil)
	preflight := func(path, origin, method string) reply {
		return send(t, s.gateway, "", origin, http.MethodOptions, path, nil, nil,
			"Access-Control-Request-Method", method, "Access-Control-Request-Headers", "authorization,content-type")
	}
	for path, method := range map[string]string{
		"/v1/repairs/sandbox/conn_c":           http.MethodGet,
		"/v1/repairs/sandbox/conn_c/reconnect": http.MethodPost,
		"/v1/repairs/sandbox/conn_c/complete":  http.MethodPost,
		"/v1/repairs/sandbox/conn_c/exit":      http.MethodPost,
	} {
		r := preflight(path, appOrigin, method)
		assert.Equal(t, http.StatusNoContent, r.status, path)
		assert.Equal(t, appOrigin, r.header.Get("Access-Control-Allow-Origin"), path)
		assert.Equal(t, method, r.header.Get("Access-Control-Allow-Methods"), path)
		r = preflight(path, "https://evil.example.com", method)
		assert.Empty(t, r.header.Get("Access-Control-Allow-Origin"), path)
		assert.Empty(t, r.header.Get("Access-Control-Allow-Methods"), path)
	}
	for _, path := range []string{"/v1/repairs", "/v1/repairs/sandbox/conn_c/cancel", "/v1/repairs/sandbox/conn_c/client-token", "/sandbox/connections/conn_c/break"} {
		r := preflight(path, appOrigin, http.MethodPost)
		assert.Empty(t, r.header.Get("Access-Control-Allow-Origin"), path)
	}
	// The Web UI's origin may call the codec, with the headers it sends.
	r := preflight("/codec/decode", webUIOrigin, http.MethodPost)
	assert.Equal(t, http.StatusNoContent, r.status)
	assert.Equal(t, webUIOrigin, r.header.Get("Access-Control-Allow-Origin"))
	assert.Contains(t, r.header.Get("Access-Control-Allow-Headers"), "X-Namespace")
	assert.Empty(t, preflight("/codec/decode", appOrigin, http.MethodPost).header.Get("Access-Control-Allow-Origin"))
}

func TestALoopingPageGetsTooManyRequestsNotALockedRepair(t *testing.T) {
	s := newSecuredStack(t, map[string]string{"RELINK_BROWSER_RATE_LIMIT": "0.5", "RELINK_BROWSER_RATE_BURST": "5"})
	s.breakConnection("conn_loop", "p")
	s.waitForStatus("conn_loop", workflows.StatusAwaitingUser)
	token := s.clientTokenAt(s.gateway, "sandbox", "conn_loop")
	eventsBefore := len(s.history("repair:sandbox:conn_loop", ""))

	var limited reply
	for i := range 20 {
		r := send(t, s.gateway, token, appOrigin, http.MethodPost, "/v1/repairs/sandbox/conn_loop/reconnect", nil, nil)
		if r.status == http.StatusTooManyRequests {
			limited = r
			assert.GreaterOrEqual(t, i, 5, "the burst is served")
			break
		}
		require.Equal(t, http.StatusOK, r.status, string(r.body))
	}
	require.Equal(t, http.StatusTooManyRequests, limited.status)
	assert.Equal(t, "too_many_requests", limited.errorCode())
	assert.NotEmpty(t, limited.header.Get("Retry-After"))
	assert.Equal(t, appOrigin, limited.header.Get("Access-Control-Allow-Origin"), "the page can read why")

	// The repair is not locked: the app, and the user once the page calms
	// down, carry on; the loop wrote at most the one session to history.
	assert.Equal(t, workflows.StatusAwaitingUser, s.state("conn_loop").Status)
	assert.LessOrEqual(t, len(s.history("repair:sandbox:conn_loop", "")), eventsBefore+8)
	s.repairConnection("conn_loop")
	s.waitForStatus("conn_loop", workflows.StatusRepaired)
}

func TestEveryKeyRotates(t *testing.T) {
	oldTokens, newTokens := newKey(t, "tok-old"), newKey(t, "tok-new")
	s := newSecuredStack(t, map[string]string{"RELINK_CLIENT_TOKEN_KEYS": oldTokens})
	s.breakConnection("conn_r", "p")
	s.waitForStatus("conn_r", workflows.StatusAwaitingUser)

	// API keys: the old and the new one both open the API.
	for _, key := range []string{apiKey, rotatedAPIKey} {
		assert.Equal(t, http.StatusOK, send(t, s.gateway, key, "", http.MethodGet, "/v1/repairs?connectionId=conn_r", nil, nil).status)
	}
	assert.Equal(t, http.StatusUnauthorized, send(t, s.gateway, "integration-api-key-3", "", http.MethodGet, "/v1/repairs", nil, nil).status)
	onlyNewKey := s.gatewayWith(s.configWith(map[string]string{"RELINK_API_KEY": "", "RELINK_API_KEYS": rotatedAPIKey,
		"RELINK_PAYLOAD_KEYS": testPayloadKey(t)}), s.temporal, nil)
	assert.Equal(t, http.StatusUnauthorized, send(t, onlyNewKey, apiKey, "", http.MethodGet, "/v1/repairs", nil, nil).status,
		"a key removed from the list stops working")

	// Client-token keys: during the rotation the old key still verifies and
	// the new one signs; after it, the old key's tokens are refused.
	oldToken := s.clientTokenAt(s.gateway, "sandbox", "conn_r")
	during := s.gatewayWith(s.configWith(map[string]string{"RELINK_CLIENT_TOKEN_KEYS": newTokens + "," + oldTokens,
		"RELINK_PAYLOAD_KEYS": testPayloadKey(t)}), s.temporal, nil)
	after := s.gatewayWith(s.configWith(map[string]string{"RELINK_CLIENT_TOKEN_KEYS": newTokens,
		"RELINK_PAYLOAD_KEYS": testPayloadKey(t)}), s.temporal, nil)
	newToken := s.clientTokenAt(during, "sandbox", "conn_r")
	get := func(gw *httptest.Server, token string) int {
		return send(t, gw, token, "", http.MethodGet, "/v1/repairs/sandbox/conn_r", nil, nil).status
	}
	assert.Equal(t, http.StatusOK, get(during, oldToken), "old tokens verify during the rotation")
	assert.Equal(t, http.StatusOK, get(during, newToken))
	assert.Equal(t, http.StatusUnauthorized, get(s.gateway, newToken), "the new key signs")
	assert.Equal(t, http.StatusOK, get(after, newToken))
	assert.Equal(t, http.StatusUnauthorized, get(after, oldToken), "the old key is gone")
}

func TestPayloadKeysRotateUnderOpenRepairs(t *testing.T) {
	k1 := newKey(t, "pk1")
	s := newBareStack(t, map[string]string{"RELINK_PAYLOAD_KEYS": k1})
	first := s.startWorker(s.providers.APIs...)
	s.breakConnection("conn_pk", "p")
	s.waitForStatus("conn_pk", workflows.StatusAwaitingUser)

	// The new key goes first on every worker and gateway; the old stays
	// second until nothing sealed with it is needed.
	k2 := newKey(t, "pk2")
	cfg := s.configWith(map[string]string{"RELINK_PAYLOAD_KEYS": k2 + "," + k1})
	tc, err := app.Dial(context.Background(), cfg.Temporal, s.logger, nil)
	require.NoError(t, err)
	defer tc.Close()
	w := worker.New(tc, cfg.Temporal.TaskQueue, app.WorkerOptions(cfg.Worker))
	app.Register(w, s.activities(s.providers))
	require.NoError(t, w.Start())
	defer w.Stop()
	first.Stop()
	rotated := s.gatewayWith(cfg, tc, nil)

	// The first worker's cached run moves to the new worker after the
	// sticky timeout; meanwhile reconnect may answer 503 + Retry-After,
	// which a frontend retries.
	var rec workflows.ReconnectResult
	require.Eventually(t, func() bool {
		return send(t, rotated, apiKey, "", http.MethodPost, "/v1/repairs/sandbox/conn_pk/reconnect", nil, &rec).status == http.StatusOK
	}, 10*time.Second, 100*time.Millisecond)
	var login sandbox.Login
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/sandbox/connections/conn_pk/login", nil, &login))
	require.Equal(t, http.StatusAccepted, send(t, rotated, apiKey, "", http.MethodPost, "/v1/repairs/sandbox/conn_pk/complete", login, nil).status)
	require.Eventually(t, func() bool {
		var view struct{ Repair workflows.RepairState }
		send(t, rotated, apiKey, "", http.MethodGet, "/v1/repairs/sandbox/conn_pk", nil, &view)
		return view.Repair.Status == workflows.StatusRepaired
	}, 30*time.Second, 50*time.Millisecond)

	keyIDs := map[string]int{}
	for _, p := range historyPayloads(t, rawClient(t, s), "repair:sandbox:conn_pk") {
		keyIDs[string(p.GetMetadata()[codec.MetadataKeyID])]++
	}
	assert.Positive(t, keyIDs["pk1"], "written before the rotation")
	assert.Positive(t, keyIDs["pk2"], "written after it")
	assert.Zero(t, keyIDs[""], "nothing in clear")
}

func TestHistoryHoldsNoProviderTokenAndTheCodecShowsIt(t *testing.T) {
	s := newSecuredStack(t, nil)
	s.breakConnection("conn_enc", "profile_enc")
	s.waitForStatus("conn_enc", workflows.StatusAwaitingUser)
	var rec workflows.ReconnectResult
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_enc/reconnect", nil, &rec))
	var login sandbox.Login
	require.Equal(t, http.StatusOK, s.call(http.MethodPost, "/sandbox/connections/conn_enc/login", nil, &login))
	login.Metadata = json.RawMessage(`{"institution":{"name":"First Sandbox Bank"},"widgetSecret":"meta_5ecret_value"}`)
	require.Equal(t, http.StatusAccepted, s.call(http.MethodPost, "/v1/repairs/sandbox/conn_enc/complete", login, nil))
	s.waitForStatus("conn_enc", workflows.StatusRepaired)
	secrets := []string{rec.Session.ConnectorToken, login.PublicToken, "meta_5ecret_value"}
	require.NotEmpty(t, login.PublicToken)

	// Read history as anyone with access to Temporal (or its database)
	// would: no codec. Neither the events' bytes, in which payload data is
	// raw, nor their JSON, in which it is base64, holds a token.
	raw := rawClient(t, s)
	id := "repair:sandbox:conn_enc"
	payloads := historyPayloads(t, raw, id)
	require.NotEmpty(t, payloads)
	for _, p := range payloads {
		assert.Equal(t, codec.Encoding, string(p.GetMetadata()[converter.MetadataEncoding]))
	}
	for _, ev := range rawHistory(t, raw, id) {
		bin, err := proto.Marshal(ev)
		require.NoError(t, err)
		js, err := protojson.Marshal(ev)
		require.NoError(t, err)
		for _, secret := range secrets {
			assert.NotContains(t, string(bin), secret)
			assert.NotContains(t, string(js), secret)
		}
	}
	// The gateway still reads the closed repair from its encrypted result.
	assert.Equal(t, workflows.StatusRepaired, s.state("conn_enc").Status)

	// The codec endpoint shows it to those allowed to see it.
	body := mustProtoJSON(t, &commonpb.Payloads{Payloads: payloads})
	decode := func(gw *httptest.Server, bearer, origin string, namespace string) reply {
		return send(t, gw, bearer, origin, http.MethodPost, "/codec/decode", body, nil, "X-Namespace", namespace)
	}
	ns := s.cfg.Temporal.Namespace
	r := decode(s.gateway, apiKey, webUIOrigin, ns)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, webUIOrigin, r.header.Get("Access-Control-Allow-Origin"))
	var decoded commonpb.Payloads
	require.NoError(t, protojson.Unmarshal(r.body, &decoded))
	require.Len(t, decoded.Payloads, len(payloads))
	var clear strings.Builder
	for _, p := range decoded.Payloads {
		assert.Equal(t, "json/plain", string(p.GetMetadata()[converter.MetadataEncoding]))
		clear.Write(p.GetData())
	}
	assert.Contains(t, clear.String(), rec.Session.ConnectorToken)
	assert.Contains(t, clear.String(), login.PublicToken)

	// The SDK's own remote codec client (the protocol the temporal CLI's
	// --codec-endpoint speaks) reads it too.
	remote := converter.NewRemotePayloadCodec(converter.RemotePayloadCodecOptions{
		Endpoint: s.gateway.URL + "/codec",
		ModifyRequest: func(r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+apiKey)
			r.Header.Set("X-Namespace", ns)
			return nil
		},
	})
	viaSDK, err := remote.Decode(payloads)
	require.NoError(t, err)
	assert.True(t, proto.Equal(decoded.Payloads[0], viaSDK[0]))

	token := s.clientTokenAt(s.gateway, "sandbox", "conn_enc")
	assert.Equal(t, http.StatusUnauthorized, decode(s.gateway, "", webUIOrigin, ns).status)
	assert.Equal(t, http.StatusForbidden, decode(s.gateway, token, appOrigin, ns).status)
	assert.Equal(t, http.StatusBadRequest, decode(s.gateway, apiKey, "", "another-namespace").status)
	devUI := s.gatewayWith(s.cfg, s.temporal, func(g *gateway.Gateway) { g.DevCodecOrigins = []string{"http://localhost:8233"} })
	assert.Equal(t, http.StatusOK, decode(devUI, "", "http://localhost:8233", ns).status, "the dev stack's own UI")
	assert.Equal(t, http.StatusUnauthorized, decode(devUI, "", "http://localhost:9999", ns).status)

	// encode then decode gives back what went in.
	in := &commonpb.Payloads{Payloads: decoded.Payloads[:1]}
	r = send(t, s.gateway, apiKey, "", http.MethodPost, "/codec/encode", mustProtoJSON(t, in), nil, "X-Namespace", ns)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var sealed commonpb.Payloads
	require.NoError(t, protojson.Unmarshal(r.body, &sealed))
	assert.Equal(t, codec.Encoding, string(sealed.Payloads[0].GetMetadata()[converter.MetadataEncoding]))
	r = send(t, s.gateway, apiKey, "", http.MethodPost, "/codec/decode", json.RawMessage(r.body), nil, "X-Namespace", ns)
	var back commonpb.Payloads
	require.NoError(t, protojson.Unmarshal(r.body, &back))
	assert.True(t, proto.Equal(in.Payloads[0], back.Payloads[0]))

	s.recordHistory(id, "encrypted-user-completed")
}

// flipChar changes one character in the middle of a base64url segment.
func flipChar(s string) string {
	b := []byte(s)
	if i := len(b) / 2; b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// rawClient reads Temporal with no codec, as the database or an operator
// without the key sees it.
func rawClient(t *testing.T, s *stack) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: s.cfg.Temporal.Address, Namespace: s.cfg.Temporal.Namespace})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func rawHistory(t *testing.T, c client.Client, id string) []*history.HistoryEvent {
	t.Helper()
	iter := c.GetWorkflowHistory(context.Background(), id, "", false, 0)
	var events []*history.HistoryEvent
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		events = append(events, ev)
	}
	return events
}

// historyPayloads collects every payload in a run's events that went
// through the data converter (search attributes, which Temporal must be
// able to index, do not).
func historyPayloads(t *testing.T, c client.Client, id string) []*commonpb.Payload {
	t.Helper()
	var out []*commonpb.Payload
	var walk func(m protoreflect.Message)
	walk = func(m protoreflect.Message) {
		if p, ok := m.Interface().(*commonpb.Payload); ok {
			out = append(out, p)
			return
		}
		if _, ok := m.Interface().(*commonpb.SearchAttributes); ok {
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message())
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(mv.Message())
					return true
				})
			case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
				walk(v.Message())
			}
			return true
		})
	}
	for _, ev := range rawHistory(t, c, id) {
		walk(ev.ProtoReflect())
	}
	return out
}

func mustProtoJSON(t *testing.T, m proto.Message) map[string]json.RawMessage {
	t.Helper()
	b, err := protojson.Marshal(m)
	require.NoError(t, err)
	var out map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}

// With encryption on, the app still reads the provider's error while a
// call is failing (it is inside the encrypted failure), and the page
// does not: a provider's error text is for the app and its operators.
func TestProviderErrorsWithEncryptionOn(t *testing.T) {
	s := newSecuredStack(t, nil)
	require.Equal(t, http.StatusOK, s.call(http.MethodPut, "/sandbox/connections/conn_down/script", map[string]any{"failCalls": 1_000_000}, nil))
	s.breakConnection("conn_down", "profile_down")
	s.waitFor("the probe to be failing", func() bool { return s.sandboxCalls("conn_down", "initialize") >= 2 })
	token := s.clientTokenAt(s.gateway, "sandbox", "conn_down")

	app := send(t, s.gateway, apiKey, "", http.MethodPost, "/v1/repairs/sandbox/conn_down/reconnect", nil, nil)
	assert.Equal(t, http.StatusServiceUnavailable, app.status)
	assert.Contains(t, string(app.body), "503 Service Unavailable", "the provider's failure, decrypted")
	assert.NotContains(t, string(app.body), "Encoded failure")
	assert.Contains(t, s.state("conn_down").LastError, "503")

	page := send(t, s.gateway, token, appOrigin, http.MethodPost, "/v1/repairs/sandbox/conn_down/reconnect", nil, nil)
	assert.Equal(t, http.StatusServiceUnavailable, page.status)
	assert.NotEmpty(t, page.header.Get("Retry-After"))
	assert.NotContains(t, string(page.body), "503 Service Unavailable")
	var view struct{ Repair workflows.RepairState }
	require.Equal(t, http.StatusOK, send(t, s.gateway, token, appOrigin, http.MethodGet, "/v1/repairs/sandbox/conn_down", nil, &view).status)
	assert.Equal(t, workflows.StatusPending, view.Repair.Status)
	assert.Empty(t, view.Repair.LastError)

	// A repair that ended on the provider's word: the app reads why, the
	// page only that it ended.
	require.Equal(t, http.StatusOK, s.call(http.MethodPut, "/sandbox/connections/conn_gone/script", map[string]any{"initialize": "not_found"}, nil))
	s.breakConnection("conn_gone", "profile_gone")
	appView := s.waitForStatus("conn_gone", workflows.StatusUnrepairable)
	require.NotEmpty(t, appView.Reason)
	token = s.clientTokenAt(s.gateway, "sandbox", "conn_gone")
	r := send(t, s.gateway, token, appOrigin, http.MethodGet, "/v1/repairs/sandbox/conn_gone", nil, &view)
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, workflows.StatusUnrepairable, view.Repair.Status)
	assert.NotContains(t, string(r.body), appView.Reason)
	assert.NotContains(t, string(r.body), `"note"`)
	assert.NotContains(t, string(r.body), "profile_gone")
}
