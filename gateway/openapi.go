package gateway

import (
	_ "embed"
	"net/http"
	"slices"
)

//go:generate go run ./internal/openapigen

// openAPIDocument is the OpenAPI 3.1 description of every route Handler
// serves. It is written by hand but for the ProviderName enum, which `go generate`
// writes from the provider list (activities/providers); openapi_test.go holds it to the routes
// Handler registers and validates it, and the integration tests validate
// every answer they get against it.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPIDocument returns the OpenAPI 3.1 description of the gateway's HTTP
// API (gateway/openapi.json), the document GET /openapi.json serves.
func OpenAPIDocument() []byte { return slices.Clone(openAPIDocument) }

// serveOpenAPI answers GET /openapi.json, with no credential.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(openAPIDocument)
}

// routeMux is an http.ServeMux that lists the patterns registered on it,
// so that a test can compare the routes Handler serves with the document.
type routeMux struct {
	*http.ServeMux
	patterns *[]string
}

func newRouteMux(patterns *[]string) routeMux {
	return routeMux{ServeMux: http.NewServeMux(), patterns: patterns}
}

func (m routeMux) Handle(pattern string, h http.Handler) {
	*m.patterns = append(*m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

func (m routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}
