package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/workflows"
)

// heldQueries answers reconnect queries with a current session, each only
// once the test releases it, and counts them.
type heldQueries struct {
	client.Client
	asked   atomic.Int32
	started chan struct{}
	release chan struct{}
}

func (h *heldQueries) QueryWorkflow(ctx context.Context, id, run, name string, args ...any) (converter.EncodedValue, error) {
	h.asked.Add(1)
	h.started <- struct{}{}
	select {
	case <-h.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	offer := workflows.ReconnectOffer{Result: &workflows.ReconnectResult{
		Status: workflows.StatusAwaitingUser, ConnectorStatus: aggregator.ConnectorActionRequired,
		Session: &aggregator.Session{ConnectorToken: "tok_1"},
	}}
	raw, err := json.Marshal(offer)
	if err != nil {
		return nil, err
	}
	return jsonValue(raw), nil
}

type jsonValue []byte

func (v jsonValue) HasValue() bool { return true }

func (v jsonValue) Get(ptr any) error { return json.Unmarshal(v, ptr) }

// A page open in several tabs, or a frontend in a loop: identical reconnect
// calls that arrive while the gateway's query for them is under way share
// it, and the caller it began with giving up does not cancel it for the
// others.
func TestConcurrentReconnectsShareOneQuery(t *testing.T) {
	temporal := &heldQueries{started: make(chan struct{}, 16), release: make(chan struct{})}
	g := newTestGateway()
	g.Temporal = temporal
	h := g.Handler()
	call := func(ctx context.Context) *httptest.ResponseRecorder {
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/repairs/quiltt/conn_1/reconnect", strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}

	// The first caller's query is under way; the others join it, and then
	// the first caller, whose request the query began with, gives up.
	impatient, giveUp := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	answers := make([]*httptest.ResponseRecorder, 8)
	wg.Go(func() { answers[0] = call(impatient) })
	<-temporal.started
	for i := 1; i < len(answers); i++ {
		wg.Go(func() { answers[i] = call(context.Background()) })
	}
	waiting := func(n int64) func() bool {
		return func() bool { return g.reconnectWaiting.Load() == n }
	}
	require.Eventually(t, waiting(8), 10*time.Second, time.Millisecond, "every caller waits on the one query")
	giveUp()
	require.Eventually(t, waiting(7), 10*time.Second, time.Millisecond, "the impatient caller left")
	close(temporal.release)
	wg.Wait()

	assert.Equal(t, int32(1), temporal.asked.Load(), "one query for all the callers")
	for i, rec := range answers[1:] {
		require.Equal(t, http.StatusOK, rec.Code, "caller %d: %s", i+1, rec.Body.String())
		assert.Contains(t, rec.Body.String(), `"connectorToken":"tok_1"`, "caller %d", i+1)
	}

	// A call with another body asks for itself.
	temporal.release = make(chan struct{})
	close(temporal.release)
	forced := httptest.NewRequest(http.MethodPost, "/v1/repairs/quiltt/conn_1/reconnect", strings.NewReader(`{"forceNewSession":true}`))
	forced.Header.Set("Authorization", "Bearer "+testKey)
	forced.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, forced)
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, int32(2), temporal.asked.Load())

	// Once it is answered, the next call asks again: nothing is cached.
	temporal.release = make(chan struct{})
	close(temporal.release)
	assert.Equal(t, http.StatusOK, call(context.Background()).Code)
	assert.Equal(t, int32(3), temporal.asked.Load())
}
