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

// corpus is the folder of histories this build's workflow code must
// replay: testdata/histories/<name in CURRENT>. Production pins each repair
// to the build that started it, so a change that alters the commands of
// recorded paths ships as a new build with a new corpus (a new folder
// named in CURRENT, recorded by `task histories`); a change that must not
// alter them replays this one. Recorded files are never overwritten.
func corpus(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/histories/CURRENT")
	require.NoError(t, err)
	return filepath.Join("testdata", "histories", strings.TrimSpace(string(b)))
}

// corpusPaths are the paths every corpus holds, recorded from a real
// server by the integration tests (RELINK_RECORD_HISTORIES=1 go test
// ./integration/).
var corpusPaths = []string{"continue", "user-completed", "repaired", "polling", "expired", "unrepairable",
	"failed-attempt", "refresh-continued-as-new", "carried-to-repaired", "canceled", "break-during-close",
	"encrypted-user-completed", "withdrawn", "ended-then-broke", "next-break",
	// Reconciliation sweeps (a page retried, a refused inventory) and an
	// expiry-timed start.
	"sweep", "sweep-refused", "expiry-start",
	// A close in the completion's workflow task, its repeat by the next
	// worker after the first died in that task, and one refused.
	"close-in-task", "close-in-task-after-crash", "close-in-task-refused"}

func TestReplayRecordedHistories(t *testing.T) {
	dir := corpus(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	require.NoError(t, err)
	for _, name := range corpusPaths {
		require.Contains(t, files, filepath.Join(dir, name+".json"))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			replayer := testReplayer(t)
			replayer.RegisterWorkflow(ConnectionRepair)
			replayer.RegisterWorkflow(ReconcileSweep)
			replayer.RegisterWorkflow(ExpiryRepairStart)
			assert.NoError(t, replayFile(t, replayer, f))
		})
	}
}

// The replay check has teeth: a workflow that issues different commands
// fails against the same histories.
func TestReplayDetectsNonDeterminism(t *testing.T) {
	dir := corpus(t)
	for _, name := range []string{"continue", "user-completed", "canceled"} {
		replayer := worker.NewWorkflowReplayer()
		replayer.RegisterWorkflowWithOptions(func(ctx workflow.Context, in RepairInput) (RepairState, error) {
			// A changed first step: sleep before probing.
			_ = workflow.Sleep(ctx, 1)
			return ConnectionRepair(ctx, in)
		}, workflow.RegisterOptions{Name: WorkflowName})
		err := replayer.ReplayWorkflowHistoryFromJSONFile(nil, filepath.Join(dir, name+".json"))
		require.Error(t, err, name)
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
	path := filepath.Join(corpus(t), "encrypted-user-completed.json")
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
