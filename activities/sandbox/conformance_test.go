package sandbox_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/aggregator/conformance"
	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/activities/sandbox"
)

// The sandbox keeps the provider contract: it is its own fake, and the
// webhooks checked are the ones it sends, captured on their way to the
// gateway and verified by the receiver its registration builds.
//
// Twice: with the close at the provider (as Quiltt's), and with sessions
// closed in the workflow task (Script.CloseInTask, as Plaid's).
func TestConformance(t *testing.T) {
	for _, closeInTask := range []bool{false, true} {
		t.Run(fmt.Sprintf("closeInTask=%t", closeInTask), func(t *testing.T) {
			conformance.Run(t, sandbox.Registration, sandboxFixture(closeInTask))
		})
	}
}

func sandboxFixture(closeInTask bool) func(t *testing.T) *conformance.Fixture {
	return func(t *testing.T) *conformance.Fixture {
		ctx := context.Background()
		settings := &sandbox.Settings{WebhookSecret: "sandbox-test-secret"}
		rcv, err := sandbox.Registration.NewReceiver(settings, aggregator.Env{WebhookTolerance: quiltt.DefaultTolerance, Now: time.Now})
		require.NoError(t, err)

		// The gateway's webhook endpoint, as the sandbox posts to it.
		var mu sync.Mutex
		var lastBody []byte
		var lastHeader http.Header
		gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			lastBody, lastHeader = body, r.Header.Clone()
			mu.Unlock()
		}))
		t.Cleanup(gw.Close)
		signedAt := time.Now()
		p := &sandbox.Provider{WidgetURL: "http://127.0.0.1:8080/sandbox/widget", Now: time.Now,
			Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
			Webhooks: &sandbox.WebhookSender{URL: gw.URL, Secret: settings.WebhookSecret, Client: gw.Client(), Now: func() time.Time { return signedAt }}}
		t.Cleanup(p.Wait)
		ref := func(id string) aggregator.ConnectionRef {
			return aggregator.ConnectionRef{Provider: sandbox.Name, ConnectionID: id, ProfileID: "profile_1"}
		}
		broken := func(t *testing.T, id string) aggregator.ConnectionRef {
			_, err := p.Break(ctx, id, "profile_1", "First Sandbox Bank")
			require.NoError(t, err)
			return ref(id)
		}
		script := func(t *testing.T, id string, s sandbox.Script) {
			_, err := p.SetScript(id, s)
			require.NoError(t, err)
		}
		return &conformance.Fixture{
			Provider:  p,
			Receiver:  rcv,
			Tolerance: quiltt.DefaultTolerance,
			Broken: func(t *testing.T) aggregator.ConnectionRef {
				r := broken(t, "conn_broken")
				script(t, "conn_broken", sandbox.Script{CloseInTask: closeInTask})
				return r
			},
			Healthy: func(t *testing.T) aggregator.ConnectionRef {
				script(t, "conn_ok", sandbox.Script{}) // a new connection starts healthy
				return ref("conn_ok")
			},
			Missing: func(*testing.T) aggregator.ConnectionRef { return ref("conn_missing") },
			NeedingUser: func(t *testing.T) []aggregator.ConnectionRef {
				var want []aggregator.ConnectionRef
				for i := range 3 {
					want = append(want, ref(p.BreakLosingWebhook(fmt.Sprintf("conn_lost_%d", i), "profile_1", "").ID))
					script(t, fmt.Sprintf("conn_fine_%d", i), sandbox.Script{})
				}
				require.NoError(t, p.Disconnect(ctx, "conn_fine_0")) // needs the bank, not the user
				return want
			},
			Succeed: func(t *testing.T, r aggregator.ConnectionRef, _ aggregator.Session) aggregator.CloseRequest {
				login, err := p.LoginUser(r.ConnectionID) // the user signs in in the widget
				require.NoError(t, err)
				return aggregator.CloseRequest{ConnectionRef: r, ConnectorToken: login.ConnectorToken, PublicToken: login.PublicToken, Metadata: login.Metadata}
			},
			SetStatus: func(t *testing.T, r aggregator.ConnectionRef, status string) {
				switch status {
				case quiltt.StatusErrorRepairable:
					broken(t, r.ConnectionID)
				case quiltt.StatusDisconnected:
					require.NoError(t, p.Disconnect(ctx, r.ConnectionID))
				case quiltt.StatusSynced: // it repairs itself
					script(t, r.ConnectionID, sandbox.Script{Initialize: sandbox.InitializeContinue})
					_, err := p.Initialize(ctx, r)
					require.NoError(t, err)
				}
			},
			Statuses: map[string]aggregator.Health{
				quiltt.StatusSynced:          aggregator.HealthHealthy,
				quiltt.StatusErrorRepairable: aggregator.HealthRepairable,
				quiltt.StatusDisconnected:    aggregator.HealthDisconnected,
			},
			Errors: map[string]func(t *testing.T) error{
				aggregator.ErrTypeConnectionNotFound: func(*testing.T) error {
					_, err := p.ConnectionStatus(ctx, ref("conn_missing"))
					return err
				},
				aggregator.ErrTypeNotRepairable: func(t *testing.T) error {
					r := broken(t, "conn_conflict")
					script(t, "conn_conflict", sandbox.Script{Initialize: sandbox.InitializeConflict})
					_, err := p.Initialize(ctx, r)
					return err
				},
				aggregator.ErrTypeReconnectRejected: func(t *testing.T) error {
					r := broken(t, "conn_broken")
					s, err := p.Initialize(ctx, r)
					require.NoError(t, err)
					return p.Close(ctx, aggregator.CloseRequest{ConnectionRef: r, ConnectorToken: s.ConnectorToken, PublicToken: "forged"})
				},
			},
			Outage: func(t *testing.T) error {
				r := broken(t, "conn_flaky")
				script(t, "conn_flaky", sandbox.Script{FailCalls: 1})
				_, err := p.Initialize(ctx, r)
				return err
			},
			Webhook: func(t *testing.T, r aggregator.ConnectionRef, kind aggregator.EventKind, at time.Time) ([]byte, http.Header) {
				signedAt = at
				switch kind {
				case aggregator.EventKindRepairable:
					broken(t, r.ConnectionID)
				case aggregator.EventKindDisconnected:
					require.NoError(t, p.Disconnect(ctx, r.ConnectionID))
				default:
					t.Fatalf("the sandbox sends no %s webhook on demand", kind)
				}
				mu.Lock()
				defer mu.Unlock()
				return lastBody, lastHeader
			},
			WebhookKinds: []aggregator.EventKind{aggregator.EventKindRepairable, aggregator.EventKindDisconnected},
		}
	}
}
