package aggregator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// maxProviderResponse bounds what is read from a provider's answer.
const maxProviderResponse = 4 << 20

// JSONRequest is one call to a provider's JSON API.
type JSONRequest struct {
	Method string
	URL    string
	// Header is sent as given; without an Accept, it accepts
	// application/json.
	Header http.Header
	// Body is encoded as JSON; nil sends no body.
	Body any
	// ResponseHeader, if set, receives the answer's header: what a 429's
	// Retry-After or a listing's paging headers say.
	ResponseHeader *http.Header
}

// DoJSON sends req and returns the status and raw answer; on a 2xx answer
// it also decodes the answer into out (if not nil). The error is for what
// never got an answer (network, timeout, unreadable JSON): retryable, and
// its message names the URL's host, never headers or bodies, which carry
// secrets.
func DoJSON(ctx context.Context, c *http.Client, req JSONRequest, out any) (int, []byte, error) {
	var body io.Reader
	if req.Body != nil {
		b, err := json.Marshal(req.Body)
		if err != nil {
			return 0, nil, InvalidInput(fmt.Sprintf("encode request: %v", err))
		}
		body = bytes.NewReader(b)
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, req.URL, body)
	if err != nil {
		return 0, nil, InvalidInput(fmt.Sprintf("build request: %v", err))
	}
	for k, v := range req.Header {
		hr.Header[k] = v
	}
	if hr.Header.Get("Accept") == "" {
		// An API that names its version by media type (MX) sets its own.
		hr.Header.Set("Accept", "application/json")
	}
	if req.Body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(hr)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", req.Method, hr.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	if req.ResponseHeader != nil {
		*req.ResponseHeader = resp.Header
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxProviderResponse))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s %s: reading the answer: %w", req.Method, hr.URL.Redacted(), err)
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, raw, fmt.Errorf("%s %s: unexpected answer: %w", req.Method, hr.URL.Redacted(), err)
		}
	}
	return resp.StatusCode, raw, nil
}
