package gateway

import (
	"net/http"
	"time"

	"go.temporal.io/sdk/client"
)

// ServeBeforeTemporal lets the gateway serve while its process is still
// waiting for Temporal (a container started before its server): until
// connected hands it its client, /readyz answers 503, as does every route
// that needs Temporal (JSON `unavailable` with Retry-After; the hosted page
// its HTML 503), while /healthz, the OpenAPI document, /codec, client
// tokens and the hosted page's assets serve as usual. Call it before
// Handler, with Temporal unset, and connected once.
func (g *Gateway) ServeBeforeTemporal() (connected func(client.Client)) {
	up := make(chan struct{})
	g.temporalUp = up
	return func(tc client.Client) {
		g.Temporal = tc
		close(up) // publishes Temporal to every request that sees it closed
	}
}

// hasTemporal says whether the gateway has its Temporal client. A request
// reads g.Temporal only after this said yes.
func (g *Gateway) hasTemporal() bool {
	if g.temporalUp == nil {
		return true // built with its client, the usual case
	}
	select {
	case <-g.temporalUp:
		return true
	default:
		return false
	}
}

// connectingRetryAfter is what a caller turned away while the gateway
// connects is told to wait: about the process's retry interval early on.
const connectingRetryAfter = 5 * time.Second

const connectingMessage = "Relink is still connecting to Temporal; retry"

// needsTemporal answers 503 for a route that calls Temporal while the
// gateway has no client yet.
func (g *Gateway) needsTemporal(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !g.hasTemporal() {
			writeRetry(w, http.StatusServiceUnavailable, codeUnavailable, connectingMessage, connectingRetryAfter)
			return
		}
		next(w, r)
	}
}
