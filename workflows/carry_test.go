package workflows

import (
	"encoding/json"
	"fmt"
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
		EventAppliedAt:      []time.Time{at},
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

// A provider event id is a duplicate for as long as a provider redelivers
// (Meld for 3 days) however many other events came since, and forgotten
// after that; at most eventIDsKept are kept, the oldest dropped first.
func TestEventIDsAreRememberedForTheProvidersRedeliveryWindow(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var r repair
	require.True(t, r.rememberEvent(at, "evt_first"))
	for i := range 150 {
		require.True(t, r.rememberEvent(at.Add(time.Duration(i)*time.Minute), fmt.Sprintf("evt_%d", i)))
	}
	assert.False(t, r.rememberEvent(at.Add(3*24*time.Hour), "evt_first"), "150 events later, 3 days later: a duplicate")

	assert.True(t, r.rememberEvent(at.Add(eventDedupeWindow+3*time.Hour), "evt_later"))
	assert.Equal(t, []string{"evt_later"}, r.State.EventIDs, "ids past the window are forgotten")
	assert.Len(t, r.EventAppliedAt, 1)

	for i := range 3 * eventIDsKept {
		r.rememberEvent(at.Add(eventDedupeWindow+4*time.Hour), fmt.Sprintf("evt_flood_%d", i))
	}
	assert.Len(t, r.State.EventIDs, eventIDsKept, "a flood is bounded")
	assert.Len(t, r.EventAppliedAt, eventIDsKept)
	assert.Equal(t, fmt.Sprintf("evt_flood_%d", 3*eventIDsKept-1), r.State.EventIDs[eventIDsKept-1])

	// A run carried from a build that kept no times counts its ids from now.
	old := repair{}
	old.State.EventIDs = []string{"evt_a", "evt_b"}
	assert.False(t, old.rememberEvent(at, "evt_a"))
	assert.True(t, old.rememberEvent(at, "evt_c"))
	assert.Equal(t, []time.Time{at, at, at}, old.EventAppliedAt)
}
