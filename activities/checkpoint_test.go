package activities_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/aggregator"
)

// checkpointing saves "tokens" in its checkpoint and fails, as an adapter
// whose delivery to the app failed after the provider rotated them; it
// records what it found.
type checkpointing struct {
	scripted
	had    bool
	loaded []byte
}

func (p *checkpointing) Initialize(ctx context.Context, _ aggregator.ConnectionRef) (aggregator.Session, error) {
	cp := aggregator.CheckpointFrom(ctx)
	if p.had = cp != nil; !p.had {
		return aggregator.Session{}, aggregator.ErrCheckpointNeeded
	}
	p.loaded = cp.Load()
	_ = cp.Save([]byte("tokens"))
	return aggregator.Session{}, errors.New("app down")
}

func (p *checkpointing) Close(ctx context.Context, _ aggregator.CloseRequest) error {
	_ = aggregator.CheckpointFrom(ctx).Save([]byte("tokens"))
	return errors.New("app down")
}

// heartbeats runs fn in an activity environment over p and returns the
// heartbeats recorded, each as its mark and checkpoint.
func heartbeats(t *testing.T, p aggregator.Provider, fn func(env *testsuite.TestActivityEnvironment, acts *activities.Activities) error) ([][2]string, error) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	acts := &activities.Activities{Providers: aggregator.NewRegistry(p)}
	env.RegisterActivity(acts)
	var got [][2]string
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var mark string
		var data []byte
		require.NoError(t, details.Get(&mark, &data))
		got = append(got, [2]string{mark, string(data)})
	})
	return got, fn(env, acts)
}

// Initialize, as an activity, gives the adapter a checkpoint kept in the
// heartbeat details; as a local activity (the probe's first attempt) it
// gives none, and the adapter's ErrCheckpointNeeded stays retryable.
func TestInitializeCheckpointIsTheHeartbeat(t *testing.T) {
	p := &checkpointing{scripted: scripted{}}
	req := activities.InitializeRequest{ConnectionRef: aggregator.ConnectionRef{Provider: "scripted", ConnectionID: "c"}}
	var got [][2]string
	got, err := heartbeats(t, p, func(env *testsuite.TestActivityEnvironment, acts *activities.Activities) error {
		_, err := env.ExecuteActivity(acts.Initialize, req)
		return err
	})
	assertRetryable(t, err)
	assert.True(t, p.had)
	assert.Empty(t, p.loaded)
	assert.Equal(t, [][2]string{{"", "tokens"}}, got)

	got, err = heartbeats(t, p, func(env *testsuite.TestActivityEnvironment, acts *activities.Activities) error {
		_, err := env.ExecuteLocalActivity(acts.Initialize, req)
		return err
	})
	assert.False(t, p.had, "a local attempt has no heartbeat")
	assert.ErrorContains(t, err, aggregator.ErrCheckpointNeeded.Error())
	assert.Empty(t, activities.ErrorType(err), "no named type: the workflow falls back to the activity")
	assert.Empty(t, got)
}

// A failed close keeps its checkpoint with the mark that it was
// attempted (the mark alone would overwrite it).
func TestFinishReconnectKeepsTheCheckpointWithItsMark(t *testing.T) {
	p := &checkpointing{scripted: scripted{status: []aggregator.ConnectionStatus{broken}}}
	got, err := heartbeats(t, p, func(env *testsuite.TestActivityEnvironment, acts *activities.Activities) error {
		_, err := env.ExecuteActivity(acts.FinishReconnect, aggregator.CloseRequest{
			ConnectionRef: aggregator.ConnectionRef{Provider: "scripted", ConnectionID: "c"}, ConnectorToken: "ct"})
		return err
	})
	assertRetryable(t, err)
	require.NotEmpty(t, got)
	assert.Equal(t, [2]string{"attempted", "tokens"}, got[len(got)-1])
}
