package providers_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/providers"
)

func TestTheListChecks(t *testing.T) {
	require.NoError(t, providers.Check(providers.All))
	assert.Equal(t, []string{"sandbox", "quiltt", "meld", "plaid", "mx", "truelayer"}, providers.Names())
	for _, reg := range providers.All {
		// Each adapter's settings live in its own package, and every
		// variable they read is described for the README.
		typ := reflect.TypeOf(reg.NewSettings()).Elem()
		assert.True(t, strings.HasPrefix(typ.PkgPath(), "github.com/relink-dev/relink/activities/"), typ.PkgPath())
		described := reg.NewSettings().Describe()
		for i := range typ.NumField() {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("env"), ",")
			if name != "" {
				assert.NotEmpty(t, described[name], "%s: describe %s", reg.Name, name)
				delete(described, name)
			}
		}
		assert.Empty(t, described, "%s describes variables it does not read", reg.Name)
	}
}

func TestCheckRefusesBrokenRegistrations(t *testing.T) {
	good := providers.All[1]
	twice := []aggregator.Registration{good, good}
	assert.ErrorContains(t, providers.Check(twice), "twice")
	bad := good
	bad.Name = "Not A Name"
	assert.Error(t, providers.Check([]aggregator.Registration{bad}))
	bad = good
	bad.Browser = aggregator.Browser{Widgets: []string{"popup"}}
	assert.ErrorContains(t, providers.Check([]aggregator.Registration{bad}), "popup")
	bad = good
	bad.Browser = aggregator.Browser{Widgets: []string{aggregator.WidgetFrame}}
	assert.ErrorContains(t, providers.Check([]aggregator.Registration{bad}), "messages mapped")
	bad = good
	bad.NewProvider = nil
	assert.Error(t, providers.Check([]aggregator.Registration{bad}))
}
