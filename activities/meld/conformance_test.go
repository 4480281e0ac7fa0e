package meld_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/aggregator/conformance"
	"github.com/relink-dev/relink/activities/meld"
	"github.com/relink-dev/relink/activities/meld/meldfake"
)

// Meld keeps the provider contract against its local fake.
func TestConformance(t *testing.T) {
	conformance.Run(t, meld.Registration, func(t *testing.T) *conformance.Fixture {
		fake, p := setup(t)
		ctx := context.Background()
		put := func(id, status, reason string) aggregator.ConnectionRef {
			fake.Put(meldfake.Connection{ID: id, CustomerID: "cus_1", Status: status, StatusReason: reason})
			return ref(id)
		}
		seq := 0
		return &conformance.Fixture{
			Provider:  p,
			Receiver:  &meld.WebhookReceiver{Secret: hookSecret, URL: hookURL, Tolerance: 5 * time.Minute, Now: time.Now, Proactive: true},
			Tolerance: 5 * time.Minute,
			Broken:    func(*testing.T) aggregator.ConnectionRef { return ref("conn_broken") },
			Healthy:   func(*testing.T) aggregator.ConnectionRef { return ref("conn_ok") },
			Missing:   func(*testing.T) aggregator.ConnectionRef { return ref("conn_missing") },
			Succeed: func(_ *testing.T, r aggregator.ConnectionRef, s aggregator.Session) aggregator.CloseRequest {
				fake.Set(r.ConnectionID, meld.StatusActive, "") // the user signed in at Meld Connect
				return aggregator.CloseRequest{ConnectionRef: r, ConnectorToken: s.ConnectorToken,
					Metadata: json.RawMessage(`{"institutionName":"Chase"}`)}
			},
			SetStatus: func(_ *testing.T, r aggregator.ConnectionRef, status string) {
				st, reason, _ := cut(status)
				put(r.ConnectionID, st, reason)
			},
			Statuses: map[string]aggregator.Health{
				meld.StatusActive: aggregator.HealthHealthy, meld.StatusInProgress: aggregator.HealthSyncing,
				meld.StatusReconnectRequired: aggregator.HealthRepairable, meld.StatusPartiallyActive: aggregator.HealthDegraded,
				meld.StatusDegraded + "/" + meld.ReasonInteractiveRefresh: aggregator.HealthRepairable,
				meld.StatusExpired: aggregator.HealthDisconnected, meld.StatusUnrecoverable: aggregator.HealthDisconnected,
			},
			Errors: map[string]func(t *testing.T) error{
				aggregator.ErrTypeConnectionNotFound: func(*testing.T) error {
					_, err := p.ConnectionStatus(ctx, ref("conn_missing"))
					return err
				},
				aggregator.ErrTypeNotRepairable: func(*testing.T) error {
					_, err := p.Initialize(ctx, ref("conn_expired"))
					return err
				},
				aggregator.ErrTypeInvalidInput: func(*testing.T) error {
					fake.RepairStatus = http.StatusBadRequest
					_, err := p.Initialize(ctx, ref("conn_broken"))
					return err
				},
			},
			Outage: func(*testing.T) error {
				fake.HTTPStatus = http.StatusServiceUnavailable
				_, err := p.Initialize(ctx, ref("conn_broken"))
				return err
			},
			Webhook: func(t *testing.T, r aggregator.ConnectionRef, kind aggregator.EventKind, at time.Time) ([]byte, http.Header) {
				seq++
				eventType, status, reason := meld.EventStatusChange, "", ""
				switch kind {
				case aggregator.EventKindRepairable:
					status, reason = meld.StatusReconnectRequired, "LOGIN_REQUIRED"
				case aggregator.EventKindSynced:
					status = meld.StatusActive
				case aggregator.EventKindErrored:
					status, reason = meld.StatusDegraded, "INSTITUTION_CURRENTLY_UNAVAILABLE"
				case aggregator.EventKindProactive:
					status, reason = meld.StatusActive, meld.ReasonAccessExpiringSoon
				case aggregator.EventKindDisconnected:
					status = meld.StatusExpired
				case aggregator.EventKindDeleted:
					eventType, status = meld.EventDeleted, meld.StatusDeleted
				}
				payload := map[string]any{"connectionId": r.ConnectionID, "customerId": "cus_1", "newStatus": status}
				if reason != "" {
					payload["statusReason"] = reason
				}
				body, err := json.Marshal(map[string]any{"eventType": eventType, "eventId": fmt.Sprintf("evt_%d", seq),
					"timestamp": at.UTC().Format(time.RFC3339Nano), "accountId": "acct_1", "version": meld.DefaultVersion, "payload": payload})
				require.NoError(t, err)
				ts := at.UTC().Format(time.RFC3339Nano)
				return body, http.Header{meld.HeaderTimestamp: {ts}, meld.HeaderSignature: {meld.Sign(hookSecret, ts, hookURL, body)}}
			},
			WebhookKinds: []aggregator.EventKind{aggregator.EventKindRepairable, aggregator.EventKindSynced, aggregator.EventKindErrored,
				aggregator.EventKindProactive, aggregator.EventKindDisconnected, aggregator.EventKindDeleted},
			NeedingUser: func(*testing.T) []aggregator.ConnectionRef {
				want := []aggregator.ConnectionRef{ref("conn_broken")} // from setup
				for i := range 3 {
					want = append(want, put(fmt.Sprintf("conn_login_%d", i), meld.StatusReconnectRequired, "LOGIN_REQUIRED"))
					put(fmt.Sprintf("conn_fine_%d", i), meld.StatusActive, "")
				}
				want = append(want, put("conn_interactive", meld.StatusDegraded, meld.ReasonInteractiveRefresh))
				put("conn_bank_down", meld.StatusDegraded, "INSTITUTION_CURRENTLY_UNAVAILABLE")
				put("conn_partial", meld.StatusPartiallyActive, "PARTIAL_AGGREGATION_SUCCESS")
				return want
			},
		}
	})
}

// cut splits "STATUS/REASON".
func cut(s string) (status, reason string, ok bool) {
	for i := range s {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
