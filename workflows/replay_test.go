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
	// Every path of the current version, and the version-0 histories that
	// replay through legacy_v0.go.
	for _, name := range []string{"canceled", "repaired", "unrepairable",
		"v1-continue", "v1-user-completed", "v1-repaired", "v1-expired", "v1-unrepairable", "v1-failed-attempt",
		"v1-refresh-continued-as-new", "v1-carried-to-repaired", "v1-polling", "v1-canceled", "v1-break-during-close"} {
		require.Contains(t, files, filepath.Join("testdata", "histories", name+".json"))
	}
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
	for _, f := range []string{"testdata/histories/repaired.json", "testdata/histories/v1-user-completed.json"} {
		err = replayer.ReplayWorkflowHistoryFromJSONFile(nil, f)
		require.Error(t, err, f)
		assert.Contains(t, err.Error(), "TMPRL1100", "a non-determinism error")
	}
}
