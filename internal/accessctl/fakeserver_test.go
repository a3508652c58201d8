package accessctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"
)

// apiRoute is one endpoint of /work/shared/design/api.md, written down
// from the document (not from the client), so that the fake refuses what
// the real server would refuse.
type apiRoute struct {
	pattern string   // ServeMux pattern: method and path
	body    []string // the body's fields (every one required); nil: no body (GET)
	optBody []string // the body's optional fields
	query   []string // the query parameters api.md allows (GET)
	ext     []string // more parameters the server accepts (adapters/httpapi's route table)
	// maxBody is the largest body (default maxBodyBytes).
	maxBody int
}

// commandRoutes and queryRoutes are api.md's tables.
var commandRoutes = []apiRoute{
	{pattern: "POST /v1/children", body: []string{"reference"}, optBody: []string{"retain_until"}},
	{pattern: "PUT /v1/children/{child_id}/retention", body: []string{"retain_until", "reason"}},
	{pattern: "PUT /v1/policy", optBody: []string{"grace_period", "invitation_ttl", "session_idle_timeout", "session_warning_after", "closed_account_retention", "review_period", "reason"}},
	{pattern: "POST /v1/children/{child_id}/allocation", body: []string{"worker_id"}},
	{pattern: "POST /v1/invitations", body: []string{"email", "kind"}},
	{pattern: "POST /v1/accounts/{account_id}/activation", body: []string{"identity_subject", "email"}},
	{pattern: "POST /v1/accounts/{account_id}/close", body: []string{"reason"}},
	{pattern: "POST /v1/accounts/{account_id}/erasure", body: []string{"reason"}},
	{pattern: "POST /v1/accounts/{account_id}/invitation/cancel", body: []string{"reason"}},
	{pattern: "POST /v1/accounts/{account_id}/reopen", body: []string{"reason"}},
	{pattern: "POST /v1/accounts/{account_id}/email-change-requests", body: []string{"email", "reason"}},
	{pattern: "PUT /v1/accounts/{account_id}/email", body: []string{"email"}},
	{pattern: "POST /v1/children/{child_id}/placements/{placement_id}/cancel", body: []string{"reason"}},
	{pattern: "POST /v1/children/{child_id}/erasure", body: []string{"reason"}},
	{pattern: "POST /v1/children/{child_id}/placements", body: []string{"carer_account_id", "started_at"}},
	// api.md lists a reason; docs/openapi.yaml (and the server) make it optional.
	{pattern: "POST /v1/children/{child_id}/placements/{placement_id}/end", body: []string{"ended_at"}, optBody: []string{"reason"}},
	{pattern: "POST /v1/children/{child_id}/placements/{placement_id}/end-grace", body: []string{"reason"}},
	{pattern: "POST /v1/children/{child_id}/grants", body: []string{"account_id", "relationship", "permissions", "reason"}, optBody: []string{"expires_at"}},
	{pattern: "POST /v1/children/{child_id}/grants/{account_id}/revoke", body: []string{"reason"}},
	{pattern: "POST /v1/children/{child_id}/grants/{account_id}/review", body: []string{"reason"}},
	{pattern: "POST /v1/accounts/{account_id}/phone-reset-requests", body: []string{"reason"}},
	{pattern: "POST /v1/accounts/{account_id}/phone/clear", body: []string{}},
	{pattern: "PUT /v1/accounts/{account_id}/phone", body: []string{"phone"}},
	// A query with a body (R20): the fake checks its body as a command's.
	{pattern: "POST /v1/views", body: []string{"views"}},
}

// queryRoutes: api.md's parameters (every query accepts min_position),
// and in ext the server's additions that accessctl uses.
var queryRoutes = []apiRoute{
	{pattern: "GET /v1/check", query: []string{"account_id", "child_id", "carer_id", "permission", "at", "min_position"}},
	// A query with a body: no query parameters, no Idempotency-Key.
	{pattern: "POST /v1/checks", body: []string{"checks"}, optBody: []string{"at", "min_position"}, query: []string{}, maxBody: 256 << 10},
	{pattern: "GET /v1/accounts/{account_id}/children", query: []string{"at", "min_position"}},
	{pattern: "GET /v1/children/{child_id}/viewers", query: []string{"at", "min_position"}},
	{pattern: "GET /v1/children/{child_id}/history", query: []string{"min_position"}, ext: []string{"at", "as_of", "known_at"}},
	{pattern: "GET /v1/accounts/{account_id}/history", query: []string{"min_position"}, ext: []string{"at", "as_of", "known_at"}},
	{pattern: "GET /v1/accounts", query: []string{"email", "identity_subject", "min_position"},
		ext: []string{"status", "kind", "needs_phone_enrolment", "phone_reset_requested", "at", "after", "limit"}},
	{pattern: "GET /v1/watch", query: []string{"after"}},
	{pattern: "GET /v1/accounts/{account_id}", query: []string{"min_position"}, ext: []string{"at"}},
	{pattern: "GET /v1/children/{child_id}", query: []string{"at", "min_position"}},
	{pattern: "GET /v1/children", query: []string{"reference", "allocated_to", "after", "limit", "min_position"}},
	{pattern: "GET /v1/reviews", query: []string{"due_before", "worker_id", "min_position"}, ext: []string{"after", "limit"}},
	{pattern: "GET /v1/audit", query: []string{"child_id", "account_id", "actor", "from", "to", "after", "limit", "min_position"}},
	{pattern: "GET /v1/audit/verify", query: []string{"min_position"}, ext: []string{"anchor_seq", "anchor_hash"}},
	{pattern: "GET /v1/security-log", query: []string{"min_position"}, ext: []string{"actor", "command", "code", "from", "to", "after", "limit"}},
	{pattern: "GET /v1/policy", query: []string{"at", "min_position"}},
	{pattern: "GET /v1/children/{child_id}/views", query: []string{"from", "to", "min_position"}, ext: []string{"after", "limit"}},
	{pattern: "GET /v1/accounts/{account_id}/views", query: []string{"from", "to", "min_position"}, ext: []string{"after", "limit"}},
	{pattern: "GET /v1/alerts", query: []string{"from", "to", "min_position"}, ext: []string{"after", "limit"}},
	{pattern: "GET /v1/accounts/{account_id}/export", query: []string{"format", "min_position"}},
	{pattern: "GET /v1/children/{child_id}/export", query: []string{"format", "min_position"}},
}

// seenRequest is a request the fake accepted.
type seenRequest struct {
	Pattern        string // the route, e.g. "POST /v1/children"
	Path           string
	Query          url.Values
	Body           map[string]any // nil for a GET
	RawBody        string
	IdempotencyKey string
	Authorization  string
}

// reply is what the fake answers to an accepted request.
type reply struct {
	status      int    // default 200
	contentType string // default application/json, or application/problem+json for status >= 400
	body        string
	block       bool        // wait until the client goes away (for timeouts)
	header      http.Header // extra headers
}

// fakeServer is an httptest server that speaks api.md: it checks the token,
// the route, the path's ids, the query parameters, the body's fields and
// size, and answers refusals with application/problem+json. Accepted
// requests are recorded and answered by answer.
type fakeServer struct {
	*httptest.Server
	token string

	mu      sync.Mutex
	seen    []seenRequest
	refused []string // why requests were refused by the fake's own checks
	answer  func(seenRequest) reply
}

const maxBodyBytes = 64 << 10

func newFakeServer(t *testing.T, token string, answer func(seenRequest) reply) *fakeServer {
	t.Helper()
	f := &fakeServer{token: token, answer: answer}
	mux := http.NewServeMux()
	for _, r := range commandRoutes {
		mux.Handle(r.pattern, f.handler(r, true))
	}
	for _, r := range queryRoutes {
		mux.Handle(r.pattern, f.handler(r, false))
	}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			f.refuse(w, http.StatusNotFound, "not_found", "Not Found", "no route "+r.Method+" "+r.URL.Path)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

// requests returns the accepted requests.
func (f *fakeServer) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seen)
}

// refusals returns why requests were refused.
func (f *fakeServer) refusals() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.refused)
}

func (f *fakeServer) refuse(w http.ResponseWriter, status int, code, title, detail string) {
	f.mu.Lock()
	f.refused = append(f.refused, fmt.Sprintf("%d %s: %s", status, code, detail))
	f.mu.Unlock()
	writeProblem(w, status, code, title, detail)
}

func writeProblem(w http.ResponseWriter, status int, code, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "https://accessledger.example/problems/" + code,
		"title": title, "status": status, "detail": detail, "code": code})
}

func (f *fakeServer) handler(rt apiRoute, command bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+f.token {
			f.refuse(w, http.StatusUnauthorized, "unauthenticated", "Unauthenticated", "a valid bearer token is required")
			return
		}
		for _, name := range []string{"child_id", "account_id", "placement_id"} {
			if v := r.PathValue(name); v != "" {
				if u, err := uuid.Parse(v); err != nil || u.String() != v {
					f.refuse(w, http.StatusBadRequest, "invalid", "Invalid request", name+" is not a canonical UUID")
					return
				}
			}
		}
		seen := seenRequest{Pattern: rt.pattern, Path: r.URL.Path, Query: r.URL.Query(),
			IdempotencyKey: r.Header.Get("Idempotency-Key"), Authorization: r.Header.Get("Authorization")}
		if rt.body != nil || rt.optBody != nil {
			limit := maxBodyBytes
			if rt.maxBody > 0 {
				limit = rt.maxBody
			}
			if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
				f.refuse(w, http.StatusUnsupportedMediaType, "invalid", "Invalid request", "the body must be application/json")
				return
			}
			raw, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
			if err != nil {
				f.refuse(w, http.StatusBadRequest, "invalid", "Invalid request", err.Error())
				return
			}
			if len(raw) > limit {
				f.refuse(w, http.StatusRequestEntityTooLarge, "too_large", "Request too large", fmt.Sprintf("the body is larger than %d bytes", limit))
				return
			}
			var body map[string]any
			dec := json.NewDecoder(bytes.NewReader(raw))
			if err := dec.Decode(&body); err != nil || body == nil || dec.More() {
				f.refuse(w, http.StatusBadRequest, "invalid", "Invalid request", "the body is not one JSON object")
				return
			}
			for k := range body {
				if !slices.Contains(rt.body, k) && !slices.Contains(rt.optBody, k) {
					f.refuse(w, http.StatusBadRequest, "invalid", "Invalid request", "unknown field "+k)
					return
				}
			}
			for _, k := range rt.body {
				if _, ok := body[k]; !ok {
					f.refuse(w, http.StatusBadRequest, "invalid", "Invalid request", "missing field "+k)
					return
				}
			}
			seen.Body, seen.RawBody = body, string(raw)
		} else if r.ContentLength > 0 {
			f.refuse(w, http.StatusBadRequest, "invalid", "Invalid request", "this query has no body")
			return
		}
		if !command {
			for k, vs := range r.URL.Query() {
				if !(slices.Contains(rt.query, k) || slices.Contains(rt.ext, k)) || len(vs) != 1 {
					f.refuse(w, http.StatusBadRequest, "invalid", "Invalid request", "unknown or repeated parameter "+k)
					return
				}
			}
			if idem := r.Header.Get("Idempotency-Key"); idem != "" {
				f.refuse(w, http.StatusBadRequest, "invalid", "Invalid request", "a query takes no Idempotency-Key")
				return
			}
		}
		f.mu.Lock()
		f.seen = append(f.seen, seen)
		answer := f.answer
		f.mu.Unlock()
		rep := reply{body: `{"position":"1"}`}
		if answer != nil {
			rep = answer(seen)
		}
		if rep.block {
			<-r.Context().Done()
			return
		}
		if rep.status == 0 {
			rep.status = http.StatusOK
		}
		if rep.contentType == "" {
			rep.contentType = "application/json"
			if rep.status >= 400 {
				rep.contentType = "application/problem+json"
			}
		}
		for k, vs := range rep.header {
			w.Header()[k] = vs
		}
		w.Header().Set("Content-Type", rep.contentType)
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, rep.body)
	})
}

// fixed answers every request with r.
func fixed(r reply) func(seenRequest) reply { return func(seenRequest) reply { return r } }

// jsonString quotes s for a JSON document.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
