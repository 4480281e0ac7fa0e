package mx_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/mx"
	"github.com/relink-dev/relink/activities/mx/mxfake"
)

func receiver(now func() time.Time) *mx.WebhookReceiver {
	return &mx.WebhookReceiver{Username: hookUser, Password: hookPassword, Now: now}
}

// deliver hands body to rcv as the gateway would, with authorization as
// its Authorization header (none if empty).
func deliver(rcv *mx.WebhookReceiver, body []byte, authorization string) ([]aggregator.WebhookEvent, error) {
	r := httptest.NewRequest(http.MethodPost, "/webhooks/mx", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	return rcv.Receive(r, body)
}

// MX's own example payload (docs.mx.com/resources/webhooks/connection-status).
const docsConnectionStatus = `{
  "action": "CHANGED",
  "connection_status": "CHALLENGED",
  "connection_status_id": 3,
  "connection_status_message": "To authenticate your connection to Chase Bank, please answer the following challenge(s).",
  "member_guid": "MBR-48d9a481-f2a2-7e13-2685-62869cf0d33a",
  "type": "CONNECTION_STATUS",
  "user_guid": "USR-eaf4ac68-d17d-5e9b-7b46-959a5b315a9e"
}`

// MX's own example payload (docs.mx.com/resources/webhooks/aggregation).
const docsAggregation = `{
  "action": "member_data_updated",
  "completed_at": 1531947410,
  "completed_on": "2018-07-18",
  "is_background": true,
  "job_guid": "JOB-823ab268-5107-4a67-97c8-60292572ac2e",
  "member_guid": "MBR-48d9a481-f2a2-7e13-2685-62869cf0d33a",
  "transactions_created_count": 3,
  "transactions_updated_count": 2,
  "type": "AGGREGATION",
  "user_guid": "USR-eaf4ac68-d17d-5e9b-7b46-959a5b315a9e",
  "user_id": "partner-user"
}`

func TestWebhooksFromMXsDocs(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	rcv := receiver(func() time.Time { return now })
	auth := mxfake.BasicAuth(hookUser, hookPassword)

	events, err := deliver(rcv, []byte(docsConnectionStatus), auth)
	require.NoError(t, err)
	require.Len(t, events, 1)
	assert.Equal(t, aggregator.WebhookEvent{
		EventID:        "MBR-48d9a481-f2a2-7e13-2685-62869cf0d33a:CHALLENGED:" + strconv.FormatInt(now.UnixNano(), 10),
		Kind:           aggregator.EventKindRepairable,
		Type:           "CONNECTION_STATUS CHALLENGED",
		At:             now,
		ConnectionID:   "MBR-48d9a481-f2a2-7e13-2685-62869cf0d33a",
		ProfileID:      "USR-eaf4ac68-d17d-5e9b-7b46-959a5b315a9e",
		ProviderStatus: "CHALLENGED",
	}, events[0])

	// An aggregation's webhook confirms nothing on its word (it is not
	// signed), and is not Relink's business.
	events, err = deliver(rcv, []byte(docsAggregation), auth)
	require.NoError(t, err)
	assert.Empty(t, events)
}

func TestEveryActionableStatusIsABreak(t *testing.T) {
	// The statuses MX sends CONNECTION_STATUS for; LOCKED too: Relink
	// reads the member and ends the repair UNREPAIRABLE with the reason.
	rcv := receiver(time.Now)
	for _, status := range []string{mx.StatusChallenged, mx.StatusDenied, mx.StatusExpired, mx.StatusImpaired,
		mx.StatusImpeded, mx.StatusLocked, mx.StatusPrevented, mx.StatusRejected} {
		body := mxfake.ConnectionStatusBody(mxfake.Member{GUID: "MBR-1", UserGUID: "USR-1", Name: "MX Bank", Status: status})
		events, err := deliver(rcv, body, mxfake.BasicAuth(hookUser, hookPassword))
		require.NoError(t, err)
		require.Len(t, events, 1, status)
		assert.Equal(t, aggregator.EventKindRepairable, events[0].Kind, status)
		assert.Equal(t, status, events[0].ProviderStatus)
	}
}

func TestWebhookCredentials(t *testing.T) {
	rcv := receiver(time.Now)
	body := []byte(docsConnectionStatus)
	for name, auth := range map[string]string{
		"none":               "",
		"wrong password":     mxfake.BasicAuth(hookUser, hookPassword+"x"),
		"wrong username":     mxfake.BasicAuth("someone", hookPassword),
		"password truncated": mxfake.BasicAuth(hookUser, hookPassword[:8]),
		"bearer":             "Bearer " + hookPassword,
		"not base64":         "Basic %%%",
	} {
		_, err := deliver(rcv, body, auth)
		assert.ErrorIs(t, err, aggregator.ErrWebhookSignature, name)
	}
	_, err := deliver(rcv, body, mxfake.BasicAuth(hookUser, hookPassword))
	assert.NoError(t, err)

	// A receiver without credentials refuses everything, even an empty
	// username and password.
	open := &mx.WebhookReceiver{}
	_, err = deliver(open, body, mxfake.BasicAuth("", ""))
	assert.ErrorIs(t, err, aggregator.ErrWebhookSignature)
}

func TestRetriesWithinTheWindowAreOneEvent(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	rcv := receiver(func() time.Time { return now })
	rcv.DedupeWindow = 10 * time.Minute
	auth := mxfake.BasicAuth(hookUser, hookPassword)
	challenged := mxfake.ConnectionStatusBody(mxfake.Member{GUID: "MBR-1", UserGUID: "USR-1", Status: mx.StatusChallenged})
	denied := mxfake.ConnectionStatusBody(mxfake.Member{GUID: "MBR-1", UserGUID: "USR-1", Status: mx.StatusDenied})
	first := must(deliver(rcv, challenged, auth))

	// MX retries 9 minutes later, and again 9 minutes after that (the
	// window slides with each delivery): the same event, at its time.
	for range 2 {
		now = now.Add(9 * time.Minute)
		again := must(deliver(rcv, challenged, auth))
		assert.Equal(t, first.EventID, again.EventID)
		assert.Equal(t, first.At, again.At)
	}
	// Another status of the member is another event.
	other := must(deliver(rcv, denied, auth))
	assert.NotEqual(t, first.EventID, other.EventID)
	// The member challenged again after a quiet window is a new break.
	now = now.Add(11 * time.Minute)
	later := must(deliver(rcv, challenged, auth))
	assert.NotEqual(t, first.EventID, later.EventID)
	assert.Equal(t, now, later.At)
}

func must(events []aggregator.WebhookEvent, err error) aggregator.WebhookEvent {
	if err != nil || len(events) != 1 {
		panic(errors.Join(err, errors.New("want one event")))
	}
	return events[0]
}

func TestOtherWebhooksAreNotRelinksBusiness(t *testing.T) {
	rcv := receiver(time.Now)
	auth := mxfake.BasicAuth(hookUser, hookPassword)
	for _, body := range []string{
		`{"action":"member_data_updated","completed_at":1531947410,"member_guid":"MBR-1","type":"BALANCE","user_guid":"USR-1"}`,
		`{"action":"created","user":{"guid":"USR-1"}}`,
		`{"type":"AGGREGATION","member_guid":"MBR-1"}`,
	} {
		events, err := deliver(rcv, []byte(body), auth)
		assert.NoError(t, err)
		assert.Empty(t, events)
	}
	for _, body := range []string{
		`{"type":"CONNECTION_STATUS","connection_status":"DENIED"}`,
		`{"type":"CONNECTION_STATUS","member_guid":"MBR-1"}`,
		`not json`,
	} {
		_, err := deliver(rcv, []byte(body), auth)
		assert.ErrorIs(t, err, aggregator.ErrWebhookMalformed, body)
	}
	// Unauthenticated, even a malformed body is refused as such, before
	// it is read.
	_, err := deliver(rcv, []byte(`not json`), "")
	assert.ErrorIs(t, err, aggregator.ErrWebhookSignature)
}
