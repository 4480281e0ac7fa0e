package aggregator

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestHTTPStatusErrorClassification(t *testing.T) {
	for status, want := range map[int]string{
		404: ErrTypeConnectionNotFound, 409: ErrTypeNotRepairable, 422: ErrTypeNotRepairable,
		400: ErrTypeInvalidInput, 429: "", 500: "", 503: "", 401: "",
	} {
		assert.Equal(t, want, TypeOf(HTTPStatusError("initialize", status, "")), status)
	}
}

func TestNamedFindsWrappedErrors(t *testing.T) {
	bare := NotFound("no such connection")
	assert.Same(t, bare, Named(bare))
	wrapped := Named(fmt.Errorf("meld initialize: %w", bare))
	if assert.NotNil(t, wrapped) {
		assert.Equal(t, ErrTypeConnectionNotFound, wrapped.Type)
		assert.Equal(t, "meld initialize: no such connection", wrapped.Message)
	}
	assert.Nil(t, Named(fmt.Errorf("initialize: %w", errors.New("503"))))
	assert.Nil(t, Named(nil))
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                                  0,
		"120":                               2 * time.Minute,
		" 7 ":                               7 * time.Second,
		"0":                                 0,
		"-5":                                0,
		"soon":                              0,
		"99999999999999999999":              time.Hour, // capped, no overflow
		"Wed, 04 Mar 2026 12:00:30 GMT":     30 * time.Second,
		"Wednesday, 04-Mar-26 12:01:00 GMT": time.Minute, // RFC 850, still an HTTP date
		"Wed, 04 Mar 2026 11:00:00 GMT":     0,           // already past
		"Thu, 05 Mar 2026 12:00:00 GMT":     time.Hour,
	} {
		assert.Equal(t, want, RetryAfter(http.Header{"Retry-After": {v}}, now), "%q", v)
	}
}

func TestWithRetryAfterSetsOnlyRateLimited(t *testing.T) {
	h := http.Header{"Retry-After": {"30"}}
	err := WithRetryAfter(fmt.Errorf("meld: %w", HTTPStatusError("meld connection", http.StatusTooManyRequests, "")), h)
	rl, ok := IsRateLimited(err)
	if assert.True(t, ok) {
		assert.Equal(t, 30*time.Second, rl.RetryAfter)
	}
	other := HTTPStatusError("meld connection", http.StatusServiceUnavailable, "")
	assert.Same(t, other, WithRetryAfter(other, h))
	assert.Nil(t, WithRetryAfter(nil, h))
}
