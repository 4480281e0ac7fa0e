package integration

import (
	"bytes"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/cli"
	"github.com/relink-dev/relink/gateway"
	"github.com/relink-dev/relink/metrics"
	"github.com/relink-dev/relink/workflows"
)

// scrape reads the gateway's /metrics as Prometheus does.
func (s *stack) scrape() map[string]*dto.MetricFamily {
	s.t.Helper()
	resp := s.raw(http.MethodGet, "/metrics", nil)
	defer resp.Body.Close()
	require.Equal(s.t, http.StatusOK, resp.StatusCode)
	families, err := new(expfmt.TextParser).TextToMetricFamilies(resp.Body)
	require.NoError(s.t, err)
	return families
}

// sample sums the samples of family whose labels include want: counters'
// values, histograms' counts.
func sample(families map[string]*dto.MetricFamily, family string, want map[string]string) float64 {
	var sum float64
	f := families[family]
	if f == nil {
		return 0
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetHistogram() != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		}
	}
	return sum
}

func TestMetricsMoveWithARepair(t *testing.T) {
	s := newStack(t)
	s.breakConnection("conn_m", "profile_m")
	s.waitForStatus("conn_m", workflows.StatusAwaitingUser)
	s.repairConnection("conn_m")
	s.waitForStatus("conn_m", workflows.StatusRepaired)
	s.waitFor("the repaired event to be delivered", func() bool {
		return sample(s.scrape(), "relink_notifications_total", map[string]string{"type": "repair.repaired", "result": "delivered"}) >= 1
	})

	m := s.scrape()
	sandbox := map[string]string{"provider": "sandbox"}
	assert.Equal(t, 1.0, sample(m, "relink_repairs_started_total", map[string]string{"provider": "sandbox", "trigger": "webhook"}))
	assert.Equal(t, 1.0, sample(m, "relink_repairs_closed_total", map[string]string{"provider": "sandbox", "outcome": "REPAIRED"}))
	assert.Equal(t, 1.0, sample(m, "relink_time_to_repair_seconds", sandbox), "the time-to-repair histogram")
	assert.Equal(t, 1.0, sample(m, "relink_user_wait_seconds", sandbox))
	assert.Equal(t, 1.0, sample(m, "relink_user_actions_total", map[string]string{"provider": "sandbox", "action": "complete", "status": "202"}))
	assert.Equal(t, 1.0, sample(m, "relink_user_actions_total", map[string]string{"provider": "sandbox", "action": "reconnect", "status": "200"}))
	assert.GreaterOrEqual(t, sample(m, "relink_webhooks_total", map[string]string{"provider": "sandbox", "result": "applied"}), 1.0)
	assert.Equal(t, 1.0, sample(m, "relink_notifications_total", map[string]string{"type": "repair.action_required", "result": "delivered"}))
	assert.GreaterOrEqual(t, sample(m, "relink_http_requests_total", map[string]string{"route": "POST /webhooks/{provider}", "status": "200"}), 1.0)
	assert.GreaterOrEqual(t, sample(m, "relink_http_request_duration_seconds", map[string]string{"route": "GET /v1/repairs/{provider}/{connectionId}"}), 1.0)
	// The Temporal SDK's own metrics come through the same registry.
	assert.Positive(t, sample(m, "temporal_workflow_task_execution_latency_seconds", nil))
	assert.Positive(t, sample(m, "temporal_activity_execution_latency_seconds", map[string]string{"activity_type": "FinishReconnect"}))

	// A rejected webhook is counted with its reason.
	req, err := http.NewRequest(http.MethodPost, s.gateway.URL+"/webhooks/sandbox", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 1.0, sample(s.scrape(), "relink_webhooks_total", map[string]string{"provider": "sandbox", "result": "rejected", "reason": "signature"}))

	// /metrics needs the API key.
	resp, err = http.Get(s.gateway.URL + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func TestStatsCountRepairsByProviderAndStatus(t *testing.T) {
	s := newStack(t)
	s.breakConnection("conn_s1", "p")
	s.waitForStatus("conn_s1", workflows.StatusAwaitingUser)
	s.repairConnection("conn_s1")
	s.waitForStatus("conn_s1", workflows.StatusRepaired)
	s.breakConnection("conn_s2", "p")
	s.waitForStatus("conn_s2", workflows.StatusAwaitingUser)

	var st gateway.Stats
	// Each cell is a count of its own, so a repair whose visibility record
	// moves on between two of them (PENDING, then AWAITING_USER) can be
	// counted twice in one answer: wait for one that saw it settled.
	s.waitFor("visibility to count both", func() bool {
		st = gateway.Stats{} // (decoding into the last answer would keep its keys)
		require.Equal(t, http.StatusOK, s.call(http.MethodGet, "/v1/stats?provider=sandbox&since=1h", nil, &st))
		return st.ByStatus[workflows.StatusRepaired] == 1 && st.ByStatus[workflows.StatusAwaitingUser] == 1 &&
			st.ByStatus[workflows.StatusPending] == 0
	})
	assert.EqualValues(t, 2, st.Total)
	assert.EqualValues(t, 1, st.ByProvider["sandbox"][workflows.StatusRepaired])
	require.Equal(t, http.StatusBadRequest, s.call(http.MethodGet, "/v1/stats?since=yesterday", nil, nil))
	require.Equal(t, http.StatusBadRequest, s.call(http.MethodGet, "/v1/stats?provider=nope", nil, nil))

	// The CLI prints the same as a table.
	var out, errOut bytes.Buffer
	require.Zero(t, cli.Run([]string{"stats", "-url", s.gateway.URL, "-api-key", apiKey}, &out, &errOut), errOut.String())
	assert.Regexp(t, `(?m)^\s*sandbox\s+0\s+1\s+0\s+0\s+1\s+0\s+0\s+0\s+2\s*$`, out.String())

	// The backlog gauge, and every Relink metric the dashboard charts and
	// the alert rules watch, are on /metrics.
	m := s.scrape()
	assert.Equal(t, 1.0, sample(m, "relink_repairs_open", map[string]string{"provider": "sandbox", "status": "AWAITING_USER"}))
	dashboard, err := os.ReadFile("../deploy/grafana/relink-dashboard.json")
	require.NoError(t, err)
	alerts, err := os.ReadFile("../deploy/prometheus/relink-alerts.yaml")
	require.NoError(t, err)
	// (Some appear only once something happened: a failed attempt, say.)
	exported := map[string]bool{"relink_repairs_open": true}
	for _, c := range []string{metrics.RepairsStarted, metrics.RepairsClosed, metrics.FailedAttempts,
		metrics.UserActions, metrics.Webhooks, metrics.Notifications, metrics.HTTPRequests,
		metrics.ReconcileChecked, metrics.ReconcileFound} {
		exported[c+"_total"] = true
	}
	for _, h := range []string{metrics.TimeToRepair, metrics.UserWait, metrics.HTTPLatency, metrics.SweepDuration} {
		exported[h+"_seconds"] = true
	}
	for family := range m {
		exported[family] = true
	}
	for _, name := range regexp.MustCompile(`relink_[a-z_]+`).FindAllString(string(dashboard)+string(alerts), -1) {
		assert.True(t, exported[strings.TrimSuffix(name, "_bucket")], "the dashboard or an alert uses %s, which Relink does not export", name)
	}
}
