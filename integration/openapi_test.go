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
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

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
			responses.Set(fmt.Sprint(status), doc.Components.Responses[name])
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
			Options: &openapi3filter.Options{AuthenticationFunc: bearerPresent},
		})
	}
	if requestErr != nil && status < 400 {
		return fmt.Errorf("the document refuses the request (%v), the gateway answered %d", requestErr, status)
	}
	return openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(rec.body.Bytes())),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	})
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
