package truelayer_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/aggregator/conformance"
	"github.com/relink-dev/relink/activities/truelayer"
	"github.com/relink-dev/relink/activities/truelayer/truelayerfake"
)

// TrueLayer keeps the provider contract against its local fake.
func TestConformance(t *testing.T) {
	conformance.Run(t, truelayer.Registration, func(t *testing.T) *conformance.Fixture {
		fake, tokens, p := setup(t)
		ctx := context.Background()
		return &conformance.Fixture{
			Provider:  withCheckpoint{p},
			Receiver:  truelayer.WebhookReceiver{},
			Tolerance: 5 * time.Minute,
			// Its consent ran out; the bank wants a sign-in (john/doe).
			Broken: func(*testing.T) aggregator.ConnectionRef {
				return put(fake, tokens, truelayerfake.Connection{ID: "conn_doe", Username: "john", Password: "doe", ConsentExpired: true})
			},
			Healthy: func(*testing.T) aggregator.ConnectionRef {
				return put(fake, tokens, truelayerfake.Connection{ID: "conn_eternal", Username: "john", Password: "eternal"})
			},
			Missing: func(*testing.T) aggregator.ConnectionRef { return ref("conn_missing") },
			Succeed: func(t *testing.T, r aggregator.ConnectionRef, s aggregator.Session) aggregator.CloseRequest {
				return aggregator.CloseRequest{ConnectionRef: r, ConnectorToken: s.ConnectorToken, PublicToken: signIn(t, fake, s)}
			},
			SetStatus: func(_ *testing.T, r aggregator.ConnectionRef, status string) {
				fake.Update(r.ConnectionID, func(c *truelayerfake.Connection) {
					c.ConsentExpired = status == truelayer.ErrAccessDenied
					c.Username = "john"
					if status != "authorised" && status != truelayer.ErrAccessDenied {
						c.Username, c.Password = "error."+status, "error"
					}
				})
			},
			Statuses: map[string]aggregator.Health{
				"authorised":                          aggregator.HealthHealthy,
				truelayer.ErrAccessDenied:             aggregator.HealthRepairable,
				truelayer.ErrWrongCredentials:         aggregator.HealthRepairable,
				truelayer.ErrUserInputRequired:        aggregator.HealthRepairable,
				truelayer.ErrAccountTemporarilyLocked: aggregator.HealthDegraded,
				truelayer.ErrAccountPermanentlyLocked: aggregator.HealthDisconnected,
			},
			Errors: map[string]func(t *testing.T) error{
				aggregator.ErrTypeConnectionNotFound: func(*testing.T) error {
					_, err := p.ConnectionStatus(ctx, ref("conn_missing"))
					return err
				},
				aggregator.ErrTypeNotRepairable: func(*testing.T) error {
					r := put(fake, tokens, truelayerfake.Connection{ID: "conn_locked", Username: "error.account_permanently_locked", Password: "error"})
					_, err := p.Initialize(activityCtx(), r)
					return err
				},
				aggregator.ErrTypeReconnectRejected: func(*testing.T) error {
					r := put(fake, tokens, truelayerfake.Connection{ID: "conn_doe", Username: "john", Password: "doe", ConsentExpired: true})
					return p.Close(activityCtx(), aggregator.CloseRequest{ConnectionRef: r, ConnectorToken: "s1", PublicToken: "code_forged"})
				},
			},
			Outage: func(*testing.T) error {
				r := put(fake, tokens, truelayerfake.Connection{ID: "conn_doe", Username: "john", Password: "doe", ConsentExpired: true})
				fake.HTTPStatus = 503
				_, err := p.Initialize(activityCtx(), r)
				return err
			},
			NoWebhooks: true,
		}
	})
}

// signIn plays the user at the session's sign-in page and returns the
// code TrueLayer sends back.
func signIn(t *testing.T, fake *truelayerfake.Server, s aggregator.Session) string {
	t.Helper()
	back, err := fake.Approve(s.WidgetURL)
	require.NoError(t, err)
	u, err := url.Parse(back)
	require.NoError(t, err)
	require.True(t, len(u.Query().Get("code")) > 0)
	return u.Query().Get("code")
}

// withCheckpoint is the adapter as activities call it: each call with a
// checkpoint of its own (an activity's attempt).
type withCheckpoint struct{ *truelayer.Provider }

func (w withCheckpoint) Initialize(ctx context.Context, r aggregator.ConnectionRef) (aggregator.Session, error) {
	return w.Provider.Initialize(aggregator.WithCheckpoint(ctx, &aggregator.MemoryCheckpoint{}), r)
}

func (w withCheckpoint) Close(ctx context.Context, req aggregator.CloseRequest) error {
	return w.Provider.Close(aggregator.WithCheckpoint(ctx, &aggregator.MemoryCheckpoint{}), req)
}
