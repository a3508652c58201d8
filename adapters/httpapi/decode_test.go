package httpapi

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain"
)

// TestBadRequests sends malformed requests of every kind; each is answered
// 400 "invalid" (415 for a body that is not JSON), and none appends
// anything.
func TestBadRequests(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t))
	w := e.buildWorld()
	before := e.head()
	placements := "/v1/children/" + w.child + "/placements"
	grants := "/v1/children/" + w.child + "/grants"
	good := func(started string) string {
		return `{"carer_account_id":"` + w.carer + `","started_at":"` + started + `"}`
	}
	for _, tc := range []struct {
		name, method, path, body string
		contentType              string // default application/json
		status                   int    // default 400
		detail                   string // a part of the detail
	}{
		{name: "unknown field", path: "/v1/children", body: `{"reference":"R","extra":1}`, detail: `unknown field "extra"`},
		{name: "key in another case", path: "/v1/children", body: `{"Reference":"R"}`, detail: `unknown field "Reference"`},
		{name: "duplicate key", path: "/v1/children", body: `{"reference":"R","reference":"S"}`, detail: "duplicate"},
		{name: "nested duplicate key", path: grants, body: `{"account_id":"` + w.member + `","relationship":"parent","permissions":["view"],"reason":"r","x":{"a":1,"a":2}}`, detail: "duplicate"},
		{name: "malformed JSON", path: "/v1/children", body: `{"reference":"R"`, detail: "malformed"},
		{name: "not JSON", path: "/v1/children", body: `reference=R`, detail: "malformed"},
		{name: "trailing value", path: "/v1/children", body: `{"reference":"R"} {}`, detail: "exactly one"},
		{name: "trailing garbage", path: "/v1/children", body: `{"reference":"R"}x`, detail: "exactly one"},
		{name: "array", path: "/v1/children", body: `[{"reference":"R"}]`, detail: "object"},
		{name: "null body", path: "/v1/children", body: `null`, detail: "object"},
		{name: "string body", path: "/v1/children", body: `"R"`, detail: "object"},
		{name: "empty body", path: "/v1/children", body: ``, detail: "empty"},
		{name: "whitespace body", path: "/v1/children", body: " \n", detail: "empty"},
		{name: "missing field", path: "/v1/children", body: `{}`, detail: "reference: required"},
		{name: "null field", path: "/v1/children", body: `{"reference":null}`, detail: "reference: required"},
		{name: "wrong type", path: "/v1/children", body: `{"reference":42}`, detail: "reference: must be a string"},
		{name: "wrong element type", path: grants, body: `{"account_id":"` + w.member + `","relationship":"parent","permissions":[1],"reason":"r"}`, detail: "permissions"},
		{name: "object for string", path: "/v1/children", body: `{"reference":{"a":"b"}}`, detail: "must be a string"},
		{name: "bad uuid in body", path: placements, body: `{"carer_account_id":"not-a-uuid","started_at":"2026-03-02T09:00:00Z"}`, detail: "carer_account_id"},
		{name: "uuid with braces", path: placements, body: `{"carer_account_id":"{` + w.carer + `}","started_at":"2026-03-02T09:00:00Z"}`, detail: "carer_account_id"},
		{name: "uuid as urn", path: placements, body: `{"carer_account_id":"urn:uuid:` + w.carer + `","started_at":"2026-03-02T09:00:00Z"}`, detail: "carer_account_id"},
		{name: "nil uuid", path: placements, body: `{"carer_account_id":"00000000-0000-0000-0000-000000000000","started_at":"2026-03-02T09:00:00Z"}`, detail: "nil UUID"},
		{name: "bad uuid in path", path: "/v1/children/not-a-uuid/placements", body: good("2026-03-02T09:00:00Z"), detail: "child_id"},
		{name: "short uuid in path", path: "/v1/children/" + strings.ReplaceAll(w.child, "-", "") + "/placements", body: good("2026-03-02T09:00:00Z"), detail: "child_id"},
		{name: "bad time", path: placements, body: good("yesterday"), detail: "started_at"},
		{name: "time without zone", path: placements, body: good("2026-03-02T09:00:00"), detail: "started_at"},
		{name: "time with a space", path: placements, body: good("2026-03-02 09:00:00Z"), detail: "started_at"},
		{name: "date only", path: placements, body: good("2026-03-02"), detail: "started_at"},
		{name: "hour 24", path: placements, body: good("2026-03-02T24:00:00Z"), detail: "started_at"},
		{name: "year 0001", path: placements, body: good("0001-01-01T00:00:00Z"), detail: "out of range"},
		{name: "NUL escape", path: "/v1/children", body: `{"reference":"R\u0000S"}`, detail: "control character"},
		{name: "control escape", path: "/v1/children", body: `{"reference":"R\u0007"}`, detail: "control character"},
		{name: "line feed outside free text", path: "/v1/children", body: `{"reference":"R\nS"}`, detail: "control character"},
		{name: "invalid UTF-8", path: "/v1/children", body: "{\"reference\":\"R\xff\xfe\"}", detail: "UTF-8"},
		{name: "overlong UTF-8", path: "/v1/children", body: "{\"reference\":\"\xc0\xaf\"}", detail: "UTF-8"},
		{name: "RTL override", path: "/v1/children", body: "{\"reference\":\"NCC\u202e1000\"}", detail: "bidirectional"},
		{name: "RTL override escape", path: "/v1/children", body: `{"reference":"NCC\u202E1000"}`, detail: "bidirectional"},
		{name: "isolate in reason", path: "/v1/accounts/" + w.member + "/close", body: `{"reason":"a\u2066b"}`, detail: "bidirectional"},
		{name: "lone surrogate", path: "/v1/children", body: `{"reference":"R\ud800"}`, detail: "U+FFFD"},
		{name: "no content type", path: "/v1/children", body: `{"reference":"R"}`, contentType: "-", status: 415},
		{name: "text/plain", path: "/v1/children", body: `{"reference":"R"}`, contentType: "text/plain", status: 415},
		{name: "latin1 charset", path: "/v1/children", body: `{"reference":"R"}`, contentType: "application/json; charset=latin1", status: 415},
		{name: "form", path: "/v1/children", body: `reference=R`, contentType: "application/x-www-form-urlencoded", status: 415},
		{name: "query on a command", path: "/v1/children?dry_run=1", body: `{"reference":"R"}`, detail: "unknown query parameter"},
		{name: "empty object for grant", path: grants, body: `{}`, detail: "required"},
		{name: "clear with a field", path: "/v1/accounts/" + w.member + "/phone/clear", body: `{"phone":"1"}`, detail: "unknown field"},
		{name: "bad idempotency key", path: "/v1/children", body: `{"reference":"R"}`, detail: "Idempotency-Key"},
		// Queries.
		{name: "unknown query parameter", method: "GET", path: "/v1/policy?verbose=1", detail: "unknown query parameter"},
		{name: "repeated query parameter", method: "GET", path: "/v1/check?account_id=" + w.carer + "&account_id=" + w.carer + "&child_id=" + w.child + "&permission=view", detail: "more than once"},
		{name: "bad min_position", method: "GET", path: "/v1/policy?min_position=abc", detail: "min_position"},
		{name: "negative min_position", method: "GET", path: "/v1/policy?min_position=-1", detail: "min_position"},
		{name: "empty min_position", method: "GET", path: "/v1/policy?min_position=", detail: "min_position"},
		{name: "bad at", method: "GET", path: "/v1/accounts/" + w.carer + "/children?at=now", detail: "at"},
		{name: "check without child or carer", method: "GET", path: "/v1/check?account_id=" + w.carer + "&permission=view", detail: "exactly one"},
		{name: "check with both", method: "GET", path: "/v1/check?account_id=" + w.carer + "&child_id=" + w.child + "&carer_id=" + w.carer + "&permission=view", detail: "exactly one"},
		{name: "check bad permission", method: "GET", path: "/v1/check?account_id=" + w.carer + "&child_id=" + w.child + "&permission=admin", detail: "permission"},
		{name: "bad uuid in query", method: "GET", path: "/v1/check?account_id=x&child_id=" + w.child + "&permission=view", detail: "account_id"},
		{name: "NUL in query", method: "GET", path: "/v1/audit?actor=a%00b", detail: "control character"},
		{name: "RTL in query", method: "GET", path: "/v1/audit?actor=a%E2%80%AEb", detail: "bidirectional"},
		{name: "invalid UTF-8 in query", method: "GET", path: "/v1/audit?actor=a%FFb", detail: "UTF-8"},
		{name: "audit limit too big", method: "GET", path: "/v1/audit?limit=1001", detail: "limit"},
		{name: "audit to before from", method: "GET", path: "/v1/audit?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", detail: "to"},
		{name: "anchor half", method: "GET", path: "/v1/audit/verify?anchor_seq=1", detail: "anchor"},
		{name: "accounts bad status", method: "GET", path: "/v1/accounts?status=sleeping", detail: "status"},
		{name: "accounts email with filter", method: "GET", path: "/v1/accounts?email=a@b&kind=parent", detail: "email"},
		{name: "history bad as_of", method: "GET", path: "/v1/children/" + w.child + "/history?as_of=x", detail: "as_of"},
		{name: "history bad known_at", method: "GET", path: "/v1/children/" + w.child + "/history?known_at=x", detail: "known_at"},
		{name: "history as_of and known_at", method: "GET", path: "/v1/accounts/" + w.member + "/history?as_of=1&known_at=2026-01-01T00:00:00Z", detail: "known_at"},
		{name: "watch bad after", method: "GET", path: "/v1/watch?after=x", detail: "after"},
		{name: "query parameter on healthz", method: "GET", path: "/healthz?x=1", detail: "unknown query parameter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := req{method: tc.method, path: tc.path, body: tc.body, header: map[string]string{}}
			if r.method == "" {
				r.method = "POST"
			}
			r.role, r.sub = domain.RoleWorker, w.worker
			switch {
			case strings.Contains(tc.path, "/history") || strings.HasPrefix(tc.path, "/v1/audit"):
				r.role = domain.RoleAuditor
			case strings.HasPrefix(tc.path, "/v1/watch"):
				r.role = domain.RoleService
			}
			if tc.name == "bad idempotency key" {
				r.header[idempotencyKeyHeader] = "has space"
			}
			switch tc.contentType {
			case "":
			case "-":
				r.header["Content-Type"] = ""
			default:
				r.header["Content-Type"] = tc.contentType
			}
			if tc.method == "" && tc.body == "" {
				// An empty body still says it is JSON.
				r.header["Content-Type"] = "application/json"
			}
			status, code := tc.status, codeInvalid
			if status == 0 {
				status = 400
			}
			p := e.do(r).problem(t, status, code)
			require.Contains(t, p.Detail, tc.detail)
		})
	}
	require.Equal(t, before, e.head(), "a refused request appends nothing")
}

// TestBodyLimit: a body of 64 KiB is read; one byte more is 413.
func TestBodyLimit(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t))
	before := e.head()
	body := func(n int) string {
		prefix, suffix := `{"reference":"`, `"}`
		return prefix + strings.Repeat("a", n-len(prefix)-len(suffix)) + suffix
	}
	at := body(MaxBodyBytes)
	require.Len(t, at, MaxBodyBytes)
	// Exactly the limit: read and decoded; the domain refuses the long
	// reference (400, not 413).
	p := e.do(req{method: "POST", path: "/v1/children", role: domain.RoleWorker, body: at}).problem(t, 400, codeInvalid)
	require.Contains(t, p.Detail, "reference")
	over := body(MaxBodyBytes + 1)
	e.do(req{method: "POST", path: "/v1/children", role: domain.RoleWorker, body: over}).problem(t, 413, codeTooLarge)
	e.do(req{method: "POST", path: "/v1/children", role: domain.RoleWorker, body: body(4 * MaxBodyBytes)}).problem(t, 413, codeTooLarge)
	require.Equal(t, before, e.head())
}

func TestParseTimeAndUUID(t *testing.T) {
	for in, want := range map[string]time.Time{
		"2026-03-02T09:00:00Z":                time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC),
		"2026-03-02T10:00:00+01:00":           time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC),
		"2026-03-02T09:00:00.123456789Z":      time.Date(2026, 3, 2, 9, 0, 0, 123456789, time.UTC),
		"2026-03-01T23:30:00-09:30":           time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC),
		"1900-01-01T00:00:00Z":                time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC),
		"9999-12-31T23:59:59.999999Z":         time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
		"2026-03-02T09:00:00.5+00:00":         time.Date(2026, 3, 2, 9, 0, 0, 500000000, time.UTC),
		"2024-02-29T00:00:00Z":                time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC),
		"2026-03-02T09:00:00.000000000Z":      time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC),
		"2026-03-02T09:00:00.000000001Z":      time.Date(2026, 3, 2, 9, 0, 0, 1, time.UTC),
		"2026-03-02T09:00:00.100000000Z":      time.Date(2026, 3, 2, 9, 0, 0, 100000000, time.UTC),
		"2026-03-02T09:00:00.999999999Z":      time.Date(2026, 3, 2, 9, 0, 0, 999999999, time.UTC),
		"2026-03-02T09:00:00.999999999-00:00": time.Date(2026, 3, 2, 9, 0, 0, 999999999, time.UTC),
	} {
		got, err := parseTime("t", in)
		require.NoError(t, err, in)
		require.True(t, want.Equal(got), "%s: %s", in, got)
		require.Equal(t, time.UTC, got.Location(), in)
	}
	for _, in := range []string{"", "2026-03-02", "2026-03-02T09:00Z", "2026-03-02t09:00:00z", "2026-03-02T09:00:00",
		"2026-02-30T00:00:00Z", "2026-03-02T09:00:00+1:00", "2026-03-02T09:00:60Z", " 2026-03-02T09:00:00Z",
		"2026-03-02T09:00:00Z ", "+2026-03-02T09:00:00Z", "1899-12-31T23:59:59Z", "2026-03-02T09:00:00.Z", "2026-03-02T09:00:00,5Z"} {
		_, err := parseTime("t", in)
		require.Error(t, err, "%q", in)
	}
	id := uuid.New()
	for _, in := range []string{id.String(), strings.ToUpper(id.String())} {
		got, err := parseUUID("id", in)
		require.NoError(t, err)
		require.Equal(t, id, got)
	}
	for _, in := range []string{"", "x", strings.ReplaceAll(id.String(), "-", ""), "{" + id.String() + "}", "urn:uuid:" + id.String(),
		uuid.Nil.String(), id.String()[:35] + "g", " " + id.String()[1:]} {
		_, err := parseUUID("id", in)
		require.Error(t, err, "%q", in)
	}
}
