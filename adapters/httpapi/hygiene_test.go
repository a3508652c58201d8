package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain"
)

// TestCommandTimesTheEngineCannotCarry: a time a command brings must leave
// room for what the engine derives from it (a grace period's end) within
// the years 1900 to 9999. A placement starting on 9999-12-30 used to be
// accepted and could then never be ended (500, grace_until out of range);
// now such times are refused with 400 invalid, naming the field, and
// nothing is appended.
func TestCommandTimesTheEngineCannotCarry(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b.URL(t))
			w := e.buildWorld()
			ch := e.ok(req{method: "POST", path: "/v1/children", role: domain.RoleWorker, sub: w.worker, body: `{"reference":"NCC-LATE"}`}, 201)
			child := ch["child_id"].(string)
			placements := "/v1/children/" + child + "/placements"
			end := "/v1/children/" + w.child + "/placements/" + w.placement + "/end"

			refused := []struct {
				name, method, path, body, field string
			}{
				{"a placement starting on 9999-12-30", "POST", placements,
					`{"carer_account_id":"` + w.carer + `","started_at":"9999-12-30T00:00:00Z"}`, "started_at"},
				{"a placement starting in the last century the engine keeps", "POST", placements,
					`{"carer_account_id":"` + w.carer + `","started_at":"9900-01-01T00:00:00Z"}`, "started_at"},
				{"a placement starting before 1900", "POST", placements,
					`{"carer_account_id":"` + w.carer + `","started_at":"1899-12-31T23:59:59Z"}`, "started_at"},
				{"1900 in an offset that is 1899 in UTC", "POST", placements,
					`{"carer_account_id":"` + w.carer + `","started_at":"1900-01-01T00:30:00+01:00"}`, "started_at"},
				{"a placement ending on 9999-12-31", "POST", end, `{"ended_at":"9999-12-31T00:00:00Z"}`, "ended_at"},
				{"a child kept until 9999-12-30", "POST", "/v1/children", `{"reference":"NCC-KEPT","retain_until":"9999-12-30T00:00:00Z"}`, "retain_until"},
				{"a retention date moved to 9999-12-30", "PUT", "/v1/children/" + w.child + "/retention",
					`{"retain_until":"9999-12-30T00:00:00Z","reason":"court order"}`, "retain_until"},
			}
			for _, tc := range refused {
				t.Run(tc.name, func(t *testing.T) {
					head := e.head()
					p := e.do(req{method: tc.method, path: tc.path, role: domain.RoleWorker, sub: w.worker, body: tc.body}).problem(t, 400, codeInvalid)
					require.Contains(t, p.Detail, tc.field)
					require.Equal(t, head, e.head(), "a refused command appends nothing")
				})
			}

			// The latest time a command may carry is accepted, and the
			// placement can then be ended: its grace period fits.
			pl := e.ok(req{method: "POST", path: placements, role: domain.RoleWorker, sub: w.worker,
				body: `{"carer_account_id":"` + w.carer + `","started_at":"9899-12-31T00:00:00Z"}`}, 201)
			ended := e.ok(req{method: "POST", path: placements + "/" + pl["placement_id"].(string) + "/end", role: domain.RoleWorker, sub: w.worker,
				body: `{"ended_at":"9899-12-31T23:59:59Z"}`}, 200)
			require.Equal(t, "9900-01-07T23:59:59Z", ended["grace_until"])
		})
	}
}

// TestIdentifiersOverHTTP: a zero-width space made two child references
// that look identical; a worker id outside the actor-id format, or a token
// subject with a bidirectional control, reached the audit trail verbatim.
func TestIdentifiersOverHTTP(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t))
	w := e.buildWorld()
	tests := []struct {
		name, path, body string
		role             domain.Role
		status           int
		code             string
	}{
		{"a zero-width space in a reference", "/v1/children", `{"reference":"NCC-0001\u200b"}`, domain.RoleWorker, 400, codeInvalid},
		{"a word joiner in a reference", "/v1/children", `{"reference":"NCC\u2060-0001"}`, domain.RoleWorker, 400, codeInvalid},
		{"a byte order mark in a reference", "/v1/children", `{"reference":"\ufeffNCC-0001"}`, domain.RoleWorker, 400, codeInvalid},
		{"a trailing space in a reference", "/v1/children", `{"reference":"NCC-0001 "}`, domain.RoleWorker, 400, codeInvalid},
		{"a zero-width space in an email", "/v1/invitations", `{"email":"ann\u200b@example.org","kind":"parent"}`, domain.RoleWorker, 400, codeInvalid},
		{"a space in a worker id", "/v1/children/" + w.child + "/allocation", `{"worker_id":"worker ann"}`, domain.RoleManager, 400, codeInvalid},
		{"a non-ASCII worker id", "/v1/children/" + w.child + "/allocation", `{"worker_id":"jö-ß"}`, domain.RoleManager, 400, codeInvalid},
		{"a zero-width space in a worker id", "/v1/children/" + w.child + "/allocation", `{"worker_id":"worker-\u200bdee"}`, domain.RoleManager, 400, codeInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			head := e.head()
			p := e.do(req{method: "POST", path: tc.path, role: tc.role, sub: w.worker, body: tc.body}).problem(t, tc.status, tc.code)
			require.NotContains(t, p.Detail, "\u200b")
			require.Equal(t, head, e.head(), "a refused command appends nothing")
		})
	}
	e.ok(req{method: "POST", path: "/v1/children/" + w.child + "/allocation", role: domain.RoleManager,
		body: `{"worker_id":"auth0|5f7c8ec7c33c6c004bbafe82"}`}, 200)
}

// TestTokensThatReadOtherwiseAreRefused: a correctly signed token with a
// repeated role (encoding/json keeps the last), an exp in a string, a sub
// with a bidirectional control (it would reach the audit trail verbatim),
// or a lifetime of a century is answered 401; nothing is appended.
func TestTokensThatReadOtherwiseAreRefused(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t))
	now := time.Now()
	signed := func(payload string) string {
		in := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
			base64.RawURLEncoding.EncodeToString([]byte(payload))
		m := hmac.New(sha256.New, e.secret)
		m.Write([]byte(in))
		return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	iat, exp := now.Unix(), now.Add(time.Hour).Unix()
	tests := []struct{ name, payload, why string }{
		{"role twice", fmt.Sprintf(`{"sub":"worker-ann","role":"auditor","role":"worker","iat":%d,"exp":%d}`, iat, exp), "duplicate claim"},
		{"exp in a string", fmt.Sprintf(`{"sub":"worker-ann","role":"worker","iat":%d,"exp":"%d"}`, iat, exp), "not a JSON number"},
		{"a bidi control in sub", fmt.Sprintf(`{"sub":"worker-ann\u202e","role":"worker","iat":%d,"exp":%d}`, iat, exp), "U+202E"},
		{"a century", fmt.Sprintf(`{"sub":"worker-ann","role":"worker","iat":%d,"exp":%d}`, iat, now.Add(876000*time.Hour).Unix()), "lifetime"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			head := e.head()
			p := e.do(req{method: "POST", path: "/v1/children", rawToken: signed(tc.payload), body: `{"reference":"NCC-TOKEN"}`}).
				problem(t, 401, codeUnauthenticated)
			require.Contains(t, p.Detail, tc.why)
			require.Equal(t, head, e.head(), "nothing is appended")
		})
	}
	// The same token, well formed, is accepted.
	e.ok(req{method: "POST", path: "/v1/children", rawToken: signed(fmt.Sprintf(`{"sub":"worker-ann","role":"worker","iat":%d,"exp":%d}`, iat, exp)),
		body: `{"reference":"NCC-TOKEN"}`}, 201)
}
