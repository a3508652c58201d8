package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
)

// checkItem writes one check of a POST /v1/checks body.
func checkItem(account, field, id, perm string) string {
	return `{"account_id":"` + account + `","` + field + `":"` + id + `","permission":"` + perm + `"}`
}

// checksBody writes a POST /v1/checks body of items, with extra members
// (`"at":...`) after them.
func checksBody(items []string, extra ...string) string {
	return `{"checks":[` + strings.Join(items, ",") + `]` + strings.Join(append([]string{""}, extra...), ",") + `}`
}

// TestChecks: POST /v1/checks answers every item as GET /v1/check would,
// in order, at one position; an unknown id is that item's not_found.
func TestChecks(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b.URL(t))
			w := e.buildWorld()
			stranger, nobody := uuid.NewString(), uuid.NewString()
			type item struct {
				account, field, id, perm string
				want                     string // the reason expected
				allowed                  bool
			}
			items := []item{
				{w.member, "child_id", w.child, "view", "grant", true},
				{w.member, "child_id", w.child, "record", "grant", false},
				{w.carer, "child_id", w.child, "record", "placement", true},
				{stranger, "child_id", w.child, "view", "not_found", false},
				{w.carer, "carer_id", w.carer, "complete_outstanding", "own_record", true},
				{w.member, "carer_id", w.carer, "view", "no_relationship", false},
				{w.carer, "child_id", nobody, "view", "not_found", false},
				{w.carer, "carer_id", w.child, "view", "not_found", false}, // a child's id is no carer
				{w.member, "child_id", w.child, "view", "grant", true},     // asked twice: answered twice
			}
			at := time.Now().UTC().Add(time.Minute).Truncate(time.Second) // after the activations
			ask := func(at time.Time, min string) api.ChecksAnswer {
				var parts []string
				for _, it := range items {
					parts = append(parts, checkItem(it.account, it.field, it.id, it.perm))
				}
				extra := []string{`"at":"` + at.Format(time.RFC3339) + `"`}
				if min != "" {
					extra = append(extra, `"min_position":"`+min+`"`)
				}
				res := e.do(req{method: "POST", path: "/v1/checks", role: domain.RoleWorker, body: checksBody(parts, extra...)})
				require.Equal(t, 200, res.status, string(res.body))
				var a api.ChecksAnswer
				require.NoError(t, json.Unmarshal(res.body, &a))
				return a
			}
			got := ask(at, w.lastPosition)
			require.Equal(t, w.lastPosition, got.Position, "one position for all, the engine's")
			require.True(t, at.Equal(got.At))
			require.Len(t, got.Results, len(items))
			for i, it := range items {
				r := got.Results[i]
				require.Equal(t, it.want, string(r.Reason), "item %d", i)
				require.Equal(t, it.allowed, r.Allowed, "item %d", i)
				if it.want == "not_found" {
					// GET /v1/check answers 404 for the same ids.
					e.do(req{method: "GET", path: "/v1/check?account_id=" + it.account + "&" + it.field + "=" + it.id + "&permission=" + it.perm,
						role: domain.RoleWorker}).problem(t, 404, codeNotFound)
					require.Empty(t, r.Permissions)
					require.Nil(t, r.Until)
					continue
				}
				// Exactly GET /v1/check's answer, at the same time and position.
				one := e.ok(req{method: "GET", path: "/v1/check?account_id=" + it.account + "&" + it.field + "=" + it.id +
					"&permission=" + it.perm + "&at=" + url.QueryEscape(at.Format(time.RFC3339)), role: domain.RoleWorker}, 200)
				require.Equal(t, one["position"], got.Position)
				require.Equal(t, one["allowed"], r.Allowed, "item %d", i)
				require.Equal(t, one["reason"], string(r.Reason), "item %d", i)
				require.Equal(t, one["until"], nil)
				require.Nil(t, r.Until)
				perms := []string{}
				for _, p := range one["permissions"].([]any) {
					perms = append(perms, p.(string))
				}
				require.Equal(t, fmt.Sprint(perms), fmt.Sprint(r.Permissions), "item %d", i)
			}

			// Before the placement started (and the carer was activated):
			// the answers of then.
			before := ask(w.startedAt.Add(-time.Hour), "")
			require.False(t, before.Results[2].Allowed)
			require.Equal(t, api.CheckResultReasonAccountNotActive, before.Results[2].Reason)
			require.Equal(t, api.CheckResultReasonNotFound, before.Results[3].Reason)
		})
	}
}

// TestChecks_Refused: a bad request is 400 naming the limit, the item and
// the field, and answers nothing; a body too large is 413, a body that is
// not JSON 415.
func TestChecks_Refused(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t))
	w := e.buildWorld()
	good := checkItem(w.member, "child_id", w.child, "view")
	many := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = good
		}
		return out
	}
	at := func(items []string, i int, bad string) []string {
		out := append([]string(nil), items...)
		out[i] = bad
		return out
	}
	ten := many(10)
	for _, tc := range []struct {
		name, body, detail string
	}{
		{"no check", `{"checks":[]}`, "checks: give at least one check (at most 1000)"},
		{"1,001 checks", checksBody(many(1001)), "checks: at most 1000 checks in one request"},
		{"checks missing", `{"at":"2026-03-02T09:00:00Z"}`, "checks: required (1 to 1000 checks)"},
		{"checks not an array", `{"checks":{}}`, "checks: must be an array of 1 to 1000 checks"},
		{"checks null", `{"checks":null}`, "checks: must be an array"},
		{"an unknown permission", checksBody(at(ten, 7, checkItem(w.member, "child_id", w.child, "edit"))),
			"checks[7].permission: must be view, record or complete_outstanding"},
		{"permission missing", checksBody(at(ten, 3, `{"account_id":"`+w.member+`","child_id":"`+w.child+`"}`)),
			"checks[3].permission: required"},
		{"account missing", checksBody(at(ten, 0, `{"child_id":"`+w.child+`","permission":"view"}`)), "checks[0].account_id: required"},
		{"child and carer", checksBody(at(ten, 9, `{"account_id":"`+w.member+`","child_id":"`+w.child+`","carer_id":"`+w.carer+`","permission":"view"}`)),
			"checks[9]: give exactly one of child_id and carer_id"},
		{"neither child nor carer", checksBody(at(ten, 2, `{"account_id":"`+w.member+`","permission":"view"}`)),
			"checks[2]: give exactly one of child_id and carer_id"},
		{"not a UUID", checksBody(at(ten, 4, checkItem(w.member, "child_id", "{"+w.child+"}", "view"))),
			"checks[4].child_id: must be a UUID"},
		{"the nil UUID", checksBody(at(ten, 4, checkItem(uuid.Nil.String(), "child_id", w.child, "view"))),
			"checks[4].account_id: must not be the nil UUID"},
		{"an unknown field", checksBody(at(ten, 5, `{"account_id":"`+w.member+`","child_id":"`+w.child+`","permission":"view","why":"x"}`)),
			`checks[5]: unknown field "why"`},
		{"a field in another case", checksBody(at(ten, 5, `{"Account_ID":"`+w.member+`","child_id":"`+w.child+`","permission":"view"}`)),
			`checks[5]: unknown field "Account_ID"`},
		{"a duplicate field", checksBody(at(ten, 6, `{"account_id":"`+w.member+`","child_id":"`+w.child+`","permission":"view","permission":"record"}`)),
			`checks[6]: duplicate field "permission"`},
		{"null", checksBody(at(ten, 1, `{"account_id":"`+w.member+`","child_id":"`+w.child+`","carer_id":null,"permission":"view"}`)),
			"checks[1].carer_id: must be a string"},
		{"a number", checksBody(at(ten, 1, `{"account_id":"`+w.member+`","child_id":"`+w.child+`","permission":1}`)),
			"checks[1].permission: must be a string"},
		{"an item not an object", checksBody(at(ten, 8, `"`+w.member+`"`)), "checks[8]: must be an object"},
		{"an unknown top-level field", checksBody(ten, `"as_of":"3"`), `unknown field "as_of"`},
		{"at malformed", checksBody(ten, `"at":"2026-03-02 09:00"`), "at: must be an RFC 3339 time"},
		{"at out of range", checksBody(ten, `"at":"1899-12-31T23:59:59Z"`), "at: out of range (years 1900 to 9999)"},
		{"min_position malformed", checksBody(ten, `"min_position":"x"`), "min_position: invalid position token"},
		{"a duplicate top-level field", checksBody(ten, `"at":"2026-03-02T09:00:00Z"`, `"at":"2026-03-02T09:00:00Z"`), `duplicate field "at"`},
		{"two values", checksBody(ten) + `{}`, "the body must hold exactly one JSON value"},
		{"an array", `[` + good + `]`, "the body must be a JSON object"},
		{"malformed", `{"checks":[` + good + `,]}`, "malformed JSON"},
		{"invalid UTF-8", "{\"checks\":[{\"account_id\":\"\xff\"}]}", "not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := e.do(req{method: "POST", path: "/v1/checks", role: domain.RoleService, body: tc.body}).problem(t, 400, codeInvalid)
			require.Contains(t, p.Detail, tc.detail)
		})
	}
	// 1,000 checks are accepted, and fit the body limit with room to spare.
	body := checksBody(many(1000))
	require.Less(t, len(body), MaxChecksBodyBytes/2)
	res := e.ok(req{method: "POST", path: "/v1/checks", role: domain.RoleService, body: body}, 200)
	require.Len(t, res["results"], 1000)

	huge := checksBody(many(1000), `"at":"`+strings.Repeat(" ", MaxChecksBodyBytes)+`"`)
	e.do(req{method: "POST", path: "/v1/checks", role: domain.RoleService, body: huge}).problem(t, 413, codeTooLarge)
	e.do(req{method: "POST", path: "/v1/checks", role: domain.RoleService, body: checksBody(many(1)),
		header: map[string]string{"Content-Type": "text/plain"}}).problem(t, 415, codeInvalid)
	e.do(req{method: "POST", path: "/v1/checks", role: domain.RoleService, body: checksBody(many(1)) + "?x=1"}).problem(t, 400, codeInvalid)
	e.do(req{method: "POST", path: "/v1/checks?at=2026-03-02T09:00:00Z", role: domain.RoleService, body: checksBody(many(1))}).
		problem(t, 400, codeInvalid)
	e.do(req{method: "GET", path: "/v1/checks", role: domain.RoleService}).problem(t, 405, codeInvalid)
}

// TestWriteChecks: writeChecks writes exactly what writeJSON writes.
func TestWriteChecks(t *testing.T) {
	until := time.Date(2026, 3, 9, 17, 0, 0, 123456000, time.UTC)
	ended := until.Add(-7 * 24 * time.Hour)
	for _, a := range []api.ChecksAnswer{
		{At: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC), Position: "12", Results: []api.CheckResult{
			{Allowed: true, Permissions: api.Permissions{api.PermissionView, api.PermissionRecord, api.PermissionCompleteOutstanding},
				Reason: api.CheckResultReasonPlacement},
			{Permissions: api.Permissions{api.PermissionCompleteOutstanding}, Reason: api.CheckResultReasonGracePeriod, Until: &until,
				PlacementEndedAt: &ended},
			{Permissions: api.Permissions{}, Reason: api.CheckResultReasonNotFound},
			{Allowed: true, Permissions: api.Permissions{api.PermissionView}, Reason: api.CheckResultReasonGrant, Until: &until, ExpiresAt: &until},
			{Permissions: api.Permissions{}, Reason: api.CheckResultReasonGrantExpired},
		}},
		{At: time.Date(2026, 3, 2, 9, 0, 0, 1, time.UTC), Position: "12.3", Results: []api.CheckResult{}},
		{At: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC), Position: "<1>", Results: []api.CheckResult{{Reason: "a\"b"}}}, // falls back
	} {
		fast, slow := httptest.NewRecorder(), httptest.NewRecorder()
		require.NoError(t, writeChecks(fast, a))
		require.NoError(t, writeJSON(slow, http.StatusOK, a))
		require.Equal(t, slow.Body.String(), fast.Body.String())
		require.Equal(t, slow.Header(), fast.Header())
		require.Equal(t, slow.Code, fast.Code)
	}
}
