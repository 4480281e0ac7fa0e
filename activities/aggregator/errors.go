package aggregator

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Error types. Package activities sends them through Temporal as the
// application error's Type, so the workflow (and an operator reading the
// UI) can tell them apart.
const (
	// ErrTypeConnectionNotFound: the provider does not know the connection.
	ErrTypeConnectionNotFound = "ConnectionNotFound"
	// ErrTypeNotRepairable: the connection is in a state that update mode
	// cannot fix (deleted, expired consent that needs a new connection, a
	// conflicting repair in progress).
	ErrTypeNotRepairable = "ConnectionNotRepairable"
	// ErrTypeInvalidInput: Relink sent something the provider rejected as
	// malformed, or named a provider this worker does not have.
	ErrTypeInvalidInput = "InvalidInput"
	// ErrTypeReconnectRejected: the provider refused what the widget
	// returned (close failed). The user may try again; the attempt counts.
	ErrTypeReconnectRejected = "ReconnectRejected"
)

// Error is a failure retrying cannot help, of one of the types above.
// Package activities turns an Error an adapter returns into a
// non-retryable Temporal application error of the same Type and Message.
type Error struct {
	Type    string
	Message string
}

// Error reads as a Temporal application error does, so logs and answers
// read the same on both sides of the activity.
func (e *Error) Error() string {
	return fmt.Sprintf("%s (type: %s, retryable: false)", e.Message, e.Type)
}

// NotFound reports a connection the provider does not know. Not retried.
func NotFound(msg string) error {
	return &Error{Type: ErrTypeConnectionNotFound, Message: msg}
}

// NotRepairable reports a connection update mode cannot fix. Not retried.
func NotRepairable(msg string) error {
	return &Error{Type: ErrTypeNotRepairable, Message: msg}
}

// InvalidInput reports a request the provider rejected as malformed. Not
// retried.
func InvalidInput(msg string) error {
	return &Error{Type: ErrTypeInvalidInput, Message: msg}
}

// ReconnectRejected reports a close the provider refused. Not retried: the
// user has to go through the widget again.
func ReconnectRejected(msg string) error {
	return &Error{Type: ErrTypeReconnectRejected, Message: msg}
}

// TypeOf returns the type of the Error in err's chain ("" if none): what an
// adapter returned. An error that crossed an activity is a Temporal
// application error instead: read its type with activities.ErrorType.
func TypeOf(err error) string {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Type
	}
	return ""
}

// ErrAnswered, wrapped in a retryable error, says the provider answered
// (it is up) without settling the call: an answer about the connection
// it could not give (the app's access token refused, say). The recovery
// watcher counts it as an answer, not as an outage.
var ErrAnswered = errors.New("the provider answered without a word on the connection")

// Named returns the Error in err's chain, bare or wrapped with
// fmt.Errorf("…: %w", err), carrying err's whole message (the wrapping
// context included); nil when err is retryable. Package activities sends
// what it returns through Temporal as a non-retryable application error.
func Named(err error) *Error {
	var pe *Error
	if !errors.As(err, &pe) {
		return nil
	}
	if err == error(pe) {
		return pe
	}
	return &Error{Type: pe.Type, Message: strings.TrimSuffix(err.Error(), " (type: "+pe.Type+", retryable: false)")}
}

// HTTPStatusError classifies a provider's HTTP error status: 404 is
// NotFound, 409 and 422 NotRepairable, 400 InvalidInput; everything else
// (429, 5xx, and 401/403, which an operator can fix by correcting the
// credentials while the activity retries) is a plain, retryable error.
// what names the call; detail is the provider's error message, never a token.
func HTTPStatusError(what string, status int, detail string) error {
	msg := fmt.Sprintf("%s: provider answered %d %s", what, status, http.StatusText(status))
	if detail != "" {
		msg += ": " + detail
	}
	switch status {
	case http.StatusNotFound:
		return NotFound(msg)
	case http.StatusConflict, http.StatusUnprocessableEntity:
		return NotRepairable(msg)
	case http.StatusBadRequest:
		return InvalidInput(msg)
	case http.StatusTooManyRequests:
		return &RateLimited{Message: msg}
	default:
		return errors.New(msg)
	}
}

// RateLimited is a provider's "too many requests" (HTTP 429, Plaid's
// RATE_LIMIT_EXCEEDED): retryable like any transient error, and a
// reconciliation sweep that meets it slows down.
type RateLimited struct {
	Message string
	// RetryAfter is how long the provider asked to wait; zero if it did
	// not say.
	RetryAfter time.Duration
}

func (e *RateLimited) Error() string { return e.Message }

// IsRateLimited reports whether err is, or wraps, a RateLimited.
func IsRateLimited(err error) (*RateLimited, bool) {
	var rl *RateLimited
	ok := errors.As(err, &rl)
	return rl, ok
}

// maxRetryAfter bounds the wait a provider's Retry-After can ask for, so
// a bogus value cannot stall a sweep for days.
const maxRetryAfter = time.Hour

// WithRetryAfter sets, on err's RateLimited if it has one, the wait the
// answer's Retry-After header asks for. It returns err.
func WithRetryAfter(err error, h http.Header) error {
	if rl, ok := IsRateLimited(err); ok {
		rl.RetryAfter = RetryAfter(h, time.Now())
	}
	return err
}

// RetryAfter reads a Retry-After header (RFC 9110: delay seconds or an
// HTTP date) as a wait from now, at most maxRetryAfter; zero if absent,
// past or unreadable.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	var d time.Duration
	secs, err := strconv.ParseUint(v, 10, 64)
	switch {
	case err == nil && secs < uint64(maxRetryAfter/time.Second):
		d = time.Duration(secs) * time.Second
	case err == nil || errors.Is(err, strconv.ErrRange):
		d = maxRetryAfter
	default:
		if t, err := http.ParseTime(v); err == nil {
			d = t.Sub(now)
		}
	}
	return max(0, min(d, maxRetryAfter))
}
