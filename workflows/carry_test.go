package workflows

import (
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/aggregator"
)

// Every field of the carry survives continue-as-new: a repair with every
// carried field set comes back the same from carry and restore. A field
// added to RepairCarry and not set here fails the test, so it cannot be
// forgotten on either side.
func TestTheCarryRestoresEveryField(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	r := &repair{
		in:                  RepairInput{Provider: "sandbox", ConnectionID: "conn_1"},
		deadline:            at.Add(7 * 24 * time.Hour),
		st:                  RepairState{Status: StatusVerifying, Attempt: 2, EventIDs: []string{"evt_1"}},
		session:             aggregator.Session{ConnectorToken: "ct_2", ExpiresAt: at.Add(time.Hour)},
		sessionIssuedAt:     at.Add(time.Minute),
		issuedTokens:        []string{"ct_1", "ct_2"},
		closedTokens:        []string{"ct_1"},
		completingAt:        at.Add(2 * time.Minute),
		awaitingSince:       at.Add(3 * time.Minute),
		remindersBeforeWait: 1,
		refreshRounds:       4,
		refreshErr:          "provider unavailable",
		refreshFailedAt:     at.Add(4 * time.Minute),
		nextPollAt:          at.Add(5 * time.Minute),
		pollInterval:        8 * time.Minute,
		outbox:              []activities.Event{{ID: "repair:sandbox:conn_1/run/3"}},
		gatewayClocks:       []gatewayClock{{Gateway: "gw", Skew: time.Hour}},
	}
	c := r.carry()
	v := reflect.ValueOf(*c)
	for i := range v.NumField() {
		require.False(t, v.Field(i).IsZero(), "RepairCarry.%s is not set by this test", v.Type().Field(i).Name)
	}

	back := c.restore(r.in, r.opts)

	assert.Equal(t, r, back)
}
