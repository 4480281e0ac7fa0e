// Package workflows holds ConnectionRepair, the durable workflow that owns
// one broken connection from the provider's repairable webhook until it is
// REPAIRED, EXPIRED, UNREPAIRABLE or CANCELED.
//
// This file is the workflow's public surface: its name, every message name
// and every payload. The gateway and the CLI use nothing else to talk to it.
package workflows

import (
	"encoding/json"
	"time"

	"github.com/relink-dev/relink/activities"
)

// WorkflowName is the registered workflow type.
const WorkflowName = "ConnectionRepair"

// Message names.
const (
	// UpdateReconnect: the frontend asks to start or resume the reconnect;
	// answers with the widget session. Payload ReconnectRequest, result
	// ReconnectResult.
	UpdateReconnect = "reconnect"
	// SignalReconnectCompleted: the widget succeeded. Payload
	// ReconnectCompleted.
	SignalReconnectCompleted = "reconnect-completed"
	// SignalReconnectExited: the user left the widget or it failed.
	// Payload ReconnectExited.
	SignalReconnectExited = "reconnect-exited"
	// SignalProviderEvent: a normalised webhook event. Payload ProviderEvent.
	SignalProviderEvent = "provider-event"
	// SignalCancel: an operator ends the repair. Payload CancelRequest.
	SignalCancel = "cancel"
	// SignalRepairRequested: a repair was asked for by hand (sent with
	// signal-with-start, so it starts one or joins the open one). Payload
	// RepairRequest.
	SignalRepairRequested = "repair-requested"
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
}

// ReconnectRequest is the reconnect update's argument.
type ReconnectRequest struct {
	// ForceNewSession mints a new session even if the current one is still
	// valid, for a widget that rejected its token.
	ForceNewSession bool `json:"forceNewSession,omitempty"`
}

// ReconnectResult tells the frontend what to do. With ConnectorStatus
// ACTION_REQUIRED it opens the widget with Session; with CONTINUE there is
// nothing for the user to do (repaired without them, or already finishing).
type ReconnectResult struct {
	Status          Status                     `json:"status"`
	ConnectorStatus activities.ConnectorStatus `json:"connectorStatus"`
	Session         *activities.Session        `json:"session,omitempty"`
}

// ReconnectCompleted is what the widget's success callback hands over.
type ReconnectCompleted struct {
	// ConnectorToken names the session that succeeded; empty means the
	// current one.
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

// ProviderEvent is one webhook event, normalised by the provider's adapter.
type ProviderEvent struct {
	EventID        string               `json:"eventId,omitempty"`
	Kind           activities.EventKind `json:"kind"`
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
}
