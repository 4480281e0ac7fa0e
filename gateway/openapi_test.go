package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/metrics"
	"github.com/relink-dev/relink/workflows"
)

// openapi.json is checked with github.com/getkin/kin-openapi, which
// validates OpenAPI 3.1 documents (3.1-only fields and JSON Schema 2020-12
// forms such as type arrays, const and propertyNames) and, in
// openapi3filter, validates requests and responses of a 3.1 document with
// a JSON Schema 2020-12 validator (santhosh-tekuri/jsonschema). The other
// maintained 3.1 validator, pb33f/libopenapi-validator, cannot be fetched
// through this project's module proxy (its pb33f/go-yaml and
// pb33f/jsonschema dependencies are not served), and would raise
// golang.org/x/net and x/text for the whole module; kin-openapi adds no
// upgrade of any module the project already uses.

func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(OpenAPIDocument())
	require.NoError(t, err)
	return doc
}

func TestOpenAPIDocumentIsValidOpenAPI31(t *testing.T) {
	doc := loadOpenAPI(t)
	require.Equal(t, "3.1.0", doc.OpenAPI)
	require.True(t, doc.IsOpenAPI31OrLater())
	require.NoError(t, doc.Validate(context.Background(),
		openapi3.EnableSchemaFormatValidation(), openapi3.EnableSchemaPatternValidation(), openapi3.EnableExamplesValidation()))

	// The file on disk is what is embedded and served.
	onDisk, err := os.ReadFile("openapi.json")
	require.NoError(t, err)
	assert.Equal(t, onDisk, OpenAPIDocument())

	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			assert.NotEmpty(t, op.OperationID, name)
			assert.NotNil(t, op.Security, "%s: say who may call it, even if no one needs a credential", name)
			for status, resp := range op.Responses.Map() {
				assert.Contains(t, resp.Value.Headers, "X-Request-Id", "%s %s: every answer has a request id", name, status)
				code, err := strconv.Atoi(status)
				require.NoError(t, err, "%s: explicit statuses only", name)
				if code < 400 || (path == "/metrics" && code == 500) { // promhttp's own error page
					continue
				}
				htmlPage := path == "/r/{token}" || path == "/r/oauth" || path == "/r/go/{ticket}" || path == "/r/return/{provider}"
				if htmlPage && code != http.StatusMethodNotAllowed { // the hosted pages answer people: in HTML
					assert.NotNil(t, resp.Value.Content.Get("text/html"), "%s %s: a page", name, status)
					continue
				}
				media := resp.Value.Content.Get("application/json")
				if assert.NotNil(t, media, "%s %s: errors are JSON", name, status) {
					assert.Contains(t, schemaRefs(media.Schema), "#/components/schemas/Error", "%s %s: errors are the Error schema", name, status)
				}
			}
		}
	}
}

// schemaRefs lists the $refs of s and of its allOf.
func schemaRefs(s *openapi3.SchemaRef) []string {
	refs := []string{s.Ref}
	for _, sub := range s.Value.AllOf {
		refs = append(refs, sub.Ref)
	}
	return refs
}

// The document's ErrorCode lists every code the gateway answers with: the
// code… constants of gateway.go.
func TestOpenAPIErrorCodesAreTheGatewaysCodes(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "gateway.go", nil, 0)
	require.NoError(t, err)
	var codes []string
	for _, decl := range f.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST {
			continue
		}
		for _, spec := range gen.Specs {
			spec := spec.(*ast.ValueSpec)
			for i, name := range spec.Names {
				if !strings.HasPrefix(name.Name, "code") || i >= len(spec.Values) {
					continue
				}
				if lit, ok := spec.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, err := strconv.Unquote(lit.Value)
					require.NoError(t, err)
					codes = append(codes, v)
				}
			}
		}
	}
	require.NotEmpty(t, codes)
	var enum []string
	for _, v := range loadOpenAPI(t).Components.Schemas["ErrorCode"].Value.Enum {
		enum = append(enum, v.(string))
	}
	assert.ElementsMatch(t, codes, enum)
}

// The document's reason codes are the workflow's.
func TestOpenAPIReasonCodesAreTheWorkflowsCodes(t *testing.T) {
	var enum []string
	for _, v := range loadOpenAPI(t).Components.Schemas["ReasonCode"].Value.Enum {
		enum = append(enum, v.(string))
	}
	var codes []string
	for _, c := range workflows.ReasonCodes {
		codes = append(codes, string(c))
	}
	assert.ElementsMatch(t, codes, enum)
}

// fullGateway serves every route the gateway has: metrics and the sandbox
// on, CORS origins set. It has no provider enabled and no payload codec, so
// that every request below is answered without Temporal; its Temporal
// client answers only health checks.
func fullGateway(t *testing.T) *Gateway {
	t.Helper()
	reg, err := metrics.New()
	require.NoError(t, err)
	g := &Gateway{
		APIKeys:      []string{testKey},
		Temporal:     unreachableTemporal{},
		CORSOrigins:  []string{"https://app.example.com"},
		CodecOrigins: []string{"https://ui.example.com"},
		Metrics:      reg,
		Sandbox:      &sandbox.Provider{},
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	return g
}

type unreachableTemporal struct{ client.Client }

func (unreachableTemporal) CheckHealth(context.Context, *client.CheckHealthRequest) (*client.CheckHealthResponse, error) {
	return nil, errors.New("no Temporal in unit tests")
}

var pathParam = regexp.MustCompile(`\{[^}]+\}`)

// TestOpenAPIDocumentsEveryRoute holds the document to the routes: every
// pattern Handler registers is an operation, every operation but the CORS
// preflights is a pattern, every operation is routed (the mux does not
// answer it with its own 404 or 405), and the preflights are where the CORS
// policy answers them.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc := loadOpenAPI(t)
	g := fullGateway(t)
	h, patterns := g.handler()

	var served []string
	for _, p := range patterns {
		if strings.HasSuffix(p, "/") && !strings.Contains(p, " ") {
			continue // a mount: /v1/, /codec/, /sandbox/ hand over to their own mux
		}
		require.Contains(t, p, " ", "%q: every route names its method, as the document does", p)
		served = append(served, p)
	}
	var documented, preflights []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if method == http.MethodOptions {
				preflights = append(preflights, path)
				continue
			}
			documented = append(documented, method+" "+path)
		}
	}
	slices.Sort(served)
	slices.Sort(documented)
	assert.Equal(t, served, documented, "the routes Handler serves and the operations of openapi.json")

	router, err := gorillamux.NewRouter(doc)
	require.NoError(t, err)
	for path, item := range doc.Paths.Map() {
		example := pathParam.ReplaceAllString(path, "nope")
		for method := range item.Operations() {
			name := method + " " + path
			var req *http.Request
			if method == http.MethodOptions {
				req = httptest.NewRequest(method, example, nil)
				req.Header.Set("Origin", "https://app.example.com")
				if strings.HasPrefix(path, "/codec/") {
					req.Header.Set("Origin", "https://ui.example.com")
				}
				req.Header.Set("Access-Control-Request-Method", http.MethodPost)
			} else {
				// Bodies and queries every handler refuses before it calls
				// Temporal; no provider is enabled.
				req = httptest.NewRequest(method, example+"?pageSize=0&provider=nope", strings.NewReader("{"))
				req.Header.Set("Authorization", "Bearer "+testKey)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			var body errorBody
			_ = json.Unmarshal(rec.Body.Bytes(), &body)
			assert.NotEqual(t, codeMethodNotAllowed, body.Error.Code, "%s: routed", name)
			assert.False(t, rec.Code == http.StatusNotFound && strings.HasPrefix(body.Error.Message, "no route"), "%s: routed", name)
			if method == http.MethodOptions {
				assert.Equal(t, http.StatusNoContent, rec.Code, "%s: the CORS policy answers the preflight", name)
			}
			validateAnswer(t, doc, router, req, rec)
		}
		if item.Options == nil {
			// No preflight documented: the CORS policy has none either.
			req := httptest.NewRequest(http.MethodOptions, example, nil)
			req.Header.Set("Origin", "https://app.example.com")
			req.Header.Set("Access-Control-Request-Method", http.MethodPost)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			assert.NotEqual(t, http.StatusNoContent, rec.Code, "OPTIONS %s: no preflight answered", path)
			assert.Empty(t, rec.Header().Get("Access-Control-Allow-Origin"), "OPTIONS %s", path)
		}
	}
	assert.ElementsMatch(t, []string{
		"/v1/repairs/{provider}/{connectionId}", "/v1/repairs/{provider}/{connectionId}/reconnect",
		"/v1/repairs/{provider}/{connectionId}/complete", "/v1/repairs/{provider}/{connectionId}/exit",
		"/codec/encode", "/codec/decode",
	}, preflights, "preflights are documented on the four browser routes and the codec")
}

// openAPIRouter loads the document and its router, for validateAnswer.
func openAPIRouter(t *testing.T) (routers.Router, *openapi3.T) {
	t.Helper()
	doc := loadOpenAPI(t)
	router, err := gorillamux.NewRouter(doc)
	require.NoError(t, err)
	return router, doc
}

// validateAnswer checks one answer against the document (the integration
// tests check every answer they get the same way).
func validateAnswer(t *testing.T, doc *openapi3.T, router routers.Router, req *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	route, params, err := router.FindRoute(req)
	require.NoError(t, err, "%s %s", req.Method, req.URL.Path)
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 rec.Code,
		Header:                 rec.Header(),
		Body:                   io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	body := rec.Body.String()
	if len(body) > 300 {
		body = body[:300] + "…"
	}
	assert.NoError(t, openapi3filter.ValidateResponse(context.Background(), in), "%s %s → %d %s", req.Method, req.URL, rec.Code, body)
}

func TestOpenAPIDocumentIsServed(t *testing.T) {
	rec := httptest.NewRecorder()
	fullGateway(t).Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	assert.Equal(t, "public, max-age=300", rec.Header().Get("Cache-Control"))
	assert.Equal(t, OpenAPIDocument(), rec.Body.Bytes())
}

// Every query parameter the document has takes one value (none is an
// array): each one sent twice is 400 bad_request naming it, on every route
// that has it, before anything else is checked; never the first value
// silently, as if the second had not been sent.
func TestRepeatedQueryParametersAreRefused(t *testing.T) {
	checked := refuseEachQueryParameter(t, func(p *openapi3.Parameter) (queries []string, says string) {
		require.False(t, p.Schema.Value.Type.Is(openapi3.TypeArray),
			"%s is repeatable; this test and singleQuery take none", p.Name)
		first, second := twoValues(p.Schema.Value)
		return []string{url.Values{p.Name: {first, second}}.Encode()}, p.Name + " is repeated"
	})
	assert.GreaterOrEqual(t, checked, 11, "the query parameters of /v1/repairs, /v1/stats, /v1/reconcile and /sandbox/widget")
}

// A query that does not parse (a bad percent-escape, a ";" separator) is
// 400 bad_request on every route that reads its query, where the pairs
// that did not parse were dropped: ?status=%zz listed every repair.
func TestMalformedQueriesAreRefused(t *testing.T) {
	checked := refuseEachQueryParameter(t, func(p *openapi3.Parameter) (queries []string, says string) {
		first, _ := twoValues(p.Schema.Value)
		return []string{p.Name + "=%zz", p.Name + "=" + url.QueryEscape(first) + ";x=1"}, "query"
	})
	assert.GreaterOrEqual(t, checked, 22)
}

// refuseEachQueryParameter sends, on every route, the queries bad makes
// of each of its query parameters, and checks each is answered 400
// bad_request with a message that says what bad says, as the document
// describes it. It returns how many it sent.
func refuseEachQueryParameter(t *testing.T, bad func(p *openapi3.Parameter) (queries []string, says string)) (checked int) {
	doc := loadOpenAPI(t)
	router, err := gorillamux.NewRouter(doc)
	require.NoError(t, err)
	g := fullGateway(t)
	g.Temporal = listingTemporal{} // what slips through is listed, not refused
	h := g.Handler()
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for _, p := range append(slices.Clone(item.Parameters), op.Parameters...) {
				if p.Value.In != openapi3.ParameterInQuery {
					continue
				}
				queries, says := bad(p.Value)
				for _, query := range queries {
					req := httptest.NewRequest(method, pathParam.ReplaceAllString(path, "nope")+"?"+query, nil)
					req.Header.Set("Authorization", "Bearer "+testKey)
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					var body errorBody
					_ = json.Unmarshal(rec.Body.Bytes(), &body)
					name := method + " " + req.URL.String()
					assert.Equal(t, http.StatusBadRequest, rec.Code, "%s: %s", name, rec.Body.String())
					assert.Equal(t, codeBadRequest, body.Error.Code, name)
					assert.Contains(t, body.Error.Message, says, name)
					validateAnswer(t, doc, router, req, rec)
					checked++
				}
			}
		}
	}
	return checked
}

// twoValues are two values each of which s takes, so that only their
// being two is wrong.
func twoValues(s *openapi3.Schema) (string, string) {
	switch {
	case len(s.Examples) >= 2:
		return fmt.Sprint(s.Examples[0]), fmt.Sprint(s.Examples[1])
	case len(s.Enum) >= 2:
		return fmt.Sprint(s.Enum[0]), fmt.Sprint(s.Enum[1])
	case s.Type.Is(openapi3.TypeInteger):
		low := 1.0
		if s.Min != nil {
			low = *s.Min
		}
		return fmt.Sprint(low), fmt.Sprint(low + 1)
	case s.Format == "date-time":
		return "2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z"
	}
	return "a", "b"
}
