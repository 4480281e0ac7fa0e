package workflows

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The README's state diagram is the code's: its arrows, plus the rule
// under it (any non-terminal status goes to CANCELED, UNREPAIRABLE and
// EXPIRED), are exactly the exits table.
func TestTheREADMEDiagramIsTheCode(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	readme := string(b)
	start := strings.Index(readme, "```mermaid\nstateDiagram-v2")
	require.GreaterOrEqual(t, start, 0, "the README has the state diagram")
	end := strings.Index(readme[start+3:], "```") + start + 3
	drawn := map[Status][]Status{}
	arrow := regexp.MustCompile(`^\s*([A-Z_]+) --> ([A-Z_]+)`)
	for _, line := range strings.Split(readme[start:end], "\n") {
		if m := arrow.FindStringSubmatch(line); m != nil {
			from, to := Status(m[1]), Status(m[2])
			require.True(t, from.Valid() && to.Valid(), line)
			drawn[from] = append(drawn[from], to)
		}
	}
	rule := "Any non-terminal status goes to `CANCELED` on a cancel, to `UNREPAIRABLE` on a disconnect and to `EXPIRED` when the window ends"
	require.True(t, strings.Contains(strings.Join(strings.Fields(readme[end:min(end+500, len(readme))]), " "), rule),
		"the README states the rule under the diagram")
	for _, s := range Statuses {
		if !s.Terminal() {
			drawn[s] = append(drawn[s], StatusCanceled, StatusUnrepairable, StatusExpired)
		}
	}
	for s := range drawn {
		slices.Sort(drawn[s])
		drawn[s] = slices.Compact(drawn[s])
	}
	for _, s := range Statuses {
		assert.ElementsMatch(t, exits[s], drawn[s], "exits of %s", s)
	}
}
