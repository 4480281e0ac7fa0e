// Package reconcile holds the activities of reconciliation sweeps and
// expiry-timed proactive repairs (the workflows are in package
// workflows, sweep.go): reading a page of candidates, checking each one's
// status within the provider's budget, and starting the repairs a sweep
// finds through package intake, the path every webhook takes.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/time/rate"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/intake"
	"github.com/relink-dev/relink/metrics"
	"github.com/relink-dev/relink/workflows"
)

// Inventory pages the app's own list of connections (RELINK_INVENTORY_URL).
type Inventory interface {
	Page(ctx context.Context, provider, cursor string, limit int) (aggregator.CandidatePage, error)
}

// Sweeper runs sweep pages and expiry-timed starts. Register a pointer to
// it with a worker: its methods are the activities ReconcilePage and
// StartExpiryRepair.
type Sweeper struct {
	Providers *aggregator.Registry
	// Inventory is the app's inventory; nil when none is configured.
	Inventory Inventory
	Intake    *intake.Intake
	// Defaults are the options the repairs a sweep starts run with.
	Defaults workflows.RepairOptions
	// Rates are each provider's status reads per second in one page; its
	// Schedule runs one sweep at a time, a page at a time, so that is the
	// pace of all workers together.
	Rates map[string]float64
	// ExpiryLead is how long before a consent runs out its proactive
	// repair starts.
	ExpiryLead time.Duration
	Now        func() time.Time

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

func (s *Sweeper) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// limiter is provider's status-read budget in this process.
func (s *Sweeper) limiter(provider string) *rate.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limiters == nil {
		s.limiters = map[string]*rate.Limiter{}
	}
	l, ok := s.limiters[provider]
	if !ok {
		r := s.rate(provider)
		l = rate.NewLimiter(rate.Limit(r), max(1, int(r)))
		s.limiters[provider] = l
	}
	return l
}

// rate is provider's status reads per second.
func (s *Sweeper) rate(provider string) float64 {
	if r := s.Rates[provider]; r > 0 {
		return r
	}
	return 10
}

// pageProgress is a page's heartbeat: a retried page resumes after the
// last candidate it checked (Last), with its counts so far.
type pageProgress struct {
	Last string              `json:"last,omitempty"`
	Page workflows.SweepPage `json:"page"`
}

// resumeAt is where a retried page picks up: after the candidate last
// checked, found by id because the page read again may have changed (a
// connection repaired meanwhile leaves a listing); from the start when it
// is gone (a recheck starts nothing twice).
func resumeAt(page []aggregator.Candidate, last string) int {
	if last == "" {
		return 0
	}
	for i, c := range page {
		if c.ConnectionID == last {
			return i + 1
		}
	}
	return 0
}

// ReconcilePage reads one page of candidates and checks each one.
func (s *Sweeper) ReconcilePage(ctx context.Context, req workflows.SweepPageRequest) (workflows.SweepPage, error) {
	log := activity.GetLogger(ctx)
	p, err := s.Providers.Lookup(req.Provider)
	if err != nil {
		return workflows.SweepPage{}, nonRetryable(err)
	}
	page, err := s.candidates(ctx, p, req)
	if err != nil {
		err = nonRetryable(err)
		log.Warn("sweep page not read", "provider", req.Provider, "source", req.Source, "retried", !temporal.IsApplicationError(err), "error", err)
		return workflows.SweepPage{}, err
	}
	var progress pageProgress
	if activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &progress)
	}
	out := progress.Page
	start := resumeAt(page.Candidates, progress.Last)
	if start == 0 && progress.Last != "" {
		// Checked again from the start: count them again, but for the
		// repairs started and expiries arranged, which are not again.
		out = workflows.SweepPage{Found: out.Found, ExpiryArranged: out.ExpiryArranged}
	}
	out.Next = page.Next
	// Each page starts at the provider's full budget: a 429 slows the
	// rest of its page, not the worker for good.
	s.limiter(req.Provider).SetLimit(rate.Limit(s.rate(req.Provider)))
	m := activity.GetMetricsHandler(ctx).WithTags(map[string]string{"provider": req.Provider})
	for i := start; i < len(page.Candidates); i++ {
		c := page.Candidates[i]
		c.Provider = req.Provider
		var last string
		if i > 0 {
			last = page.Candidates[i-1].ConnectionID
		}
		result, err := s.check(ctx, p, c, &out, pageProgress{Last: last, Page: out})
		if err != nil {
			return out, err // the context ended: the page runs again from its heartbeat
		}
		out.Checked++
		m.WithTags(map[string]string{"result": result}).Counter(metrics.ReconcileChecked).Inc(1)
		// The SDK sends at most one heartbeat per 80% of the heartbeat
		// timeout, however often this is called: a page costs one or two.
		activity.RecordHeartbeat(ctx, pageProgress{Last: c.ConnectionID, Page: out})
	}
	return out, nil
}

// candidates reads the page at req.Cursor from the provider's listing or
// the app's inventory.
func (s *Sweeper) candidates(ctx context.Context, p aggregator.Provider, req workflows.SweepPageRequest) (aggregator.CandidatePage, error) {
	switch req.Source {
	case workflows.SourceProvider:
		l, ok := p.(aggregator.Lister)
		if !ok {
			return aggregator.CandidatePage{}, aggregator.InvalidInput(fmt.Sprintf("provider %s cannot list its connections: sweep it from the inventory (RELINK_INVENTORY_URL)", req.Provider))
		}
		return l.ListNeedingUser(ctx, req.Cursor, req.Limit)
	case workflows.SourceInventory:
		if s.Inventory == nil {
			return aggregator.CandidatePage{}, aggregator.InvalidInput("no inventory to sweep: set RELINK_INVENTORY_URL")
		}
		return s.Inventory.Page(ctx, req.Provider, req.Cursor, req.Limit)
	}
	return aggregator.CandidatePage{}, aggregator.InvalidInput("unknown sweep source " + req.Source)
}

// Check results, the checked metric's result label.
const (
	resultHealthy      = "healthy"
	resultNeedsUser    = "needs_user"
	resultDegraded     = "degraded"
	resultDisconnected = "disconnected"
	resultNotFound     = "not_found"
	resultError        = "error"
)

// maxStatusTries bounds the reads of one candidate's status that fail for
// a reason other than the provider's rate limit; past it the candidate
// counts as an error and the next sweep checks it again.
const maxStatusTries = 3

// statusRetryDelay is the wait before the second try of a status read
// (twice it before the third).
const statusRetryDelay = time.Second

// check reads one candidate's status (unless its listing said it) and
// acts on it. It returns an error only when ctx ended.
func (s *Sweeper) check(ctx context.Context, p aggregator.Provider, c aggregator.Candidate, out *workflows.SweepPage, progress pageProgress) (string, error) {
	log := activity.GetLogger(ctx)
	// The break is dated when Relink saw it, to the second: providers date
	// their events to the second (Plaid's JWT iat), and one dated within
	// the second the sweep looked (the user's repair confirmed at once)
	// must not look older than the break.
	seenAt := s.now().UTC().Truncate(time.Second)
	status := c.Status
	for try := 1; status == nil; try++ {
		if err := s.limiter(c.Provider).Wait(ctx); err != nil {
			return "", err
		}
		st, err := p.ConnectionStatus(ctx, c.ConnectionRef)
		switch rl, limited := aggregator.IsRateLimited(err); {
		case err == nil:
			status = &st
		case limited:
			// The provider's budget is spent (another of the app's
			// callers, or this rate set too high): slow down and read the
			// same connection again; nothing is skipped.
			if err := s.slowDown(ctx, c.Provider, rl.RetryAfter, progress); err != nil {
				return "", err
			}
			try--
		case aggregator.TypeOf(err) == aggregator.ErrTypeConnectionNotFound:
			out.Errors++
			log.Info("sweep: connection unknown to the provider", "provider", c.Provider, "connectionId", c.ConnectionID)
			return resultNotFound, nil
		case ctx.Err() != nil:
			return "", ctx.Err()
		case try >= maxStatusTries || aggregator.Named(err) != nil:
			out.Errors++
			log.Warn("sweep: status not read", "provider", c.Provider, "connectionId", c.ConnectionID, "error", err)
			return resultError, nil
		default:
			// A moment before the next try: a blip passes, an outage is
			// not hammered.
			if err := s.wait(ctx, time.Duration(try)*statusRetryDelay, progress); err != nil {
				return "", err
			}
		}
	}
	if !c.ConsentExpiresAt.IsZero() || !status.ConsentExpiresAt.IsZero() {
		expires := c.ConsentExpiresAt
		if expires.IsZero() {
			expires = status.ConsentExpiresAt
		}
		// An expiry already past is a break, which the status says.
		if expires.After(s.now()) {
			arranged, err := s.arrangeExpiry(ctx, workflows.ExpiryStart{
				Provider: c.Provider, ConnectionID: c.ConnectionID, ProfileID: c.ProfileID,
				Institution: c.Institution, ExpiresAt: expires.UTC(),
			})
			if err != nil {
				out.Errors++
				log.Warn("sweep: expiry-timed repair not arranged", "provider", c.Provider, "connectionId", c.ConnectionID, "error", err)
			} else if arranged {
				out.ExpiryArranged++
			}
		}
	}
	switch status.Health {
	case aggregator.HealthRepairable:
	case aggregator.HealthHealthy, aggregator.HealthSyncing:
		return resultHealthy, nil
	case aggregator.HealthDegraded:
		return resultDegraded, nil
	default:
		return resultDisconnected, nil
	}
	out.NeedUser++
	started, err := s.startRepair(ctx, c, *status, seenAt)
	if err != nil {
		out.Errors++
		log.Warn("sweep: repair not started; the next sweep tries again", "provider", c.Provider, "connectionId", c.ConnectionID, "error", err)
		return resultError, nil
	}
	if started {
		out.Found++
		activity.GetMetricsHandler(ctx).WithTags(map[string]string{"provider": c.Provider}).Counter(metrics.ReconcileFound).Inc(1)
		log.Info("sweep: found a break no webhook announced; repair started", "provider", c.Provider, "connectionId", c.ConnectionID)
	}
	return resultNeedsUser, nil
}

// slowDown halves this process's read rate for provider for the rest of
// the page and waits out the provider's Retry-After (or a second).
func (s *Sweeper) slowDown(ctx context.Context, provider string, retryAfter time.Duration, progress pageProgress) error {
	l := s.limiter(provider)
	l.SetLimit(max(l.Limit()/2, 0.5))
	if retryAfter <= 0 {
		retryAfter = time.Second
	}
	return s.wait(ctx, retryAfter, progress)
}

// wait waits d, heartbeating the page's progress as it goes so that a long
// wait does not look like a dead worker.
func (s *Sweeper) wait(ctx context.Context, d time.Duration, progress pageProgress) error {
	until := time.Now().Add(d)
	for left := d; left > 0; left = time.Until(until) {
		t := time.NewTimer(min(left, 20*time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
			activity.RecordHeartbeat(ctx, progress)
		}
	}
	return nil
}

// recentRepairGrace is how long after a repair closes a sweep leaves its
// connection alone.
const recentRepairGrace = time.Hour

// startRepair starts the repair of a connection that needs its user,
// unless one is open or the last one already dealt with this break. A
// connection whose last repair ended without repairing it (expired,
// unrepairable, canceled) had its user asked for this break: a sweep does
// not ask again (an app that wants it starts one, POST /v1/repairs). One
// whose last repair REPAIRED it broke again.
//
// The trigger's event id names the break by the run it follows, so a
// second sweep finding it before or after the first one's start joins the
// same repair; a late webhook for it joins the open repair, or is a
// duplicate of the closed one (dated before the sweep saw the break).
func (s *Sweeper) startRepair(ctx context.Context, c aggregator.Candidate, st aggregator.ConnectionStatus, seenAt time.Time) (bool, error) {
	id := workflows.WorkflowID(c.Provider, c.ConnectionID)
	after := "none"
	desc, err := s.Intake.Temporal.DescribeWorkflowExecution(ctx, id, "")
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
	case err != nil:
		return false, err
	case desc.GetWorkflowExecutionInfo().GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING:
		// Open: it has this break. Or ended and still delivering its
		// last events (for as long as the app's endpoint is down): the
		// first sweep after it closes looks again.
		return false, nil
	case s.now().Sub(desc.GetWorkflowExecutionInfo().GetCloseTime().AsTime()) < recentRepairGrace:
		// Just closed: a listing or status that still says broken may be
		// one the provider has not updated yet. The next sweep looks again.
		return false, nil
	default:
		runID := desc.GetWorkflowExecutionInfo().GetExecution().GetRunId()
		last, ok, err := s.Intake.LastResult(ctx, id, runID)
		if err != nil {
			return false, err
		}
		if ok && last.Status != workflows.StatusRepaired {
			return false, nil
		}
		after = runID
	}
	ev := aggregator.WebhookEvent{
		EventID:        "reconcile:" + c.ConnectionID + ":after:" + after,
		Kind:           aggregator.EventKindRepairable,
		Type:           "reconcile: " + st.ProviderStatus,
		ConnectionID:   c.ConnectionID,
		ProfileID:      c.ProfileID,
		Institution:    c.Institution,
		Connector:      c.Connector,
		ProviderStatus: st.ProviderStatus,
		At:             seenAt,
	}
	outcome, _, err := s.Intake.ApplyEvent(ctx, c.Provider, ev, s.Defaults)
	return outcome == intake.Started, err
}

// arrangeExpiry makes sure the connection's proactive repair starts
// ExpiryLead before its consent runs out: one delayed workflow per
// connection (no timer while it waits), left alone when already arranged
// for this expiry, moved (replaced) when the expiry changed, and started
// at once when the date is already close. It reports whether it arranged
// or moved one.
func (s *Sweeper) arrangeExpiry(ctx context.Context, e workflows.ExpiryStart) (bool, error) {
	id := workflows.ExpiryWorkflowID(e.Provider, e.ConnectionID)
	desc, err := s.Intake.Temporal.DescribeWorkflowExecution(ctx, id, "")
	var notFound *serviceerror.NotFound
	if err != nil && !errors.As(err, &notFound) {
		return false, err
	}
	if err == nil {
		var arranged time.Time
		if p, ok := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()[workflows.SearchAttrConsentExpiresAt.GetName()]; ok {
			_ = converter.GetDefaultDataConverter().FromPayload(p, &arranged)
		}
		if arranged.Equal(e.ExpiresAt) {
			return false, nil // arranged (or done) for this very expiry
		}
	}
	delay := max(e.ExpiresAt.Add(-s.ExpiryLead).Sub(s.now()), 0)
	_, err = s.Intake.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        id,
		TaskQueue: s.Intake.TaskQueue, // the repairs'

		// A pending start for another expiry is replaced: the consent
		// was renewed (a later date) or shortened.
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_TERMINATE_EXISTING,
		WorkflowIDReusePolicy:    enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		StartDelay:               delay,
		Priority:                 temporal.Priority{PriorityKey: workflows.PriorityBackground},
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SearchAttrProvider.ValueSet(e.Provider),
			workflows.SearchAttrConnectionID.ValueSet(e.ConnectionID),
			workflows.SearchAttrConsentExpiresAt.ValueSet(e.ExpiresAt),
		),
		StaticSummary: fmt.Sprintf("Proactive repair of %s connection %s, consent expiring %s", e.Provider, e.ConnectionID, e.ExpiresAt.Format(time.RFC3339)),
	}, workflows.ExpiryWorkflowName, e)
	if err != nil {
		return false, err
	}
	activity.GetLogger(ctx).Info("proactive repair arranged", "provider", e.Provider, "connectionId", e.ConnectionID,
		"consentExpiresAt", e.ExpiresAt, "startsIn", delay.String())
	return true, nil
}

// StartExpiryRepair starts the proactive repair an expiry-timed start
// is for, through the start-or-join path.
func (s *Sweeper) StartExpiryRepair(ctx context.Context, e workflows.ExpiryStart) error {
	ev := aggregator.WebhookEvent{
		EventID:      e.ExpiryEventID(),
		Kind:         aggregator.EventKindProactive,
		Type:         "consent expires " + e.ExpiresAt.Format(time.RFC3339),
		ConnectionID: e.ConnectionID,
		ProfileID:    e.ProfileID,
		Institution:  e.Institution,
		At:           s.now().UTC(),
	}
	outcome, runID, err := s.Intake.ApplyEvent(ctx, e.Provider, ev, s.Defaults)
	if err != nil {
		return err
	}
	activity.GetLogger(ctx).Info("proactive repair for a consent expiry: "+string(outcome), "provider", e.Provider,
		"connectionId", e.ConnectionID, "runId", runID)
	return nil
}

// nonRetryable turns an adapter's named error into a non-retryable
// application error of its type; others stay retryable.
func nonRetryable(err error) error {
	if pe := aggregator.Named(err); pe != nil {
		return temporal.NewNonRetryableApplicationError(pe.Message, pe.Type, nil)
	}
	return err
}
