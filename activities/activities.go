// Package activities holds Relink's Temporal activities: the calls to the
// repair's provider and the app's notifications.
//
// The workflow never talks to a provider directly: it runs the activities in
// this package, which look the repair's provider up in a Registry and call it
// through the aggregator.Provider interface (package aggregator, the adapters'
// contract). An adapter's aggregator.Error leaves the activity as a
// non-retryable application error of the same type, so the workflow can
// tell "try again" from "this connection cannot be repaired".
package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/metrics"
	"github.com/relink-dev/relink/recovery"
)

// Activities are the repair workflow's side effects. Register a pointer to
// it with the worker; the workflow refers to its methods by value so names
// stay checked by the compiler.
type Activities struct {
	Providers *aggregator.Registry
	Notifier  Notifier
	// ReconnectLinks, if set, gives action_required and reminder events
	// the repair's hosted reconnect page.
	ReconnectLinks ReconnectLinks
	// Recovery, if set, hears of every provider call and event that
	// failed in a way that may pass, and resumes them when the provider or
	// the app answers again (package recovery).
	Recovery *recovery.Watcher
}

// DependencyApp names the app's endpoint to the recovery watcher.
const DependencyApp = "app"

// providerAnswered tells the recovery watcher how a call to p went: it
// answered (a result, or a final word such as not found), or it failed in
// a way that may pass, and a status read of ref will tell when it is back.
func (a *Activities) providerAnswered(ctx context.Context, p aggregator.Provider, ref aggregator.ConnectionRef, err error) {
	dep := "provider:" + p.Name()
	answered := func(err error) bool {
		return err == nil || aggregator.Named(err) != nil || errors.Is(err, aggregator.ErrAnswered)
	}
	if answered(err) {
		a.Recovery.Answered(dep)
		return
	}
	a.Recovery.Failed(ctx, dep, func(ctx context.Context) error {
		if _, err := p.ConnectionStatus(ctx, ref); !answered(err) {
			return err
		}
		return nil // it answered
	})
}

// ReconnectLinks mints the URL of a repair's hosted reconnect page
// (package gateway serves it); repair is the run id that began it.
type ReconnectLinks interface {
	// URL's link works until the repair's window ends (repairExpiresAt),
	// or sooner as configured.
	URL(provider, connectionID, repair string, repairExpiresAt time.Time) (string, time.Time, error)
}

// InitializeRequest asks the repair's provider for an update-mode session.
type InitializeRequest struct {
	aggregator.ConnectionRef
}

// Initialize calls the provider's connector initialize in update mode.
func (a *Activities) Initialize(ctx context.Context, req InitializeRequest) (_ aggregator.Session, err error) {
	defer func() { err = applicationError(err) }()
	p, err := a.Providers.Lookup(req.Provider)
	if err != nil {
		return aggregator.Session{}, err
	}
	if cp := newAttemptRecord(ctx); cp != nil {
		ctx = aggregator.WithCheckpoint(ctx, cp)
	}
	s, err := p.Initialize(ctx, req.ConnectionRef)
	if errors.Is(err, aggregator.ErrCheckpointNeeded) {
		// Not the provider's failure: the step waits for the activity.
		activity.GetLogger(ctx).Info("initialize left to the activity: it needs a durable checkpoint", "provider", req.Provider,
			"connectionId", req.ConnectionID)
		return aggregator.Session{}, err
	}
	a.providerAnswered(ctx, p, req.ConnectionRef, err)
	if err != nil {
		activity.GetLogger(ctx).Warn("initialize failed", "provider", req.Provider,
			"connectionId", req.ConnectionID, "errorType", aggregator.TypeOf(err), "error", err)
		return aggregator.Session{}, err
	}
	activity.GetLogger(ctx).Info("initialized", "provider", req.Provider,
		"connectionId", req.ConnectionID, "connectorStatus", s.ConnectorStatus, "expiresAt", s.ExpiresAt)
	return s, nil
}

// ProbeRequest is a repair's first initialize, with the event that asks
// the app to bring the user back should the provider need them.
type ProbeRequest struct {
	InitializeRequest
	// Ask is sent, once, if initialize answers ACTION_REQUIRED.
	Ask Event `json:"ask"`
}

// ProbeResult is initialize's session, and whether Ask reached the app.
type ProbeResult struct {
	Session aggregator.Session `json:"session"`
	Asked   bool               `json:"asked,omitempty"`
}

// probeReturnMargin is the part of a probe's time kept for returning the
// session after the ask.
const probeReturnMargin = 300 * time.Millisecond

// Probe is a repair's first initialize and, when the user is needed, one
// attempt at telling the app so: the workflow runs it as one local
// activity, so the usual repair's first step costs one billable action
// rather than two. An ask the app did not take is left to the workflow,
// which delivers it with retries.
func (a *Activities) Probe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	s, err := a.Initialize(ctx, req.InitializeRequest)
	if err != nil || s.ConnectorStatus != aggregator.ConnectorActionRequired {
		return ProbeResult{Session: s}, err
	}
	// A slow app must not cost the session: the ask gets what is left of
	// the attempt, less a margin to return the session in.
	askCtx := ctx
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		askCtx, cancel = context.WithDeadline(ctx, deadline.Add(-probeReturnMargin))
		defer cancel()
	}
	if err := a.Notify(askCtx, req.Ask); err != nil {
		activity.GetLogger(ctx).Warn("ask not delivered with the probe; the repair retries it", "provider", req.Provider,
			"connectionId", req.ConnectionID, "eventId", req.Ask.ID, "error", err)
		return ProbeResult{Session: s}, nil
	}
	return ProbeResult{Session: s, Asked: true}, nil
}

// FinishReconnect reports the widget's success to the provider (close, for
// providers that have that step) and reads the connection's status
// straight after, which often confirms the repair at once.
//
// Close must not count against the user when it already worked: a worker
// that dies mid-call leaves the provider with the close applied and
// Temporal with a timed-out attempt, and the provider refuses a second
// close of a single-use session. So a retried close (a later attempt, one
// after a failed attempt whose count an operator reset, or Resumed) first asks for
// the connection's status, and a refused close of a connection that is
// syncing or healthy is a success.
func (a *Activities) FinishReconnect(ctx context.Context, req aggregator.CloseRequest) (_ aggregator.ConnectionStatus, err error) {
	defer func() { err = applicationError(err) }()
	p, err := a.Providers.Lookup(req.Provider)
	if err != nil {
		return aggregator.ConnectionStatus{}, err
	}
	record := newAttemptRecord(ctx)
	if record != nil {
		ctx = aggregator.WithCheckpoint(ctx, record)
	}
	defer func() {
		a.providerAnswered(ctx, p, req.ConnectionRef, err)
		if err != nil && aggregator.Named(err) == nil && record != nil {
			// Retried, this attempt counts as an earlier one even if the
			// attempt count starts over (an operator's activity reset).
			record.markAttempted()
		}
	}()
	log := activity.GetLogger(ctx)
	if req.Resumed || activity.GetInfo(ctx).Attempt > 1 || (record != nil && record.attempted()) {
		st, err := tookEffect(ctx, p, req.ConnectionRef)
		switch {
		case err != nil:
			// Whether the earlier close went through is unknown, and
			// closing again may be refused: ask again later instead.
			return aggregator.ConnectionStatus{}, err
		case st.Health == aggregator.HealthHealthy || st.Health == aggregator.HealthSyncing:
			log.Info("close of an earlier attempt took effect; not closing again", "provider", req.Provider,
				"connectionId", req.ConnectionID, "health", st.Health, "providerStatus", st.ProviderStatus)
			return st, nil
		}
	}
	if err := p.Close(ctx, req); err != nil {
		if aggregator.TypeOf(err) != aggregator.ErrTypeReconnectRejected {
			log.Warn("close failed", "provider", req.Provider,
				"connectionId", req.ConnectionID, "errorType", aggregator.TypeOf(err), "error", err)
			return aggregator.ConnectionStatus{}, err
		}
		// Refused: a failed attempt only if the connection is still broken.
		st, serr := tookEffect(ctx, p, req.ConnectionRef)
		switch {
		case serr != nil:
			return aggregator.ConnectionStatus{}, serr
		case st.Health == aggregator.HealthHealthy || st.Health == aggregator.HealthSyncing:
			log.Info("close refused but the connection is repaired", "provider", req.Provider,
				"connectionId", req.ConnectionID, "health", st.Health, "error", err)
			return st, nil
		}
		log.Warn("close rejected", "provider", req.Provider, "connectionId", req.ConnectionID, "error", err)
		return aggregator.ConnectionStatus{}, err
	}
	st, err := p.ConnectionStatus(ctx, req.ConnectionRef)
	if err != nil {
		// The close is done; retrying would close again. Verification reads
		// the status later.
		log.Warn("status after close unavailable", "provider", req.Provider, "connectionId", req.ConnectionID, "error", err)
		return aggregator.ConnectionStatus{}, nil
	}
	log.Info("closed", "provider", req.Provider, "connectionId", req.ConnectionID,
		"health", st.Health, "providerStatus", st.ProviderStatus)
	return st, nil
}

// attemptRecord is what an attempt of a provider activity leaves in its
// heartbeat details for the next attempt, which Temporal hands to it on
// whichever worker runs it: FinishReconnect's mark that an attempt ran,
// and the adapter's checkpoint (aggregator.Checkpoint). They are two
// values, the mark ("attempted" or "") and the checkpoint's bytes, so
// details of the one value "attempted" (recorded before the checkpoint
// existed) still read. Heartbeat details go through the data converter:
// with RELINK_PAYLOAD_KEYS, they are encrypted like every payload.
//
// An attempt's first heartbeat is sent at once; later ones within the
// SDK's throttle interval are sent at its end, or when the attempt fails.
type attemptRecord struct {
	ctx  context.Context
	mu   sync.Mutex
	mark string
	data []byte
}

const attemptedMark = "attempted"

// newAttemptRecord reads what earlier attempts left; nil outside a
// regular activity (a local activity has no heartbeat: its fallback is
// a new activity).
func newAttemptRecord(ctx context.Context) *attemptRecord {
	if !activity.IsActivity(ctx) || activity.GetInfo(ctx).IsLocalActivity {
		return nil
	}
	r := &attemptRecord{ctx: ctx}
	if activity.HasHeartbeatDetails(ctx) {
		var data []byte
		if err := activity.GetHeartbeatDetails(ctx, &r.mark, &data); err == nil {
			r.data = data
		} else {
			r.mark = attemptedMark // details of an attempt, unreadable
		}
		if r.mark == "" && r.data == nil {
			r.mark = attemptedMark
		}
	}
	return r
}

// attempted: an earlier attempt left a record.
func (r *attemptRecord) attempted() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mark != "" || r.data != nil
}

// Load implements aggregator.Checkpoint.
func (r *attemptRecord) Load() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.data...)
}

// Save implements aggregator.Checkpoint: the whole record goes in the
// heartbeat, so the mark is kept.
func (r *attemptRecord) Save(data []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.data = append([]byte(nil), data...)
	activity.RecordHeartbeat(r.ctx, r.mark, r.data)
	return nil
}

// markAttempted records that this attempt ran, with the checkpoint.
func (r *attemptRecord) markAttempted() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mark = attemptedMark
	activity.RecordHeartbeat(r.ctx, r.mark, r.data)
}

// tookEffect reads the status that tells whether a reconnect went through:
// syncing or healthy, which a broken connection is not until then. A
// status that cannot be read is a retryable error (named errors, such as
// not found, stay as they are).
func tookEffect(ctx context.Context, p aggregator.Provider, ref aggregator.ConnectionRef) (aggregator.ConnectionStatus, error) {
	st, err := p.ConnectionStatus(ctx, ref)
	if err != nil && aggregator.TypeOf(err) == "" {
		return aggregator.ConnectionStatus{}, fmt.Errorf("read the status before deciding on close: %w", err)
	}
	return st, err
}

// ConnectionStatus reads the connection's status from the provider.
func (a *Activities) ConnectionStatus(ctx context.Context, conn aggregator.ConnectionRef) (_ aggregator.ConnectionStatus, err error) {
	defer func() { err = applicationError(err) }()
	p, err := a.Providers.Lookup(conn.Provider)
	if err != nil {
		return aggregator.ConnectionStatus{}, err
	}
	st, err := p.ConnectionStatus(ctx, conn)
	a.providerAnswered(ctx, p, conn, err)
	if err != nil {
		return aggregator.ConnectionStatus{}, err
	}
	activity.GetLogger(ctx).Info("connection status", "provider", conn.Provider,
		"connectionId", conn.ConnectionID, "health", st.Health, "providerStatus", st.ProviderStatus)
	return st, nil
}

// Notify delivers one event to the app. An attempt that delivered it
// records so at once (a heartbeat, which the server keeps for the next
// attempt), so a worker that dies before Temporal hears of the delivery
// does not send the event again: a retried attempt finds the record and
// succeeds without a call.
func (a *Activities) Notify(ctx context.Context, ev Event) error {
	if deliveredBefore(ctx, ev) {
		activity.GetLogger(ctx).Info("event delivered by an earlier attempt; not sent again", "eventId", ev.ID,
			"provider", ev.Repair.Provider, "connectionId", ev.Repair.ConnectionID)
		return nil
	}
	if a.ReconnectLinks != nil && (ev.Type == EventActionRequired || ev.Type == EventReminder) {
		url, _, err := a.ReconnectLinks.URL(ev.Repair.Provider, ev.Repair.ConnectionID, ev.Repair.RunID, ev.Repair.ExpiresAt)
		if err != nil {
			// The event matters more than its link: it goes without one.
			activity.GetLogger(ctx).Error("reconnect link not minted", "provider", ev.Repair.Provider,
				"connectionId", ev.Repair.ConnectionID, "error", err)
		}
		ev.Repair.ReconnectURL = url
	}
	err := a.Notifier.Notify(ctx, ev)
	a.appAnswered(ctx, err)
	result := "delivered"
	if err != nil {
		result = "failed" // this attempt; Temporal retries it
	} else if activity.IsActivity(ctx) && !activity.GetInfo(ctx).IsLocalActivity {
		// The first heartbeat of an attempt is sent at once, not batched.
		activity.RecordHeartbeat(ctx, delivered{EventID: ev.ID})
	}
	activity.GetMetricsHandler(ctx).WithTags(map[string]string{"type": ev.Type, "result": result}).
		Counter(metrics.Notifications).Inc(1)
	return err
}

// appAnswered tells the recovery watcher how a delivery went: the app
// answered (a 2xx, or a refusal such as 400 or 401: up, and refusing), or
// it is down (no answer, 408, 429, 5xx). An event that cannot be sent as
// it is (non-retryable) says nothing of the app.
func (a *Activities) appAnswered(ctx context.Context, err error) {
	var appErr *temporal.ApplicationError
	var answered *AppAnswered
	switch pinger, ok := a.Notifier.(Pinger); {
	case !ok || (errors.As(err, &appErr) && appErr.NonRetryable()):
	case err == nil || (errors.As(err, &answered) && !appDown(answered.Status)):
		a.Recovery.Answered(DependencyApp)
	default:
		a.Recovery.Failed(ctx, DependencyApp, pinger.Ping)
	}
}

// delivered is the heartbeat of a Notify attempt that delivered its event.
type delivered struct {
	EventID string `json:"eventId"`
}

// deliveredBefore reports that an earlier attempt of this activity
// delivered ev (a local attempt keeps no record: its fallback activity is
// a new activity).
func deliveredBefore(ctx context.Context, ev Event) bool {
	if !activity.IsActivity(ctx) || activity.GetInfo(ctx).IsLocalActivity || !activity.HasHeartbeatDetails(ctx) {
		return false
	}
	var d delivered
	return activity.GetHeartbeatDetails(ctx, &d) == nil && d.EventID == ev.ID
}

// applicationError is what each activity that calls a provider returns
// for err: an aggregator.Error anywhere in err's chain (bare, or wrapped
// with fmt.Errorf("…: %w", err) by an adapter or by this package) becomes
// the non-retryable Temporal application error of its type, which the
// workflow tells apart by ErrorType; its message is err's whole message,
// wrapping context included. Any other error is retried with the
// activity's backoff. (Temporal reads only the error it is handed, not
// what it wraps: unconverted, a wrapped NotFound would be retried for the
// whole repair window.)
func applicationError(err error) error {
	if pe := aggregator.Named(err); pe != nil {
		return temporal.NewNonRetryableApplicationError(pe.Message, pe.Type, nil)
	}
	return err
}

// ErrorType returns the type of the Temporal application error in err's
// chain ("" if it has none): the aggregator.Error type an activity failed
// with, or the type of an update's refusal.
func ErrorType(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Type()
	}
	return ""
}

// Clock tells the time; tests pass a fixed one.
type Clock func() time.Time
