package plaid_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/aggregator/conformance"
	"github.com/relink-dev/relink/activities/plaid"
	"github.com/relink-dev/relink/activities/plaid/plaidfake"
)

// Plaid keeps the provider contract against its local fake.
func TestConformance(t *testing.T) {
	conformance.Run(t, plaid.Registration, func(t *testing.T) *conformance.Fixture {
		fake, p := setup(t)
		ctx := context.Background()
		tokens := p.Tokens.(plaid.StaticAccessTokens)
		put := func(id, errorCode string) aggregator.ConnectionRef {
			tokens[id] = "access-sandbox-" + id
			fake.Put(plaidfake.Item{ID: id, AccessToken: tokens[id], ErrorCode: errorCode})
			return ref(id)
		}
		rcv := receiver(fake, true)
		rcv.MaxAge = plaid.DefaultMaxAge
		return &conformance.Fixture{
			Provider:  p,
			Receiver:  rcv,
			Tolerance: plaid.DefaultMaxAge,
			Broken:    func(*testing.T) aggregator.ConnectionRef { return put("item_1", plaid.CodeItemLoginRequired) },
			Healthy:   func(*testing.T) aggregator.ConnectionRef { return put("item_ok", "") },
			Missing:   func(*testing.T) aggregator.ConnectionRef { return ref("item_missing") },
			Succeed: func(_ *testing.T, r aggregator.ConnectionRef, s aggregator.Session) aggregator.CloseRequest {
				fake.SetError(r.ConnectionID, "") // the user signed in through Link
				return aggregator.CloseRequest{ConnectionRef: r, ConnectorToken: s.ConnectorToken, PublicToken: "public-sandbox-1",
					Metadata: json.RawMessage(`{"status":"success"}`)}
			},
			SetStatus: func(_ *testing.T, r aggregator.ConnectionRef, status string) {
				if status == "HEALTHY" {
					status = ""
				}
				put(r.ConnectionID, status)
			},
			Statuses: map[string]aggregator.Health{
				"HEALTHY": aggregator.HealthHealthy, plaid.CodeItemLoginRequired: aggregator.HealthRepairable,
				plaid.CodePermissionRevoked: aggregator.HealthDisconnected, "INSTITUTION_DOWN": aggregator.HealthDegraded,
			},
			Errors: map[string]func(t *testing.T) error{
				aggregator.ErrTypeConnectionNotFound: func(*testing.T) error {
					fake.Put(plaidfake.Item{ID: "item_1", AccessToken: "revoked"})
					_, err := p.ConnectionStatus(ctx, ref("item_1"))
					return err
				},
			},
			Outage: func(*testing.T) error {
				fake.HTTPStatus = http.StatusInternalServerError
				_, err := p.Initialize(ctx, ref("item_1"))
				return err
			},
			Webhook: func(t *testing.T, r aggregator.ConnectionRef, kind aggregator.EventKind, at time.Time) ([]byte, http.Header) {
				code, errorCode := plaid.CodeError, ""
				switch kind {
				case aggregator.EventKindRepairable:
					errorCode = plaid.CodeItemLoginRequired
				case aggregator.EventKindErrored:
					errorCode = "INSTITUTION_DOWN"
				case aggregator.EventKindProactive:
					code = plaid.CodePendingExpiration
				case aggregator.EventKindRepairedElsewhere:
					code = plaid.CodeLoginRepaired
				case aggregator.EventKindDisconnected:
					code = plaid.CodePermissionRevoked
				}
				hook := map[string]any{"webhook_type": plaid.WebhookTypeItem, "webhook_code": code, "item_id": r.ConnectionID, "environment": "sandbox"}
				if errorCode != "" {
					hook["error"] = map[string]any{"error_type": "ITEM_ERROR", "error_code": errorCode, "error_message": "…", "status": 400}
				}
				body, err := json.Marshal(hook)
				require.NoError(t, err)
				return body, http.Header{plaid.HeaderVerification: {fake.SignAt(body, at)}}
			},
			WebhookKinds: []aggregator.EventKind{aggregator.EventKindRepairable, aggregator.EventKindErrored, aggregator.EventKindProactive,
				aggregator.EventKindRepairedElsewhere, aggregator.EventKindDisconnected},
		}
	})
}
