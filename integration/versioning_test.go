package integration

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enums "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/cli"
	"github.com/relink-dev/relink/workflows"
)

// A deploy under Worker Versioning (RELINK_DEPLOYMENT_NAME): a repair
// begun on build 1 stays pinned to build 1 while build 2 takes the new
// ones, and each finishes on its own build, every workflow task of it.
func TestWorkerVersioningPinsEachRepairToItsBuild(t *testing.T) {
	const deployment = "relink"
	s := newBareStack(t, map[string]string{"RELINK_DEPLOYMENT_NAME": deployment, "RELINK_BUILD_ID": "build-1"})
	s.startWorker(s.providers.APIs...)
	s.setCurrentBuild(deployment, "build-1")
	s.breakConnection("conn_old", "profile_v")
	s.waitForStatus("conn_old", workflows.StatusAwaitingUser)
	s.breakConnection("conn_again", "profile_v")
	s.waitForStatus("conn_again", workflows.StatusAwaitingUser)

	// The rollout: build 2 starts beside build 1 and becomes current.
	s.cfg.Worker.BuildID = "build-2"
	s.startWorker(s.providers.APIs...)
	s.setCurrentBuild(deployment, "build-2")
	s.breakConnection("conn_new", "profile_v")
	s.waitForStatus("conn_new", workflows.StatusAwaitingUser)

	s.repairConnection("conn_old")
	s.repairConnection("conn_new")
	s.waitForStatus("conn_old", workflows.StatusRepaired)
	s.waitForStatus("conn_new", workflows.StatusRepaired)

	// A repair of build 1 that breaks again while it is still closing (its
	// outcome waits for the app's endpoint) continues as a new run: a new
	// break, a new repair, on the current build.
	s.app.setDown(true)
	s.repairConnection("conn_again")
	s.waitForStatus("conn_again", workflows.StatusRepaired)
	first := s.runs(workflows.WorkflowID(sandbox.Name, "conn_again"))
	s.breakConnection("conn_again", "profile_v")
	s.app.setDown(false)
	s.waitFor("the next run of conn_again", func() bool {
		return len(s.runs(workflows.WorkflowID(sandbox.Name, "conn_again"))) == len(first)+1
	})
	s.waitForStatus("conn_again", workflows.StatusAwaitingUser)
	desc, err := s.temporal.DescribeWorkflowExecution(context.Background(), workflows.WorkflowID(sandbox.Name, "conn_again"), "")
	require.NoError(t, err)
	assert.Equal(t, "build-2", desc.GetWorkflowExecutionInfo().GetVersioningInfo().GetDeploymentVersion().GetBuildId(),
		"the next break's run moved to the current build")

	for conn, build := range map[string]string{"conn_old": "build-1", "conn_new": "build-2"} {
		id := workflows.WorkflowID(sandbox.Name, conn)
		desc, err := s.temporal.DescribeWorkflowExecution(context.Background(), id, "")
		require.NoError(t, err)
		info := desc.GetWorkflowExecutionInfo().GetVersioningInfo()
		assert.Equal(t, enums.VERSIONING_BEHAVIOR_PINNED, info.GetBehavior(), conn)
		assert.Equal(t, build, info.GetDeploymentVersion().GetBuildId(), conn)
		tasks := 0
		for _, e := range s.history(id, "") {
			if done := e.GetWorkflowTaskCompletedEventAttributes(); done != nil {
				tasks++
				assert.Equal(t, build, done.GetDeploymentVersion().GetBuildId(), "%s: task %d", conn, e.GetEventId())
			}
		}
		assert.GreaterOrEqual(t, tasks, 2, "%s: tasks before and after the rollout", conn)
	}
}

// setCurrentBuild makes a build the deployment's current version, as
// `temporal worker deployment set-current-version` does, and waits until
// the task queues route by it. The server knows a version once its
// worker has polled, hence the retries.
func (s *stack) setCurrentBuild(deployment, build string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	handle := s.temporal.WorkerDeploymentClient().GetHandle(deployment)
	s.waitFor("the server to accept "+build+" as current", func() bool {
		_, err := handle.SetCurrentVersion(ctx, client.WorkerDeploymentSetCurrentVersionOptions{BuildID: build})
		return err == nil
	})
	// The server propagates a new routing to every task queue partition in
	// the background. What routes a repair is the repair queue's own copy
	// (one partition here), so that is what is waited for: the
	// deployment's summary (RoutingConfigUpdateState) can stay IN_PROGRESS
	// long after, or for good on a loaded machine (temporalio/temporal
	// #11842), and CI once waited two minutes for it in vain.
	require.Eventually(s.t, func() bool {
		for _, typ := range []enums.TaskQueueType{enums.TASK_QUEUE_TYPE_WORKFLOW, enums.TASK_QUEUE_TYPE_ACTIVITY} {
			resp, err := s.temporal.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
				Namespace:     s.cfg.Temporal.Namespace,
				TaskQueue:     &taskqueue.TaskQueue{Name: s.cfg.Temporal.TaskQueue, Kind: enums.TASK_QUEUE_KIND_NORMAL},
				TaskQueueType: typ,
			})
			if err != nil || resp.GetVersioningInfo().GetCurrentDeploymentVersion().GetBuildId() != build {
				return false
			}
		}
		return true
	}, 2*time.Minute, 50*time.Millisecond, "waiting for the routing to reach the task queues")
}

// A worker of a build whose search attributes the namespace lacks (an
// upgrade deployed before `relink setup` ran) refuses to start and says
// what to run: started, its first upsert of the missing attribute would
// fail the workflow task of every repair it runs, over and over.
func TestTheWorkerRefusesANamespaceWithoutItsSearchAttributes(t *testing.T) {
	ns := newNamespace(t)
	// The shared server creates every namespace with all of them: take
	// one away, as if this build added it.
	c, err := client.Dial(client.Options{HostPort: shared.address, Namespace: ns})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.OperatorService().RemoveSearchAttributes(context.Background(), &operatorservice.RemoveSearchAttributesRequest{
		Namespace: ns, SearchAttributes: []string{workflows.SearchAttrLastEventID.GetName()}})
	require.NoError(t, err)
	for k, v := range map[string]string{
		"TEMPORAL_ADDRESS": shared.address, "TEMPORAL_NAMESPACE": ns, "TEMPORAL_CONFIG_FILE": os.DevNull,
		"RELINK_UNVERSIONED": "true", "QUILTT_API_SECRET": "s", "QUILTT_WEBHOOK_SECRET": "w",
		"RELINK_NOTIFY_URL": "", "RELINK_NOTIFY_SECRET": "", "RELINK_METRICS_ADDR": "",
	} {
		t.Setenv(k, v)
	}
	var stderr bytes.Buffer
	exit := make(chan int, 1)
	go func() { exit <- cli.RunWorker(&stderr) }()
	select {
	case code := <-exit:
		require.Equal(t, 1, code)
	case <-time.After(30 * time.Second):
		t.Fatal("the worker started")
	}
	assert.Contains(t, stderr.String(), "relink setup")
	assert.Contains(t, stderr.String(), workflows.SearchAttrLastEventID.GetName())
}
