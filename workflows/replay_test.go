package workflows

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// Histories of the main paths, recorded from a real server by the
// integration tests (RELINK_RECORD_HISTORIES=1 go test ./integration/).
// Every change to ConnectionRepair must still replay them: a change that
// alters the commands an old history recorded needs workflow.GetVersion.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/histories/*.json")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 3, "recorded histories are missing")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			replayer := worker.NewWorkflowReplayer()
			replayer.RegisterWorkflow(ConnectionRepair)
			assert.NoError(t, replayer.ReplayWorkflowHistoryFromJSONFile(nil, f))
		})
	}
}

// The replay check has teeth: a workflow that issues different commands
// fails against the same histories.
func TestReplayDetectsNonDeterminism(t *testing.T) {
	files, err := filepath.Glob("testdata/histories/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	replayer := worker.NewWorkflowReplayer()
	replayer.RegisterWorkflowWithOptions(func(ctx workflow.Context, in RepairInput) (RepairState, error) {
		// A changed first step: sleep before probing.
		_ = workflow.Sleep(ctx, 1)
		return ConnectionRepair(ctx, in)
	}, workflow.RegisterOptions{Name: WorkflowName})
	err = replayer.ReplayWorkflowHistoryFromJSONFile(nil, files[0])
	require.Error(t, err)
	assert.Contains(t, err.Error(), "TMPRL1100", "a non-determinism error")
}
