package gateway

import (
	"io"
	"net/http"
	"slices"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
)

// codecEndpoint speaks Temporal's remote codec protocol at /codec/encode
// and /codec/decode: {"payloads":[{"metadata":{…},"data":"…"}]} in and
// out, the namespace in X-Namespace. The Web UI and
// `temporal workflow show --codec-endpoint` call it to show operators
// payloads in clear; it answers only the app's API key (and, in the dev
// stack, its own embedded UI).
func (g *Gateway) codecEndpoint(encode bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { g.serveCodec(w, r, encode) }
}

func (g *Gateway) serveCodec(w http.ResponseWriter, r *http.Request, encode bool) {
	if g.Codec == nil {
		writeError(w, http.StatusNotImplemented, codeNotEnabled, "payload encryption is off: set RELINK_PAYLOAD_KEYS")
		return
	}
	serveCodecProtocol(w, r, g.Codec, g.Namespace, encode)
}

// serveCodecProtocol answers one call of Temporal's remote codec protocol
// with c, for namespace only. The gateway's /codec and the operator's own
// `relink codec-server` (LocalCodec) both answer through it, so the two
// read and refuse the same bodies and namespaces.
func serveCodecProtocol(w http.ResponseWriter, r *http.Request, c converter.PayloadCodec, namespace string, encode bool) {
	if ns := r.Header.Get("X-Namespace"); ns != "" && ns != namespace {
		writeError(w, http.StatusBadRequest, codeBadRequest, "this codec serves namespace "+namespace+", not "+ns)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, "request body over 1 MiB")
		return
	}
	var in commonpb.Payloads
	if err := protojson.Unmarshal(body, &in); err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, "body must be {\"payloads\":[…]}: "+err.Error())
		return
	}
	convert := c.Decode
	if encode {
		convert = c.Encode
	}
	out, err := convert(in.GetPayloads())
	if err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
		return
	}
	resp, err := protojson.Marshal(&commonpb.Payloads{Payloads: out})
	if err != nil {
		writeError(w, http.StatusInternalServerError, codeInternal, "encode answer")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(resp)
}

// isClientToken: a browser's token, which /codec refuses with 403.
func (g *Gateway) isClientToken(bearer string) bool {
	if g.ClientTokens == nil {
		return false
	}
	_, err := g.ClientTokens.Check(bearer)
	return err == nil
}

// codecAuthenticated admits the app's API keys; a Web UI user's access
// token when OperatorTokens is set; and in the dev stack requests from its
// embedded Web UI, which has no login to pass on (the dev stack listens on
// 127.0.0.1 and its API key is public anyway).
func (g *Gateway) codecAuthenticated(next http.Handler) http.Handler {
	keyed := g.authenticated(appOnly(next))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bearer, hasBearer := bearerCredential(r.Header.Get("Authorization"))
		switch {
		case !hasBearer && slices.Contains(g.DevCodecOrigins, r.Header.Get("Origin")):
			next.ServeHTTP(w, r)
		case hasBearer && g.OperatorTokens != nil && !g.isAPIKey(bearer) && !g.isClientToken(bearer) && strings.Count(bearer, ".") == 2:
			if err := g.OperatorTokens.Check(r.Context(), bearer); err != nil {
				g.logger(r.Context()).Warn("codec: operator token refused", "error", err)
				unauthorized(w, "operator access token refused: "+err.Error())
				return
			}
			next.ServeHTTP(w, r)
		default:
			keyed.ServeHTTP(w, r)
		}
	})
}
