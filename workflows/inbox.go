package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/activities/aggregator"
)

// inboxItem is one message a handler recorded for the main path. Exactly
// one field is set.
type inboxItem struct {
	event      *ProviderEvent
	cancel     *CancelRequest
	request    *RepairRequest
	completion *ReconnectCompleted
	exit       *ReconnectExited
}

// receiveMessages moves the message signals buffered in their channel into
// the inbox. Only the main path receives, and no goroutine ever blocks on
// the channel: the SDK hands a signal straight to a blocked receiver, which
// runs only after the main path in the same workflow task, so a signal that
// arrived as the run decided to continue as new (or to end) would be lost.
// Unread, it waits in the channel, where hasMessages sees it.
func (r *repair) receiveMessages(ctx workflow.Context) {
	var raw json.RawMessage
	for r.messages.ReceiveAsync(&raw) {
		r.record(ctx, raw)
		raw = nil
	}
}

// hasMessages reports messages waiting to be applied: recorded by an
// update handler, or still in the signal channel. Every wait of the main
// path wakes on it.
func (r *repair) hasMessages() bool {
	return len(r.inbox) > 0 || r.messages.Len() > 0
}

// record decodes a message signal into the inbox. A malformed payload is
// logged, counted and dropped: it must not wedge the workflow.
func (r *repair) record(ctx workflow.Context, raw json.RawMessage) {
	var m Message
	err := decodeInto(raw, &m)
	item := inboxItem{event: m.Event, cancel: m.Cancel, request: m.RepairRequest}
	if err == nil && item == (inboxItem{}) {
		err = errors.New("empty message")
	}
	if err != nil {
		r.ignore(ctx, "malformed "+SignalMessage+" signal: "+err.Error())
		return
	}
	r.inbox = append(r.inbox, item)
}

func decodeInto(raw json.RawMessage, v any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return json.Unmarshal(raw, v)
}

// drain applies the inbox in arrival order. Only the main path calls it.
func (r *repair) drain(ctx workflow.Context) {
	for r.receiveMessages(ctx); len(r.inbox) > 0; r.receiveMessages(ctx) {
		item := r.inbox[0]
		r.inbox = r.inbox[1:]
		switch {
		case item.event != nil:
			r.applyEvent(ctx, *item.event)
		case item.cancel != nil:
			r.applyCancel(ctx, *item.cancel)
		case item.request != nil:
			r.applyRepairRequest(ctx, *item.request)
		case item.completion != nil:
			r.applyCompletion(ctx, *item.completion)
		case item.exit != nil:
			r.applyExit(ctx, *item.exit)
		}
	}
}

// ignore counts and logs something that arrived and changed nothing.
func (r *repair) ignore(ctx workflow.Context, why string) {
	r.State.IgnoredEvents++
	r.State.LastIgnored = why
	workflow.GetLogger(ctx).Info("message ignored", "why", why,
		"provider", r.in.Provider, "connectionId", r.in.ConnectionID, "status", r.State.Status)
}

func (r *repair) applyCancel(ctx workflow.Context, c CancelRequest) {
	if r.State.Status.Terminal() {
		r.ignore(ctx, "cancel after the repair ended")
		return
	}
	reason := "canceled"
	if c.RequestedBy != "" {
		reason += " by " + c.RequestedBy
	}
	if c.Reason != "" {
		reason += ": " + c.Reason
	}
	r.end(ctx, StatusCanceled, ReasonCanceled, reason)
}

// applyRepairRequest joins a manual start to this repair, or, if this run
// has ended and is only finishing its notifications, starts the next run
// when it closes.
func (r *repair) applyRepairRequest(ctx workflow.Context, req RepairRequest) {
	if r.State.Status.Terminal() {
		r.queueNextBreak(ProviderEvent{Kind: aggregator.EventKindRepairable, Reason: req.Reason, At: req.At}, req.Options)
		return
	}
	workflow.GetLogger(ctx).Info("repair request joined the open repair", "reason", req.Reason,
		"provider", r.in.Provider, "connectionId", r.in.ConnectionID)
}

func (r *repair) applyCompletion(ctx workflow.Context, c ReconnectCompleted) {
	if r.State.Status != StatusAwaitingUser || r.completion != nil {
		// Validated when it arrived, but a message before it in the inbox
		// moved the repair on.
		r.ignore(ctx, fmt.Sprintf("completion while %s", r.State.Status))
		return
	}
	r.completion = &c
	r.ClosedTokens = keepLast(append(r.ClosedTokens, c.ConnectorToken), tokensKept)
}

func (r *repair) applyExit(ctx workflow.Context, e ReconnectExited) {
	r.State.Exits++
	r.State.LastExit = &ExitRecord{ReconnectExited: e, ReceivedAt: workflow.Now(ctx)}
	r.describe(ctx)
}

// rememberEvent records a provider event id applied now; it reports
// false for one already applied. Ids are kept for eventDedupeWindow, as
// long as a provider redelivers an event (Meld 3 days, Plaid 24 hours),
// across continue-as-new and, for the gateway, after the repair closed;
// at most eventIDsKept of them, the oldest dropped first, so a flood of
// distinct events cannot grow the state without bound.
func (r *repair) rememberEvent(now time.Time, id string) bool {
	if slices.Contains(r.State.EventIDs, id) {
		return false
	}
	// A run carried from a build that kept no times: its ids count from now.
	for len(r.EventAppliedAt) < len(r.State.EventIDs) {
		r.EventAppliedAt = append(r.EventAppliedAt, now)
	}
	r.EventAppliedAt = r.EventAppliedAt[:len(r.State.EventIDs)]
	drop := 0
	for drop < len(r.EventAppliedAt) && (now.Sub(r.EventAppliedAt[drop]) > eventDedupeWindow || len(r.State.EventIDs)-drop >= eventIDsKept) {
		drop++
	}
	r.State.EventIDs = append(r.State.EventIDs[drop:], id)
	r.EventAppliedAt = append(r.EventAppliedAt[drop:], now)
	return true
}

// applyEvent applies a webhook event once, ignoring stale ones.
func (r *repair) applyEvent(ctx workflow.Context, ev ProviderEvent) {
	if ev.EventID != "" && !r.rememberEvent(workflow.Now(ctx), ev.EventID) {
		r.State.DuplicateEvents++
		workflow.GetLogger(ctx).Info("duplicate provider event ignored", "eventId", ev.EventID,
			"provider", r.in.Provider, "connectionId", r.in.ConnectionID)
		return
	}
	if !ev.At.IsZero() && !r.in.DetectedAt.IsZero() && ev.At.Before(r.in.DetectedAt) {
		r.ignore(ctx, fmt.Sprintf("stale %s event %s, dated before the break", ev.Kind, ev.EventID))
		return
	}
	if ev.ProviderStatus != "" {
		r.State.LastProviderStatus = ev.ProviderStatus
	}
	if r.State.Status.Terminal() {
		// A break (or a proactive trigger) reported after this repair ended
		// is a new one; the rest has nothing left to act on.
		if ev.Kind == aggregator.EventKindRepairable || ev.Kind == aggregator.EventKindProactive {
			r.queueNextBreak(ev, nil)
		} else {
			r.ignore(ctx, fmt.Sprintf("%s event %s after the repair ended", ev.Kind, ev.EventID))
		}
		return
	}
	reconnecting := r.State.Status == StatusCompleting || r.State.Status == StatusVerifying
	switch ev.Kind {
	case aggregator.EventKindSynced:
		r.end(ctx, StatusRepaired, ReasonConfirmedByWebhook, "confirmed by the provider's webhook")
	case aggregator.EventKindRepairedElsewhere:
		// After the user's reconnect it is the confirmation (Plaid's
		// LOGIN_REPAIRED); before it, the user fixed it some other way.
		if reconnecting {
			r.end(ctx, StatusRepaired, ReasonConfirmedByWebhook, "confirmed by the provider's webhook")
		} else {
			r.end(ctx, StatusRepaired, ReasonRepairedElsewhere, "the provider reports the connection repaired outside Relink")
		}
	case aggregator.EventKindProactive:
		// Joins the open repair; nothing is broken.
	case aggregator.EventKindRepairable:
		// The connection is broken now, whatever started the repair. While
		// waiting for the user this is the same break again. After the
		// user's reconnect it may mean the reconnect did not take: the
		// provider's status decides, so a retried webhook of the old break
		// cannot cost the user an attempt.
		r.State.Proactive = false
		switch {
		case !reconnecting:
		case !ev.At.IsZero() && ev.At.Before(r.CompletingAt):
			r.ignore(ctx, "repairable event "+ev.EventID+" dated before the user's reconnect")
		default:
			r.verifyNow = true
		}
	case aggregator.EventKindErrored:
		r.State.LastError = "provider error" + suffix(ev.Reason)
		r.describe(ctx)
	case aggregator.EventKindDisconnected:
		r.end(ctx, StatusUnrepairable, ReasonDisconnected, "the connection was disconnected at the provider")
	case aggregator.EventKindDeleted:
		r.end(ctx, StatusCanceled, ReasonConnectionDeleted, "the connection was deleted")
	default:
		r.ignore(ctx, fmt.Sprintf("unknown provider event kind %q", ev.Kind))
	}
}

// queueNextBreak keeps the trigger for the run that follows this one, and
// the options it starts with (nil: this repair's); a real break outranks a
// proactive one.
func (r *repair) queueNextBreak(ev ProviderEvent, opts *RepairOptions) {
	if r.nextBreak == nil || (r.nextBreak.Kind == aggregator.EventKindProactive && ev.Kind != aggregator.EventKindProactive) {
		r.nextBreak, r.nextOptions = &ev, opts
	}
}

func suffix(reason string) string {
	if reason == "" {
		return ""
	}
	return " (" + reason + ")"
}
