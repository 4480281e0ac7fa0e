package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/codec"
	"github.com/relink-dev/relink/metrics"
)

// A reconciliation sweep finds the breaks no webhook announced (lost,
// never retried, or never sent: consent that ran out at a provider with
// no webhook for it). One runs per enabled provider on a Temporal
// Schedule (ScheduleID), which an operator's sweep triggers too, so that
// its overlap policy keeps one sweep of a provider at a time: one page
// at a time, each within the provider's budget. It pages through the
// provider's candidates (its own listing of connections that need the
// user, or the app's inventory) one activity per page; the activity
// reads each candidate's status and starts a repair, through the same
// start-or-join path a webhook takes, for each one that needs the user and
// has none. Healthy connections write nothing to Temporal: a sweep's
// history is a few events per page, whatever the page held.

// SweepWorkflowName is the sweep's workflow type.
const SweepWorkflowName = "ReconcileSweep"

// Activity names the sweep and the expiry-timed start run. They are
// registered by package activities/reconcile (which imports this package,
// so it is named here rather than referred to).
const (
	ActivityReconcilePage     = "ReconcilePage"
	ActivityStartExpiryRepair = "StartExpiryRepair"
)

// QuerySweepProgress answers a running sweep's totals so far.
const QuerySweepProgress = "progress"

// ScheduleID is the Schedule that sweeps provider, and the workflow id of
// its action (its runs add their time). The codec lets those runs read
// the action's sealed arguments (codec.ScheduleActionPrefix).
func ScheduleID(provider string) string { return codec.ScheduleActionPrefix + provider }

// Candidate sources.
const (
	// SourceProvider pages the provider's own listing of connections
	// that need the user (aggregator.Lister).
	SourceProvider = "provider"
	// SourceInventory pages the app's inventory (RELINK_INVENTORY_URL)
	// and reads each connection's status from the provider.
	SourceInventory = "inventory"
)

// SweepInput starts a sweep; Cursor and Totals carry it across
// continue-as-new.
type SweepInput struct {
	Provider string      `json:"provider"`
	Source   string      `json:"source"`
	PageSize int         `json:"pageSize"`
	Cursor   string      `json:"cursor,omitempty"`
	Totals   SweepTotals `json:"totals"`
}

// SweepTotals count what a sweep did.
type SweepTotals struct {
	StartedAt time.Time `json:"startedAt"`
	// FinishedAt is zero while the sweep runs.
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	Pages      int       `json:"pages"`
	// Checked connections; NeedUser of them needed the user; Found of
	// those had no repair, and one was started (each a webhook that never
	// came); Errors could not be checked this time.
	Checked  int `json:"checked"`
	NeedUser int `json:"needUser"`
	Found    int `json:"found"`
	Errors   int `json:"errors"`
	// ExpiryArranged counts proactive repairs arranged or moved for a
	// consent expiry.
	ExpiryArranged int `json:"expiryArranged"`
}

// Add adds one page's counts.
func (t *SweepTotals) Add(p SweepPage) {
	t.Pages++
	t.Checked += p.Checked
	t.NeedUser += p.NeedUser
	t.Found += p.Found
	t.Errors += p.Errors
	t.ExpiryArranged += p.ExpiryArranged
}

// SweepPageRequest asks for one page of a sweep.
type SweepPageRequest struct {
	Provider string `json:"provider"`
	Source   string `json:"source"`
	Cursor   string `json:"cursor,omitempty"`
	Limit    int    `json:"limit"`
}

// SweepPage is what one page found; Next is "" after the last page.
type SweepPage struct {
	Next           string `json:"next,omitempty"`
	Checked        int    `json:"checked"`
	NeedUser       int    `json:"needUser"`
	Found          int    `json:"found"`
	Errors         int    `json:"errors"`
	ExpiryArranged int    `json:"expiryArranged"`
}

// sweepPagesPerRun bounds a run's history (about 6 events a page) well
// below Temporal's limits; the sweep continues as new past it.
const sweepPagesPerRun = 2000

// ReconcileSweep pages through a provider's candidates (see above). A page
// that fails (the inventory or the provider down) is retried from its
// cursor until it succeeds or is refused for good (a token the inventory
// rejects), which fails the sweep.
func ReconcileSweep(ctx workflow.Context, in SweepInput) (SweepTotals, error) {
	if in.Totals.StartedAt.IsZero() {
		in.Totals.StartedAt = workflow.Now(ctx).UTC()
	}
	totals := in.Totals
	if err := workflow.SetQueryHandler(ctx, QuerySweepProgress, func() (SweepTotals, error) { return totals, nil }); err != nil {
		return totals, err
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Hour,
		Priority:            SweepPriority(in.Provider),
		// The page heartbeats as it goes; a worker that dies is noticed in
		// a minute and the page runs again, from where it had got to.
		HeartbeatTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        5 * time.Minute,
			NonRetryableErrorTypes: []string{"InvalidInput"},
		},
		Summary: fmt.Sprintf("sweep %s (%s)", in.Provider, in.Source),
	})
	for pages := 0; ; pages++ {
		if pages >= sweepPagesPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			in.Totals = totals
			return totals, workflow.NewContinueAsNewError(ctx, ReconcileSweep, in)
		}
		var page SweepPage
		err := workflow.ExecuteActivity(ctx, ActivityReconcilePage, SweepPageRequest{
			Provider: in.Provider, Source: in.Source, Cursor: in.Cursor, Limit: in.PageSize,
		}).Get(ctx, &page)
		if err != nil {
			totals.FinishedAt = workflow.Now(ctx).UTC()
			return totals, err
		}
		totals.Add(page)
		in.Cursor = page.Next
		if page.Next == "" {
			totals.FinishedAt = workflow.Now(ctx).UTC()
			workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"provider": in.Provider}).
				Timer(metrics.SweepDuration).Record(totals.FinishedAt.Sub(totals.StartedAt))
			return totals, nil
		}
	}
}

// ExpiryWorkflowName is the type of an expiry-timed start.
const ExpiryWorkflowName = "ExpiryRepairStart"

// ExpiryWorkflowID is the one pending expiry-timed start of a connection.
func ExpiryWorkflowID(provider, connectionID string) string {
	return "expiry:" + provider + ":" + connectionID
}

// SearchAttrConsentExpiresAt is the consent expiry an expiry-timed start
// is for: what tells an arrangement already made from one to move, and
// lets operators list the proactive repairs coming up.
var SearchAttrConsentExpiresAt = temporal.NewSearchAttributeKeyTime("RelinkConsentExpiresAt")

// ExpiryStart is a proactive repair arranged for a consent expiry.
type ExpiryStart struct {
	Provider     string    `json:"provider"`
	ConnectionID string    `json:"connectionId"`
	ProfileID    string    `json:"profileId,omitempty"`
	Institution  string    `json:"institution,omitempty"`
	ExpiresAt    time.Time `json:"expiresAt"`
}

// ExpiryEventID is the trigger event id of the proactive repair for one
// consent expiry: the same arrangement found twice starts one repair.
func (e ExpiryStart) ExpiryEventID() string {
	return fmt.Sprintf("expiry:%s:%d", e.ConnectionID, e.ExpiresAt.Unix())
}

// ExpiryRepairStart runs once its start delay (expiry minus the lead) is
// over, with no timer while it waits: it starts the connection's
// proactive repair through the start-or-join path, and ends.
func ExpiryRepairStart(ctx workflow.Context, in ExpiryStart) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		Priority:            temporal.Priority{PriorityKey: PriorityBackground},
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			MaximumInterval:        5 * time.Minute,
			NonRetryableErrorTypes: []string{"InvalidInput"},
		},
		Summary: "start the proactive repair",
	})
	return workflow.ExecuteActivity(ctx, ActivityStartExpiryRepair, in).Get(ctx, nil)
}
