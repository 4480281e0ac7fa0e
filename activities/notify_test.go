package activities

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNotifySignsAndPosts(t *testing.T) {
	sent := time.Unix(1_800_000_000, 0)
	var got *http.Request
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		body, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	n := &HTTPNotifier{URL: srv.URL, Secret: "notify-secret", Client: srv.Client(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return sent }}
	ev := Event{ID: "repair:sandbox:c/run/1", Type: EventActionRequired, Repair: RepairSummary{ConnectionID: "c", Status: "AWAITING_USER", Sequence: 1}}

	require.NoError(t, n.Notify(context.Background(), ev))

	assert.Equal(t, "application/json", got.Header.Get("Content-Type"))
	assert.Equal(t, ev.ID, got.Header.Get("Relink-Event-Id"))
	assert.Equal(t, EventActionRequired, got.Header.Get("Relink-Event-Type"))
	mac := hmac.New(sha256.New, []byte("notify-secret"))
	mac.Write([]byte("1800000000."))
	mac.Write(body)
	assert.Equal(t, "t=1800000000,v1="+hex.EncodeToString(mac.Sum(nil)), got.Header.Get(SignatureHeader))
	var decoded Event
	require.NoError(t, json.Unmarshal(body, &decoded))
	assert.Equal(t, ev.Repair, decoded.Repair)
}

func TestNotifyFailureIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	n := &HTTPNotifier{URL: srv.URL, Client: srv.Client(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}
	err := n.Notify(context.Background(), Event{Type: EventReminder})
	require.Error(t, err)
	assert.Empty(t, ErrorType(err), "a plain error: Temporal retries it")
}

func TestNotifyWithoutURLOnlyLogs(t *testing.T) {
	n := &HTTPNotifier{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}
	assert.NoError(t, n.Notify(context.Background(), Event{Type: EventRepaired}))
}

func TestHTTPStatusErrorClassification(t *testing.T) {
	for status, want := range map[int]string{
		404: ErrTypeConnectionNotFound, 409: ErrTypeNotRepairable, 422: ErrTypeNotRepairable,
		400: ErrTypeInvalidInput, 429: "", 500: "", 503: "", 401: "",
	} {
		assert.Equal(t, want, ErrorType(HTTPStatusError("initialize", status, "")), status)
	}
}
