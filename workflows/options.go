package workflows

import (
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
)

// RepairOptions tune one repair. Zero fields take the defaults below; the
// gateway fills them from the environment (see config.Config).
type RepairOptions struct {
	// RepairWindow: how long the repair may take before it is EXPIRED.
	RepairWindow time.Duration `json:"repairWindow,omitempty"`
	// ReminderOffsets: when to remind the app while AWAITING_USER, counted
	// from entering AWAITING_USER.
	ReminderOffsets []time.Duration `json:"reminderOffsets,omitempty"`
	// VerifyQuietPeriod: how long VERIFYING waits for the confirmation
	// webhook before it starts polling the provider.
	VerifyQuietPeriod time.Duration `json:"verifyQuietPeriod,omitempty"`
	// VerifyPollInterval: the first gap between status polls; each gap
	// after it doubles, up to VerifyPollMaxInterval.
	VerifyPollInterval time.Duration `json:"verifyPollInterval,omitempty"`
	// VerifyPollMaxInterval caps the polling backoff.
	VerifyPollMaxInterval time.Duration `json:"verifyPollMaxInterval,omitempty"`
	// MaxAttempts: provider-side reconnect failures before UNREPAIRABLE.
	MaxAttempts int `json:"maxAttempts,omitempty"`
	// NotifyTimeout: how long one outbound event is retried.
	NotifyTimeout time.Duration `json:"notifyTimeout,omitempty"`
	// VerifyGrace: once the user has finished in the widget, close and
	// verification may run this long past the completion even if the
	// repair window ends first, so a user who finished in time is never
	// told EXPIRED.
	VerifyGrace time.Duration `json:"verifyGrace,omitempty"`
	// ReportTransientStatuses upserts RelinkStatus and notifies the app for
	// COMPLETING and VERIFYING too (two billable actions each).
	ReportTransientStatuses bool `json:"reportTransientStatuses,omitempty"`
	// ContinueAsNewAfterEvents: a run continues as new at its next quiet
	// point once its history has this many events (or the server suggests
	// it), far below Temporal's limits.
	ContinueAsNewAfterEvents int `json:"continueAsNewAfterEvents,omitempty"`
	// MinRefreshInterval: a forced new session is minted at most this
	// often; a caller forcing sooner gets the session minted moments ago.
	MinRefreshInterval time.Duration `json:"minRefreshInterval,omitempty"`
}

// Defaults.
const (
	DefaultRepairWindow          = 7 * 24 * time.Hour
	DefaultVerifyQuietPeriod     = 10 * time.Minute
	DefaultVerifyPollInterval    = time.Minute
	DefaultVerifyPollMaxInterval = time.Hour
	DefaultMaxAttempts           = 5
	// DefaultNotifyTimeout outlasts an app's weekend outage: an event is
	// retried for three days, as long as Meld retries its own webhooks.
	DefaultNotifyTimeout = 72 * time.Hour
	DefaultVerifyGrace   = 24 * time.Hour
	// A run's history stays far below Temporal's 51,200-event limit, and
	// within a few thousand events replays fast.
	DefaultContinueAsNewAfterEvents = 2000
	DefaultMinRefreshInterval       = 30 * time.Second
)

// DefaultReminderOffsets: two and five days into the wait, each
// MinAskSpacing or more after the ask before it (RELINK_REMINDER_OFFSETS'
// default is the same; a config test holds them together).
var DefaultReminderOffsets = []time.Duration{MinAskSpacing, MinAskSpacing + 72*time.Hour}

// withDefaults fills zero fields.
func (o RepairOptions) withDefaults() RepairOptions {
	if o.RepairWindow <= 0 {
		o.RepairWindow = DefaultRepairWindow
	}
	if o.ReminderOffsets == nil {
		o.ReminderOffsets = DefaultReminderOffsets
	}
	if o.VerifyQuietPeriod <= 0 {
		o.VerifyQuietPeriod = DefaultVerifyQuietPeriod
	}
	if o.VerifyPollInterval <= 0 {
		o.VerifyPollInterval = DefaultVerifyPollInterval
	}
	if o.VerifyPollMaxInterval <= 0 {
		o.VerifyPollMaxInterval = DefaultVerifyPollMaxInterval
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.NotifyTimeout <= 0 {
		o.NotifyTimeout = DefaultNotifyTimeout
	}
	if o.VerifyGrace <= 0 {
		o.VerifyGrace = DefaultVerifyGrace
	}
	if o.ContinueAsNewAfterEvents <= 0 {
		o.ContinueAsNewAfterEvents = DefaultContinueAsNewAfterEvents
	}
	if o.MinRefreshInterval <= 0 {
		o.MinRefreshInterval = DefaultMinRefreshInterval
	}
	return o
}

// Search attributes. Operators find repairs in the Temporal UI with them,
// e.g. RelinkStatus="AWAITING_USER" AND RelinkProvider="quiltt".
var (
	SearchAttrStatus       = temporal.NewSearchAttributeKeyKeyword("RelinkStatus")
	SearchAttrProvider     = temporal.NewSearchAttributeKeyKeyword("RelinkProvider")
	SearchAttrConnectionID = temporal.NewSearchAttributeKeyKeyword("RelinkConnectionId")
	SearchAttrProfileID    = temporal.NewSearchAttributeKeyKeyword("RelinkProfileId")
	SearchAttrAttempts     = temporal.NewSearchAttributeKeyInt64("RelinkAttempts")
	SearchAttrReasonCode   = temporal.NewSearchAttributeKeyKeyword("RelinkReasonCode")
	// SearchAttrUpdatedAt is when RelinkStatus (or the reason) last
	// changed: what GET /v1/repairs?changedSince= asks visibility for. It
	// rides on the upsert of the change, costing no action of its own.
	SearchAttrUpdatedAt = temporal.NewSearchAttributeKeyTime("RelinkUpdatedAt")
	// SearchAttrLastEventID is the id of the event (the webhook-id) that
	// told the app of the current status, for an app catching up.
	SearchAttrLastEventID = temporal.NewSearchAttributeKeyKeyword("RelinkLastEventId")
)

// SearchAttributeTypes is what a namespace must have registered; the dev
// stack and `relink setup` register it.
var SearchAttributeTypes = map[string]enums.IndexedValueType{
	SearchAttrStatus.GetName():       enums.INDEXED_VALUE_TYPE_KEYWORD,
	SearchAttrProvider.GetName():     enums.INDEXED_VALUE_TYPE_KEYWORD,
	SearchAttrConnectionID.GetName(): enums.INDEXED_VALUE_TYPE_KEYWORD,
	SearchAttrProfileID.GetName():    enums.INDEXED_VALUE_TYPE_KEYWORD,
	SearchAttrAttempts.GetName():     enums.INDEXED_VALUE_TYPE_INT,
	SearchAttrReasonCode.GetName():   enums.INDEXED_VALUE_TYPE_KEYWORD,
	SearchAttrUpdatedAt.GetName():    enums.INDEXED_VALUE_TYPE_DATETIME,
	SearchAttrLastEventID.GetName():  enums.INDEXED_VALUE_TYPE_KEYWORD,

	SearchAttrConsentExpiresAt.GetName(): enums.INDEXED_VALUE_TYPE_DATETIME,
}

// InitialSearchAttributes are the attributes a new repair starts with, at
// now.
func InitialSearchAttributes(in RepairInput, now time.Time) temporal.SearchAttributes {
	return temporal.NewSearchAttributes(
		SearchAttrStatus.ValueSet(string(StatusPending)),
		SearchAttrProvider.ValueSet(in.Provider),
		SearchAttrConnectionID.ValueSet(in.ConnectionID),
		SearchAttrProfileID.ValueSet(in.ProfileID),
		SearchAttrAttempts.ValueSet(1),
		SearchAttrReasonCode.ValueSet(string(in.reasonCode())),
		SearchAttrUpdatedAt.ValueSet(now.UTC()),
	)
}
