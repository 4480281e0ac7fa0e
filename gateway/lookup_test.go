package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/clienttoken"
	"github.com/relink-dev/relink/workflows"
)

// fakeInstitutions is a provider's institution reader: each connection's
// institution and health, or an error.
type fakeInstitutions struct {
	institution map[string]string
	health      map[string]aggregator.Health
	err         map[string]error
	// hold, when set, keeps every call until it is closed or the call's
	// context ends.
	hold     chan struct{}
	inFlight atomic.Int64
	most     atomic.Int64
	calls    atomic.Int64
}

func (f *fakeInstitutions) enter(ctx context.Context) error {
	f.calls.Add(1)
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for m := f.most.Load(); n > m && !f.most.CompareAndSwap(m, n); m = f.most.Load() {
	}
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (f *fakeInstitutions) Institution(ctx context.Context, ref aggregator.ConnectionRef) (string, error) {
	if err := f.enter(ctx); err != nil {
		return "", err
	}
	if err := f.err[ref.ConnectionID]; err != nil {
		return "", err
	}
	inst, ok := f.institution[ref.ConnectionID]
	if !ok {
		return "", aggregator.NotFound("no connection " + ref.ConnectionID)
	}
	return inst, nil
}

func (f *fakeInstitutions) ConnectionStatus(ctx context.Context, ref aggregator.ConnectionRef) (aggregator.ConnectionStatus, error) {
	if err := f.enter(ctx); err != nil {
		return aggregator.ConnectionStatus{}, err
	}
	return aggregator.ConnectionStatus{Health: f.health[ref.ConnectionID], ProviderStatus: string(f.health[ref.ConnectionID])}, nil
}

// repairsTemporal knows the open repairs of open (by workflow id) and no
// other; no worker answers its queries, so a repair's state is what
// visibility knows. down makes every read fail as an unreachable server.
type repairsTemporal struct {
	client.Client
	open map[string]workflows.Status
	down bool
}

func (r repairsTemporal) DescribeWorkflowExecution(_ context.Context, id, _ string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	if r.down {
		return nil, serviceerror.NewUnavailable("down")
	}
	st, ok := r.open[id]
	if !ok {
		return nil, serviceerror.NewNotFound("no such workflow")
	}
	attr := func(v any) *common.Payload {
		p, err := converter.GetDefaultDataConverter().ToPayload(v)
		if err != nil {
			panic(err)
		}
		return p
	}
	return &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: &workflow.WorkflowExecutionInfo{
		Execution: &common.WorkflowExecution{WorkflowId: id, RunId: "run-1"},
		Status:    enums.WORKFLOW_EXECUTION_STATUS_RUNNING,
		StartTime: timestamppb.New(now),
		SearchAttributes: &common.SearchAttributes{IndexedFields: map[string]*common.Payload{
			workflows.SearchAttrStatus.GetName(): attr(string(st)),
		}},
	}}, nil
}

func (repairsTemporal) QueryWorkflow(context.Context, string, string, string, ...any) (converter.EncodedValue, error) {
	return nil, errors.New("no worker in unit tests")
}

// lookupGateway is a gateway with Plaid's institutions read from f, and
// item_broken's repair open (AWAITING_USER).
func lookupGateway(f *fakeInstitutions) *Gateway {
	g := newTestGateway()
	g.Receivers["plaid"] = nil
	g.Institutions = map[string]InstitutionLookup{"plaid": f}
	g.Temporal = repairsTemporal{open: map[string]workflows.Status{
		workflows.WorkflowID("plaid", "item_broken"): workflows.StatusAwaitingUser,
	}}
	return g
}

// twoBanks: item_broken and item_ok at Chase (ins_3), item_other at
// ins_109508; item_revoked at ins_4 was revoked by the user, and
// item_login at ins_5 needs the user with no repair open yet.
func twoBanks() *fakeInstitutions {
	return &fakeInstitutions{
		institution: map[string]string{"item_broken": "ins_3", "item_ok": "ins_3", "item_other": "ins_109508",
			"item_revoked": "ins_4", "item_login": "ins_5"},
		health: map[string]aggregator.Health{"item_broken": aggregator.HealthRepairable, "item_ok": aggregator.HealthHealthy,
			"item_other": aggregator.HealthHealthy, "item_revoked": aggregator.HealthDisconnected, "item_login": aggregator.HealthRepairable},
	}
}

func lookupRequestOf(t *testing.T, body any) *http.Request {
	t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	req := httptest.NewRequest(http.MethodPost, "/v1/connections/lookup", strings.NewReader(string(raw)))
	req.Header.Set("Authorization", "Bearer "+testKey)
	return req
}

func lookup(t *testing.T, g *Gateway, body any) (*httptest.ResponseRecorder, errorDetail, lookupAnswer) {
	t.Helper()
	router, doc := openAPIRouter(t)
	req := lookupRequestOf(t, body)
	rec, e := do(t, g, req)
	validateAnswer(t, doc, router, req, rec)
	var answer lookupAnswer
	if rec.Code == http.StatusOK {
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &answer))
	}
	return rec, e, answer
}

func TestLookupAnswersWhatTheAppShouldDo(t *testing.T) {
	all := []string{"item_other", "item_ok", "item_broken", "item_revoked", "item_login", "item_deleted"}
	for _, tc := range []struct {
		name, institution string
		ids               []string
		action, match     string
		repair            bool
	}{
		{"an open repair, before a healthy Item at the same bank", "ins_3", all, lookupRepair, "item_broken", true},
		{"a healthy Item", "ins_109508", all, lookupHealthy, "item_other", false},
		{"the healthy one alone", "ins_3", []string{"item_ok"}, lookupHealthy, "item_ok", false},
		{"broken with no repair open: start one", "ins_5", all, lookupRepair, "item_login", false},
		{"revoked: create one", "ins_4", all, lookupNone, "item_revoked", false},
		{"no Item at that bank", "ins_999", all, lookupNone, "", false},
		{"no Items at all", "ins_3", []string{}, lookupNone, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, _, answer := lookup(t, lookupGateway(twoBanks()), map[string]any{
				"provider": "plaid", "institutionId": tc.institution, "connectionIds": tc.ids})
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			assert.Equal(t, tc.action, answer.Action)
			if tc.match == "" {
				assert.Nil(t, answer.Match)
				assert.Contains(t, rec.Body.String(), `"match":null`)
			} else if assert.NotNil(t, answer.Match) {
				assert.Equal(t, tc.match, answer.Match.ConnectionID)
				assert.Equal(t, tc.institution, answer.Match.InstitutionID)
				if tc.repair && assert.NotNil(t, answer.Match.Repair) {
					assert.Equal(t, workflows.StatusAwaitingUser, answer.Match.Repair.Status)
					assert.Equal(t, workflows.WorkflowID("plaid", tc.match), answer.Match.Repair.ID)
				} else {
					assert.Nil(t, answer.Match.Repair)
				}
			}
			if len(tc.ids) == len(all) {
				assert.Equal(t, []string{"item_deleted"}, answer.UnknownConnectionIDs, "Plaid no longer has it")
			} else {
				assert.Equal(t, []string{}, answer.UnknownConnectionIDs)
			}
		})
	}
}

func TestLookupReadsEachCandidateOnceAndTheMatchesHealth(t *testing.T) {
	f := twoBanks()
	rec, _, answer := lookup(t, lookupGateway(f), map[string]any{
		"provider": "plaid", "institutionId": "ins_109508", "connectionIds": []string{"item_other", "item_ok", "item_other"}})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, lookupHealthy, answer.Action)
	assert.Equal(t, int64(3), f.calls.Load(), "two institutions (a repeated id counts once), one health")
}

func TestLookupRefusals(t *testing.T) {
	tooMany := make([]string, maxLookupConnections+1)
	for i := range tooMany {
		tooMany[i] = "item_" + strconv.Itoa(i)
	}
	g := lookupGateway(twoBanks())
	g.Receivers["meld"] = nil // enabled, and no institution reader
	for _, tc := range []struct {
		name string
		body any
		code string
		says string
	}{
		{"a provider not enabled", map[string]any{"provider": "mx", "institutionId": "ins_3", "connectionIds": []string{"a"}}, codeUnknownProvider, "not enabled"},
		{"a provider with no institution reader", map[string]any{"provider": "meld", "institutionId": "ins_3", "connectionIds": []string{"a"}}, codeNotSupported, "institution"},
		{"no provider", map[string]any{"institutionId": "ins_3", "connectionIds": []string{"a"}}, codeBadRequest, "provider"},
		{"no institution", map[string]any{"provider": "plaid", "connectionIds": []string{"a"}}, codeBadRequest, "institutionId is required"},
		{"no candidates", map[string]any{"provider": "plaid", "institutionId": "ins_3"}, codeBadRequest, "connectionIds is required"},
		{"candidates null", map[string]any{"provider": "plaid", "institutionId": "ins_3", "connectionIds": nil}, codeBadRequest, "connectionIds is required"},
		{"too many", map[string]any{"provider": "plaid", "institutionId": "ins_3", "connectionIds": tooMany}, codeBadRequest, "at most 20"},
		{"a bad id", map[string]any{"provider": "plaid", "institutionId": "ins_3", "connectionIds": []string{"ok", "a b"}}, codeBadRequest, "connectionIds[1]"},
		{"a bad profile", map[string]any{"provider": "plaid", "institutionId": "ins_3", "profileId": "'", "connectionIds": []string{"a"}}, codeBadRequest, "profileId"},
		{"an unknown field", map[string]any{"provider": "plaid", "institutionId": "ins_3", "connectionId": "a"}, codeBadRequest, "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, e, _ := lookup(t, g, tc.body)
			assert.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
			assert.Equal(t, tc.code, e.Code)
			assert.Contains(t, e.Message, tc.says)
		})
	}
}

func TestLookupOfAClientTokenIsForbidden(t *testing.T) {
	clock := time.Now()
	g := withTokens(t, lookupGateway(twoBanks()), &clock)
	token, _, err := g.ClientTokens.Mint(clienttoken.Scope{Provider: "plaid", ConnectionID: "item_ok"})
	require.NoError(t, err)
	req := lookupRequestOf(t, map[string]any{"provider": "plaid", "institutionId": "ins_3", "connectionIds": []string{"item_ok"}})
	req.Header.Set("Authorization", "Bearer "+token)
	rec, e := do(t, g, req)
	assert.Equal(t, http.StatusForbidden, rec.Code)
	assert.Equal(t, codeForbidden, e.Code)
}

// A provider that does not answer for one candidate: nothing is known of
// it, so nothing is answered (it may be the match).
func TestLookupWhenTheProviderDoesNotAnswer(t *testing.T) {
	body := map[string]any{"provider": "plaid", "institutionId": "ins_109508", "connectionIds": []string{"item_other", "item_ok"}}

	t.Run("an outage", func(t *testing.T) {
		f := twoBanks()
		f.err = map[string]error{"item_ok": errors.New("plaid /item/get: 500 INTERNAL_SERVER_ERROR")}
		rec, e, _ := lookup(t, lookupGateway(f), body)
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.Equal(t, codeUnavailable, e.Code)
		assert.Equal(t, "2", rec.Header().Get("Retry-After"))
		assert.Contains(t, e.Message, "INTERNAL_SERVER_ERROR", "the app's route: the provider's word")
	})
	t.Run("its rate limit, with the wait it asked for", func(t *testing.T) {
		f := twoBanks()
		f.err = map[string]error{"item_ok": &aggregator.RateLimited{Message: "ITEM_GET_LIMIT", RetryAfter: 30 * time.Second}}
		rec, _, _ := lookup(t, lookupGateway(f), body)
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.Equal(t, "30", rec.Header().Get("Retry-After"))
	})
	t.Run("in time", func(t *testing.T) {
		f := twoBanks()
		f.hold = make(chan struct{})
		g := lookupGateway(f)
		g.lookupBudget = 50 * time.Millisecond
		rec, e, _ := lookup(t, g, body)
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.Contains(t, e.Message, "within 50ms")
	})
	t.Run("a candidate it cannot read as sent", func(t *testing.T) {
		f := twoBanks()
		f.err = map[string]error{"item_ok": aggregator.InvalidInput("mx: member item_ok: the repair needs the member's user guid")}
		rec, e, _ := lookup(t, lookupGateway(f), body)
		assert.Equal(t, http.StatusBadRequest, rec.Code)
		assert.Equal(t, codeBadRequest, e.Code)
		assert.Contains(t, e.Message, "user guid")
	})
	t.Run("Temporal", func(t *testing.T) {
		g := lookupGateway(twoBanks())
		g.Temporal = repairsTemporal{down: true}
		rec, e, _ := lookup(t, g, body)
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.Equal(t, codeUnavailable, e.Code)
	})
}

// The candidates are read at once, up to lookupCallsInFlight at a time in
// the process.
func TestLookupReadsTheCandidatesConcurrentlyAndBounded(t *testing.T) {
	f := &fakeInstitutions{institution: map[string]string{}, hold: make(chan struct{})}
	ids := make([]string, maxLookupConnections)
	for i := range ids {
		ids[i] = "item_" + strconv.Itoa(i)
		f.institution[ids[i]] = "ins_1"
	}
	g := lookupGateway(f)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rec, _, answer := lookup(t, g, map[string]any{"provider": "plaid", "institutionId": "ins_2", "connectionIds": ids})
		assert.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		assert.Equal(t, lookupNone, answer.Action)
	}()
	require.Eventually(t, func() bool { return f.inFlight.Load() == lookupCallsInFlight }, 10*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	assert.Equal(t, int64(lookupCallsInFlight), f.most.Load(), "no more than the slots")
	close(f.hold)
	wg.Wait()
	assert.Equal(t, int64(maxLookupConnections), f.calls.Load())
}
