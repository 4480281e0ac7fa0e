package quiltt

import (
	"bytes"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
)

var now = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func receive(t *testing.T, body string) ([]aggregator.WebhookEvent, error) {
	t.Helper()
	w := &WebhookReceiver{Secret: "s", Now: func() time.Time { return now }}
	req := httptest.NewRequest("POST", "/webhooks/quiltt", bytes.NewReader([]byte(body)))
	ts := strconv.FormatInt(now.Unix(), 10)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign("s", ts, []byte(body)))
	return w.Receive(req, []byte(body))
}

func TestSeveralEventsAreNormalised(t *testing.T) {
	events, err := receive(t, `{
	  "environment": {"id": "env_1", "name": "Production", "mode": "PRODUCTION"},
	  "eventTypes": ["connection.synced.errored.repairable", "connection.synced.successful.historical", "profile.created", "connection.synced.errored.institution", "connection.disconnected"],
	  "events": [
	    {"id": "evt_1", "type": "connection.synced.errored.repairable", "at": "2026-11-21T11:00:00Z",
	     "profile": {"id": "p_1"}, "record": {"id": "conn_1", "provider": "PLAID"}},
	    {"id": "evt_2", "type": "connection.synced.successful.historical", "at": "2026-11-21T11:01:00Z",
	     "profile": {"id": "p_1"}, "record": {"id": "conn_1", "status": "SYNCED"}},
	    {"id": "evt_3", "type": "profile.created", "at": "2026-11-21T11:02:00Z", "profile": {"id": "p_2"}, "record": {"id": "p_2"}},
	    {"id": "evt_4", "type": "connection.synced.errored.institution", "at": "2026-11-21T11:03:00Z",
	     "record": {"id": "conn_2"}},
	    {"id": "evt_5", "type": "connection.disconnected", "at": "2026-11-21T11:04:00Z", "record": {"id": "conn_3"}}
	  ]}`)
	require.NoError(t, err)
	require.Len(t, events, 4, "profile.created is not Relink's business")

	assert.Equal(t, aggregator.WebhookEvent{
		EventID: "evt_1", Kind: aggregator.EventKindRepairable, Type: EventRepairable,
		At: time.Date(2026, 11, 21, 11, 0, 0, 0, time.UTC), ConnectionID: "conn_1", ProfileID: "p_1",
		Connector: "PLAID", ProviderStatus: StatusErrorRepairable,
	}, events[0], "a record without status gets it from the event type")
	assert.Equal(t, aggregator.EventKindSynced, events[1].Kind)
	assert.Equal(t, StatusSynced, events[1].ProviderStatus)
	assert.Equal(t, aggregator.EventKindErrored, events[2].Kind)
	assert.Equal(t, StatusErrorInstitution, events[2].ProviderStatus)
	assert.Equal(t, aggregator.EventKindDisconnected, events[3].Kind)
}

func TestSyncedVariantsConfirm(t *testing.T) {
	for _, typ := range []string{"connection.synced.successful", "connection.synced.successful.initial", "connection.synced.successful.historical"} {
		kind, ok := kindOf(typ)
		assert.True(t, ok, typ)
		assert.Equal(t, aggregator.EventKindSynced, kind, typ)
	}
	_, ok := kindOf("connection.synced.successfulish")
	assert.False(t, ok)
}

func TestHealthOf(t *testing.T) {
	for status, want := range map[string]aggregator.Health{
		StatusSynced: aggregator.HealthHealthy, StatusSyncing: aggregator.HealthSyncing,
		"INITIALIZING": aggregator.HealthSyncing, StatusErrorRepairable: aggregator.HealthRepairable,
		StatusErrorService: aggregator.HealthDegraded, StatusErrorProvider: aggregator.HealthDegraded,
		StatusDisconnecting: aggregator.HealthDisconnected, StatusDisconnected: aggregator.HealthDisconnected,
	} {
		assert.Equal(t, want, HealthOf(status), status)
	}
}
