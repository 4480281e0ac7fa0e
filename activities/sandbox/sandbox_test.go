package sandbox

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/quiltt"
)

func newProvider(now *time.Time) *Provider {
	return &Provider{Now: func() time.Time { return *now }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

var ref = aggregator.ConnectionRef{Provider: Name, ConnectionID: "c1"}

func TestReconnectFlow(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	p := newProvider(&now)
	ctx := context.Background()
	_, err := p.Break(ctx, "c1", "p1", "Bank")
	require.NoError(t, err)

	s, err := p.Initialize(ctx, ref)
	require.NoError(t, err)
	assert.Equal(t, aggregator.ConnectorActionRequired, s.ConnectorStatus)
	assert.Equal(t, now.Add(DefaultSessionTTL), s.ExpiresAt)

	err = p.Close(ctx, aggregator.CloseRequest{ConnectionRef: ref, ConnectorToken: s.ConnectorToken, PublicToken: "forged"})
	assert.Equal(t, aggregator.ErrTypeReconnectRejected, aggregator.TypeOf(err), "public token must come from the widget login")

	login, err := p.LoginUser("c1")
	require.NoError(t, err)
	require.NoError(t, p.Close(ctx, aggregator.CloseRequest{ConnectionRef: ref, ConnectorToken: login.ConnectorToken, PublicToken: login.PublicToken}))
	err = p.Close(ctx, aggregator.CloseRequest{ConnectionRef: ref, ConnectorToken: login.ConnectorToken, PublicToken: login.PublicToken})
	assert.Equal(t, aggregator.ErrTypeReconnectRejected, aggregator.TypeOf(err), "a session closes once")

	st, err := p.ConnectionStatus(ctx, ref)
	require.NoError(t, err)
	assert.Equal(t, aggregator.HealthHealthy, st.Health)
	s, err = p.Initialize(ctx, ref)
	require.NoError(t, err)
	assert.Equal(t, aggregator.ConnectorContinue, s.ConnectorStatus, "a healthy connection needs no user")
}

func TestExpiredSessionIsRejected(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	p := newProvider(&now)
	ctx := context.Background()
	_, _ = p.Break(ctx, "c1", "", "")
	_, err := p.Initialize(ctx, ref)
	require.NoError(t, err)
	login, err := p.LoginUser("c1")
	require.NoError(t, err)
	now = now.Add(31 * time.Minute)
	err = p.Close(ctx, aggregator.CloseRequest{ConnectionRef: ref, ConnectorToken: login.ConnectorToken, PublicToken: login.PublicToken})
	assert.Equal(t, aggregator.ErrTypeReconnectRejected, aggregator.TypeOf(err))
	_, err = p.LoginUser("c1")
	assert.ErrorIs(t, err, ErrNoOpenSession)
}

func TestScriptedFailures(t *testing.T) {
	now := time.Now()
	p := newProvider(&now)
	ctx := context.Background()

	_, err := p.Initialize(ctx, ref)
	assert.Equal(t, aggregator.ErrTypeConnectionNotFound, aggregator.TypeOf(err), "unknown connection")

	_, err = p.SetScript("c1", Script{FailCalls: 2})
	require.NoError(t, err)
	for range 2 {
		_, err = p.ConnectionStatus(ctx, ref)
		require.Error(t, err)
		assert.Empty(t, aggregator.TypeOf(err), "a 503 is retryable")
	}
	_, err = p.ConnectionStatus(ctx, ref)
	assert.NoError(t, err, "the third call succeeds")

	_, err = p.SetScript("c1", Script{LatencyMillis: 10_000})
	require.NoError(t, err)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = p.ConnectionStatus(short, ref)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "a slow call honours the activity's deadline")

	_, err = p.SetScript("c1", Script{Initialize: "sometimes"})
	assert.Error(t, err)
	_, err = p.SetScript("c1", Script{FailCalls: -1})
	assert.Error(t, err)
}

func TestStateSurvivesARestart(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "sandbox.json")
	ctx := context.Background()

	before := newProvider(&now)
	require.NoError(t, before.Load(path))
	_, err := before.Break(ctx, "c1", "p1", "Bank")
	require.NoError(t, err)
	s, err := before.Initialize(ctx, ref)
	require.NoError(t, err)
	before.Flush() // as relink dev does when it stops

	after := newProvider(&now)
	require.NoError(t, after.Load(path))
	c, err := after.Get("c1")
	require.NoError(t, err)
	assert.Equal(t, quiltt.StatusErrorRepairable, c.Status)
	assert.Equal(t, "p1", c.ProfileID)
	login, err := after.LoginUser("c1")
	require.NoError(t, err)
	assert.Equal(t, s.ConnectorToken, login.ConnectorToken, "the open session survived")
	require.NoError(t, after.Close(ctx, aggregator.CloseRequest{ConnectionRef: ref, ConnectorToken: login.ConnectorToken, PublicToken: login.PublicToken}))

	next, err := after.Initialize(ctx, aggregator.ConnectionRef{ConnectionID: "c2"})
	assert.Error(t, err)
	assert.Empty(t, next.ConnectorToken)
	_, err = after.Break(ctx, "c2", "", "")
	require.NoError(t, err)
	fresh, err := after.Initialize(ctx, aggregator.ConnectionRef{ConnectionID: "c2"})
	require.NoError(t, err)
	assert.NotEqual(t, s.ConnectorToken, fresh.ConnectorToken, "token numbering continues after a restart")
}

// BenchmarkInitializeAt10000Connections measures one initialize while the
// sandbox holds 10,000 connections and saves its state: writes are
// gathered and happen outside the lock, so a call does not pay for a
// whole-file write.
func BenchmarkInitializeAt10000Connections(b *testing.B) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	p := newProvider(&now)
	p.Webhooks = nil
	require.NoError(b, p.Load(filepath.Join(b.TempDir(), "sandbox.json")))
	ctx := context.Background()
	for i := range 10000 {
		p.mu.Lock()
		p.conn(fmt.Sprintf("c%d", i), true).Status = quiltt.StatusErrorRepairable
		p.mu.Unlock()
	}
	p.Flush()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := p.Initialize(ctx, aggregator.ConnectionRef{ConnectionID: fmt.Sprintf("c%d", i%10000)}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	p.Flush()
}
