package workflows

// ReasonCode says in one stable word why a repair entered its status: the
// API's and the events' reasonCode, next to the sentence in reason. Apps
// switch on the code; people read the sentence. The list is the README's
// and the OpenAPI document's enum (a test holds them together).
type ReasonCode string

const (
	// PENDING
	ReasonBrokenAtProvider ReasonCode = "broken_at_provider" // a repairable webhook
	ReasonRequested        ReasonCode = "requested"          // a manual start or a proactive trigger
	// AWAITING_USER
	ReasonUserActionRequired ReasonCode = "user_action_required" // initialize said ACTION_REQUIRED
	ReasonReconnectRejected  ReasonCode = "reconnect_rejected"   // the provider refused the user's reconnect: attempt + 1
	ReasonStillBroken        ReasonCode = "still_broken"         // after the reconnect the provider still reports it broken: attempt + 1
	// COMPLETING, VERIFYING
	ReasonUserFinished  ReasonCode = "user_finished"  // the widget reported success
	ReasonCloseAccepted ReasonCode = "close_accepted" // waiting for the provider to confirm
	// REPAIRED
	ReasonRepairedWithoutUser ReasonCode = "repaired_without_user" // initialize said CONTINUE
	ReasonNothingToRepair     ReasonCode = "nothing_to_repair"     // healthy before anyone was asked
	ReasonConfirmedOnClose    ReasonCode = "confirmed_on_close"    // healthy straight after close
	ReasonConfirmedByWebhook  ReasonCode = "confirmed_by_webhook"  // the provider's webhook
	ReasonConfirmedByStatus   ReasonCode = "confirmed_by_status"   // a status poll
	ReasonRepairedElsewhere   ReasonCode = "repaired_elsewhere"    // fixed outside Relink
	// EXPIRED
	ReasonWindowEnded         ReasonCode = "window_ended"         // the user did not reconnect in time
	ReasonNotConfirmed        ReasonCode = "not_confirmed"        // the provider did not confirm before verifyUntil
	ReasonProviderUnavailable ReasonCode = "provider_unavailable" // the provider was down until the window ended
	// UNREPAIRABLE
	ReasonConnectionNotFound ReasonCode = "connection_not_found"
	ReasonNotRepairable      ReasonCode = "not_repairable" // the provider says it cannot be repaired (conflict)
	ReasonInvalidInput       ReasonCode = "invalid_input"  // the provider refused what Relink sent
	ReasonDisconnected       ReasonCode = "disconnected"
	ReasonAttemptsExhausted  ReasonCode = "attempts_exhausted"
	// CANCELED
	ReasonCanceled           ReasonCode = "canceled"             // by the API
	ReasonCanceledInTemporal ReasonCode = "canceled_in_temporal" // an operator's cancel in the UI or CLI
	ReasonConnectionDeleted  ReasonCode = "connection_deleted"
)

// noteUserActionRequired is the sentence of ReasonUserActionRequired, which
// the probe's early ask carries too.
const noteUserActionRequired = "the user must reconnect in the provider's widget"

// ReasonCodes lists every code, for the API's enum.
var ReasonCodes = []ReasonCode{ReasonBrokenAtProvider, ReasonRequested, ReasonUserActionRequired,
	ReasonReconnectRejected, ReasonStillBroken, ReasonUserFinished, ReasonCloseAccepted,
	ReasonRepairedWithoutUser, ReasonNothingToRepair, ReasonConfirmedOnClose, ReasonConfirmedByWebhook,
	ReasonConfirmedByStatus, ReasonRepairedElsewhere, ReasonWindowEnded, ReasonNotConfirmed,
	ReasonProviderUnavailable, ReasonConnectionNotFound, ReasonNotRepairable, ReasonInvalidInput,
	ReasonDisconnected, ReasonAttemptsExhausted, ReasonCanceled, ReasonCanceledInTemporal, ReasonConnectionDeleted}
