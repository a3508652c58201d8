package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/queries"
)

// docPath is the OpenAPI document, relative to this package.
const docPath = "../../docs/openapi.yaml"

var (
	docOnce sync.Once
	docT    *openapi3.T
	docErr  error
)

// loadDoc loads and validates docs/openapi.yaml once.
func loadDoc(t testing.TB) *openapi3.T {
	t.Helper()
	docOnce.Do(func() {
		loader := openapi3.NewLoader()
		docT, docErr = loader.LoadFromFile(docPath)
		if docErr == nil {
			docErr = docT.Validate(context.Background())
		}
	})
	require.NoError(t, docErr)
	return docT
}

// contract checks the requests and answers that pass through it against
// the OpenAPI document: every answer of a documented route must validate
// (status, content type, body, headers), and every request the server
// accepted (2xx) must validate too, so that the document is never stricter
// than the server. The watch stream is not buffered (it never ends), so it
// is not checked here; TestWatch checks its events.
type contract struct {
	doc *openapi3.T
	mux *http.ServeMux // finds a request's route pattern

	mu       sync.Mutex
	failures []string
	covered  map[string]bool // operationIds with a validated 2xx
}

func newContract(t testing.TB) *contract {
	c := &contract{doc: loadDoc(t), mux: http.NewServeMux(), covered: map[string]bool{}}
	for _, rt := range routes() {
		c.mux.Handle(rt.Method+" "+rt.Pattern, http.NotFoundHandler())
	}
	return c
}

var validationOptions = &openapi3filter.Options{
	AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
	IncludeResponseStatus: true,
	MultiError:            true,
}

// route finds the document's operation of r, with its path parameters.
func (c *contract) route(r *http.Request) (*routers.Route, map[string]string, bool) {
	_, pattern := c.mux.Handler(r)
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		return nil, nil, false
	}
	item := c.doc.Paths.Value(path)
	if item == nil || item.GetOperation(method) == nil {
		c.fail("%s %s is served but not documented", method, path)
		return nil, nil, false
	}
	params := map[string]string{}
	ps, rs := strings.Split(path, "/"), strings.Split(r.URL.Path, "/")
	for i, seg := range ps {
		if strings.HasPrefix(seg, "{") && i < len(rs) {
			params[strings.Trim(seg, "{}")] = rs[i]
		}
	}
	return &routers.Route{Spec: c.doc, Path: path, PathItem: item, Method: method, Operation: item.GetOperation(method)}, params, true
}

func (c *contract) fail(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failures = append(c.failures, fmt.Sprintf(format, args...))
}

func (c *contract) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route, params, ok := c.route(r)
		if !ok || route.Operation.OperationID == "watch" {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			c.fail("read request body: %v", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())

		ctx := context.Background()
		vr := r.Clone(ctx)
		vr.Body = io.NopCloser(bytes.NewReader(body))
		vr.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		in := &openapi3filter.RequestValidationInput{Request: vr, PathParams: params, Route: route, Options: validationOptions}
		op := route.Operation.OperationID
		if rec.Code < 300 {
			if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
				c.fail("%s %s was accepted (%d) but its request does not validate: %v", r.Method, r.URL, rec.Code, err)
			}
		}
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.Code, Header: rec.Header(),
			Options: validationOptions}
		out.SetBodyBytes(rec.Body.Bytes())
		if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
			c.fail("%s %s answered %d %s that does not validate: %v", r.Method, r.URL, rec.Code, rec.Body.Bytes(), err)
		}
		if rec.Code < 300 {
			c.mu.Lock()
			c.covered[op] = true
			c.mu.Unlock()
		}
	})
}

// check fails t with every failure seen.
func (c *contract) check(t testing.TB) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.failures {
		t.Errorf("openapi contract: %s", f)
	}
}

func (c *contract) coveredOps() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.covered)
}

// TestOpenAPI_RoutesMatchDocument checks (a) of the contract: every route the
// handler registers is documented with the same operationId, query
// parameters and security, and every documented operation is served.
func TestOpenAPI_RoutesMatchDocument(t *testing.T) {
	doc := loadDoc(t)
	require.Equal(t, "3.1.0", doc.OpenAPI)
	served := map[string]bool{}
	for _, rt := range routes() {
		key := rt.Method + " " + rt.Pattern
		require.False(t, served[key], "route %s registered twice", key)
		served[key] = true
		t.Run(key, func(t *testing.T) {
			item := doc.Paths.Value(rt.Pattern)
			require.NotNil(t, item, "path %s is not in the document", rt.Pattern)
			op := item.GetOperation(rt.Method)
			require.NotNil(t, op, "%s is not in the document", key)
			require.Equal(t, rt.Name, op.OperationID)
			var query []string
			for _, p := range op.Parameters {
				if p.Value.In == openapi3.ParameterInQuery {
					query = append(query, p.Value.Name)
				}
			}
			want := slices.Clone(rt.Params)
			sort.Strings(query)
			sort.Strings(want)
			require.Equal(t, want, query, "query parameters of %s", key)
			isPublic := op.Security != nil && len(*op.Security) == 0
			require.Equal(t, rt.Access == public, isPublic, "security of %s", key)
			if rt.Access == command {
				require.NotNil(t, op.RequestBody, "%s has no request body", key)
				require.NotNil(t, op.RequestBody.Value.Content.Get("application/json"))
				hasKey := false
				for _, p := range op.Parameters {
					hasKey = hasKey || (p.Value.In == openapi3.ParameterInHeader && p.Value.Name == idempotencyKeyHeader)
				}
				require.True(t, hasKey, "%s does not document Idempotency-Key", key)
				for _, code := range []string{"400", "401", "403", "409", "413", "415", "422", "500", "503"} {
					require.NotNil(t, op.Responses.Value(code), "%s does not document %s", key, code)
				}
			}
			if rt.Access != public {
				require.NotNil(t, op.Responses.Value("401"), "%s does not document 401", key)
			}
			if rt.Access == asks && queries.Roles(queries.Name(rt.Name)) != nil {
				require.NotNil(t, op.Responses.Value("403"), "%s does not document 403", key)
			}
		})
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			require.True(t, served[method+" "+path], "%s %s is documented but not served", method, path)
		}
	}
}

// TestContract_DetectsMismatches shows the contract check can fail: answers
// with a missing field, an extra field, a wrong type, an undocumented
// status or a wrong content type, and an accepted request the document
// refuses, are all reported.
func TestContract_DetectsMismatches(t *testing.T) {
	for _, tc := range []struct {
		name        string
		method      string
		path        string
		body        string
		status      int
		contentType string
		answer      string
	}{
		{"missing field", "GET", "/v1/policy", "", 200, "application/json",
			`{"grace_period":1,"invitation_ttl":1,"session_idle_timeout":1,"session_warning_after":1}`},
		{"extra field", "GET", "/v1/policy", "", 200, "application/json",
			`{"grace_period":1,"invitation_ttl":1,"session_idle_timeout":1,"session_warning_after":1,"position":"1","x":1}`},
		{"wrong type", "GET", "/v1/policy", "", 200, "application/json",
			`{"grace_period":"1s","invitation_ttl":1,"session_idle_timeout":1,"session_warning_after":1,"position":"1"}`},
		{"null where not nullable", "GET", "/healthz", "", 200, "application/json", `{"status":null}`},
		{"extra field next to allOf", "GET", "/v1/accounts/" + uuid.NewString(), "", 200, "application/json",
			`{"account_id":"` + uuid.NewString() + `","kind":"parent","status":"active","needs_phone_enrolment":false,"phone_hint":null,` +
				`"invited_at":"2026-03-02T09:00:00Z","expires_at":"2026-03-02T09:00:00Z","activated_at":null,"closed_at":null,` +
				`"at":"2026-03-02T09:00:00Z","position":"3","email":"leak@example.org"}`},
		{"bad phone hint", "GET", "/v1/accounts/" + uuid.NewString(), "", 200, "application/json",
			`{"account_id":"` + uuid.NewString() + `","kind":"parent","status":"active","needs_phone_enrolment":false,"phone_hint":"+447700900123",` +
				`"invited_at":"2026-03-02T09:00:00Z","expires_at":"2026-03-02T09:00:00Z","activated_at":null,"closed_at":null,` +
				`"at":"2026-03-02T09:00:00Z","position":"3"}`},
		{"undocumented status", "GET", "/healthz", "", 418, "application/json", `{"status":"ok"}`},
		{"problem as json", "GET", "/readyz", "", 503, "application/json",
			`{"type":"t","title":"t","status":503,"detail":"d","code":"stale"}`},
		{"unknown problem code", "GET", "/readyz", "", 503, "application/problem+json",
			`{"type":"t","title":"t","status":503,"detail":"d","code":"nope"}`},
		{"accepted request the document refuses", "POST", "/v1/children", `{"reference":""}`, 201, "application/json",
			`{"child_id":"` + uuid.NewString() + `","position":"1"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newContract(t)
			h := c.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.answer)
			}))
			r := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			if tc.body != "" {
				r.Header.Set("Content-Type", "application/json")
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
			require.NotEmpty(t, c.failures)
		})
	}
	// And a conforming answer passes.
	c := newContract(t)
	h := c.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/healthz", nil))
	require.Empty(t, c.failures)
}

// TestContract_QueryRolesMatchTheDocument: the roles each query's summary
// names in docs/openapi.yaml (its last parenthesis, before any ";") are
// the roles the query service lets ask it.
func TestContract_QueryRolesMatchTheDocument(t *testing.T) {
	doc := loadDoc(t)
	checked := 0
	for _, rt := range routes() {
		if rt.Access != asks {
			continue
		}
		op := doc.Paths.Value(rt.Pattern).GetOperation(rt.Method)
		require.NotNil(t, op, rt.Name)
		open := strings.LastIndex(op.Summary, "(")
		require.Positive(t, open, "%s: the summary names no roles: %q", rt.Name, op.Summary)
		inner := strings.TrimSuffix(strings.TrimSuffix(op.Summary[open+1:], "."), ")")
		inner, _, _ = strings.Cut(inner, ";")
		var documented []string
		if inner != "anyone authenticated" {
			documented = strings.Split(inner, ", ")
		}
		var served []string
		for _, r := range queries.Roles(queries.Name(rt.Name)) {
			served = append(served, string(r))
		}
		require.ElementsMatch(t, documented, served, "%s %s: the document says %q", rt.Method, rt.Pattern, op.Summary)
		checked++
	}
	require.Greater(t, checked, 15)
}
