package workflows

import (
	"slices"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
)

// Status is where a repair stands. The same words appear in the query, the
// HTTP API, outbound events and the RelinkStatus search attribute.
type Status string

const (
	// StatusPending: started; probing the provider with initialize.
	StatusPending Status = "PENDING"
	// StatusAwaitingUser: initialize said ACTION_REQUIRED; waiting for the
	// user to reconnect in the widget.
	StatusAwaitingUser Status = "AWAITING_USER"
	// StatusCompleting: the user finished in the widget; close is running.
	StatusCompleting Status = "COMPLETING"
	// StatusVerifying: waiting for the provider to confirm the repair.
	StatusVerifying Status = "VERIFYING"
	// StatusRepaired: the provider confirmed the connection works. Terminal.
	StatusRepaired Status = "REPAIRED"
	// StatusExpired: the repair window passed without a confirmed repair.
	// Terminal.
	StatusExpired Status = "EXPIRED"
	// StatusUnrepairable: the provider says it cannot be repaired, or the
	// attempts ran out. Terminal; Reason says why.
	StatusUnrepairable Status = "UNREPAIRABLE"
	// StatusCanceled: an operator canceled it or the connection was deleted.
	// Terminal.
	StatusCanceled Status = "CANCELED"
)

// Statuses lists every status in lifecycle order.
var Statuses = []Status{StatusPending, StatusAwaitingUser, StatusCompleting, StatusVerifying,
	StatusRepaired, StatusExpired, StatusUnrepairable, StatusCanceled}

// Terminal reports whether the repair has ended.
func (s Status) Terminal() bool {
	switch s {
	case StatusRepaired, StatusExpired, StatusUnrepairable, StatusCanceled:
		return true
	}
	return false
}

// Valid reports whether s is one of Statuses.
func (s Status) Valid() bool {
	return slices.Contains(Statuses, s)
}

// Transient statuses last seconds to minutes while Relink itself works;
// they are neither upserted to RelinkStatus nor sent to the app unless
// RepairOptions.ReportTransientStatuses asks for it.
func (s Status) Transient() bool {
	return s == StatusCompleting || s == StatusVerifying
}

// Step is one status change, with when and why.
type Step struct {
	Status Status     `json:"status"`
	At     time.Time  `json:"at"`
	Code   ReasonCode `json:"code,omitempty"`
	Note   string     `json:"note,omitempty"`
}

// ExitRecord is the last time the user left the widget without success.
type ExitRecord struct {
	ReconnectExited
	ReceivedAt time.Time `json:"receivedAt"`
}

// RepairState is the whole repair as the state query returns it. It holds
// no tokens: those are only handed out by the reconnect update.
type RepairState struct {
	Provider      string `json:"provider"`
	ConnectionID  string `json:"connectionId"`
	ProfileID     string `json:"profileId,omitempty"`
	Institution   string `json:"institution,omitempty"`
	TriggerReason string `json:"triggerReason,omitempty"`
	// Proactive: started before anything broke; see RepairInput.Proactive.
	Proactive bool `json:"proactive,omitempty"`
	// DetectedAt is when the provider saw the break (its own clock).
	DetectedAt time.Time `json:"detectedAt,omitzero"`

	Status Status `json:"status"`
	// Reason says in a sentence why the repair entered its status (for a
	// terminal one, why it ended; after a failed attempt, why it failed);
	// ReasonCode says it in a stable word an app can switch on.
	Reason     string     `json:"reason,omitempty"`
	ReasonCode ReasonCode `json:"reasonCode,omitempty"`
	// Attempt is the reconnect attempt in progress (1-based); it grows when
	// a reconnect fails at the provider.
	Attempt     int `json:"attempt"`
	MaxAttempts int `json:"maxAttempts"`

	StartedAt time.Time `json:"startedAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	// ExpiresAt is the end of the repair window.
	ExpiresAt time.Time `json:"expiresAt"`
	ClosedAt  time.Time `json:"closedAt,omitzero"`
	Steps     []Step    `json:"steps"`

	ConnectorStatus  aggregator.ConnectorStatus `json:"connectorStatus,omitempty"`
	SessionExpiresAt time.Time                  `json:"sessionExpiresAt,omitzero"`
	SessionsIssued   int                        `json:"sessionsIssued"`
	RemindersSent    int                        `json:"remindersSent"`
	Exits            int                        `json:"exits"`
	LastExit         *ExitRecord                `json:"lastExit,omitempty"`
	// LastError is the last failure seen (provider error, rejected close,
	// errored webhook); the repair may have recovered since.
	LastError string `json:"lastError,omitempty"`
	// LastProviderStatus is the provider's own status word last seen in a
	// webhook or poll.
	LastProviderStatus string `json:"lastProviderStatus,omitempty"`

	// LastAskedAt is when the app was last asked to bring the user back
	// (action_required or reminder); see MinAskSpacing.
	LastAskedAt time.Time `json:"lastAskedAt,omitzero"`

	// RepairRunID is the run that began this repair. A repair that
	// continues as new (to keep each run's history short) keeps it; the
	// app's events carry it as repair.runId.
	RepairRunID string `json:"repairRunId,omitempty"`
	// Runs counts the Temporal runs the repair has used so far.
	Runs int `json:"runs,omitempty"`
	// VerifyUntil is when a repair whose user has finished stops waiting
	// for the provider: the repair window or, if later, the completion plus
	// RepairOptions.VerifyGrace.
	VerifyUntil time.Time `json:"verifyUntil,omitzero"`
	// EventIDs are the provider event ids this repair applied in the last
	// 4 days (at most 1,000), oldest first; a redelivery of one is a
	// duplicate, also after the repair closed.
	EventIDs []string `json:"eventIds,omitempty"`
	// DuplicateEvents and IgnoredEvents count what arrived and changed
	// nothing: redelivered events, and events that were stale or came when
	// they could not apply (LastIgnored says the latest and why).
	DuplicateEvents int    `json:"duplicateEvents,omitempty"`
	IgnoredEvents   int    `json:"ignoredEvents,omitempty"`
	LastIgnored     string `json:"lastIgnored,omitempty"`
	// EventsSent counts the events sent to the app; Quiet marks a repair
	// that ended without telling the app anything, because the provider
	// reported the connection healthy before anyone was asked to act.
	EventsSent int  `json:"eventsSent,omitempty"`
	Quiet      bool `json:"quiet,omitempty"`
}
