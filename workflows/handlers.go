package workflows

import (
	"encoding/json"
	"fmt"
	"slices"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/activities"
)

// Error types the reconnect update returns; the gateway maps them to HTTP.
const (
	// ErrTypeRepairClosed: the repair has a terminal status (HTTP 409).
	ErrTypeRepairClosed = "RepairClosed"
	// ErrTypeProviderUnavailable: a new session could not be minted right
	// now; the repair keeps waiting and the frontend may retry (HTTP 503).
	ErrTypeProviderUnavailable = "ProviderUnavailable"
)

func (r *repair) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandlerWithOptions(ctx, QueryState, func() (RepairState, error) {
		return r.st, nil
	}, workflow.QueryHandlerOptions{Description: "The whole repair state"}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateReconnect, r.onReconnect, workflow.UpdateHandlerOptions{
		Validator:   r.validateReconnect,
		Description: "Start or resume the user's reconnect; returns the widget session",
	}); err != nil {
		return err
	}
	// Signal receivers outlive a workflow cancel, so the run can still
	// record what arrives while it winds down.
	listenCtx, _ := workflow.NewDisconnectedContext(ctx)
	listen(listenCtx, SignalReconnectCompleted, r.onCompleted)
	listen(listenCtx, SignalReconnectExited, r.onExited)
	listen(listenCtx, SignalProviderEvent, r.onProviderEvent)
	listen(listenCtx, SignalCancel, r.onCancel)
	listen(listenCtx, SignalRepairRequested, r.onRepairRequested)
	return nil
}

// listen applies every signal of one name, in arrival order.
func listen[T any](ctx workflow.Context, name string, apply func(workflow.Context, T)) {
	ch := workflow.GetSignalChannel(ctx, name)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var raw json.RawMessage
			ch.Receive(ctx, &raw)
			if v, ok := decode[T](ctx, name, raw); ok {
				apply(ctx, v)
			}
		}
	})
}

func (r *repair) validateReconnect(ctx workflow.Context, _ ReconnectRequest) error {
	if r.st.Status.Terminal() {
		return repairClosedError(r.st.Status)
	}
	return nil
}

func repairClosedError(s Status) error {
	return temporal.NewApplicationError(fmt.Sprintf("the repair is %s", s), ErrTypeRepairClosed)
}

// onReconnect answers with a session the user can use now: the current one
// while it is valid, else one the main path mints for it.
func (r *repair) onReconnect(ctx workflow.Context, req ReconnectRequest) (ReconnectResult, error) {
	// While the probe runs there is nothing to hand out yet.
	if err := workflow.Await(ctx, func() bool { return r.st.Status != StatusPending }); err != nil {
		return ReconnectResult{}, err
	}
	force := req.ForceNewSession
	for {
		switch r.st.Status {
		case StatusCompleting, StatusVerifying:
			// The user already did their part: never send them back.
			return ReconnectResult{Status: r.st.Status, ConnectorStatus: activities.ConnectorContinue}, nil
		case StatusAwaitingUser:
			if !force && r.sessionUsable(ctx) {
				return r.sessionResult(), nil
			}
			force = false
			round := r.refreshes
			// Join a refresh already asked for or running: its session is
			// as fresh as a new one would be.
			if !r.refreshing {
				r.refreshRequested = true
			}
			if err := workflow.Await(ctx, func() bool {
				return r.refreshes != round || r.st.Status != StatusAwaitingUser
			}); err != nil {
				return ReconnectResult{}, err
			}
			if r.st.Status == StatusAwaitingUser {
				if r.refreshErr != "" {
					return ReconnectResult{}, temporal.NewApplicationError(r.refreshErr, ErrTypeProviderUnavailable)
				}
				return r.sessionResult(), nil
			}
		default:
			return ReconnectResult{}, repairClosedError(r.st.Status)
		}
	}
}

func (r *repair) sessionResult() ReconnectResult {
	s := r.session
	return ReconnectResult{Status: r.st.Status, ConnectorStatus: activities.ConnectorActionRequired, Session: &s}
}

// sessionUsable: issued, not yet closed, and not about to expire.
func (r *repair) sessionUsable(ctx workflow.Context) bool {
	s := r.session
	if s.ConnectorToken == "" && s.LinkToken == "" && s.WidgetURL == "" {
		return false
	}
	if slices.Contains(r.closedTokens, s.ConnectorToken) {
		return false
	}
	return s.ExpiresAt.IsZero() || workflow.Now(ctx).Add(sessionRefreshMargin).Before(s.ExpiresAt)
}

// onCompleted queues close for a session, once per session however often
// the widget's success is reported.
func (r *repair) onCompleted(ctx workflow.Context, c ReconnectCompleted) {
	log := workflow.GetLogger(ctx)
	if c.ConnectorToken == "" {
		c.ConnectorToken = r.session.ConnectorToken
	}
	switch {
	case r.st.Status != StatusAwaitingUser:
		log.Info("reconnect-completed ignored", "status", r.st.Status)
	case r.completion != nil || slices.Contains(r.closedTokens, c.ConnectorToken):
		log.Info("duplicate reconnect-completed ignored")
	case c.ConnectorToken == "":
		log.Warn("reconnect-completed without a session ignored; call reconnect first")
	case !slices.Contains(r.issuedTokens, c.ConnectorToken):
		// Only this repair's sessions are closed, so a stray token cannot
		// cost the user an attempt.
		log.Warn("reconnect-completed for a session this repair did not issue ignored")
	default:
		r.completion = &c
	}
}

func (r *repair) onExited(ctx workflow.Context, e ReconnectExited) {
	r.st.Exits++
	r.st.LastExit = &ExitRecord{ReconnectExited: e, ReceivedAt: workflow.Now(ctx)}
	r.describe(ctx)
}

func (r *repair) onCancel(ctx workflow.Context, c CancelRequest) {
	reason := "canceled"
	if c.RequestedBy != "" {
		reason += " by " + c.RequestedBy
	}
	if c.Reason != "" {
		reason += ": " + c.Reason
	}
	r.requestOutcome(StatusCanceled, reason)
}

// onRepairRequested joins a manual start to this repair, or, if this run
// has already ended and is only finishing its notifications, starts the
// next run when it closes.
func (r *repair) onRepairRequested(ctx workflow.Context, req RepairRequest) {
	if r.st.Status.Terminal() && r.nextBreak == nil {
		r.nextBreak = &ProviderEvent{Kind: activities.EventKindRepairable, Reason: req.Reason, At: req.At}
		return
	}
	workflow.GetLogger(ctx).Info("repair request joined the open repair", "reason", req.Reason)
}

// onProviderEvent applies a webhook event once, ignoring stale ones.
func (r *repair) onProviderEvent(ctx workflow.Context, ev ProviderEvent) {
	log := workflow.GetLogger(ctx)
	if ev.EventID != "" {
		if slices.Contains(r.seenEvents, ev.EventID) {
			log.Info("duplicate provider event ignored", "eventId", ev.EventID)
			return
		}
		r.seenEvents = append(r.seenEvents, ev.EventID)
		if len(r.seenEvents) > seenEventsKept {
			r.seenEvents = r.seenEvents[1:]
		}
	}
	if !ev.At.IsZero() && !r.in.DetectedAt.IsZero() && ev.At.Before(r.in.DetectedAt) {
		log.Info("stale provider event ignored", "eventId", ev.EventID, "kind", ev.Kind, "at", ev.At)
		return
	}
	if ev.ProviderStatus != "" {
		r.st.LastProviderStatus = ev.ProviderStatus
	}
	if r.st.Status.Terminal() {
		// A break reported after this repair closed is a new break.
		if ev.Kind == activities.EventKindRepairable && r.nextBreak == nil &&
			(ev.At.IsZero() || !ev.At.Before(r.st.ClosedAt)) {
			r.nextBreak = &ev
		}
		return
	}
	reconnecting := r.st.Status == StatusCompleting || r.st.Status == StatusVerifying
	switch ev.Kind {
	case activities.EventKindSynced:
		r.requestOutcome(StatusRepaired, "confirmed by the provider's webhook")
	case activities.EventKindRepairedElsewhere:
		// After the user's reconnect it is the confirmation (Plaid's
		// LOGIN_REPAIRED); before it, the user fixed it some other way.
		if reconnecting {
			r.requestOutcome(StatusRepaired, "confirmed by the provider's webhook")
		} else {
			r.requestOutcome(StatusRepaired, "the provider reports the connection repaired outside Relink")
		}
	case activities.EventKindProactive:
		// Joins the open repair; nothing is broken.
	case activities.EventKindRepairable:
		// The connection is broken now, whatever started the repair. While
		// waiting for the user this is the same break again; after the
		// user's reconnect it means the reconnect did not take, unless it
		// is dated before the reconnect (the old break, redelivered).
		r.st.Proactive = false
		if reconnecting && (ev.At.IsZero() || !ev.At.Before(r.completingAt)) {
			r.failure = "the provider reports the connection broken again" + suffix(ev.Reason)
		}
	case activities.EventKindErrored:
		r.st.LastError = "provider error" + suffix(ev.Reason)
		r.describe(ctx)
	case activities.EventKindDisconnected:
		r.requestOutcome(StatusUnrepairable, "the connection was disconnected at the provider")
	case activities.EventKindDeleted:
		r.requestOutcome(StatusCanceled, "the connection was deleted")
	default:
		log.Warn("unknown provider event kind ignored", "kind", ev.Kind)
	}
}

func suffix(reason string) string {
	if reason == "" {
		return ""
	}
	return " (" + reason + ")"
}
