// Package workflows holds ConnectionRepair, the durable workflow that owns
// one broken connection from the provider's repairable webhook until it is
// REPAIRED, EXPIRED, UNREPAIRABLE or CANCELED.
//
// This file is the workflow's public surface: its name, every message name
// and every payload. The gateway and the CLI use nothing else to talk to it.
package workflows

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/aggregator"
)

// WorkflowName is the registered workflow type.
const WorkflowName = "ConnectionRepair"

// Message names.
const (
	// UpdateReconnect: the frontend asks to start or resume the reconnect;
	// answers with the widget session. Payload ReconnectRequest, result
	// ReconnectResult.
	UpdateReconnect = "reconnect"
	// UpdateComplete: the widget succeeded. Payload ReconnectCompleted,
	// result CompleteResult. Its validator refuses a completion the repair
	// cannot use (see the ErrType constants), so a refusal writes no history.
	UpdateComplete = "complete"
	// UpdateExit: the user left the widget or it failed. Payload
	// ReconnectExited.
	UpdateExit = "exit"
	// QueryReconnect tells the gateway how to answer a reconnect without
	// writing history: the session to hand out, or the update id to send
	// the reconnect update with. Argument ReconnectRequest, result
	// ReconnectOffer.
	QueryReconnect = "reconnect-offer"
	// SignalMessage carries every signal of a repair (webhook events,
	// cancels, manual starts) on one channel, so the repair applies them
	// in the order they arrived. Payload Message.
	SignalMessage = "message"
	// QueryState: the whole repair state. Result RepairState.
	QueryState = "state"
)

// WorkflowID is the repair's workflow id: one per provider and connection,
// so a second webhook for the same break finds the running repair.
func WorkflowID(provider, connectionID string) string {
	return "repair:" + provider + ":" + connectionID
}

// RepairInput starts a repair.
type RepairInput struct {
	Provider     string `json:"provider"`
	ConnectionID string `json:"connectionId"`
	ProfileID    string `json:"profileId,omitempty"`
	Institution  string `json:"institution,omitempty"`
	// Connector is the aggregator behind the provider, where known (Quiltt:
	// PLAID or MX).
	Connector string `json:"connector,omitempty"`
	// TriggerEventID is the webhook event that reported the break; a
	// redelivery of it is ignored.
	TriggerEventID string `json:"triggerEventId,omitempty"`
	// TriggerReason says why the repair started (event type, or "manual").
	TriggerReason string `json:"triggerReason,omitempty"`
	// DetectedAt is when the provider saw the break. Provider events older
	// than it are stale (a late "synced" from before the break) and ignored.
	DetectedAt time.Time `json:"detectedAt,omitzero"`
	// Proactive repairs start before anything broke (consent expiring soon,
	// new accounts available): the app should invite the user, not warn
	// them. A real break reported later makes the repair an ordinary one.
	Proactive bool          `json:"proactive,omitempty"`
	Options   RepairOptions `json:"options"`
	// Carry is the state a run hands to the next when it continues as new
	// to keep its history short; nil for a new repair.
	Carry *RepairCarry `json:"carry,omitempty"`
	// Undelivered are events of the previous repair still owed to the app
	// when a new break continued it as this run; this run delivers them.
	Undelivered []activities.Event `json:"undelivered,omitempty"`
	// AfterEnded marks a run that a new break continued from a repair
	// that had ended: Temporal hands it that repair's search attributes
	// (RelinkStatus says the outcome) and memo, which it replaces at once.
	AfterEnded bool `json:"afterEnded,omitempty"`
}

// MemoTrigger is the memo key of the provider event id that started a
// run: the gateway answers a redelivery of it without a signal.
const MemoTrigger = "relinkTrigger"

// trigger names what started the repair, for metrics: webhook, manual,
// proactive, or reconcile (a sweep found the break).
func (in RepairInput) trigger() string {
	switch {
	case in.Proactive:
		return "proactive"
	case in.TriggerReason == "manual" || strings.HasPrefix(in.TriggerReason, "manual:"):
		return "manual"
	case strings.HasPrefix(in.TriggerReason, "reconcile:"):
		return "reconcile"
	}
	return "webhook"
}

// reasonCode is why the repair started, in a word.
func (in RepairInput) reasonCode() ReasonCode {
	if t := in.trigger(); t == "webhook" || t == "reconcile" {
		return ReasonBrokenAtProvider
	}
	return ReasonRequested
}

// ReconnectRequest is the reconnect query's and update's argument.
type ReconnectRequest struct {
	// ForceNewSession mints a new session even if the current one is still
	// valid, for a widget that rejected its token.
	ForceNewSession bool `json:"forceNewSession,omitempty"`
	// At and Gateway are set by the gateway, never by its caller: its
	// clock when it asked, and which gateway process asked. A query sees
	// the workflow's clock as of its last task, which may be hours old,
	// so the gateway says what time it is; the repair learns from each
	// gateway's updates how far its clock runs ahead of Temporal's, and
	// corrects that gateway's queries by it.
	At      time.Time `json:"at,omitzero"`
	Gateway string    `json:"gateway,omitempty"`
}

// ReconnectResult tells the frontend what to do. With ConnectorStatus
// ACTION_REQUIRED it opens the widget with Session; with CONTINUE there is
// nothing for the user to do (repaired without them, or already finishing).
type ReconnectResult struct {
	Status          Status                     `json:"status"`
	ConnectorStatus aggregator.ConnectorStatus `json:"connectorStatus"`
	Session         *aggregator.Session        `json:"session,omitempty"`
}

// ReconnectOffer is the reconnect query's answer. Exactly one of Result,
// Closed, Unavailable and UpdateID is set.
type ReconnectOffer struct {
	// Result answers the caller now: a session still good to use, or
	// CONTINUE once the user has done their part.
	Result *ReconnectResult `json:"result,omitempty"`
	// Closed is the terminal status of a repair that has ended.
	Closed Status `json:"closed,omitempty"`
	// Unavailable says why no session can be had right now (the probe is
	// still running, the provider failed a moment ago); retry after
	// RetryAfter.
	Unavailable string        `json:"unavailable,omitempty"`
	RetryAfter  time.Duration `json:"retryAfter,omitempty"`
	// UpdateID: a new session is needed; send the reconnect update with
	// this id. Every caller that needs the same new session gets the same
	// id, so the server runs one update for all of them.
	UpdateID string `json:"updateId,omitempty"`
}

// Size limits of what a caller can make a repair record.
const (
	MaxCompletionMetadataBytes = 64 << 10
	MaxTokenBytes              = 4 << 10
	MaxExitFieldBytes          = 512
)

// CompleteResult is the complete update's answer.
type CompleteResult struct {
	// Status is the repair's status when the completion was recorded.
	Status Status `json:"status"`
}

// ReconnectCompleted is what the widget's success callback hands over.
type ReconnectCompleted struct {
	// ConnectorToken names the session that succeeded: one this repair
	// handed out.
	ConnectorToken string          `json:"connectorToken,omitempty"`
	PublicToken    string          `json:"publicToken,omitempty"`
	Metadata       json.RawMessage `json:"metadata,omitempty"`
}

// ReconnectExited records the user leaving the widget without success.
type ReconnectExited struct {
	Reason            string    `json:"reason,omitempty"`
	ErrorCode         string    `json:"errorCode,omitempty"`
	ProviderRequestID string    `json:"providerRequestId,omitempty"`
	At                time.Time `json:"at,omitzero"`
}

// Message is the payload of SignalMessage: exactly one field is set.
type Message struct {
	Event         *ProviderEvent `json:"event,omitempty"`
	Cancel        *CancelRequest `json:"cancel,omitempty"`
	RepairRequest *RepairRequest `json:"repairRequest,omitempty"`
}

// ProviderEvent is one webhook event, normalised by the provider's adapter.
type ProviderEvent struct {
	EventID        string               `json:"eventId,omitempty"`
	Kind           aggregator.EventKind `json:"kind"`
	At             time.Time            `json:"at,omitzero"`
	ProviderStatus string               `json:"providerStatus,omitempty"`
	Reason         string               `json:"reason,omitempty"`
}

// CancelRequest ends a repair by hand.
type CancelRequest struct {
	Reason      string `json:"reason,omitempty"`
	RequestedBy string `json:"requestedBy,omitempty"`
}

// RepairRequest asks for a repair by hand.
type RepairRequest struct {
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at,omitzero"`
	// Options are what the next run starts with when this request starts
	// it (a repair that has ended and is still closing); nil keeps the
	// ended repair's.
	Options *RepairOptions `json:"options,omitempty"`
}
