package workflows

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/aggregator"
)

// The repair holds its carry as it is (struct repair embeds RepairCarry),
// so continue-as-new hands over every field; what could still lose one is
// the payload's encoding. A carry with every field set comes back the same
// through JSON. A field added to RepairCarry and not set here fails the
// test.
func TestTheCarryEncodesEveryField(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	c := RepairCarry{
		State:               RepairState{Status: StatusVerifying, Attempt: 2, EventIDs: []string{"evt_1"}},
		Deadline:            at.Add(7 * 24 * time.Hour),
		Session:             aggregator.Session{ConnectorToken: "ct_2", ExpiresAt: at.Add(time.Hour)},
		SessionIssuedAt:     at.Add(time.Minute),
		IssuedTokens:        []string{"ct_1", "ct_2"},
		ClosedTokens:        []string{"ct_1"},
		CompletingAt:        at.Add(2 * time.Minute),
		AwaitingSince:       at.Add(3 * time.Minute),
		RemindersBeforeWait: 1,
		RefreshRounds:       4,
		RefreshErr:          "provider unavailable",
		RefreshFailedAt:     at.Add(4 * time.Minute),
		GatewayClocks:       []gatewayClock{{Gateway: "gw", Skew: time.Hour}},
		NextPollAt:          at.Add(5 * time.Minute),
		PollInterval:        8 * time.Minute,
		Outbox:              []activities.Event{{ID: "repair:sandbox:conn_1/run/3"}},
	}
	v := reflect.ValueOf(c)
	for i := range v.NumField() {
		require.False(t, v.Field(i).IsZero(), "RepairCarry.%s is not set by this test", v.Type().Field(i).Name)
	}

	b, err := json.Marshal(RepairInput{Carry: &c})
	require.NoError(t, err)
	var back RepairInput
	require.NoError(t, json.Unmarshal(b, &back))

	assert.Equal(t, c, *back.Carry)
}
