package workflows

import (
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"
)

// A repair's run closes the way its outcome reads. The Temporal UI's list
// of workflows shows, without any per-browser setup, one thing a
// workflow writes: how its run closed. So a repair that fixed its
// connection completes (a green Completed); one that expired or cannot
// be repaired fails (a red Failed, whose failure type is the outcome and
// whose message is the outcome and its reason code), and a canceled one
// is Canceled. Either way the final state rides along, as the result or
// as the close's details, so whoever reads a closed run (ClosedState) gets
// the same RepairState.

// Failure types of a repair's close: the outcome, as the Temporal UI and
// CLI show a failed run (ExecutionStatus = 'Failed' lists both).
const (
	FailureTypeExpired      = "RelinkRepairExpired"
	FailureTypeUnrepairable = "RelinkRepairUnrepairable"
)

// closeError is what a run whose repair ended returns with its state.
func closeError(st RepairState) error {
	// Benign: an outcome, not a fault of Relink's, so the SDK neither
	// counts it in temporal_workflow_failed nor logs it as an error.
	failed := func(failureType string) error {
		return temporal.NewApplicationErrorWithOptions(closeMessage(st), failureType, temporal.ApplicationErrorOptions{
			NonRetryable: true, Details: []any{st}, Category: temporal.ApplicationErrorCategoryBenign,
		})
	}
	switch st.Status {
	case StatusExpired:
		return failed(FailureTypeExpired)
	case StatusUnrepairable:
		return failed(FailureTypeUnrepairable)
	case StatusCanceled:
		return temporal.NewCanceledError(st)
	}
	return nil
}

// closeMessage names the outcome and its reason code, never the reason's
// sentence, which can quote a provider.
func closeMessage(st RepairState) string {
	return fmt.Sprintf("%s (%s)", st.Status, st.ReasonCode)
}

// ClosedState reads a closed run's final state from the error reading its
// result gave (nil for a completed run: read the result itself); ok is
// false for an error that is not a repair's close (terminated, timed out,
// a failure of some other kind).
func ClosedState(err error) (RepairState, bool) {
	var (
		st       RepairState
		failed   *temporal.ApplicationError
		canceled *temporal.CanceledError
	)
	switch {
	case errors.As(err, &failed) && (failed.Type() == FailureTypeExpired || failed.Type() == FailureTypeUnrepairable):
		if failed.Details(&st) != nil {
			return RepairState{}, false
		}
	case errors.As(err, &canceled) && canceled.HasDetails():
		if canceled.Details(&st) != nil {
			return RepairState{}, false
		}
	default:
		return RepairState{}, false
	}
	return st, st.Status.Terminal()
}
