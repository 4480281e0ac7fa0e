package activities

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
)

// Two secrets, as during a rotation: the old one the app still checks and
// the new one it is moving to.
const (
	oldSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	newSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
)

func TestNotifySignsAsStandardWebhooks(t *testing.T) {
	var got *http.Request
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		body, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	signers, err := NewSigners([]string{newSecret, oldSecret})
	require.NoError(t, err)
	n := &HTTPNotifier{URL: srv.URL, Signers: signers, UserAgent: "Relink/1.2.3", Client: srv.Client(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}
	ev := Event{ID: "repair:sandbox:c/run/1", Type: EventActionRequired, Repair: RepairSummary{ConnectionID: "c", Status: "AWAITING_USER", Sequence: 1}}

	require.NoError(t, n.Notify(context.Background(), ev))

	assert.Equal(t, "application/json", got.Header.Get("Content-Type"))
	assert.Equal(t, "Relink/1.2.3", got.Header.Get("User-Agent"))
	assert.Equal(t, ev.ID, got.Header.Get("webhook-id"), "the event id, the same on every retry")
	assert.Equal(t, EventActionRequired, got.Header.Get("Relink-Event-Type"))
	assert.Len(t, strings.Fields(got.Header.Get("webhook-signature")), 2, "one v1 signature per secret")
	// The official library verifies with either secret: the app can rotate.
	for _, secret := range []string{oldSecret, newSecret} {
		wh, err := standardwebhooks.NewWebhook(secret)
		require.NoError(t, err)
		assert.NoError(t, wh.Verify(body, got.Header), secret)
	}
	stranger, err := standardwebhooks.NewWebhook("whsec_" + base64.StdEncoding.EncodeToString([]byte("someone else's secret, 32 bytes")))
	require.NoError(t, err)
	assert.Error(t, stranger.Verify(body, got.Header))
	tampered := append([]byte{}, body...)
	tampered[len(tampered)-2] = ' '
	wh, _ := standardwebhooks.NewWebhook(newSecret)
	assert.Error(t, wh.Verify(tampered, got.Header))
	var decoded Event
	require.NoError(t, json.Unmarshal(body, &decoded))
	assert.Equal(t, ev.Repair, decoded.Repair)
}

func TestNotifyNeverSendsUnsigned(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls++ }))
	defer srv.Close()
	n := &HTTPNotifier{URL: srv.URL, Client: srv.Client(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}
	err := n.Notify(context.Background(), Event{Type: EventReminder})
	assert.Equal(t, aggregator.ErrTypeInvalidInput, ErrorType(err))
	assert.Zero(t, calls)
	_, err = NewSigners([]string{"not-a-whsec-secret"})
	assert.Error(t, err)
}

func TestNotifyFailureIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	signers, _ := NewSigners([]string{newSecret})
	n := &HTTPNotifier{URL: srv.URL, Signers: signers, Client: srv.Client(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}
	err := n.Notify(context.Background(), Event{Type: EventReminder})
	require.Error(t, err)
	assert.Empty(t, ErrorType(err), "a plain error: Temporal retries it")
}

func TestNotifyWithoutURLOnlyLogs(t *testing.T) {
	n := &HTTPNotifier{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}
	assert.NoError(t, n.Notify(context.Background(), Event{Type: EventRepaired}))
}

// Ping is a signed relink.ping event; any answer but 408, 429 or a 5xx
// says the endpoint is back.
func TestPingAsksTheAppWhetherItAnswers(t *testing.T) {
	status := http.StatusServiceUnavailable
	var pinged Event
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		wh, err := standardwebhooks.NewWebhook(newSecret)
		require.NoError(t, err)
		require.NoError(t, wh.Verify(body, r.Header), "signed as every event")
		require.NoError(t, json.Unmarshal(body, &pinged))
		w.WriteHeader(status)
	}))
	defer srv.Close()
	signers, err := NewSigners([]string{newSecret})
	require.NoError(t, err)
	n := &HTTPNotifier{URL: srv.URL, Signers: signers, Client: srv.Client(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}

	for _, down := range []int{500, 502, 503, 429, 408} {
		status = down
		assert.Error(t, n.Ping(context.Background()), "%d", down)
	}
	for _, up := range []int{200, 204, 400, 404} {
		status = up
		assert.NoError(t, n.Ping(context.Background()), "%d", up)
	}
	assert.Equal(t, EventPing, pinged.Type)
	assert.True(t, strings.HasPrefix(pinged.ID, "ping_"))
	assert.Empty(t, pinged.Repair.ID, "a ping carries no repair")
	srv.Close()
	assert.Error(t, n.Ping(context.Background()), "no answer at all")
}
