package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

// distantTemporal is a Temporal 20 ms away (another region, a loaded
// cluster): each start and read the gateway makes takes that much longer.
type distantTemporal struct{ client.Client }

const temporalDistance = 20 * time.Millisecond

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

// A delivery of 2,000 repairable events (a bank's migration, sent as one
// batch) is answered well inside the sender's 30 s timeout, over a
// Temporal 20 ms away: one at a time it would take 40 s and be cut off.
// Every connection gets exactly one repair, and a redelivery of the batch
// starts nothing.
func TestABigDeliveryIsAnsweredInTimeAndLosesNothing(t *testing.T) {
	s := newBareStack(t, nil) // no worker: the repairs need only exist
	gw, err := app.NewGateway(s.cfg, distantTemporal{s.temporal}, s.logger, s.providers, s.sandbox)
	require.NoError(t, err)
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)

	const n = 2000
	events := make([]quiltt.Event, n)
	for i := range events {
		events[i] = quiltt.Event{ID: fmt.Sprintf("evt_big_%d", i), Type: quiltt.EventRepairable, At: time.Now().UTC(),
			Profile: &quiltt.Profile{ID: "profile_big"},
			Record:  &quiltt.Record{ID: fmt.Sprintf("conn_big_%d", i), Status: quiltt.StatusErrorRepairable}}
	}
	sender := &http.Client{Timeout: 30 * time.Second}
	deliver := func() webhookSummary {
		t.Helper()
		for attempt := 1; ; attempt++ {
			body, header, err := quiltt.Delivery(s.sandbox.Webhooks.Secret, time.Now(), events...)
			require.NoError(t, err)
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/sandbox", bytes.NewReader(body))
			require.NoError(t, err)
			req.Header = header
			began := time.Now()
			resp, err := sender.Do(req)
			require.NoError(t, err, "delivery %d: the sender gave up", attempt)
			var sum webhookSummary
			decodeErr := json.NewDecoder(resp.Body).Decode(&sum)
			resp.Body.Close()
			t.Logf("delivery %d: %d in %s", attempt, resp.StatusCode, time.Since(began).Round(time.Millisecond))
			if resp.StatusCode == http.StatusOK {
				require.NoError(t, decodeErr)
				return sum
			}
			// A partial delivery is redelivered, as a provider does.
			require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			require.Less(t, attempt, 5, "each delivery makes progress")
		}
	}
	first := deliver()
	assert.Equal(t, n, first.Received)
	assert.Equal(t, n, first.Applied+first.Duplicates, "every event handled")

	count := func() int64 {
		res, err := s.temporal.CountWorkflow(context.Background(), &workflowservice.CountWorkflowExecutionsRequest{
			Namespace: s.cfg.Temporal.Namespace, Query: "WorkflowType='" + workflows.WorkflowName + "'"})
		require.NoError(t, err)
		return res.GetCount()
	}
	require.Eventually(t, func() bool { return count() == n }, time.Minute, 200*time.Millisecond, "one repair per connection")

	again := deliver()
	assert.Equal(t, webhookSummary{Received: n, Duplicates: n}, again, "a redelivered batch starts nothing")
	assert.Equal(t, int64(n), count())
}
