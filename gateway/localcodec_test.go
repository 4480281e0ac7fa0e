package gateway

import (
	"bytes"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/relink-dev/relink/codec"
	"github.com/relink-dev/relink/keyring"
)

const localUIOrigin = "http://localhost:8233"

// localCodecServer serves a LocalCodec for namespace "default" over real
// HTTP on 127.0.0.1, logging into log.
func localCodecServer(t *testing.T, log *bytes.Buffer) (*httptest.Server, *LocalCodec) {
	t.Helper()
	k, err := keyring.Generate("k1")
	require.NoError(t, err)
	enc, err := codec.NewEncryption([]keyring.Key{k})
	require.NoError(t, err)
	l := &LocalCodec{Codec: enc, Namespace: "default", UIOrigins: []string{localUIOrigin, "http://127.0.0.1:8233"},
		Logger: slog.New(slog.NewTextHandler(log, nil))}
	srv := httptest.NewServer(l.Handler())
	t.Cleanup(srv.Close)
	return srv, l
}

// localCall sends one request to srv with the given headers ("Host" sets
// the Host header) and returns the answer and its body.
func localCall(t *testing.T, srv *httptest.Server, method, path, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// sealedSecret is a body for /decode: one payload, encrypted by c, whose
// clear text holds "ctok_local".
func sealedSecret(t *testing.T, c converter.PayloadCodec) string {
	t.Helper()
	p, err := converter.GetDefaultDataConverter().ToPayload(map[string]string{"connectorToken": "ctok_local"})
	require.NoError(t, err)
	sealed, err := c.Encode([]*commonpb.Payload{p})
	require.NoError(t, err)
	b, err := protojson.Marshal(&commonpb.Payloads{Payloads: sealed})
	require.NoError(t, err)
	return string(b)
}

// clearText is the data of the payloads in a codec answer, joined; empty
// for an answer that holds none (an error).
func clearText(answer string) string {
	var out commonpb.Payloads
	if protojson.Unmarshal([]byte(answer), &out) != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range out.Payloads {
		b.Write(p.GetData())
	}
	return b.String()
}

// What the temporal CLI's --codec-endpoint does (the SDK's remote codec
// client), and what the Web UI does from an allowed origin: encode, then
// decode, gives back what went in; the log holds no payload.
func TestLocalCodecRoundTrip(t *testing.T) {
	var log bytes.Buffer
	srv, _ := localCodecServer(t, &log)
	remote := converter.NewRemotePayloadCodec(converter.RemotePayloadCodecOptions{
		Endpoint: srv.URL,
		ModifyRequest: func(r *http.Request) error {
			r.Header.Set("X-Namespace", "default")
			return nil
		},
	})
	in, err := converter.GetDefaultDataConverter().ToPayload(map[string]string{"connectorToken": "ctok_round_trip"})
	require.NoError(t, err)
	sealed, err := remote.Encode([]*commonpb.Payload{in})
	require.NoError(t, err)
	require.Len(t, sealed, 1)
	assert.Equal(t, codec.Encoding, string(sealed[0].GetMetadata()[converter.MetadataEncoding]))
	assert.NotContains(t, string(sealed[0].GetData()), "ctok_round_trip")
	back, err := remote.Decode(sealed)
	require.NoError(t, err)
	require.Len(t, back, 1)
	assert.True(t, proto.Equal(in, back[0]), "decode(encode(p)) = p")

	// The Web UI, from its origin: preflight, then the call.
	sealedJSON, err := protojson.Marshal(&commonpb.Payloads{Payloads: sealed})
	require.NoError(t, err)
	resp, _ := localCall(t, srv, http.MethodOptions, "/decode", "", "Origin", localUIOrigin,
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type,x-namespace")
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, localUIOrigin, resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "POST", resp.Header.Get("Access-Control-Allow-Methods"))
	assert.Equal(t, "Content-Type, X-Namespace", resp.Header.Get("Access-Control-Allow-Headers"))
	resp, body := localCall(t, srv, http.MethodPost, "/decode", string(sealedJSON),
		"Origin", localUIOrigin, "Content-Type", "application/json", "X-Namespace", "default")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, localUIOrigin, resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	var out commonpb.Payloads
	require.NoError(t, protojson.Unmarshal([]byte(body), &out))
	assert.Contains(t, string(out.Payloads[0].GetData()), "ctok_round_trip")

	// Each call is logged, its payloads never.
	assert.Contains(t, log.String(), "path=/decode")
	assert.Contains(t, log.String(), "path=/encode")
	for _, data := range [][]byte{in.GetData(), sealed[0].GetData(), back[0].GetData()} {
		assert.NotContains(t, log.String(), base64.StdEncoding.EncodeToString(data)[:24])
	}
	assert.NotContains(t, log.String(), "ctok_round_trip")
}

// A page elsewhere gets no CORS answer and no decryption: its preflight
// and its call (a "simple" POST needs no preflight) are refused.
func TestLocalCodecRefusesOtherOrigins(t *testing.T) {
	var log bytes.Buffer
	srv, l := localCodecServer(t, &log)
	body := sealedSecret(t, l.Codec)
	for _, origin := range []string{"https://attacker.example", "http://localhost:8234", "null", "http://localhost:8233/"} {
		resp, _ := localCall(t, srv, http.MethodOptions, "/decode", "", "Origin", origin,
			"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type,x-namespace")
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, origin)
		assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"), origin)
		assert.Empty(t, resp.Header.Get("Access-Control-Allow-Methods"), origin)

		resp, answer := localCall(t, srv, http.MethodPost, "/decode", body, "Origin", origin, "Content-Type", "text/plain")
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, origin)
		assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"), origin)
		assert.Contains(t, answer, `"code":"forbidden"`, origin)
		assert.Empty(t, clearText(answer), origin)
	}
	assert.Contains(t, log.String(), "status=403")
}

// A request addressed to another name than this machine's (a page whose
// domain was pointed at 127.0.0.1: DNS rebinding, which CORS cannot see)
// is refused before anything else, from an allowed origin too.
func TestLocalCodecRefusesForeignHosts(t *testing.T) {
	srv, l := localCodecServer(t, &bytes.Buffer{})
	body := sealedSecret(t, l.Codec)
	for _, host := range []string{"attacker.example:8888", "attacker.example", "localhost.attacker.example",
		"127.0.0.1.nip.io:8888", "192.168.1.20:8888", "[2001:db8::1]:8888", "0.0.0.0:8888"} {
		for _, origin := range []string{"", "http://" + host, localUIOrigin} {
			headers := []string{"Host", host, "X-Namespace", "default"}
			if origin != "" {
				headers = append(headers, "Origin", origin)
			}
			resp, answer := localCall(t, srv, http.MethodPost, "/decode", body, headers...)
			assert.Equal(t, http.StatusForbidden, resp.StatusCode, "%s from %q", host, origin)
			assert.Contains(t, answer, "not this machine", host)
			assert.Empty(t, clearText(answer), host)
			assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"), host)
		}
	}
	// This machine's names are served.
	for _, host := range []string{srv.Listener.Addr().String(), "localhost:8888", "LOCALHOST", "[::1]:8888", "127.0.0.2:8888"} {
		resp, answer := localCall(t, srv, http.MethodPost, "/decode", body, "Host", host, "X-Namespace", "default")
		assert.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", host, answer)
		assert.Contains(t, clearText(answer), "ctok_local", host)
	}
}

// The namespace is checked as the gateway's /codec checks it; bodies,
// methods and paths too.
func TestLocalCodecRefusesOtherNamespacesAndBadCalls(t *testing.T) {
	srv, l := localCodecServer(t, &bytes.Buffer{})
	body := sealedSecret(t, l.Codec)
	resp, answer := localCall(t, srv, http.MethodPost, "/decode", body, "X-Namespace", "payments")
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Contains(t, answer, "this codec serves namespace default, not payments")
	assert.Empty(t, clearText(answer))

	resp, answer = localCall(t, srv, http.MethodPost, "/decode", body)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "no X-Namespace: as the gateway, served")
	assert.Contains(t, clearText(answer), "ctok_local")

	resp, _ = localCall(t, srv, http.MethodPost, "/decode", `{"payloads":"nope"}`, "X-Namespace", "default")
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	resp, _ = localCall(t, srv, http.MethodGet, "/decode", "")
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	resp, _ = localCall(t, srv, http.MethodPost, "/codec/decode", body)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "the endpoint is the server's root, as -codec-endpoint and the UI call it")
	resp, _ = localCall(t, srv, http.MethodPost, "/decode", strings.Repeat("x", MaxBodyBytes+1))
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
}
