package quiltt_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/aggregator/conformance"
	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/activities/quiltt/quilttfake"
)

const webhookSecret = "quiltt_whsec_test"

// Quiltt keeps the provider contract against its local fake, for both
// of its connectors (Plaid Link and MX's framed widget).
func TestConformance(t *testing.T) {
	for _, connector := range []string{quiltt.ConnectorPlaid, quiltt.ConnectorMX} {
		t.Run(connector, func(t *testing.T) {
			conformance.Run(t, quiltt.Registration, func(t *testing.T) *conformance.Fixture {
				return quilttFixture(t, connector)
			})
		})
	}
}

func quilttFixture(t *testing.T, connector string) *conformance.Fixture {
	fake, p := setup(t)
	ctx := context.Background()
	put := func(id, status string) aggregator.ConnectionRef {
		fake.Put(quilttfake.Connection{ID: id, ProfileID: "p_1", Provider: connector, Status: status})
		return ref(id, connector)
	}
	event := map[aggregator.EventKind]string{
		aggregator.EventKindRepairable:   quiltt.EventRepairable,
		aggregator.EventKindSynced:       quiltt.EventSyncedSuccessful,
		aggregator.EventKindErrored:      quiltt.EventErroredInstitution,
		aggregator.EventKindDisconnected: quiltt.EventDisconnected,
		aggregator.EventKindDeleted:      quiltt.EventDeleted,
	}
	seq := 0
	return &conformance.Fixture{
		Provider:  p,
		Receiver:  &quiltt.WebhookReceiver{Secret: webhookSecret, Tolerance: quiltt.DefaultTolerance, Now: time.Now},
		Tolerance: quiltt.DefaultTolerance,
		Broken:    func(*testing.T) aggregator.ConnectionRef { return put("conn_broken", quiltt.StatusErrorRepairable) },
		Healthy:   func(*testing.T) aggregator.ConnectionRef { return put("conn_healthy", quiltt.StatusSynced) },
		Missing:   func(*testing.T) aggregator.ConnectionRef { return ref("conn_missing", connector) },
		Succeed: func(_ *testing.T, _ aggregator.ConnectionRef, s aggregator.Session) aggregator.CloseRequest {
			req := aggregator.CloseRequest{ConnectionRef: ref("conn_broken", connector), ConnectorToken: s.ConnectorToken}
			if connector == quiltt.ConnectorPlaid {
				req.PublicToken = "public-sandbox-1" // what Plaid Link's onSuccess hands over
			}
			return req
		},
		SetStatus: func(_ *testing.T, r aggregator.ConnectionRef, status string) { put(r.ConnectionID, status) },
		Statuses: map[string]aggregator.Health{
			quiltt.StatusSynced: aggregator.HealthHealthy, quiltt.StatusSyncing: aggregator.HealthSyncing,
			quiltt.StatusErrorRepairable: aggregator.HealthRepairable, quiltt.StatusErrorInstitution: aggregator.HealthDegraded,
			quiltt.StatusDisconnected: aggregator.HealthDisconnected,
		},
		Errors: map[string]func(t *testing.T) error{
			aggregator.ErrTypeConnectionNotFound: func(*testing.T) error {
				_, err := p.ConnectionStatus(ctx, ref("conn_missing", connector))
				return err
			},
			aggregator.ErrTypeNotRepairable: func(*testing.T) error {
				_, err := p.Initialize(ctx, put("conn_gone", quiltt.StatusDisconnected))
				return err
			},
			aggregator.ErrTypeInvalidInput: func(*testing.T) error {
				r := put("conn_broken", quiltt.StatusErrorRepairable)
				fake.HTTPStatus = http.StatusBadRequest
				_, err := p.Initialize(ctx, r)
				return err
			},
			aggregator.ErrTypeReconnectRejected: func(t *testing.T) error {
				r := put("conn_broken", quiltt.StatusErrorRepairable)
				s, err := p.Initialize(ctx, r)
				require.NoError(t, err)
				fake.CloseFailsWith = "INVALID_PUBLIC_TOKEN"
				return p.Close(ctx, aggregator.CloseRequest{ConnectionRef: r, ConnectorToken: s.ConnectorToken, PublicToken: "public-sandbox-1"})
			},
		},
		Outage: func(*testing.T) error {
			r := put("conn_broken", quiltt.StatusErrorRepairable)
			fake.HTTPStatus = http.StatusServiceUnavailable
			_, err := p.Initialize(ctx, r)
			return err
		},
		Webhook: func(t *testing.T, r aggregator.ConnectionRef, kind aggregator.EventKind, at time.Time) ([]byte, http.Header) {
			seq++
			body, header, err := quiltt.Delivery(webhookSecret, at, quiltt.Event{
				ID: "evt_" + string(rune('a'+seq)), Type: event[kind], At: at,
				Profile: &quiltt.Profile{ID: r.ProfileID}, Record: &quiltt.Record{ID: r.ConnectionID, Provider: connector},
			})
			require.NoError(t, err)
			return body, header
		},
		WebhookKinds: []aggregator.EventKind{aggregator.EventKindRepairable, aggregator.EventKindSynced, aggregator.EventKindErrored,
			aggregator.EventKindDisconnected, aggregator.EventKindDeleted},
		NeedingUser: func(*testing.T) []aggregator.ConnectionRef {
			want := []aggregator.ConnectionRef{ref("conn_plaid", ""), ref("conn_mx", "")} // from setup
			add := func(id, profile, status string) {
				fake.Put(quilttfake.Connection{ID: id, ProfileID: profile, Provider: connector, Status: status})
				if status == quiltt.StatusErrorRepairable {
					want = append(want, aggregator.ConnectionRef{Provider: quiltt.Name, ConnectionID: id, ProfileID: profile})
				}
			}
			add("conn_p2_a", "p_2", quiltt.StatusErrorRepairable)
			add("conn_p2_b", "p_2", quiltt.StatusErrorRepairable)
			add("conn_p2_c", "p_2", quiltt.StatusErrorRepairable)
			add("conn_p2_ok", "p_2", quiltt.StatusSynced)
			add("conn_p3_bank", "p_3", quiltt.StatusErrorInstitution)
			add("conn_p4_a", "p_4", quiltt.StatusErrorRepairable)
			fake.PutProfile("p_5")
			return want
		},
	}
}
