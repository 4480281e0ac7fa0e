package temporalui

import (
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAViewsLinkOpensAndSavesItsQuery(t *testing.T) {
	for _, v := range Views() {
		u, err := url.Parse(v.SaveURL("https://temporal.example.com/", "relink prod"))
		require.NoError(t, err)
		assert.Equal(t, "temporal.example.com", u.Host)
		assert.Equal(t, "/namespaces/relink prod/workflows", u.Path)
		assert.Equal(t, v.Query, u.Query().Get("query"))
		assert.Equal(t, v.Name, u.Query().Get("savedQuery"))
		open, err := url.Parse(v.OpenURL("https://temporal.example.com/", "relink prod"))
		require.NoError(t, err)
		assert.Equal(t, url.Values{"query": {v.Query}}, open.Query(), "opening saves nothing")
		assert.True(t, strings.HasPrefix(v.Query, `WorkflowType = "ConnectionRepair" AND RelinkStatus = "`), v.Query)
	}
	assert.Len(t, Views(), 5, "waiting for users, then one per outcome")
}

func TestTheSeedScriptNamesItsNamespaceAndCannotCloseItsElement(t *testing.T) {
	s := Seed(`ns</script><b>"`)
	assert.NotContains(t, strings.ToLower(s), "</script", "JSON escapes < in strings")
	assert.Contains(t, s, `"ns\u003c/script\u003e\u003cb\u003e\""`)
	assert.Contains(t, s, "RelinkReasonCode")
	assert.Contains(t, s, "Relink: unrepairable")
}

// The README's table links the dev stack's UI to each view, both ways.
func TestTheREADMELinksEachViewInTheDevUI(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	for _, v := range Views() {
		assert.Contains(t, string(readme), "["+v.Name+"]("+v.OpenURL("http://localhost:8233", "default")+")")
		assert.Contains(t, string(readme), "[save it]("+v.SaveURL("http://localhost:8233", "default")+")")
	}
}
