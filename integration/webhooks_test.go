package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/app"
	"github.com/relink-dev/relink/workflows"
)

// distantTemporal is a Temporal 40 ms away (another region, a loaded
// cluster): each start and read the gateway makes takes that much longer.
type distantTemporal struct{ client.Client }

const temporalDistance = 40 * time.Millisecond

func far(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(temporalDistance):
		return nil
	}
}

func (c distantTemporal) ExecuteWorkflow(ctx context.Context, opts client.StartWorkflowOptions, wf any, args ...any) (client.WorkflowRun, error) {
	if err := far(ctx); err != nil {
		return nil, err
	}
	return c.Client.ExecuteWorkflow(ctx, opts, wf, args...)
}

func (c distantTemporal) DescribeWorkflowExecution(ctx context.Context, id, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	if err := far(ctx); err != nil {
		return nil, err
	}
	return c.Client.DescribeWorkflowExecution(ctx, id, runID)
}

// A delivery of 1,000 repairable events (a bank's migration, sent as one
// batch) is answered inside the sender's 30 s timeout, over a Temporal
// 40 ms away: one at a time it would take over 40 s and be cut off.
// Every connection gets exactly one repair, and a redelivery of the batch
// starts nothing.
func TestABigDeliveryIsAnsweredInTimeAndLosesNothing(t *testing.T) {
	b := newBigDelivery(t, 1000, 0)
	first := b.deliver()
	assert.Equal(t, 1000, first.Received)
	assert.Equal(t, 1000, first.Applied+first.Duplicates, "every event handled")
	b.waitForRepairs()

	again := b.deliver()
	assert.Equal(t, webhookSummary{Received: 1000, Duplicates: 1000}, again, "a redelivered batch starts nothing")
	b.useNewGateway() // remembers nothing: Temporal tells it
	again = b.deliver()
	assert.Equal(t, 1000, again.Duplicates, "nor on another replica")
	assert.Equal(t, int64(1000), b.repairs())
}

// A delivery too big for the gateway's time budget is answered 503 at the
// budget's end with what was handled; the sender's redeliveries finish it,
// with nothing lost and nothing started twice.
func TestADeliveryOverItsBudgetIsFinishedByRedeliveries(t *testing.T) {
	b := newBigDelivery(t, 500, time.Second)
	b.deliver()
	assert.Greater(t, b.deliveries, 1, "the first delivery ran out of time")
	assert.Contains(t, b.partial, "not yet: redeliver")
	b.waitForRepairs()
}

// bigDelivery is one Quiltt-format delivery of n repairable events, each
// for a connection of its own, to a gateway over a distant Temporal.
type bigDelivery struct {
	t          *testing.T
	s          *stack
	budget     time.Duration
	url        string
	events     []quiltt.Event
	deliveries int    // requests sent so far
	partial    string // the message of the last 503
}

func newBigDelivery(t *testing.T, n int, budget time.Duration) *bigDelivery {
	s := newBareStack(t, nil) // no worker: the repairs need only exist
	b := &bigDelivery{t: t, s: s, budget: budget, events: make([]quiltt.Event, n)}
	b.useNewGateway()
	for i := range b.events {
		b.events[i] = quiltt.Event{ID: fmt.Sprintf("evt_big_%d", i), Type: quiltt.EventRepairable, At: time.Now().UTC(),
			Profile: &quiltt.Profile{ID: "profile_big"},
			Record:  &quiltt.Record{ID: fmt.Sprintf("conn_big_%d", i), Status: quiltt.StatusErrorRepairable}}
	}
	return b
}

// useNewGateway sends the next deliveries to a new gateway replica.
func (b *bigDelivery) useNewGateway() {
	gw, err := app.NewGateway(b.s.cfg, distantTemporal{b.s.temporal}, b.s.logger, b.s.providers, b.s.sandbox)
	require.NoError(b.t, err)
	gw.WebhookBudget = b.budget
	srv := httptest.NewServer(gw.Handler())
	b.t.Cleanup(srv.Close)
	b.url = srv.URL + "/webhooks/sandbox"
}

// deliver sends the delivery as a provider does, with a 30 s timeout,
// again on each 503, until it is answered 200.
func (b *bigDelivery) deliver() webhookSummary {
	b.t.Helper()
	sender := &http.Client{Timeout: 30 * time.Second}
	for first := b.deliveries; ; {
		b.deliveries++
		require.Less(b.t, b.deliveries-first, 20, "each delivery makes progress")
		body, header, err := quiltt.Delivery(b.s.sandbox.Webhooks.Secret, time.Now(), b.events...)
		require.NoError(b.t, err)
		req, err := http.NewRequest(http.MethodPost, b.url, bytes.NewReader(body))
		require.NoError(b.t, err)
		req.Header = header
		began := time.Now()
		resp, err := sender.Do(req)
		require.NoError(b.t, err, "delivery %d: the sender gave up", b.deliveries)
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(b.t, err)
		b.t.Logf("delivery %d: %d in %s", b.deliveries, resp.StatusCode, time.Since(began).Round(time.Millisecond))
		if resp.StatusCode == http.StatusOK {
			var sum webhookSummary
			require.NoError(b.t, json.Unmarshal(raw, &sum))
			return sum
		}
		require.Equal(b.t, http.StatusServiceUnavailable, resp.StatusCode, "%s", raw)
		b.partial = string(raw)
	}
}

// repairs counts the repairs visibility lists.
func (b *bigDelivery) repairs() int64 {
	res, err := b.s.temporal.CountWorkflow(context.Background(), &workflowservice.CountWorkflowExecutionsRequest{
		Namespace: b.s.cfg.Temporal.Namespace, Query: "WorkflowType='" + workflows.WorkflowName + "'"})
	require.NoError(b.t, err)
	return res.GetCount()
}

// waitForRepairs waits for one repair per connection.
func (b *bigDelivery) waitForRepairs() {
	require.Eventually(b.t, func() bool { return b.repairs() == int64(len(b.events)) }, time.Minute, 200*time.Millisecond,
		"one repair per connection")
}
