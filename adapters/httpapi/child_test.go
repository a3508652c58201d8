package httpapi

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain"
)

// TestRule_R17_ChildRecordShowsItsCurrentState follows a child's record through its placements' and
// grants' lives (R3, R6, R17): statuses at the decision time, grace
// periods, revocations, the roles that may read it, and ids never seen.
func TestRule_R17_ChildRecordShowsItsCurrentState(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b.URL(t))
			w := e.buildWorld()
			worker := req{role: domain.RoleWorker, sub: w.worker}
			get := func(role domain.Role, query string) map[string]any {
				return e.ok(req{method: "GET", path: "/v1/children/" + w.child + query, role: role, sub: "x"}, 200)
			}
			placement := func(rec map[string]any, i int) map[string]any {
				return rec["placements"].([]any)[i].(map[string]any)
			}
			rec := get(domain.RoleWorker, "")
			require.Equal(t, w.child, rec["child_id"])
			require.Nil(t, rec["retain_until"])
			require.Len(t, rec["placements"], 1)
			require.Equal(t, w.carer, placement(rec, 0)["carer_account_id"])
			require.Equal(t, w.startedAt.Format(time.RFC3339), placement(rec, 0)["started_at"])
			require.Nil(t, placement(rec, 0)["ended_at"])
			require.Nil(t, placement(rec, 0)["grace_until"])
			g := rec["grants"].([]any)[0].(map[string]any)
			require.Equal(t, "guardian", g["relationship"])
			require.Equal(t, []any{"view"}, g["permissions"])
			require.Equal(t, "active", g["status"])
			require.Nil(t, g["revoked_at"])
			require.Nil(t, g["expires_at"])

			// Before the placement started it was planned.
			before := url.QueryEscape(w.startedAt.Add(-time.Hour).Format(time.RFC3339))
			require.Equal(t, "planned", placement(get(domain.RoleAuditor, "?at="+before), 0)["status"])

			// Ended an hour ago: in its grace period, then ended early (R6).
			ended := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
			e.ok(req{method: "POST", path: "/v1/children/" + w.child + "/placements/" + w.placement + "/end", role: worker.role, sub: worker.sub,
				body: `{"ended_at":"` + ended.Format(time.RFC3339) + `"}`}, 200)
			rec = get(domain.RoleWorker, "")
			require.Equal(t, "in_grace", placement(rec, 0)["status"])
			require.Equal(t, ended.Format(time.RFC3339), placement(rec, 0)["ended_at"])
			require.Equal(t, ended.Add(domain.DefaultPolicy.GracePeriod).Format(time.RFC3339), placement(rec, 0)["grace_until"])
			e.ok(req{method: "POST", path: "/v1/children/" + w.child + "/placements/" + w.placement + "/end-grace", role: worker.role, sub: worker.sub,
				body: `{"reason":"safeguarding"}`}, 200)
			rec = get(domain.RoleWorker, "")
			require.Equal(t, "ended", placement(rec, 0)["status"])
			graceUntil, err := time.Parse(time.RFC3339Nano, placement(rec, 0)["grace_until"].(string))
			require.NoError(t, err)
			require.True(t, graceUntil.Before(time.Now()), "the grace period ended when the worker ended it")

			// A revoked grant.
			rev := e.ok(req{method: "POST", path: "/v1/children/" + w.child + "/grants/" + w.member + "/revoke", role: worker.role, sub: worker.sub,
				body: `{"reason":"review"}`}, 200)
			rec = get(domain.RoleAuditor, "")
			g = rec["grants"].([]any)[0].(map[string]any)
			require.Equal(t, "revoked", g["status"])
			require.NotNil(t, g["revoked_at"])
			require.Equal(t, rev["position"], rec["position"], "the record is as of the child's last event")

			// Who may read it, and ids never seen.
			for _, role := range []domain.Role{domain.RoleService, domain.RolePortalsTeam} {
				e.do(req{method: "GET", path: "/v1/children/" + w.child, role: role}).problem(t, 403, codeForbidden)
			}
			e.do(req{method: "GET", path: "/v1/children/" + uuid.NewString(), role: domain.RoleWorker}).problem(t, 404, codeNotFound)
			e.do(req{method: "GET", path: "/v1/children/not-a-uuid", role: domain.RoleWorker}).problem(t, 400, codeInvalid)
			e.do(req{method: "GET", path: "/v1/children/" + w.child + "?at=yesterday", role: domain.RoleWorker}).problem(t, 400, codeInvalid)
			e.do(req{method: "GET", path: "/v1/children/" + w.carer, role: domain.RoleWorker}).problem(t, 404, codeNotFound)
		})
	}
}

// TestRule_R22_RetentionDateOverHTTP: a retention date given at
// registration or set later shows on the child's record; it must be in the
// future; the child's worker, a manager and the dpo may set it, others
// not; the policy publishes the retention of closed accounts.
func TestRule_R22_RetentionDateOverHTTP(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b.URL(t))
			worker := req{role: domain.RoleWorker, sub: "worker-ann"}
			with := func(r req, method, path, body string) req {
				r.method, r.path, r.body = method, path, body
				return r
			}
			until := time.Now().UTC().AddDate(30, 0, 0).Truncate(time.Second)
			ch := e.ok(with(worker, "POST", "/v1/children", `{"reference":"NCC-R-1","retain_until":"`+until.Format(time.RFC3339)+`"}`), 201)
			child := ch["child_id"].(string)
			rec := e.ok(with(worker, "GET", "/v1/children/"+child, ""), 200)
			require.Equal(t, until.Format(time.RFC3339), rec["retain_until"])

			later := until.AddDate(10, 0, 0)
			for _, tc := range []struct {
				name   string
				r      req
				body   string
				status int
				code   string
			}{
				{"in the past", worker, `{"retain_until":"2001-01-01T00:00:00Z","reason":"x"}`, 400, codeInvalid},
				{"not a time", worker, `{"retain_until":"next year","reason":"x"}`, 400, codeInvalid},
				{"no reason", worker, `{"retain_until":"` + later.Format(time.RFC3339) + `"}`, 400, codeInvalid},
				{"another worker", req{role: domain.RoleWorker, sub: "worker-bob"}, `{"retain_until":"` + later.Format(time.RFC3339) + `","reason":"x"}`, 403, codeForbidden},
				{"an auditor", req{role: domain.RoleAuditor}, `{"retain_until":"` + later.Format(time.RFC3339) + `","reason":"x"}`, 403, codeForbidden},
			} {
				t.Run(tc.name, func(t *testing.T) {
					e.do(with(tc.r, "PUT", "/v1/children/"+child+"/retention", tc.body)).problem(t, tc.status, tc.code)
				})
			}
			e.ok(with(req{role: domain.RoleDPO, sub: "dpo-1"}, "PUT", "/v1/children/"+child+"/retention",
				`{"retain_until":"`+later.Format(time.RFC3339)+`","reason":"court order"}`), 200)
			rec = e.ok(with(worker, "GET", "/v1/children/"+child, ""), 200)
			require.Equal(t, later.Format(time.RFC3339), rec["retain_until"])
			e.do(with(worker, "POST", "/v1/children", `{"reference":"NCC-R-2","retain_until":"2001-01-01T00:00:00Z"}`)).problem(t, 400, codeInvalid)
			e.do(req{method: "PUT", path: "/v1/children/" + uuid.NewString() + "/retention", role: domain.RoleManager,
				body: `{"retain_until":"` + later.Format(time.RFC3339) + `","reason":"x"}`}).problem(t, 404, codeNotFound)

			p := e.ok(with(worker, "GET", "/v1/policy", ""), 200)
			require.EqualValues(t, 2192*24*3600, p["closed_account_retention"])
		})
	}
}

// TestQueriesAboutUnknownIDsAreNotFound: a query about an account never
// invited or a child never registered answers 404 not_found, not an empty
// list or no_relationship (issue 15); the known ids still answer.
func TestQueriesAboutUnknownIDsAreNotFound(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b.URL(t))
			w := e.buildWorld()
			nobody := uuid.NewString()
			for _, tc := range []struct {
				role domain.Role
				path string
			}{
				{domain.RoleService, "/v1/check?account_id=" + nobody + "&child_id=" + w.child + "&permission=view"},
				{domain.RoleService, "/v1/check?account_id=" + w.member + "&child_id=" + nobody + "&permission=view"},
				{domain.RoleService, "/v1/check?account_id=" + nobody + "&carer_id=" + w.carer + "&permission=view"},
				{domain.RoleService, "/v1/check?account_id=" + w.carer + "&carer_id=" + nobody + "&permission=view"},
				{domain.RoleService, "/v1/accounts/" + nobody + "/children"},
				{domain.RoleWorker, "/v1/children/" + nobody + "/viewers"},
				{domain.RoleAuditor, "/v1/children/" + nobody + "/history"},
				{domain.RoleAuditor, "/v1/accounts/" + nobody + "/history"},
				{domain.RoleAuditor, "/v1/accounts/" + nobody},
				{domain.RoleAuditor, "/v1/children/" + nobody},
			} {
				e.do(req{method: "GET", path: tc.path, role: tc.role}).problem(t, 404, codeNotFound)
			}
			e.ok(req{method: "GET", path: "/v1/check?account_id=" + w.member + "&child_id=" + w.child + "&permission=view", role: domain.RoleService}, 200)
			e.ok(req{method: "GET", path: "/v1/accounts/" + w.carer + "/children", role: domain.RoleService}, 200)
			e.ok(req{method: "GET", path: "/v1/children/" + w.child + "/viewers", role: domain.RoleWorker}, 200)
		})
	}
}

// TestRule_R17_AReferenceNamesOneChild: registering a reference in use
// (compared trimmed and in upper case) is refused with 409
// already_registered naming the child that holds it, also when many
// registrations race (exactly one wins); a worker finds the child by its
// reference.
func TestRule_R17_AReferenceNamesOneChild(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b.URL(t))
			worker := req{method: "POST", path: "/v1/children", role: domain.RoleWorker, sub: "worker-ann"}
			with := func(r req, body string) req { r.body = body; return r }
			first := e.ok(with(worker, `{"reference":"NCC-2024-00417"}`), 201)
			id := first["child_id"].(string)
			before := e.head()
			p := e.do(with(req{method: "POST", path: "/v1/children", role: domain.RoleManager, sub: "manager-bo"}, `{"reference":"ncc-2024-00417"}`)).
				problem(t, 409, codeAlreadyRegistered)
			require.NotNil(t, p.ChildID)
			require.Equal(t, id, p.ChildID.String())
			require.Equal(t, before, e.head(), "a refused registration appends nothing")

			// Racing registrations of a new reference: exactly one wins.
			const racers = 8
			codes := make(chan int, racers)
			ids := make(chan string, racers)
			for range racers {
				go func() {
					r := e.do(with(worker, `{"reference":"NCC-RACE-1"}`))
					codes <- r.status
					var m map[string]any
					_ = json.Unmarshal(r.body, &m)
					if v, ok := m["child_id"].(string); ok {
						ids <- v
					} else {
						ids <- ""
					}
				}()
			}
			created, refused, seen := 0, 0, map[string]bool{}
			for range racers {
				switch <-codes {
				case 201:
					created++
				case 409:
					refused++
				}
				seen[<-ids] = true
			}
			require.Equal(t, 1, created)
			require.Equal(t, racers-1, refused)
			require.Len(t, seen, 1, "every answer names the same child")

			// Found by reference, not by another.
			get := func(role domain.Role, q string) response {
				return e.do(req{method: "GET", path: "/v1/children" + q, role: role, sub: "x"})
			}
			l := get(domain.RoleWorker, "?reference="+url.QueryEscape(" ncc-2024-00417")).json(t)
			require.Len(t, l["children"], 1)
			c := l["children"].([]any)[0].(map[string]any)
			require.Equal(t, id, c["child_id"])
			require.Equal(t, "NCC-2024-00417", c["reference"])
			require.Equal(t, "worker-ann", c["allocated_worker_id"])
			require.Empty(t, get(domain.RoleAuditor, "?reference=NCC-NONE").json(t)["children"])
			get(domain.RoleWorker, "").problem(t, 400, codeInvalid)
			get(domain.RoleWorker, "?reference=").problem(t, 400, codeInvalid)
			get(domain.RoleService, "?reference=NCC-2024-00417").problem(t, 403, codeForbidden)
			e.contract.check(t)
		})
	}
}

// TestRule_R18_CancelAnInvitationOverHTTP: a worker cancels an invitation
// sent by mistake; re-inviting while it was open was refused naming the
// account and its expiry; afterwards the email is invited again (the same
// account) and the old invitation cannot be accepted in between.
func TestRule_R18_CancelAnInvitationOverHTTP(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b.URL(t))
			worker := req{role: domain.RoleWorker, sub: "worker-ann"}
			with := func(r req, method, path, body string) req {
				r.method, r.path, r.body = method, path, body
				return r
			}
			inv := e.ok(with(worker, "POST", "/v1/invitations", `{"email":"wrong@example.org","kind":"parent"}`), 201)
			id := inv["account_id"].(string)
			p := e.do(with(worker, "POST", "/v1/invitations", `{"email":"wrong@example.org","kind":"parent"}`)).problem(t, 409, codeConflict)
			require.Contains(t, p.Detail, id)
			require.Contains(t, p.Detail, inv["expires_at"].(string))

			cancel := "/v1/accounts/" + id + "/invitation/cancel"
			e.do(with(req{role: domain.RolePortalsTeam}, "POST", cancel, `{"reason":"x"}`)).problem(t, 403, codeForbidden)
			e.do(with(worker, "POST", cancel, `{}`)).problem(t, 400, codeInvalid)
			e.do(with(worker, "POST", "/v1/accounts/"+uuid.NewString()+"/invitation/cancel", `{"reason":"x"}`)).problem(t, 404, codeNotFound)
			done := e.ok(with(worker, "POST", cancel, `{"reason":"sent to the wrong address"}`), 200)
			e.do(with(worker, "POST", cancel, `{"reason":"again"}`)).problem(t, 409, codeConflict)
			e.do(with(req{role: domain.RoleService}, "POST", "/v1/accounts/"+id+"/activation",
				`{"identity_subject":"idp|wrong","email":"wrong@example.org"}`)).problem(t, 409, codeConflict)
			a := e.ok(with(req{role: domain.RoleAuditor}, "GET", "/v1/accounts/"+id+"?min_position="+done["position"].(string), ""), 200)
			require.Equal(t, "expired", a["status"])

			again := e.ok(with(worker, "POST", "/v1/invitations", `{"email":"wrong@example.org","kind":"parent"}`), 201)
			require.Equal(t, id, again["account_id"], "the same account, invited again")
			e.ok(with(req{role: domain.RoleService}, "POST", "/v1/accounts/"+id+"/activation",
				`{"identity_subject":"idp|right","email":"wrong@example.org"}`), 200)
		})
	}
}
