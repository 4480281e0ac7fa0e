package gateway

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/providers"
	"github.com/relink-dev/relink/gateway/internal/openapienum"
)

// The document's provider names are the provider list's, as `go generate
// ./gateway` writes them: a new provider needs no hand edit here.
func TestOpenAPIProviderNamesAreTheRegistry(t *testing.T) {
	var enum []string
	for _, v := range loadOpenAPI(t).Components.Schemas["ProviderName"].Value.Enum {
		enum = append(enum, v.(string))
	}
	assert.Equal(t, providers.Names(), enum, "run go generate ./gateway")
	regenerated, err := openapienum.Write(OpenAPIDocument(), providers.Names())
	require.NoError(t, err)
	assert.Equal(t, string(OpenAPIDocument()), string(regenerated), "openapi.json is not current: run go generate ./gateway")

	// The generator rewrites the enum for any list, leaving the rest.
	other, err := openapienum.Write(OpenAPIDocument(), []string{"sandbox", "mybank"})
	require.NoError(t, err)
	assert.Contains(t, string(other), "\"sandbox\",\n          \"mybank\"\n        ],")
	back, err := openapienum.Write(other, providers.Names())
	require.NoError(t, err)
	assert.Equal(t, string(OpenAPIDocument()), string(back))
}
