package gateway

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/relink-dev/relink/workflows"
)

// Stats are repair counts by provider and status, from Temporal
// visibility, each repair once: a run that continued as new counts only
// if it had reached its outcome. since filters on when the repair's
// current run started.
type Stats struct {
	Since    *time.Time                 `json:"since,omitempty"`
	Total    int64                      `json:"total"`
	ByStatus map[workflows.Status]int64 `json:"byStatus"`
	// ByProvider counts each provider's repairs by status.
	ByProvider map[string]map[workflows.Status]int64 `json:"byProvider"`
}

// countRepairs asks visibility for every provider × status count (one
// CountWorkflowExecutions each, a few at a time); open only counts the
// repairs still running.
func (g *Gateway) countRepairs(ctx context.Context, providers []string, since *time.Time, open bool) (Stats, error) {
	st := Stats{Since: since, ByStatus: map[workflows.Status]int64{}, ByProvider: map[string]map[workflows.Status]int64{}}
	type cell struct {
		provider string
		status   workflows.Status
	}
	var cells []cell
	for _, p := range providers {
		st.ByProvider[p] = map[workflows.Status]int64{}
		for _, s := range workflows.Statuses {
			if open && s.Terminal() {
				continue
			}
			cells = append(cells, cell{p, s})
		}
	}
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		slots    = make(chan struct{}, 8)
	)
	for _, c := range cells {
		// A run that continued as new is counted only if it reached an
		// outcome (a break arriving as it closed continues it as the next
		// repair); otherwise its continuation is the repair.
		query := fmt.Sprintf("WorkflowType = '%s' AND %s = '%s' AND %s = '%s'",
			workflows.WorkflowName, workflows.SearchAttrProvider.GetName(), c.provider, workflows.SearchAttrStatus.GetName(), c.status)
		if !c.status.Terminal() {
			query += " AND ExecutionStatus != 'ContinuedAsNew'"
		}
		if open {
			query += " AND ExecutionStatus = 'Running'"
		}
		if since != nil {
			query += fmt.Sprintf(" AND StartTime >= '%s'", since.UTC().Format(time.RFC3339Nano))
		}
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			resp, err := g.Temporal.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: query})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			if n := resp.GetCount(); n > 0 {
				st.ByProvider[c.provider][c.status] += n
				st.ByStatus[c.status] += n
				st.Total += n
			}
		}()
	}
	wg.Wait()
	return st, firstErr
}

// stats answers GET /v1/stats?provider=&since=.
func (g *Gateway) stats(w http.ResponseWriter, r *http.Request) {
	q, ok := singleQuery(w, r, "provider", "since")
	if !ok {
		return
	}
	providers := g.providerNames()
	if p := q.Get("provider"); p != "" {
		if !slices.Contains(providers, p) {
			writeError(w, http.StatusBadRequest, codeUnknownProvider, "provider "+p+" is not enabled")
			return
		}
		providers = []string{p}
	}
	var since *time.Time
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			d, derr := time.ParseDuration(v)
			if derr != nil || d <= 0 {
				writeError(w, http.StatusBadRequest, codeBadRequest, "since must be an RFC 3339 time or a duration such as 24h")
				return
			}
			t = g.now().Add(-d)
		}
		since = &t
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	st, err := g.countRepairs(ctx, providers, since, false)
	if err != nil {
		g.temporalError(w, r, err, "", "")
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (g *Gateway) providerNames() []string {
	var names []string
	for name := range g.Receivers {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// openRepairsCollector exports relink_repairs_open{provider,status}, the
// repairs still running by status (the backlog waiting for users), counted
// in visibility when scraped, at most every openRepairsTTL.
type openRepairsCollector struct {
	g    *Gateway
	desc *prometheus.Desc

	mu      sync.Mutex
	counted time.Time
	last    Stats
}

const openRepairsTTL = 30 * time.Second

func newOpenRepairsCollector(g *Gateway) *openRepairsCollector {
	return &openRepairsCollector{g: g, desc: prometheus.NewDesc("relink_repairs_open",
		"Repairs still running, by provider and status (Temporal visibility).", []string{"provider", "status"}, nil)}
}

func (c *openRepairsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *openRepairsCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.counted) > openRepairsTTL && c.g.hasTemporal() { // none to ask while the gateway connects
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := c.g.countRepairs(ctx, c.g.providerNames(), nil, true)
		cancel()
		if err != nil {
			c.g.Logger.Warn("counting open repairs for /metrics failed", "error", err)
		} else {
			c.last, c.counted = st, time.Now()
		}
	}
	for provider, byStatus := range c.last.ByProvider {
		for _, s := range workflows.Statuses {
			if s.Terminal() {
				continue
			}
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(byStatus[s]), provider, string(s))
		}
	}
}
