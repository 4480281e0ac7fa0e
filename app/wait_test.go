package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/relink-dev/relink/config"
)

// The wait doubles from First to Max, jittered down by at most a fifth,
// and never exceeds Max.
func TestTemporalBackoffDoublesToItsCapWithJitter(t *testing.T) {
	b := Backoff{First: time.Second, Max: 30 * time.Second}
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second,
		5: 16 * time.Second, 6: 30 * time.Second, 7: 30 * time.Second, 100: 30 * time.Second} {
		for range 50 {
			got := b.Wait(attempt)
			assert.LessOrEqual(t, got, want, "attempt %d", attempt)
			assert.GreaterOrEqual(t, got, want*4/5, "attempt %d", attempt)
		}
	}
	waits := map[time.Duration]bool{}
	for range 50 {
		waits[b.Wait(3)] = true
	}
	assert.Greater(t, len(waits), 1, "jittered: replicas do not knock in step")
}

// syncBuffer is a log written by the retry loop's goroutine and read by
// the test's.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Pointed at a port where nothing listens, DialUntilConnected keeps
// trying, logs each failed try at WARN with the address, namespace,
// attempt and next wait (and not the API key), and returns promptly with
// the context's error once it is canceled.
func TestDialUntilConnectedRetriesAnUnreachableTemporalUntilCanceled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	address := ln.Addr().String()
	require.NoError(t, ln.Close())
	t.Setenv("TEMPORAL_CONFIG_FILE", "/dev/null")
	t.Setenv("TEMPORAL_ADDRESS", address)
	t.Setenv("TEMPORAL_NAMESPACE", "relink-waits")
	t.Setenv("TEMPORAL_API_KEY", "secret-api-key")
	cfg, err := config.Load(context.Background())
	require.NoError(t, err)
	saved := TemporalBackoff
	TemporalBackoff = Backoff{First: 10 * time.Millisecond, Max: 40 * time.Millisecond}
	t.Cleanup(func() { TemporalBackoff = saved })

	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		tc, err := DialUntilConnected(ctx, cfg.Temporal, logger, nil)
		assert.Nil(t, tc)
		done <- err
	}()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "attempt=3 ") }, 30*time.Second, 10*time.Millisecond,
		"three failed tries logged:\n%s", &logs)
	cancel()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("DialUntilConnected did not return within 5 s of its context's end")
	}
	first, _, _ := strings.Cut(logs.String(), "\n")
	for _, want := range []string{"level=WARN", `msg="Temporal is not reachable yet; retrying"`, "address=" + address,
		"namespace=relink-waits", "attempt=1 ", "retryIn=", "connection refused"} {
		assert.Contains(t, first, want)
	}
	assert.NotContains(t, logs.String(), "secret-api-key")
}

func TestTemporalNotThereYetTellsAnAbsentServerOrNamespaceFromARefusal(t *testing.T) {
	for err, want := range map[error]bool{
		serviceerror.NewUnavailable("connection refused"):                                                        true,
		fmt.Errorf("list search attributes: %w", serviceerror.NewUnavailablef("Unable to get namespace n info")): true,
		serviceerror.NewNamespaceNotFound("n"):                                                                   true,
		serviceerror.NewNotFound("namespace n is not found"):                                                     true,
		serviceerror.NewDeadlineExceeded("slow"):                                                                 true,
		fmt.Errorf("try: %w", context.DeadlineExceeded):                                                          true,
		serviceerror.NewPermissionDenied("no", ""):                                                               false,
		serviceerror.NewInvalidArgument("bad"):                                                                   false,
		errors.New("something else"):                                                                             false,
	} {
		assert.Equal(t, want, TemporalNotThereYet(err), "%v", err)
	}
}
