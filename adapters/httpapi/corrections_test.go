package httpapi

import (
	"context"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// TestRule_R18_CorrectionsOverHTTP: a worker cancels a planned placement,
// the portals team reopens a closed account (no access comes back by
// itself), and an email is changed by a worker's request that the portals
// team applies, the account id staying and the old email free again; on
// SQLite and PostgreSQL.
func TestRule_R18_CorrectionsOverHTTP(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b.URL(t))
			worker := req{role: domain.RoleWorker, sub: "worker-ann"}
			portals := req{role: domain.RolePortalsTeam, sub: "portals-pat"}
			service := req{role: domain.RoleService, sub: "portal-backend"}
			with := func(r req, method, path, body string) req {
				r.method, r.path, r.body = method, path, body
				return r
			}
			at := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
			account := func(email, kind string) string {
				id := e.ok(with(worker, "POST", "/v1/invitations", `{"email":"`+email+`","kind":"`+kind+`"}`), 201)["account_id"].(string)
				e.ok(with(service, "POST", "/v1/accounts/"+id+"/activation", `{"identity_subject":"idp|`+email+`","email":"`+email+`"}`), 200)
				return id
			}
			// check asks at when (zero: now).
			check := func(acct, child, perm string, when time.Time, minPos string) map[string]any {
				q := "/v1/check?account_id=" + acct + "&child_id=" + child + "&permission=" + perm + "&min_position=" + minPos
				if !when.IsZero() {
					q += "&at=" + url.QueryEscape(at(when))
				}
				return e.ok(with(service, "GET", q, ""), 200)
			}
			child := e.ok(with(worker, "POST", "/v1/children", `{"reference":"NCC-R18"}`), 201)["child_id"].(string)
			carer := account("carer.r18@example.org", "foster_carer")
			parent := account("parent.r18@example.org", "parent")

			// A planned placement, cancelled before it starts.
			start := time.Now().Add(30 * 24 * time.Hour)
			pl := e.ok(with(worker, "POST", "/v1/children/"+child+"/placements",
				`{"carer_account_id":"`+carer+`","started_at":"`+at(start)+`"}`), 201)["placement_id"].(string)
			cancel := "/v1/children/" + child + "/placements/" + pl + "/cancel"
			before := e.head()
			e.do(with(req{role: domain.RoleWorker, sub: "worker-bob"}, "POST", cancel, `{"reason":"x"}`)).problem(t, 403, codeForbidden)
			e.do(with(portals, "POST", cancel, `{"reason":"x"}`)).problem(t, 403, codeForbidden)
			e.do(with(worker, "POST", cancel, `{}`)).problem(t, 400, codeInvalid)
			e.do(with(worker, "POST", "/v1/children/"+child+"/placements/"+parent+"/cancel", `{"reason":"x"}`)).problem(t, 404, codeNotFound)
			require.Equal(t, before, e.head(), "refused corrections append nothing")
			done := e.ok(with(worker, "POST", cancel, `{"reason":"the carer withdrew"}`), 200)
			e.do(with(worker, "POST", cancel, `{"reason":"again"}`)).problem(t, 409, codeConflict)
			e.do(with(worker, "POST", "/v1/children/"+child+"/placements/"+pl+"/end",
				`{"ended_at":"`+at(start.Add(48*time.Hour))+`"}`)).problem(t, 409, codeConflict)
			rec := e.ok(with(worker, "GET", "/v1/children/"+child+"?min_position="+done["position"].(string), ""), 200)
			p := rec["placements"].([]any)[0].(map[string]any)
			require.Equal(t, "cancelled", p["status"])
			require.NotNil(t, p["cancelled_at"])
			c := check(carer, child, "view", start.Add(time.Hour), done["position"].(string))
			require.Equal(t, false, c["allowed"])
			require.Equal(t, "no_relationship", c["reason"])
			e.ok(with(worker, "POST", "/v1/children/"+child+"/placements",
				`{"carer_account_id":"`+carer+`","started_at":"`+at(start)+`"}`), 201)

			// Reopening: the access from before the closure stays ended.
			granted := e.ok(with(worker, "POST", "/v1/children/"+child+"/grants",
				`{"account_id":"`+parent+`","relationship":"parent","permissions":["view"],"reason":"agreed"}`), 200)
			require.Equal(t, true, check(parent, child, "view", time.Time{}, granted["position"].(string))["allowed"])
			closed := e.ok(with(portals, "POST", "/v1/accounts/"+parent+"/close", `{"reason":"closed the wrong account"}`), 200)
			require.Equal(t, "account_closed", check(parent, child, "view", time.Time{}, closed["position"].(string))["reason"])
			reopen := "/v1/accounts/" + parent + "/reopen"
			e.do(with(worker, "POST", reopen, `{"reason":"x"}`)).problem(t, 403, codeForbidden)
			e.do(with(portals, "POST", "/v1/accounts/"+carer+"/reopen", `{"reason":"x"}`)).problem(t, 409, codeConflict)
			reopened := e.ok(with(portals, "POST", reopen, `{"reason":"closed by mistake"}`), 200)
			acct := e.ok(with(service, "GET", "/v1/accounts/"+parent+"?min_position="+reopened["position"].(string), ""), 200)
			require.Equal(t, "active", acct["status"])
			c = check(parent, child, "view", time.Time{}, reopened["position"].(string))
			require.Equal(t, false, c["allowed"], "access does not come back by itself")
			regranted := e.ok(with(worker, "POST", "/v1/children/"+child+"/grants",
				`{"account_id":"`+parent+`","relationship":"parent","permissions":["view"],"reason":"contact restored"}`), 200)
			require.Equal(t, "grant", check(parent, child, "view", time.Time{}, regranted["position"].(string))["reason"])
			// The history says why, in the worker's words (R15).
			var regrant map[string]any
			hist := e.ok(with(req{role: domain.RoleAuditor}, "GET", "/v1/accounts/"+parent+"/history?min_position="+regranted["position"].(string), ""), 200)
			for _, iv := range hist["intervals"].([]any) {
				m := iv.(map[string]any)
				if m["closed_by_event"] == nil {
					regrant = m
				}
			}
			require.NotNil(t, regrant)
			require.Equal(t, "contact restored", regrant["opened_by_event"].(map[string]any)["reason"])

			// An email changed: request, then application.
			requests := "/v1/accounts/" + parent + "/email-change-requests"
			e.do(with(worker, "POST", requests, `{"email":"carer.r18@example.org","reason":"x"}`)).problem(t, 409, codeAlreadyRegistered)
			e.do(with(worker, "POST", requests, `{"email":"parent.r18@example.org","reason":"x"}`)).problem(t, 400, codeInvalid)
			e.do(with(portals, "POST", requests, `{"email":"parent.new@example.org","reason":"x"}`)).problem(t, 403, codeForbidden)
			e.do(with(portals, "PUT", "/v1/accounts/"+parent+"/email", `{"email":"parent.new@example.org"}`)).problem(t, 409, codeConflict)
			e.ok(with(worker, "POST", requests, `{"email":"Parent.New@example.org","reason":"the parent moved address"}`), 200)
			e.do(with(portals, "PUT", "/v1/accounts/"+parent+"/email", `{"email":"other@example.org"}`)).problem(t, 409, codeConflict)
			e.do(with(worker, "PUT", "/v1/accounts/"+parent+"/email", `{"email":"parent.new@example.org"}`)).problem(t, 403, codeForbidden)
			changed := e.ok(with(portals, "PUT", "/v1/accounts/"+parent+"/email", `{"email":"parent.new@example.org"}`), 200)
			byEmail := func(email string) []any {
				return e.ok(with(portals, "GET", "/v1/accounts?email="+url.QueryEscape(email)+"&min_position="+changed["position"].(string), ""), 200)["accounts"].([]any)
			}
			got := byEmail("parent.new@example.org")
			require.Len(t, got, 1)
			require.Equal(t, parent, got[0].(map[string]any)["account_id"], "the account id stays")
			require.Empty(t, byEmail("parent.r18@example.org"))
			e.do(with(worker, "POST", "/v1/invitations", `{"email":"parent.new@example.org","kind":"parent"}`)).problem(t, 409, codeAlreadyRegistered)
			again := e.ok(with(worker, "POST", "/v1/invitations", `{"email":"parent.r18@example.org","kind":"guardian"}`), 201)
			require.NotEqual(t, parent, again["account_id"], "the old email is free again: a new account")
			require.Equal(t, "grant", check(parent, child, "view", time.Time{}, again["position"].(string))["reason"],
				"an email change changes no access")

			// Racing applications of one email to two accounts: exactly one
			// wins.
			x, y := account("x.r18@example.org", "parent"), account("y.r18@example.org", "parent")
			for _, id := range []string{x, y} {
				e.ok(with(worker, "POST", "/v1/accounts/"+id+"/email-change-requests", `{"email":"shared@example.org","reason":"typo"}`), 200)
			}
			var wg sync.WaitGroup
			codes := make([]int, 2)
			for i, id := range []string{x, y} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					codes[i] = e.do(with(portals, "PUT", "/v1/accounts/"+id+"/email", `{"email":"shared@example.org"}`)).status
				}()
			}
			wg.Wait()
			require.ElementsMatch(t, []int{200, 409}, codes)

			// Racing invitations of a freed email: exactly one wins.
			const racers = 6
			statuses := make(chan int, racers)
			for range racers {
				go func() {
					statuses <- e.do(with(worker, "POST", "/v1/invitations", `{"email":"x.r18@example.org","kind":"parent"}`)).status
				}()
			}
			won := 0
			for range racers {
				switch s := <-statuses; s {
				case 201:
					won++
				default:
					require.Contains(t, []int{409}, s)
				}
			}
			if codes[0] == 200 { // x's email moved: its old one is free
				require.Equal(t, 1, won)
			} else {
				require.Equal(t, 0, won, "x kept its email: x.r18 is still registered")
			}
			e.contract.check(t)
		})
	}
}

// TestRule_R17_WorkersFindChildrenAgain: a child registered before ids were
// derived from references (a random id) is found by its reference, and a
// worker's caseload lists the children allocated to them, a page at a
// time, following reallocations and erasures; on SQLite and PostgreSQL.
func TestRule_R17_WorkersFindChildrenAgain(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b.URL(t))
			ctx := context.Background()
			legacy := uuid.New()
			c := domain.Cause{Actor: domain.Actor{ID: "worker-ann", Role: domain.RoleWorker}, RecordedAt: time.Now()}
			d, err := c.EventData(uuid.New(), &domain.ChildRegistered{ChildID: legacy, Reference: "OLD-0042", WorkerID: "worker-ann",
				RegisteredAt: time.Now().UTC().Add(-time.Hour).Truncate(time.Microsecond)})
			require.NoError(t, err)
			res, err := e.store.Append(ctx, domain.ChildStream(legacy), eventlog.NoStream, []eventlog.EventData{d})
			require.NoError(t, err)
			ask := func(role domain.Role, q string) response {
				return e.do(req{method: "GET", path: "/v1/children" + q, role: role, sub: "x"})
			}
			l := ask(domain.RoleWorker, "?reference=old-0042&min_position="+res.Position.String()).json(t)
			require.Len(t, l["children"], 1)
			require.Equal(t, legacy.String(), l["children"].([]any)[0].(map[string]any)["child_id"])

			worker := req{method: "POST", path: "/v1/children", role: domain.RoleWorker, sub: "worker-ann"}
			var ids []string
			for _, ref := range []string{"NCC-CL-1", "NCC-CL-2", "NCC-CL-3"} {
				worker.body = `{"reference":"` + ref + `"}`
				ids = append(ids, e.ok(worker, 201)["child_id"].(string))
			}
			e.ok(req{method: "POST", path: "/v1/children/" + ids[0] + "/allocation", role: domain.RoleManager, sub: "manager-meg",
				body: `{"worker_id":"worker-bob"}`}, 200)
			erased := e.ok(req{method: "POST", path: "/v1/children/" + ids[1] + "/erasure", role: domain.RoleDPO, sub: "dpo-dee",
				body: `{"reason":"retention ended"}`}, 200)
			caseload := func(worker, q string) (got []string, next any) {
				a := ask(domain.RoleManager, "?allocated_to="+worker+q+"&min_position="+erased["position"].(string)).json(t)
				for _, c := range a["children"].([]any) {
					m := c.(map[string]any)
					require.Equal(t, worker, m["allocated_worker_id"])
					if m["child_id"] == ids[1] {
						require.Equal(t, true, m["erased"])
						require.Nil(t, m["reference"])
					}
					got = append(got, m["child_id"].(string))
				}
				return got, a["next"]
			}
			want := []string{legacy.String(), ids[1], ids[2]}
			slices.Sort(want)
			all, next := caseload("worker-ann", "")
			require.Equal(t, want, all)
			require.Nil(t, next)
			first, next := caseload("worker-ann", "&limit=2")
			require.Equal(t, want[:2], first)
			require.Equal(t, want[1], next)
			rest, next := caseload("worker-ann", "&limit=2&after="+next.(string))
			require.Equal(t, want[2:], rest)
			require.Nil(t, next)
			bob, _ := caseload("worker-bob", "")
			require.Equal(t, []string{ids[0]}, bob)
			none, _ := caseload("worker-nobody", "")
			require.Empty(t, none)
			require.Empty(t, ask(domain.RoleWorker, "?reference=NCC-CL-2").json(t)["children"].([]any)[0].(map[string]any)["reference"])

			ask(domain.RoleWorker, "?reference=X&allocated_to=worker-ann").problem(t, 400, codeInvalid)
			ask(domain.RoleWorker, "?allocated_to=worker-ann&limit=0").problem(t, 400, codeInvalid)
			ask(domain.RoleWorker, "?allocated_to=worker%20ann").problem(t, 400, codeInvalid)
			ask(domain.RoleService, "?allocated_to=worker-ann").problem(t, 403, codeForbidden)
			e.contract.check(t)
		})
	}
}
