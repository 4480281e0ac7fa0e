package mx_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/aggregator/conformance"
	"github.com/relink-dev/relink/activities/mx"
	"github.com/relink-dev/relink/activities/mx/mxfake"
)

// MX keeps the provider contract against its local fake.
func TestConformance(t *testing.T) {
	conformance.Run(t, mx.Registration, func(t *testing.T) *conformance.Fixture {
		fake, p := setup(t)
		ctx := context.Background()
		put := func(user, guid, status string) aggregator.ConnectionRef {
			fake.Put(mxfake.Member{GUID: guid, UserGUID: user, Name: "MX Bank", InstitutionCode: "mxbank", Status: status})
			return aggregator.ConnectionRef{Provider: mx.Name, ConnectionID: guid, ProfileID: user}
		}
		return &conformance.Fixture{
			Provider:  p,
			Receiver:  receiver(time.Now),
			Tolerance: 5 * time.Minute,
			Broken:    func(*testing.T) aggregator.ConnectionRef { return ref("MBR-broken") },
			Healthy:   func(*testing.T) aggregator.ConnectionRef { return ref("MBR-ok") },
			Missing:   func(*testing.T) aggregator.ConnectionRef { return ref("MBR-missing") },
			Succeed: func(_ *testing.T, r aggregator.ConnectionRef, s aggregator.Session) aggregator.CloseRequest {
				fake.Set(r.ConnectionID, mx.StatusConnected) // the user answered MX's challenge in the widget
				return aggregator.CloseRequest{ConnectionRef: r, ConnectorToken: s.ConnectorToken,
					Metadata: json.RawMessage(fmt.Sprintf(`{"user_guid":%q,"member_guid":%q,"session_guid":"SES-1"}`, r.ProfileID, r.ConnectionID))}
			},
			SetStatus: func(_ *testing.T, r aggregator.ConnectionRef, status string) {
				put(r.ProfileID, r.ConnectionID, status)
			},
			Statuses: map[string]aggregator.Health{
				mx.StatusConnected: aggregator.HealthHealthy, mx.StatusChallenged: aggregator.HealthRepairable,
				mx.StatusDenied: aggregator.HealthRepairable, mx.StatusImpeded: aggregator.HealthRepairable,
				mx.StatusResumed: aggregator.HealthSyncing, mx.StatusDegraded: aggregator.HealthDegraded,
				mx.StatusLocked: aggregator.HealthDisconnected, mx.StatusClosed: aggregator.HealthDisconnected,
			},
			Errors: map[string]func(t *testing.T) error{
				aggregator.ErrTypeConnectionNotFound: func(*testing.T) error {
					_, err := p.ConnectionStatus(ctx, ref("MBR-missing"))
					return err
				},
				aggregator.ErrTypeNotRepairable: func(*testing.T) error {
					_, err := p.Initialize(ctx, put(user, "MBR-locked", mx.StatusLocked))
					return err
				},
				aggregator.ErrTypeInvalidInput: func(*testing.T) error {
					_, err := p.Initialize(ctx, aggregator.ConnectionRef{Provider: mx.Name, ConnectionID: "MBR-broken"})
					return err
				},
				aggregator.ErrTypeReconnectRejected: func(*testing.T) error {
					return p.Close(ctx, aggregator.CloseRequest{ConnectionRef: ref("MBR-broken"), ConnectorToken: "mxw_1",
						Metadata: json.RawMessage(`{"user_guid":"USR-1","member_guid":"MBR-someone-else"}`)})
				},
			},
			Outage: func(*testing.T) error {
				fake.SetHTTPStatus(http.StatusServiceUnavailable)
				_, err := p.Initialize(ctx, ref("MBR-broken"))
				return err
			},
			Webhook: func(t *testing.T, r aggregator.ConnectionRef, kind aggregator.EventKind, at time.Time) ([]byte, http.Header) {
				m := mxfake.Member{GUID: r.ConnectionID, UserGUID: r.ProfileID, Name: "MX Bank", Status: mx.StatusChallenged}
				var body []byte
				switch kind {
				case aggregator.EventKindRepairable:
					body = mxfake.ConnectionStatusBody(m)
				default:
					t.Fatalf("MX sends no %s webhook", kind)
				}
				return body, http.Header{"Content-Type": {"application/json"}, "Authorization": {mxfake.BasicAuth(hookUser, hookPassword)}}
			},
			WebhookKinds: []aggregator.EventKind{aggregator.EventKindRepairable},
			Unsigned:     true,
			Forged: func(_ *testing.T, h http.Header) http.Header {
				h.Set("Authorization", mxfake.BasicAuth(hookUser, "not-the-password-0000"))
				return h
			},
			NeedingUser: func(*testing.T) []aggregator.ConnectionRef {
				want := []aggregator.ConnectionRef{ref("MBR-broken")} // from setup
				for i := range 3 {
					u := fmt.Sprintf("USR-%d", i+2)
					want = append(want, put(u, fmt.Sprintf("MBR-denied-%d", i), mx.StatusDenied))
					put(u, fmt.Sprintf("MBR-fine-%d", i), mx.StatusConnected)
					want = append(want, put(u, fmt.Sprintf("MBR-mfa-%d", i), mx.StatusChallenged))
				}
				put("USR-9", "MBR-locked", mx.StatusLocked)
				put("USR-9", "MBR-syncing", mx.StatusResumed)
				put("USR-gone", "MBR-of-disabled", mx.StatusDenied)
				fake.DisableUser("USR-gone")
				return want
			},
		}
	})
}
