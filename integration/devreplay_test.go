package integration

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/workflows"
)

// olderConnectionRepair stands for a ConnectionRepair of an older build:
// registered under the same name, it starts with a long timer, which no
// build of today's workflow code does, so today's code cannot replay it.
func olderConnectionRepair(ctx workflow.Context, in workflows.RepairInput) (workflows.RepairState, error) {
	err := workflow.Sleep(ctx, 240*time.Hour)
	return workflows.RepairState{}, err
}

// A data directory holding open repairs recorded by older workflow code:
// `relink dev` names them (ten, and a count of the rest) and what to do,
// and exits non-zero before its worker would fail on them over and over,
// while a repair this build recorded is not named. With
// -terminate-unreplayable it terminates them and starts.
func TestTheDevStackRefusesOpenRepairsItCannotReplay(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "relink")
	temporalPort, gatewayPort := freePort(t), freePort(t)
	env := map[string]string{
		"RELINK_DATA_DIR":          dataDir,
		"RELINK_DEV_TEMPORAL_PORT": fmt.Sprint(temporalPort),
		"RELINK_DEV_UI_PORT":       "0",
		"RELINK_PAYLOAD_KEYS":      newKey(t, "replay"),
		"RELINK_LISTEN_ADDR":       fmt.Sprintf("127.0.0.1:%d", gatewayPort),
		"RELINK_PUBLIC_URL":        fmt.Sprintf("http://127.0.0.1:%d", gatewayPort),
	}
	server, err := startDevBinary(t.TempDir(), env, "relink dev-server ready", "dev-server")
	require.NoError(t, err)
	t.Cleanup(func() { _ = server.cmd.Process.Kill() })

	// A repair of this build, waiting for its user (encrypted with the
	// same keys as the dev stack's): it replays.
	s := buildStack(t, map[string]string{
		"TEMPORAL_ADDRESS":    fmt.Sprintf("127.0.0.1:%d", temporalPort),
		"TEMPORAL_NAMESPACE":  "default",
		"RELINK_PAYLOAD_KEYS": env["RELINK_PAYLOAD_KEYS"],
	})
	current := s.startWorker(s.providers.APIs...)
	s.breakConnection("conn_current", "profile_current")
	s.waitForStatus("conn_current", workflows.StatusAwaitingUser)
	current.Stop()

	// Twelve of an older build, on the dev stack's task queue, each past
	// its first workflow task (its timer started) when that worker stops.
	older := worker.New(s.temporal, "relink-repairs", worker.Options{})
	older.RegisterWorkflowWithOptions(olderConnectionRepair, workflow.RegisterOptions{Name: "ConnectionRepair"})
	require.NoError(t, older.Start())
	ctx := context.Background()
	var ids []string
	for i := range 12 {
		id := fmt.Sprintf("repair:sandbox:conn_older_%02d", i)
		ids = append(ids, id)
		_, err := s.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "relink-repairs"},
			"ConnectionRepair", workflows.RepairInput{Provider: "sandbox", ConnectionID: fmt.Sprintf("conn_older_%02d", i)})
		require.NoError(t, err)
	}
	for _, id := range ids {
		s.waitFor(id+"'s timer", func() bool {
			it := s.temporal.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
			for it.HasNext() {
				ev, err := it.Next()
				if err != nil {
					return false
				}
				if ev.GetEventType() == enums.EVENT_TYPE_TIMER_STARTED {
					return true
				}
			}
			return false
		})
	}
	older.Stop()
	require.NoError(t, server.stop())

	_, err = startDevBinary(t.TempDir(), env, "relink dev ready")
	require.Error(t, err, "the dev stack refuses to start")
	msg := err.Error()
	assert.Contains(t, msg, "exit status 1")
	assert.Contains(t, msg, "12 of the 13 open repairs were recorded by an older build")
	listed := 0
	for _, id := range ids {
		if strings.Contains(msg, id+"\n") {
			listed++
		}
	}
	assert.Equal(t, 10, listed, "ten are named")
	assert.Contains(t, msg, "… and 2 more")
	assert.NotContains(t, msg, "repair:sandbox:conn_current", "this build's repair replays")
	assert.Contains(t, msg, "go run ./dev -terminate-unreplayable")
	assert.Contains(t, msg, "temporal workflow terminate --address 127.0.0.1:")
	assert.Contains(t, msg, "rm -rf "+dataDir)
	assert.NotContains(t, msg, "relink dev ready")

	// Keys that do not open these repairs: not another build's doing, so
	// neither called that nor offered for termination.
	wrongKeys := maps.Clone(env)
	wrongKeys["RELINK_PAYLOAD_KEYS"] = newKey(t, "other")
	_, err = startDevBinary(t.TempDir(), wrongKeys, "relink dev ready")
	require.Error(t, err, "the dev stack refuses to start")
	assert.Contains(t, err.Error(), "replay the open repairs: replay repair:sandbox:")
	assert.Contains(t, err.Error(), "not in RELINK_PAYLOAD_KEYS")
	assert.NotContains(t, err.Error(), "older build")
	assert.NotContains(t, err.Error(), "-terminate-unreplayable")

	// The flag's way: the older repairs end terminated, with the reason;
	// this build's repair stays open, and the stack starts.
	dev, err := startDevBinary(t.TempDir(), env, "relink dev ready", "-terminate-unreplayable")
	require.NoError(t, err)
	t.Cleanup(func() { _ = dev.cmd.Process.Kill() })
	assert.Contains(t, dev.output.String(), "Terminated 12 open repairs this build cannot replay")
	for _, id := range ids {
		desc, err := s.temporal.DescribeWorkflowExecution(ctx, id, "")
		require.NoError(t, err)
		assert.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_TERMINATED, desc.GetWorkflowExecutionInfo().GetStatus(), id)
	}
	desc, err := s.temporal.DescribeWorkflowExecution(ctx, workflows.WorkflowID("sandbox", "conn_current"), "")
	require.NoError(t, err)
	assert.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_RUNNING, desc.GetWorkflowExecutionInfo().GetStatus())
	require.NoError(t, dev.stop())
}
