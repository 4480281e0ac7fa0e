package activities_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/recovery"
)

// scripted is a provider whose close and status answers are set by the
// test, and which counts closes.
type scripted struct {
	initErr   error
	closeErr  error
	status    []aggregator.ConnectionStatus // answers in turn; the last repeats
	statusErr []error
	closes    int
	reads     int
}

func (p *scripted) Name() string { return "scripted" }
func (p *scripted) Initialize(context.Context, aggregator.ConnectionRef) (aggregator.Session, error) {
	return aggregator.Session{}, p.initErr
}
func (p *scripted) Close(context.Context, aggregator.CloseRequest) error {
	p.closes++
	return p.closeErr
}
func (p *scripted) ConnectionStatus(context.Context, aggregator.ConnectionRef) (aggregator.ConnectionStatus, error) {
	i := min(p.reads, len(p.status)-1)
	p.reads++
	var err error
	if i < len(p.statusErr) {
		err = p.statusErr[i]
	}
	return p.status[i], err
}

var (
	broken  = aggregator.ConnectionStatus{Health: aggregator.HealthRepairable, ProviderStatus: "ERROR_REPAIRABLE"}
	syncing = aggregator.ConnectionStatus{Health: aggregator.HealthSyncing, ProviderStatus: "SYNCING"}
	blip    = errors.New("status endpoint: 503")
)

func finish(t *testing.T, p *scripted, resumed bool) (aggregator.ConnectionStatus, error) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	acts := &activities.Activities{Providers: aggregator.NewRegistry(p)}
	env.RegisterActivity(acts)
	v, err := env.ExecuteActivity(acts.FinishReconnect, aggregator.CloseRequest{
		ConnectionRef: aggregator.ConnectionRef{Provider: "scripted", ConnectionID: "c"}, ConnectorToken: "ct", Resumed: resumed})
	var st aggregator.ConnectionStatus
	if err == nil {
		require.NoError(t, v.Get(&st))
	}
	return st, err
}

func TestFinishReconnectDoesNotCloseTwiceWhatTookEffect(t *testing.T) {
	p := &scripted{status: []aggregator.ConnectionStatus{syncing}}
	st, err := finish(t, p, true)
	require.NoError(t, err)
	assert.Equal(t, aggregator.HealthSyncing, st.Health)
	assert.Zero(t, p.closes, "the earlier close went through")
}

func TestFinishReconnectTreatsARefusedCloseOfARepairedConnectionAsSuccess(t *testing.T) {
	p := &scripted{closeErr: aggregator.ReconnectRejected("session already used"), status: []aggregator.ConnectionStatus{syncing}}
	st, err := finish(t, p, false)
	require.NoError(t, err)
	assert.Equal(t, aggregator.HealthSyncing, st.Health)
}

func TestFinishReconnectRejectsOnlyWhatIsStillBroken(t *testing.T) {
	p := &scripted{closeErr: aggregator.ReconnectRejected("bad public token"), status: []aggregator.ConnectionStatus{broken}}
	_, err := finish(t, p, false)
	assert.Equal(t, aggregator.ErrTypeReconnectRejected, activities.ErrorType(err))
}

func TestFinishReconnectRetriesWhenItCannotTell(t *testing.T) {
	// A retried close while the status endpoint blips: neither close again
	// nor count a failed attempt.
	p := &scripted{closeErr: aggregator.ReconnectRejected("session already used"),
		status: []aggregator.ConnectionStatus{{}}, statusErr: []error{blip, blip}}
	_, err := finish(t, p, true)
	assertRetryable(t, err)
	assert.Zero(t, p.closes)

	// A refused close whose outcome cannot be read: retryable too.
	p = &scripted{closeErr: aggregator.ReconnectRejected("session already used"),
		status: []aggregator.ConnectionStatus{{}}, statusErr: []error{blip}}
	_, err = finish(t, p, false)
	assertRetryable(t, err)
}

func assertRetryable(t *testing.T, err error) {
	t.Helper()
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "%v", err)
	assert.False(t, appErr.NonRetryable(), "retried, not counted as a failed attempt: %v", err)
}

// An adapter's aggregator.Error leaves every activity as the non-retryable
// application error of its type and message, which is what the workflow
// reads; an unknown provider is one too; any other error stays retryable.
func TestAdapterErrorsLeaveActivitiesAsNonRetryableApplicationErrors(t *testing.T) {
	ref := aggregator.ConnectionRef{Provider: "scripted", ConnectionID: "c"}
	run := func(p *scripted, activity func(*activities.Activities) (any, any)) error {
		var suite testsuite.WorkflowTestSuite
		env := suite.NewTestActivityEnvironment()
		acts := &activities.Activities{Providers: aggregator.NewRegistry(p)}
		fn, arg := activity(acts)
		env.RegisterActivity(acts)
		_, err := env.ExecuteActivity(fn, arg)
		return err
	}
	initialize := func(a *activities.Activities) (any, any) {
		return a.Initialize, activities.InitializeRequest{ConnectionRef: ref}
	}
	status := func(a *activities.Activities) (any, any) { return a.ConnectionStatus, ref }
	for _, newErr := range []func(string) error{aggregator.NotFound, aggregator.NotRepairable, aggregator.InvalidInput, aggregator.ReconnectRejected} {
		want := aggregator.TypeOf(newErr("x"))
		for name, err := range map[string]error{
			"initialize": run(&scripted{initErr: newErr("no such connection")}, initialize),
			"status":     run(&scripted{statusErr: []error{newErr("no such connection")}, status: []aggregator.ConnectionStatus{{}}}, status),
		} {
			var appErr *temporal.ApplicationError
			require.True(t, errors.As(err, &appErr), "%s: %v", name, err)
			assert.Equal(t, want, appErr.Type(), name)
			assert.True(t, appErr.NonRetryable(), name)
			assert.Contains(t, appErr.Error(), "no such connection", name)
		}
	}
	err := run(&scripted{initErr: blip}, initialize)
	assertRetryable(t, err)

	err = run(&scripted{}, func(a *activities.Activities) (any, any) {
		return a.Initialize, activities.InitializeRequest{ConnectionRef: aggregator.ConnectionRef{Provider: "nobody", ConnectionID: "c"}}
	})
	assert.Equal(t, aggregator.ErrTypeInvalidInput, activities.ErrorType(err), "an unknown provider")
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr))
	assert.True(t, appErr.NonRetryable())
}

// An adapter that adds context to a named error (fmt.Errorf("…: %w", err))
// still ends the repair: the wrapped error leaves the activity as the
// non-retryable application error of its type, not as a retryable one
// that would be retried for the whole repair window.
func TestWrappedAdapterErrorsAreStillNonRetryable(t *testing.T) {
	ref := aggregator.ConnectionRef{Provider: "scripted", ConnectionID: "c"}
	for _, newErr := range []func(string) error{aggregator.NotFound, aggregator.NotRepairable, aggregator.InvalidInput, aggregator.ReconnectRejected} {
		wrapped := fmt.Errorf("quiltt initialize: %w", newErr("no such connection"))
		twice := fmt.Errorf("attempt 2: %w", wrapped)
		for _, err := range []error{wrapped, twice} {
			var suite testsuite.WorkflowTestSuite
			env := suite.NewTestActivityEnvironment()
			acts := &activities.Activities{Providers: aggregator.NewRegistry(&scripted{initErr: err})}
			env.RegisterActivity(acts)
			_, got := env.ExecuteActivity(acts.Initialize, activities.InitializeRequest{ConnectionRef: ref})
			var appErr *temporal.ApplicationError
			require.True(t, errors.As(got, &appErr), "%v", got)
			assert.Equal(t, aggregator.TypeOf(err), appErr.Type(), "%v", err)
			assert.True(t, appErr.NonRetryable(), "%v: retried for the whole window", err)
			assert.Contains(t, appErr.Error(), "quiltt initialize: no such connection", "the adapter's context is kept")
		}
	}
	// Wrapping a plain error keeps it retryable.
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	acts := &activities.Activities{Providers: aggregator.NewRegistry(&scripted{initErr: fmt.Errorf("initialize: %w", blip)})}
	env.RegisterActivity(acts)
	_, err := env.ExecuteActivity(acts.Initialize, activities.InitializeRequest{ConnectionRef: ref})
	assertRetryable(t, err)
}

// A wrapped ReconnectRejected from close is a refused close: the status
// decides, as for a bare one.
func TestFinishReconnectReadsAWrappedRejection(t *testing.T) {
	p := &scripted{closeErr: fmt.Errorf("meld close: %w", aggregator.ReconnectRejected("bad token")), status: []aggregator.ConnectionStatus{broken}}
	_, err := finish(t, p, false)
	assert.Equal(t, aggregator.ErrTypeReconnectRejected, activities.ErrorType(err))
	p = &scripted{closeErr: fmt.Errorf("meld close: %w", aggregator.ReconnectRejected("already used")), status: []aggregator.ConnectionStatus{syncing}}
	st, err := finish(t, p, false)
	require.NoError(t, err)
	assert.Equal(t, aggregator.HealthSyncing, st.Health)
}

// A close whose attempt count started over (an operator's reset) after a
// failed attempt still checks first whether that attempt's close took
// effect: the failed attempt left a record.
func TestFinishReconnectAfterAFailedAttemptChecksFirstWhateverTheAttemptCount(t *testing.T) {
	p := &scripted{status: []aggregator.ConnectionStatus{syncing}}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	acts := &activities.Activities{Providers: aggregator.NewRegistry(p)}
	env.RegisterActivity(acts)
	env.SetHeartbeatDetails("attempted")
	_, err := env.ExecuteActivity(acts.FinishReconnect, aggregator.CloseRequest{
		ConnectionRef: aggregator.ConnectionRef{Provider: "scripted", ConnectionID: "c"}, ConnectorToken: "ct"})
	require.NoError(t, err)
	assert.Zero(t, p.closes, "the earlier close went through")
}

// countingNotifier counts deliveries.
type countingNotifier struct{ sent int }

func (n *countingNotifier) Notify(context.Context, activities.Event) error {
	n.sent++
	return nil
}

// An attempt that finds its event delivered by an earlier attempt (the
// record the earlier one made) succeeds without sending it again; a
// record of another event does not count.
func TestNotifyDoesNotResendWhatAnEarlierAttemptDelivered(t *testing.T) {
	ev := activities.Event{ID: "repair:sandbox:c/run/2", Type: activities.EventRepaired}
	for _, c := range []struct {
		record string
		sent   int
	}{{ev.ID, 0}, {"repair:sandbox:c/run/1", 1}} {
		n := &countingNotifier{}
		var suite testsuite.WorkflowTestSuite
		env := suite.NewTestActivityEnvironment()
		acts := &activities.Activities{Notifier: n}
		env.RegisterActivity(acts)
		env.SetHeartbeatDetails(map[string]string{"eventId": c.record})
		_, err := env.ExecuteActivity(acts.Notify, ev)
		require.NoError(t, err)
		assert.Equal(t, c.sent, n.sent, "record of %s", c.record)
	}
}

// An app that answers and refuses (400, 401, 404) is up: only no answer,
// 408, 429 or a 5xx make an event wait for the app's return.
func TestOnlyAnAppThatIsDownMakesEventsWaitForItsReturn(t *testing.T) {
	for status, waits := range map[int]bool{400: false, 401: false, 404: false, 408: true, 429: true, 500: true, 503: true} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
		signers, err := activities.NewSigners([]string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
		require.NoError(t, err)
		watcher := recovery.New(nil, "ns", slog.New(slog.NewTextHandler(io.Discard, nil)))
		acts := &activities.Activities{Recovery: watcher, Notifier: &activities.HTTPNotifier{URL: srv.URL, Signers: signers,
			Client: srv.Client(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}}
		var suite testsuite.WorkflowTestSuite
		env := suite.NewTestActivityEnvironment()
		env.RegisterActivity(acts)
		_, err = env.ExecuteActivity(acts.Notify, activities.Event{ID: "e", Type: activities.EventRepaired})
		require.Error(t, err)
		assert.Equal(t, waits, watcher.Waiting(activities.DependencyApp) == 1, "%d", status)
		watcher.Stop()
		srv.Close()
	}
}

// A provider that answered without settling the call (ErrAnswered: the
// app's access token refused, say) is up: only a failure that may be an
// outage makes the repair's activities wait for its return.
func TestAProviderThatAnsweredIsNotWaitedFor(t *testing.T) {
	for name, c := range map[string]struct {
		err   error
		waits bool
	}{
		"answered without a word": {fmt.Errorf("me: 401: %w", aggregator.ErrAnswered), false},
		"no answer":               {blip, true},
	} {
		watcher := recovery.New(nil, "ns", slog.New(slog.NewTextHandler(io.Discard, nil)))
		acts := &activities.Activities{Recovery: watcher, Providers: aggregator.NewRegistry(&scripted{initErr: c.err,
			status: []aggregator.ConnectionStatus{broken}, statusErr: []error{c.err}})}
		var suite testsuite.WorkflowTestSuite
		env := suite.NewTestActivityEnvironment()
		env.RegisterActivity(acts)
		_, err := env.ExecuteActivity(acts.Initialize, activities.InitializeRequest{
			ConnectionRef: aggregator.ConnectionRef{Provider: "scripted", ConnectionID: "c"}})
		require.Error(t, err, name)
		assert.Equal(t, c.waits, watcher.Waiting("provider:scripted") == 1, name)
		watcher.Stop()
	}
}
