package activities_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/relink-dev/relink/activities"
)

// scripted is a provider whose close and status answers are set by the
// test, and which counts closes.
type scripted struct {
	closeErr  error
	status    []activities.ConnectionStatus // answers in turn; the last repeats
	statusErr []error
	closes    int
	reads     int
}

func (p *scripted) Name() string { return "scripted" }
func (p *scripted) Initialize(context.Context, activities.ConnectionRef) (activities.Session, error) {
	return activities.Session{}, nil
}
func (p *scripted) Close(context.Context, activities.CloseRequest) error {
	p.closes++
	return p.closeErr
}
func (p *scripted) ConnectionStatus(context.Context, activities.ConnectionRef) (activities.ConnectionStatus, error) {
	i := min(p.reads, len(p.status)-1)
	p.reads++
	var err error
	if i < len(p.statusErr) {
		err = p.statusErr[i]
	}
	return p.status[i], err
}

var (
	broken  = activities.ConnectionStatus{Health: activities.HealthRepairable, ProviderStatus: "ERROR_REPAIRABLE"}
	syncing = activities.ConnectionStatus{Health: activities.HealthSyncing, ProviderStatus: "SYNCING"}
	blip    = errors.New("status endpoint: 503")
)

func finish(t *testing.T, p *scripted, resumed bool) (activities.ConnectionStatus, error) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	acts := &activities.Activities{Providers: activities.NewRegistry(p)}
	env.RegisterActivity(acts)
	v, err := env.ExecuteActivity(acts.FinishReconnect, activities.CloseRequest{
		ConnectionRef: activities.ConnectionRef{Provider: "scripted", ConnectionID: "c"}, ConnectorToken: "ct", Resumed: resumed})
	var st activities.ConnectionStatus
	if err == nil {
		require.NoError(t, v.Get(&st))
	}
	return st, err
}

func TestFinishReconnectDoesNotCloseTwiceWhatTookEffect(t *testing.T) {
	p := &scripted{status: []activities.ConnectionStatus{syncing}}
	st, err := finish(t, p, true)
	require.NoError(t, err)
	assert.Equal(t, activities.HealthSyncing, st.Health)
	assert.Zero(t, p.closes, "the earlier close went through")
}

func TestFinishReconnectTreatsARefusedCloseOfARepairedConnectionAsSuccess(t *testing.T) {
	p := &scripted{closeErr: activities.ReconnectRejected("session already used"), status: []activities.ConnectionStatus{syncing}}
	st, err := finish(t, p, false)
	require.NoError(t, err)
	assert.Equal(t, activities.HealthSyncing, st.Health)
}

func TestFinishReconnectRejectsOnlyWhatIsStillBroken(t *testing.T) {
	p := &scripted{closeErr: activities.ReconnectRejected("bad public token"), status: []activities.ConnectionStatus{broken}}
	_, err := finish(t, p, false)
	assert.Equal(t, activities.ErrTypeReconnectRejected, activities.ErrorType(err))
}

func TestFinishReconnectRetriesWhenItCannotTell(t *testing.T) {
	// A retried close while the status endpoint blips: neither close again
	// nor count a failed attempt.
	p := &scripted{closeErr: activities.ReconnectRejected("session already used"),
		status: []activities.ConnectionStatus{{}}, statusErr: []error{blip, blip}}
	_, err := finish(t, p, true)
	assertRetryable(t, err)
	assert.Zero(t, p.closes)

	// A refused close whose outcome cannot be read: retryable too.
	p = &scripted{closeErr: activities.ReconnectRejected("session already used"),
		status: []activities.ConnectionStatus{{}}, statusErr: []error{blip}}
	_, err = finish(t, p, false)
	assertRetryable(t, err)
}

func assertRetryable(t *testing.T, err error) {
	t.Helper()
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "%v", err)
	assert.False(t, appErr.NonRetryable(), "retried, not counted as a failed attempt: %v", err)
}
