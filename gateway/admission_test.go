package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/metrics"
	"github.com/relink-dev/relink/workflows"
)

// heldStarts holds every workflow start until the test releases them, and
// keeps the most that were under way at once. No repair exists otherwise.
type heldStarts struct {
	client.Client
	release   chan struct{}
	once      sync.Once
	inFlight  atomic.Int32
	most      atomic.Int32
	started   atomic.Int32
	described atomic.Int32
}

func (h *heldStarts) ExecuteWorkflow(ctx context.Context, opts client.StartWorkflowOptions, _ any, _ ...any) (client.WorkflowRun, error) {
	n := h.inFlight.Add(1)
	defer h.inFlight.Add(-1)
	for m := h.most.Load(); n > m && !h.most.CompareAndSwap(m, n); m = h.most.Load() {
	}
	h.started.Add(1)
	select {
	case <-h.release:
		return startedRun{id: opts.ID}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// CountWorkflow answers the open-repairs gauge of a scrape: none.
func (h *heldStarts) CountWorkflow(context.Context, *workflowservice.CountWorkflowExecutionsRequest) (*workflowservice.CountWorkflowExecutionsResponse, error) {
	return &workflowservice.CountWorkflowExecutionsResponse{}, nil
}

// releaseAll lets every held start finish (again: a no-op).
func (h *heldStarts) releaseAll() { h.once.Do(func() { close(h.release) }) }

func newHeldStarts(t *testing.T) *heldStarts {
	h := &heldStarts{release: make(chan struct{})}
	t.Cleanup(h.releaseAll) // should a check fail first
	return h
}

func (h *heldStarts) DescribeWorkflowExecution(context.Context, string, string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	h.described.Add(1)
	return nil, serviceerror.NewNotFound("no repair")
}

type startedRun struct {
	client.WorkflowRun
	id string
}

func (r startedRun) GetID() string    { return r.id }
func (r startedRun) GetRunID() string { return "run-" + r.id }

// quilttWebhook is a signed Quiltt webhook with one event for conn.
func quilttWebhook(t *testing.T, eventType, status, conn string) *http.Request {
	t.Helper()
	body, err := json.Marshal(quiltt.Envelope{EventTypes: []string{eventType}, Events: []quiltt.Event{{
		ID: "evt_" + conn + "_" + eventType, Type: eventType, At: now,
		Profile: &quiltt.Profile{ID: "profile_1"}, Record: &quiltt.Record{ID: conn, Status: status},
	}}})
	require.NoError(t, err)
	return webhook(body, testSecret, now)
}

// A burst of breaks: the gateway has at most StartsInFlight repair starts
// under way at Temporal; the rest wait their turn and are all started,
// and a webhook that starts nothing is not kept waiting behind them.
func TestStartsBeyondTheBoundWaitTheirTurn(t *testing.T) {
	temporal := newHeldStarts(t)
	g := newTestGateway()
	g.Temporal, g.StartsInFlight, g.StartWait = temporal, 2, time.Minute
	h := g.Handler()

	var wg sync.WaitGroup
	codes := make([]int, 6)
	for i := range codes {
		wg.Go(func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, quilttWebhook(t, quiltt.EventRepairable, quiltt.StatusErrorRepairable, "conn_"+string(rune('a'+i))))
			codes[i] = rec.Code
		})
	}
	require.Eventually(t, func() bool { return temporal.inFlight.Load() == 2 }, 10*time.Second, time.Millisecond)

	// While both slots are held and four starts wait, a synced webhook
	// (no start) reaches Temporal and is answered.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, quilttWebhook(t, quiltt.EventSyncedSuccessful, quiltt.StatusSynced, "conn_z"))
	assert.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.JSONEq(t, `{"received":1,"applied":0,"duplicates":0,"ignored":1}`, rec.Body.String())
	assert.Equal(t, int32(1), temporal.described.Load())
	assert.Equal(t, int32(2), temporal.started.Load(), "the other four wait in the gateway")

	temporal.releaseAll()
	wg.Wait()
	for i, code := range codes {
		assert.Equal(t, http.StatusOK, code, "webhook %d", i)
	}
	assert.Equal(t, int32(6), temporal.started.Load())
	assert.Equal(t, int32(2), temporal.most.Load())
}

// A start that waits StartWait for a slot gets 503 with Retry-After, and
// nothing reaches Temporal for it: the provider redelivers, the app
// retries its manual start.
func TestAStartThatWaitsTooLongIs503(t *testing.T) {
	temporal := newHeldStarts(t)
	g := newTestGateway()
	g.Temporal, g.StartsInFlight, g.StartWait = temporal, 1, 20*time.Millisecond
	g.Metrics = newMetrics(t)
	h := g.Handler()

	go h.ServeHTTP(httptest.NewRecorder(), quilttWebhook(t, quiltt.EventRepairable, quiltt.StatusErrorRepairable, "conn_held"))
	require.Eventually(t, func() bool { return temporal.inFlight.Load() == 1 }, 10*time.Second, time.Millisecond)

	// (Should a start get through to the held fake, its deadline ends it.)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec, detail := do(t, g, quilttWebhook(t, quiltt.EventRepairable, quiltt.StatusErrorRepairable, "conn_waits").WithContext(ctx))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, codeUnavailable, detail.Code)
	assert.Contains(t, detail.Message, "too many repairs are starting")
	assertRetryAfterSpread(t, rec)

	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/repairs", strings.NewReader(`{"provider":"quiltt","connectionId":"conn_manual"}`))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	rec, detail = do(t, g, req)
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, codeUnavailable, detail.Code)
	assertRetryAfterSpread(t, rec)

	assert.Equal(t, int32(1), temporal.started.Load(), "only the held start reached Temporal")
	assert.Equal(t, 1.0, rejectedWebhooks(t, g, "busy"))

	// A sender that hangs up while its start waits is no outage: counted
	// apart, and nothing reaches Temporal for it either.
	gone, hangUp := context.WithCancel(context.Background())
	hangUp()
	h.ServeHTTP(httptest.NewRecorder(), quilttWebhook(t, quiltt.EventRepairable, quiltt.StatusErrorRepairable, "conn_gone").WithContext(gone))
	assert.Equal(t, 1.0, rejectedWebhooks(t, g, "sender_left"))
	assert.Equal(t, 0.0, rejectedWebhooks(t, g, "temporal_unavailable"))
	assert.Equal(t, int32(1), temporal.started.Load())
}

func newMetrics(t *testing.T) *metrics.Registry {
	t.Helper()
	reg, err := metrics.New()
	require.NoError(t, err)
	return reg
}

// rejectedWebhooks reads relink_webhooks_total{result="rejected",reason}
// from the gateway's registry.
func rejectedWebhooks(t *testing.T, g *Gateway, reason string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	g.Metrics.HTTPHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	families, err := new(expfmt.TextParser).TextToMetricFamilies(rec.Body)
	require.NoError(t, err)
	total := 0.0
	for _, m := range families["relink_webhooks_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["result"] == "rejected" && labels["reason"] == reason {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// assertRetryAfterSpread: a turned-away start comes back in 1 to 4 s.
func assertRetryAfterSpread(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	after, err := strconv.Atoi(rec.Header().Get("Retry-After"))
	require.NoError(t, err)
	assert.True(t, after >= 1 && after <= 4, "Retry-After %d", after)
}

// The callers of one burst are told different times to come back.
func TestBusyRetryAfterIsSpread(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 200 {
		d := busyRetryAfter()
		require.True(t, d >= time.Second && d <= 4*time.Second && d%time.Second == 0, "%v", d)
		seen[d] = true
	}
	assert.Len(t, seen, 4, "all of 1, 2, 3 and 4 s in 200 draws")
}

// A request waits StartWait for start slots once, however many of its
// events start a repair: its deadline is the request's, not each start's.
func TestARequestWaitsOnceForAllItsStarts(t *testing.T) {
	temporal := newHeldStarts(t)
	g := newTestGateway()
	g.Temporal, g.StartsInFlight, g.StartWait = temporal, 1, time.Minute
	heldDone := make(chan struct{})
	go func() {
		defer close(heldDone)
		_, _ = g.startWorkflow(context.Background(), client.StartWorkflowOptions{ID: "held"}, workflows.RepairInput{})
	}()
	require.Eventually(t, func() bool { return temporal.inFlight.Load() == 1 }, 10*time.Second, time.Millisecond)

	// A request whose wait is used up, by its earlier events, waits no
	// more (were it a minute, the test's own deadline would end it first).
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), startDeadlineKey{}, time.Now()), 5*time.Second)
	defer cancel()
	_, err := g.startWorkflow(ctx, client.StartWorkflowOptions{ID: "late"}, workflows.RepairInput{})
	assert.ErrorIs(t, err, errStartsBusy)

	// The deadline bounds waiting only: with a slot free, the same late
	// request starts its repair.
	temporal.releaseAll()
	<-heldDone // its slot is back
	run, err := g.startWorkflow(ctx, client.StartWorkflowOptions{ID: "late"}, workflows.RepairInput{})
	require.NoError(t, err)
	assert.Equal(t, "late", run.GetID())
}

// openRepair answers every start with "already started" and holds every
// Describe until released: a repairable webhook for a repair that is open.
type openRepair struct {
	heldStarts
	describing chan struct{}
}

func (o *openRepair) ExecuteWorkflow(ctx context.Context, opts client.StartWorkflowOptions, wf any, args ...any) (client.WorkflowRun, error) {
	if strings.HasSuffix(opts.ID, "conn_open") {
		return nil, serviceerror.NewWorkflowExecutionAlreadyStarted("open", "", "run-open")
	}
	return o.heldStarts.ExecuteWorkflow(ctx, opts, wf, args...)
}

func (o *openRepair) DescribeWorkflowExecution(ctx context.Context, id, run string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	o.describing <- struct{}{}
	select {
	case <-o.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return o.heldStarts.DescribeWorkflowExecution(ctx, id, run)
}

// A start slot is held for the start call alone: a delivery that goes on
// to read and signal an open repair does not keep another start waiting.
func TestASlotIsHeldOnlyForTheStart(t *testing.T) {
	temporal := &openRepair{heldStarts: heldStarts{release: make(chan struct{})}, describing: make(chan struct{}, 16)}
	t.Cleanup(temporal.releaseAll)
	g := newTestGateway()
	g.Temporal, g.StartsInFlight, g.StartWait = temporal, 1, time.Minute
	h := g.Handler()

	go h.ServeHTTP(httptest.NewRecorder(), quilttWebhook(t, quiltt.EventRepairable, quiltt.StatusErrorRepairable, "conn_open"))
	select {
	case <-temporal.describing:
	case <-time.After(10 * time.Second):
		t.Fatal("the open repair was never described")
	}
	// Its start was refused and it is reading the open repair: the one
	// slot is free for another connection's start.
	go h.ServeHTTP(httptest.NewRecorder(), quilttWebhook(t, quiltt.EventRepairable, quiltt.StatusErrorRepairable, "conn_new"))
	require.Eventually(t, func() bool { return temporal.inFlight.Load() == 1 }, 10*time.Second, time.Millisecond,
		"the second start got the slot")
}

// deadlineSeen records the start-slot deadline each start's context
// carries.
type deadlineSeen struct {
	heldStarts
	mu        sync.Mutex
	deadlines []time.Time
}

func (d *deadlineSeen) ExecuteWorkflow(ctx context.Context, opts client.StartWorkflowOptions, _ any, _ ...any) (client.WorkflowRun, error) {
	deadline, _ := ctx.Value(startDeadlineKey{}).(time.Time)
	d.mu.Lock()
	d.deadlines = append(d.deadlines, deadline)
	d.mu.Unlock()
	return startedRun{id: opts.ID}, nil
}

// The webhook handler gives a delivery one deadline for all the starts of
// its events (TestARequestWaitsOnceForAllItsStarts shows what a start does
// with it): three repairable events, three starts, one deadline, StartWait
// from when the delivery was read. A manual start's deadline is its
// request's too.
func TestAWebhookGivesAllItsStartsOneDeadline(t *testing.T) {
	temporal := &deadlineSeen{heldStarts: heldStarts{release: make(chan struct{})}}
	g := newTestGateway()
	g.Temporal, g.StartsInFlight, g.StartWait = temporal, 1, time.Minute
	var events []quiltt.Event
	for _, conn := range []string{"conn_a", "conn_b", "conn_c"} {
		events = append(events, quiltt.Event{ID: "evt_" + conn, Type: quiltt.EventRepairable, At: now,
			Profile: &quiltt.Profile{ID: "profile_1"}, Record: &quiltt.Record{ID: conn, Status: quiltt.StatusErrorRepairable}})
	}
	body, err := json.Marshal(quiltt.Envelope{EventTypes: []string{quiltt.EventRepairable}, Events: events})
	require.NoError(t, err)
	read := time.Now()
	rec := httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, webhook(body, testSecret, now))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.JSONEq(t, `{"received":3,"applied":3,"duplicates":0,"ignored":0}`, rec.Body.String())

	require.Len(t, temporal.deadlines, 3)
	first := temporal.deadlines[0]
	assert.WithinRange(t, first, read.Add(time.Minute), time.Now().Add(time.Minute))
	for i, d := range temporal.deadlines {
		assert.True(t, d.Equal(first), "start %d: %v, not the delivery's %v", i, d, first)
	}

	// A manual start's request gives its start one too.
	req := httptest.NewRequest(http.MethodPost, "/v1/repairs", strings.NewReader(`{"provider":"quiltt","connectionId":"conn_manual"}`))
	req.Header.Set("Authorization", "Bearer "+testKey)
	read = time.Now()
	rec = httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, req)
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	require.Len(t, temporal.deadlines, 4)
	assert.WithinRange(t, temporal.deadlines[3], read.Add(time.Minute), time.Now().Add(time.Minute))
}
