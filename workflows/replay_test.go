package workflows

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/codec"
	"github.com/relink-dev/relink/keyring"
)

// testReplayer replays with the payload codec over the key committed for
// tests (testdata/payload-test-key), as a worker with RELINK_PAYLOAD_KEYS
// does: encrypted histories decrypt, clear ones pass through.
func testReplayer(t *testing.T) worker.WorkflowReplayer {
	t.Helper()
	b, err := os.ReadFile("testdata/payload-test-key")
	require.NoError(t, err)
	keys, err := keyring.Parse("payload-test-key", strings.TrimSpace(string(b)))
	require.NoError(t, err)
	enc, err := codec.NewEncryption(keys)
	require.NoError(t, err)
	dc := codec.DataConverter(enc)
	replayer, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{
		DataConverter:    dc,
		FailureConverter: codec.FailureConverter(dc, true),
	})
	require.NoError(t, err)
	return replayer
}

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
		"v1-refresh-continued-as-new", "v1-carried-to-repaired", "v1-polling", "v1-canceled", "v1-break-during-close",
		"v1-encrypted-user-completed",
		"v2-continue", "v2-user-completed", "v2-repaired", "v2-expired", "v2-unrepairable", "v2-failed-attempt",
		"v2-refresh-continued-as-new", "v2-carried-to-repaired", "v2-polling", "v2-canceled", "v2-break-during-close",
		"v2-encrypted-user-completed",
		"v3-continue", "v3-user-completed", "v3-repaired", "v3-expired", "v3-unrepairable", "v3-failed-attempt",
		"v3-refresh-continued-as-new", "v3-carried-to-repaired", "v3-polling", "v3-canceled", "v3-break-during-close",
		"v3-encrypted-user-completed", "v3-withdrawn"} {
		require.Contains(t, files, filepath.Join("testdata", "histories", name+".json"))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			replayer := testReplayer(t)
			replayer.RegisterWorkflow(ConnectionRepair)
			assert.NoError(t, replayFile(t, replayer, f))
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
	for _, f := range []string{"testdata/histories/repaired.json", "testdata/histories/v1-user-completed.json",
		"testdata/histories/v2-user-completed.json"} {
		err = replayer.ReplayWorkflowHistoryFromJSONFile(nil, f)
		require.Error(t, err, f)
		assert.Contains(t, err.Error(), "TMPRL1100", "a non-determinism error")
	}
}

// replayFile replays a recorded history under its original workflow id.
// Encrypted payloads are bound to their workflow (the codec's additional
// data), and the replayer's default id ("ReplayId") would not open them;
// the id is not in the history's events, but every bound payload names it.
func replayFile(t *testing.T, replayer worker.WorkflowReplayer, path string) error {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	hist, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	require.NoError(t, err)
	var exec workflow.Execution
	input := hist.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()
	if len(input) > 0 {
		exec.ID = string(input[0].GetMetadata()[codec.MetadataWorkflowID])
	}
	return replayer.ReplayWorkflowHistoryWithOptions(nil, hist, worker.ReplayWorkflowHistoryOptions{OriginalExecution: exec})
}

// An encrypted history needs the key: without it the replay fails, so the
// test above really decrypts.
func TestEncryptedHistoriesNeedTheKey(t *testing.T) {
	const path = "testdata/histories/v1-encrypted-user-completed.json"
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	hist, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	require.NoError(t, err)
	var sealed int
	for _, ev := range hist.GetEvents() {
		var payloads []*commonpb.Payload
		payloads = append(payloads, ev.GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()...)
		payloads = append(payloads, ev.GetActivityTaskScheduledEventAttributes().GetInput().GetPayloads()...)
		payloads = append(payloads, ev.GetActivityTaskCompletedEventAttributes().GetResult().GetPayloads()...)
		payloads = append(payloads, ev.GetWorkflowExecutionUpdateAcceptedEventAttributes().GetAcceptedRequest().GetInput().GetArgs().GetPayloads()...)
		payloads = append(payloads, ev.GetWorkflowExecutionCompletedEventAttributes().GetResult().GetPayloads()...)
		for _, p := range payloads {
			assert.Equal(t, codec.Encoding, string(p.GetMetadata()["encoding"]), ev.GetEventType().String())
			sealed++
		}
	}
	assert.Greater(t, sealed, 5)

	replayer := worker.NewWorkflowReplayer()
	replayer.RegisterWorkflow(ConnectionRepair)
	assert.Error(t, replayFile(t, replayer, path))
}
