package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/gateway"
)

// Every answer a test gets from a gateway is checked against the
// gateway's OpenAPI document (gateway/openapi.json) on its way out, with
// kin-openapi (see gateway/openapi_test.go for why that library): its
// status must be documented for the operation, and its headers, content
// type and body must match what the document says of that status. A
// request the document refuses (a missing credential, a bad body) must be
// refused by the gateway too. A path or method the document does not have
// must get one of the answers the document gives for those (401, 403, 404,
// 405). Mismatches are test errors of the test that made the request.

var openAPI struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	// unrouted is the operation standing for requests the document has no
	// operation for: the answers the gateway gives to every such request.
	unrouted *openapi3.Operation
	err      error
	// valid holds the answerKey of every answer found valid.
	valid sync.Map
}

func loadOpenAPI() error {
	openAPI.once.Do(func() {
		doc, err := openapi3.NewLoader().LoadFromData(gateway.OpenAPIDocument())
		if err == nil {
			err = doc.Validate(context.Background())
		}
		if err != nil {
			openAPI.err = fmt.Errorf("gateway/openapi.json: %w", err)
			return
		}
		openAPI.doc = doc
		openAPI.router, openAPI.err = gorillamux.NewRouter(doc)
		responses := openapi3.NewResponses()
		for status, name := range map[int]string{
			http.StatusUnauthorized:     "Unauthorized",
			http.StatusForbidden:        "Forbidden",
			http.StatusNotFound:         "RouteNotFound",
			http.StatusMethodNotAllowed: "MethodNotAllowed",
		} {
			// (With its place in the document, where its body's schema is
			// compiled: bodySchema.)
			responses.Set(fmt.Sprint(status), &openapi3.ResponseRef{Ref: "#/components/responses/" + name, Value: doc.Components.Responses[name].Value})
		}
		openAPI.unrouted = &openapi3.Operation{Responses: responses}
	})
	return openAPI.err
}

// validatedByOpenAPI serves h, checking every answer against the document.
func validatedByOpenAPI(t *testing.T, h http.Handler) http.Handler {
	t.Helper()
	if err := loadOpenAPI(); err != nil {
		t.Fatal(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The request's body is read here whole (the gateway refuses
		// bodies over 1 MiB with 413 all the same) and handed on.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := &recorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		key := answerKey(r, body, rec)
		if _, seen := openAPI.valid.Load(key); seen {
			return
		}
		if err := checkAnswer(r, body, rec); err != nil {
			t.Errorf("%s %s → %d: does not match gateway/openapi.json: %v\nanswer: %s", r.Method, r.URL, rec.status, err, clipped(rec.body.Bytes()))
			return
		}
		openAPI.valid.Store(key, true)
	})
}

// answerKey identifies a request and its answer by everything the
// validation reads (but the request id, new on every answer), so that an
// answer already found valid is not validated again: a page polling its
// repair, or reconnecting in a loop, gets the same answer many times.
func answerKey(r *http.Request, body []byte, rec *recorder) [sha256.Size]byte {
	h := sha256.New()
	field := func(parts ...string) {
		for _, p := range parts {
			h.Write([]byte(p))
			h.Write([]byte{0})
		}
	}
	token, hasBearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	field(r.Method, r.URL.RequestURI(), fmt.Sprint(hasBearer && token != ""), r.Header.Get("Content-Type"),
		r.Header.Get("Origin"), r.Header.Get("Access-Control-Request-Method"), r.Header.Get("X-Namespace"),
		r.Header.Get("X-Request-Id"), string(body), fmt.Sprint(rec.status))
	header := rec.sent
	if header == nil {
		header = rec.Header()
	}
	for _, name := range slices.Sorted(maps.Keys(header)) {
		if name == "X-Request-Id" {
			field(name)
			continue
		}
		field(append([]string{name}, header[name]...)...)
	}
	h.Write(rec.body.Bytes())
	return [sha256.Size]byte(h.Sum(nil))
}

// checkAnswer validates a request and the gateway's answer to it.
func checkAnswer(r *http.Request, body []byte, rec *recorder) error {
	ctx := context.Background()
	req := r.Clone(ctx)
	req.Body = io.NopCloser(bytes.NewReader(body))
	if len(body) > 0 && req.Header.Get("Content-Type") == "" {
		// The gateway reads every body as JSON, whatever its Content-Type.
		req.Header.Set("Content-Type", "application/json")
	}
	status, header := rec.status, rec.sent
	if status == 0 { // nothing written
		status, header = http.StatusOK, rec.Header()
	}
	route, params, err := openAPI.router.FindRoute(req)
	var requestErr error
	switch {
	case errors.Is(err, routers.ErrPathNotFound) || errors.Is(err, routers.ErrMethodNotAllowed):
		route = &routers.Route{Spec: openAPI.doc, Path: req.URL.Path, Method: req.Method, Operation: openAPI.unrouted}
		requestErr = err
	case err != nil:
		return err
	case status < 400: // what the document says of the request matters only if the gateway took it
		requestErr = openapi3filter.ValidateRequest(ctx, &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: bearerPresent, ExcludeRequestBody: true},
		})
		if requestErr == nil {
			requestErr = checkRequestBody(route, req.Header.Get("Content-Type"), body)
		}
	}
	if requestErr != nil && status < 400 {
		return fmt.Errorf("the document refuses the request (%v), the gateway answered %d", requestErr, status)
	}
	if err := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(rec.body.Bytes())),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, ExcludeResponseBody: true},
	}); err != nil {
		return err
	}
	return checkResponseBody(route, status, header.Get("Content-Type"), rec.body.Bytes())
}

// Bodies are checked here rather than by kin-openapi, which compiles a
// JSON Schema 2020-12 validator afresh for every body it checks against
// a 3.1 document: that cost the tests more CPU than the gateway did. The
// same compiler (santhosh-tekuri/jsonschema) compiles each of the
// document's body schemas once, at its place in the document so its $refs
// resolve. It asserts the formats the document uses (date-time, uri) as
// JSON Schema defines them: a relative uri fails, which kin-openapi let
// through, and a lower-case "t" in a date-time passes, which kin-openapi's
// pattern refused; nothing the gateway answers differs.
var bodySchemas = struct {
	sync.Mutex
	compiler *jsonschema.Compiler
	compiled map[string]*jsonschema.Schema
}{compiled: map[string]*jsonschema.Schema{}}

const openAPIURL = "file:///gateway/openapi.json"

// bodySchema is the compiled schema at pointer ("#/paths/…") in the
// document.
func bodySchema(pointer string) (*jsonschema.Schema, error) {
	bodySchemas.Lock()
	defer bodySchemas.Unlock()
	if sch, ok := bodySchemas.compiled[pointer]; ok {
		return sch, nil
	}
	if bodySchemas.compiler == nil {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(gateway.OpenAPIDocument()))
		if err != nil {
			return nil, err
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020)
		c.AssertFormat()
		if err := c.AddResource(openAPIURL, doc); err != nil {
			return nil, err
		}
		bodySchemas.compiler = c
	}
	sch, err := bodySchemas.compiler.Compile(openAPIURL + pointer)
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", pointer, err)
	}
	bodySchemas.compiled[pointer] = sch
	return sch, nil
}

// checkBody checks a body against the schema of the media type its
// Content-Type names in content, found at base + "/content/…/schema".
func checkBody(base string, content openapi3.Content, contentType string, body []byte) error {
	if len(content) == 0 {
		return nil
	}
	media := content.Get(contentType)
	if media == nil {
		return fmt.Errorf("Content-Type %q is not documented", contentType)
	}
	if media.Schema == nil {
		return nil
	}
	var key string
	for k, m := range content {
		if m == media {
			key = k
		}
	}
	sch, err := bodySchema(base + "/content/" + pointerToken(key) + "/schema")
	if err != nil {
		return err
	}
	var value any = string(body) // (text, as kin-openapi reads it)
	if key == "application/json" {
		if value, err = jsonschema.UnmarshalJSON(bytes.NewReader(body)); err != nil {
			return fmt.Errorf("body is not JSON: %w", err)
		}
	}
	if err := sch.Validate(value); err != nil {
		return fmt.Errorf("body doesn't match the schema: %w", err)
	}
	return nil
}

// checkRequestBody checks a request's body as the operation documents it.
func checkRequestBody(route *routers.Route, contentType string, body []byte) error {
	rb := route.Operation.RequestBody
	if rb == nil || rb.Value == nil {
		return nil
	}
	if len(body) == 0 {
		if rb.Value.Required {
			return errors.New("request body is required")
		}
		return nil
	}
	base := rb.Ref
	if base == "" {
		base = operationPointer(route) + "/requestBody"
	}
	return checkBody(base, rb.Value.Content, contentType, body)
}

// checkResponseBody checks an answer's body as the operation documents its
// status (ValidateResponse has found the status documented).
func checkResponseBody(route *routers.Route, status int, contentType string, body []byte) error {
	// As kin-openapi finds it: the status, its range ("4XX"), or default.
	var key string
	var resp *openapi3.ResponseRef
	for _, k := range []string{strconv.Itoa(status), fmt.Sprintf("%dXX", status/100), "default"} {
		if resp = route.Operation.Responses.Value(k); resp != nil {
			key = k
			break
		}
	}
	if resp == nil || resp.Value == nil {
		return nil
	}
	base := resp.Ref
	if base == "" {
		base = operationPointer(route) + "/responses/" + key
	}
	return checkBody(base, resp.Value.Content, contentType, body)
}

// operationPointer is where the route's operation is in the document.
func operationPointer(route *routers.Route) string {
	return "#/paths/" + pointerToken(route.Path) + "/" + strings.ToLower(route.Method)
}

// pointerToken escapes s as one JSON Pointer token, in a URL fragment.
func pointerToken(s string) string {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
	return url.PathEscape(s)
}

// bearerPresent is the document's view of the credentials: a bearer
// scheme needs an Authorization: Bearer header, the dev Web UI's scheme
// an Origin header. Whether the credential is good is the gateway's to
// say (401, 403).
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	scheme := in.SecurityScheme
	if scheme.Type == "apiKey" && scheme.In == "header" {
		if in.RequestValidationInput.Request.Header.Get(scheme.Name) == "" {
			return fmt.Errorf("no %s header", scheme.Name)
		}
		return nil
	}
	if scheme.Type != "http" || !strings.EqualFold(scheme.Scheme, "bearer") {
		return fmt.Errorf("security scheme %s: only bearer schemes are expected", in.SecuritySchemeName)
	}
	if token, ok := strings.CutPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer "); !ok || token == "" {
		return errors.New("no bearer credential")
	}
	return nil
}

// recorder passes an answer on while keeping a copy of it.
type recorder struct {
	http.ResponseWriter
	status int
	sent   http.Header // the headers as they were sent
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
		r.sent = r.Header().Clone()
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

// Flush lets streaming answers through.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func clipped(b []byte) string {
	if len(b) > 500 {
		return string(b[:500]) + "…"
	}
	return string(b)
}

// The check itself: answers and requests that break the document are
// caught, by the schemas of routed operations, of shared responses and of
// the answers to unrouted paths; ones that keep to it pass.
func TestTheOpenAPICheckCatchesWhatBreaksTheDocument(t *testing.T) {
	require.NoError(t, loadOpenAPI())
	answer := func(status int, body string) *recorder {
		rec := &recorder{ResponseWriter: httptest.NewRecorder()}
		rec.Header().Set("Content-Type", "application/json")
		rec.Header().Set("X-Request-Id", "req-1")
		rec.WriteHeader(status)
		_, _ = rec.Write([]byte(body))
		return rec
	}
	request := func(method, path, body string) *http.Request {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer k")
		return r
	}
	notFound := `{"error":{"code":"not_found","message":"no such route"}}`
	assert.NoError(t, checkAnswer(request(http.MethodGet, "/nowhere", ""), nil, answer(http.StatusNotFound, notFound)))
	assert.Error(t, checkAnswer(request(http.MethodGet, "/nowhere", ""), nil,
		answer(http.StatusNotFound, `{"error":{"code":"conflict","message":"no such route"}}`)), "a const of an unrouted answer")
	assert.Error(t, checkAnswer(request(http.MethodGet, "/nowhere", ""), nil,
		answer(http.StatusNotFound, `{"error":{"code":"not_found"}}`)), "a required field of a shared schema")

	reconnect := "/v1/repairs/sandbox/conn_1/reconnect"
	conflict := `{"error":{"code":"conflict","message":"the repair is REPAIRED"}}`
	assert.NoError(t, checkAnswer(request(http.MethodPost, reconnect, `{"forceNewSession":true}`), []byte(`{"forceNewSession":true}`),
		answer(http.StatusConflict, conflict)))
	assert.Error(t, checkAnswer(request(http.MethodPost, reconnect, `{}`), []byte(`{}`),
		answer(http.StatusOK, `{"session":{"connectorToken":5}}`)), "a routed operation's answer")
	offered := `{"status":"AWAITING_USER","connectorStatus":"CONTINUE"}`
	assert.NoError(t, checkAnswer(request(http.MethodPost, reconnect, `{}`), []byte(`{}`), answer(http.StatusOK, offered)))
	err := checkAnswer(request(http.MethodPost, reconnect, `{"force":true}`), []byte(`{"force":true}`), answer(http.StatusOK, offered))
	assert.ErrorContains(t, err, "the document refuses the request", "a body the document refuses, taken by the gateway")
	assert.Error(t, checkAnswer(request(http.MethodPost, reconnect, ""), nil,
		answer(http.StatusInternalServerError, `{"error":{"code":"internal","message":""}}`)), "minLength of a shared response")
}
