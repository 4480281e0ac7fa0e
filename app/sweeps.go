package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/inventory"
	"github.com/relink-dev/relink/activities/providers"
	"github.com/relink-dev/relink/activities/reconcile"
	"github.com/relink-dev/relink/config"
	"github.com/relink-dev/relink/intake"
	"github.com/relink-dev/relink/workflows"
)

// SweepPlan is how one enabled provider is swept.
type SweepPlan struct {
	Provider string
	// Source is workflows.SourceProvider or SourceInventory.
	Source string
	// Rate is its status reads per second, for all workers together.
	Rate     float64
	PageSize int
}

// Input is a new sweep of the plan's provider.
func (s SweepPlan) Input() workflows.SweepInput {
	return workflows.SweepInput{Provider: s.Provider, Source: s.Source, PageSize: s.PageSize}
}

// defaultSweepRate is the status reads per second of a provider whose
// registration names none.
const defaultSweepRate = 10

// SweepPlans are the sweeps of the enabled providers that have a source
// (their own listing, or the app's inventory).
func SweepPlans(c config.Config, p Providers) []SweepPlan {
	var plans []SweepPlan
	for _, reg := range providers.All {
		api := p.API(reg.Name)
		if api == nil {
			continue
		}
		_, canList := api.(aggregator.Lister)
		src := c.Reconcile.Source(reg.Name, canList)
		if src == "" {
			continue
		}
		rate := c.Reconcile.Rates[reg.Name]
		if rate <= 0 {
			rate = reg.ReconcileRate
		}
		if rate <= 0 {
			rate = defaultSweepRate
		}
		plans = append(plans, SweepPlan{
			Provider: reg.Name,
			Source:   src,
			Rate:     rate,
			PageSize: c.Reconcile.PageSize,
		})
	}
	return plans
}

// NewSweeper builds the sweeps' and expiry-timed starts' activities.
func NewSweeper(c config.Config, p Providers, tc client.Client) (*reconcile.Sweeper, error) {
	enc, err := PayloadCodec(c.Temporal)
	if err != nil {
		return nil, err
	}
	for name, src := range c.Reconcile.Sources {
		if _, canList := p.API(name).(aggregator.Lister); src == workflows.SourceProvider && p.API(name) != nil && !canList {
			return nil, fmt.Errorf("RELINK_RECONCILE_SOURCE: %s:provider, but %s cannot list its connections: use %s:inventory", name, name, name)
		}
	}
	s := &reconcile.Sweeper{
		Providers:  aggregator.NewRegistry(p.APIs...),
		Intake:     &intake.Intake{Temporal: tc, Namespace: c.Temporal.Namespace, TaskQueue: c.Temporal.TaskQueue, Codec: enc},
		Defaults:   c.Repair.Options(),
		Rates:      map[string]float64{},
		ExpiryLead: c.Reconcile.ExpiryLead,
	}
	for _, plan := range SweepPlans(c, p) {
		s.Rates[plan.Provider] = plan.Rate
	}
	if c.Reconcile.InventoryURL != "" {
		if len(c.Reconcile.InventoryToken) < 32 {
			return nil, errors.New("RELINK_INVENTORY_TOKEN must be set, at least 32 characters, with RELINK_INVENTORY_URL: the worker sends it to the inventory")
		}
		s.Inventory = &inventory.Client{URL: c.Reconcile.InventoryURL, Token: c.Reconcile.InventoryToken,
			HTTP: &http.Client{Timeout: providerHTTPTimeout}}
	}
	return s, nil
}

// RegisterSweeps adds the sweep and expiry-timed start workflows, and
// their activities, to the repair worker.
func RegisterSweeps(r worker.Registry, s *reconcile.Sweeper) {
	r.RegisterWorkflowWithOptions(workflows.ReconcileSweep, workflow.RegisterOptions{Name: workflows.SweepWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.ExpiryRepairStart, workflow.RegisterOptions{Name: workflows.ExpiryWorkflowName})
	r.RegisterActivityWithOptions(s.ReconcilePage, activity.RegisterOptions{Name: workflows.ActivityReconcilePage})
	r.RegisterActivityWithOptions(s.StartExpiryRepair, activity.RegisterOptions{Name: workflows.ActivityStartExpiryRepair})
}

// EnsureSweepSchedules creates or updates each plan's Schedule
// (relink-reconcile-<provider>) to sweep every RELINK_RECONCILE_INTERVAL;
// with sweeps off it is created paused (an operator's sweep still runs
// through it). Those of registered providers not swept are paused. Safe to
// run on every start and from several processes.
func EnsureSweepSchedules(ctx context.Context, tc client.Client, c config.Config, plans []SweepPlan, logger *slog.Logger) error {
	interval, on := c.Reconcile.SweepInterval()
	if !on {
		interval = 6 * time.Hour // kept for when sweeps are turned on
	}
	planned := map[string]SweepPlan{}
	for _, p := range plans {
		planned[p.Provider] = p
	}
	var errs []error
	for _, reg := range providers.All {
		id := workflows.ScheduleID(reg.Name)
		plan, ok := planned[reg.Name]
		if !ok {
			if err := pauseSchedule(ctx, tc, id, "not swept: disabled, or no candidate source"); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := upsertSchedule(ctx, tc, c, plan, interval, !on); err != nil {
			errs = append(errs, fmt.Errorf("schedule %s: %w", id, err))
			continue
		}
		logger.Info("reconciliation sweep scheduled", "provider", reg.Name, "every", interval, "paused", !on, "source", plan.Source, "rate", plan.Rate)
	}
	return errors.Join(errs...)
}

func sweepSchedule(c config.Config, plan SweepPlan, interval time.Duration) (client.ScheduleSpec, client.ScheduleWorkflowAction, client.SchedulePolicies) {
	spec := client.ScheduleSpec{
		Intervals: []client.ScheduleIntervalSpec{{Every: interval}},
		// Sweeps of many deployments and providers spread out rather than
		// all reading at the top of the hour.
		Jitter: min(interval/10, 30*time.Minute),
	}
	action := client.ScheduleWorkflowAction{
		ID:        workflows.ScheduleID(plan.Provider),
		Workflow:  workflows.SweepWorkflowName,
		Args:      []any{plan.Input()},
		TaskQueue: c.Temporal.TaskQueue,
		// A sweep that cannot finish (an inventory down for days, cursors
		// that go round in circles) would make every later one skip: it
		// times out instead, and shows so in GET /v1/reconcile.
		WorkflowExecutionTimeout: max(4*interval, 24*time.Hour),
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SearchAttrProvider.ValueSet(plan.Provider),
		),
		// Its own workflow tasks wait behind users' work, as its pages do.
		Priority: workflows.SweepPriority(plan.Provider),
	}
	return spec, action, client.SchedulePolicies{
		// A sweep still running when the next is due makes it skip: the
		// running one will see what the next would.
		Overlap: enums.SCHEDULE_OVERLAP_POLICY_SKIP,
		// A sweep missed while Temporal was down runs when it is back, if
		// it is less than one interval late.
		CatchupWindow: interval,
	}
}

// pausedNote says why a Schedule is paused when sweeps are off.
const pausedNote = "RELINK_RECONCILE_INTERVAL=off: no scheduled sweeps; `relink reconcile` still sweeps through this schedule"

func upsertSchedule(ctx context.Context, tc client.Client, c config.Config, plan SweepPlan, interval time.Duration, paused bool) error {
	spec, action, policy := sweepSchedule(c, plan, interval)
	id := workflows.ScheduleID(plan.Provider)
	opts := client.ScheduleOptions{
		ID: id, Spec: spec, Action: &action,
		Overlap: policy.Overlap, CatchupWindow: policy.CatchupWindow, Paused: paused,
	}
	if paused {
		opts.Note = pausedNote
	}
	_, err := tc.ScheduleClient().Create(ctx, opts)
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		return err
	}
	return tc.ScheduleClient().GetHandle(ctx, id).Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			s := in.Description.Schedule
			s.Spec = &spec
			s.Action = &action
			s.Policy.Overlap = policy.Overlap
			s.Policy.CatchupWindow = policy.CatchupWindow
			switch {
			case paused && !s.State.Paused:
				s.State.Paused, s.State.Note = true, pausedNote
			case !paused && s.State.Paused:
				s.State.Paused, s.State.Note = false, "resumed: swept every "+interval.String()
			}
			return &client.ScheduleUpdate{Schedule: &s}, nil
		},
	})
}

// pauseSchedule pauses the schedule id if it exists.
func pauseSchedule(ctx context.Context, tc client.Client, id, note string) error {
	h := tc.ScheduleClient().GetHandle(ctx, id)
	desc, err := h.Describe(ctx)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("schedule %s: %w", id, err)
	}
	if desc.Schedule.State.Paused {
		return nil
	}
	return h.Pause(ctx, client.SchedulePauseOptions{Note: note})
}
