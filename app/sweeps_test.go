package app

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/plaid"
	"github.com/relink-dev/relink/config"
	"github.com/relink-dev/relink/workflows"
)

// The inventory's token is the worker's: a worker with the URL and no
// token refuses to start; the gateway's settings need no token.
func TestTheWorkerNeedsTheInventoryToken(t *testing.T) {
	var c config.Config
	c.Reconcile.InventoryURL = "https://app.example.com/relink/inventory"
	_, err := NewSweeper(c, Providers{}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "RELINK_INVENTORY_TOKEN")

	c.Reconcile.InventoryToken = strings.Repeat("t", 32)
	s, err := NewSweeper(c, Providers{}, nil)
	require.NoError(t, err)
	assert.NotNil(t, s.Inventory)
}

// A provider swept from its own listing must have one: Plaid has none, so
// RELINK_RECONCILE_SOURCE=plaid:provider stops the worker at start rather
// than failing every sweep.
func TestASourceThatCannotListIsRefused(t *testing.T) {
	var c config.Config
	c.Reconcile.Sources = map[string]string{plaid.Name: "provider"}
	_, err := NewSweeper(c, Providers{APIs: []aggregator.Provider{&plaid.Provider{}}}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "plaid:inventory")
}

// A sweep runs at the background priority, its own workflow tasks too,
// with a fairness key of its provider's.
func TestASweepRunsBehindUsersWork(t *testing.T) {
	_, action, _ := sweepSchedule(config.Config{}, SweepPlan{Provider: plaid.Name}, time.Hour)
	assert.Equal(t, workflows.PriorityBackground, action.Priority.PriorityKey)
	assert.Equal(t, "reconcile:plaid", action.Priority.FairnessKey)
}
