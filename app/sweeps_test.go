package app

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/config"
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
