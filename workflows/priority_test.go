package workflows

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
)

// A fairness key is at most 64 bytes and valid UTF-8 however long the
// institution's name and whatever its script: Temporal refuses a start
// whose key is cut inside a character.
func TestFairnessKeys(t *testing.T) {
	assert.Equal(t, "plaid", FairnessKey("plaid", ""))
	assert.Equal(t, "meld:Chase", FairnessKey("meld", "Chase"))
	for _, name := range []string{strings.Repeat("é", 40), strings.Repeat("銀行", 20), "Crédit " + strings.Repeat("Agricole ", 10)} {
		key := FairnessKey("truelayer", name)
		assert.LessOrEqual(t, len(key), 64, name)
		assert.True(t, utf8.ValidString(key), key)
		assert.True(t, strings.HasPrefix("truelayer:"+name, key))
	}
	assert.Equal(t, PriorityUser, StartPriority(RepairInput{Provider: "plaid", TriggerReason: "manual: support ticket"}).PriorityKey)
	assert.Equal(t, PriorityBackground, StartPriority(RepairInput{Provider: "plaid", TriggerReason: "ITEM_LOGIN_REQUIRED"}).PriorityKey)
	assert.Equal(t, PriorityBackground, StartPriority(RepairInput{Provider: "plaid", Proactive: true}).PriorityKey)
}
