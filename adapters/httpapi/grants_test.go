package httpapi

import (
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// TestRule_R19_GrantsThatEndAndReviewsOverHTTP: a grant with expires_at
// answers it (and no review date) and checks carry it; an open-ended grant
// answers its review date; the reviews list shows what is due before a time
// to the child's worker, a manager and an auditor (a worker only their own
// children: another worker's id is 403, a service 403); the child's worker
// confirms a grant; a time-limited grant's review is 409; the policy
// publishes the review period.
func TestRule_R19_GrantsThatEndAndReviewsOverHTTP(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b.URL(t))
			w := e.buildWorld() // the member has an open-ended grant
			worker := req{role: domain.RoleWorker, sub: w.worker}
			with := func(r req, method, path, body string) req {
				r.method, r.path, r.body = method, path, body
				return r
			}
			inv := e.ok(with(worker, "POST", "/v1/invitations", `{"email":"parent-r19@example.org","kind":"parent"}`), 201)
			parent := inv["account_id"].(string)
			e.ok(req{method: "POST", path: "/v1/accounts/" + parent + "/activation", role: domain.RoleService,
				body: `{"identity_subject":"idp|parent-r19","email":"parent-r19@example.org"}`}, 200)
			end := time.Now().UTC().Add(20 * 24 * time.Hour).Truncate(time.Second)
			g := e.ok(with(worker, "POST", "/v1/children/"+w.child+"/grants",
				`{"account_id":"`+parent+`","relationship":"parent","permissions":["view"],"reason":"until the hearing","expires_at":"`+end.Format(time.RFC3339)+`"}`), 200)
			require.Equal(t, end.Format(time.RFC3339), g["expires_at"])
			require.Nil(t, g["review_by"])
			pos, err := eventlog.ParsePosition(g["position"].(string))
			require.NoError(t, err)
			e.waitFor(pos)

			c := e.ok(req{method: "GET", path: "/v1/check?account_id=" + parent + "&child_id=" + w.child + "&permission=view", role: domain.RoleService}, 200)
			require.Equal(t, "grant", c["reason"])
			require.Equal(t, end.Format(time.RFC3339), c["expires_at"])
			c = e.ok(req{method: "GET", path: "/v1/check?account_id=" + parent + "&child_id=" + w.child + "&permission=view&at=" +
				url.QueryEscape(end.Format(time.RFC3339)), role: domain.RoleService}, 200)
			require.Equal(t, "grant_expired", c["reason"])
			require.Equal(t, false, c["allowed"])

			p := e.ok(with(worker, "GET", "/v1/policy", ""), 200)
			require.EqualValues(t, 365*24*3600, p["review_period"])

			// Due within 30 days: the time-limited grant; within 400 days: both.
			soon := url.QueryEscape(time.Now().UTC().Add(30 * 24 * time.Hour).Format(time.RFC3339))
			later := url.QueryEscape(time.Now().UTC().Add(400 * 24 * time.Hour).Format(time.RFC3339))
			list := e.ok(with(worker, "GET", "/v1/reviews?due_before="+soon, ""), 200)
			require.Len(t, list["grants"], 1)
			item := list["grants"].([]any)[0].(map[string]any)
			require.Equal(t, parent, item["account_id"])
			require.Equal(t, w.child, item["child_id"])
			require.Equal(t, end.Format(time.RFC3339), item["expires_at"])
			require.Nil(t, item["review_by"])
			for _, r := range []req{{role: domain.RoleManager, sub: "manager-bo"}, {role: domain.RoleAuditor, sub: "auditor-al"}, worker} {
				l := e.ok(with(r, "GET", "/v1/reviews?due_before="+later, ""), 200)
				require.Len(t, l["grants"], 2, r.role)
			}
			paged := e.ok(with(worker, "GET", "/v1/reviews?limit=1&due_before="+later, ""), 200)
			require.Len(t, paged["grants"], 1)
			next := paged["next"].(string)
			rest := e.ok(with(worker, "GET", "/v1/reviews?limit=1&due_before="+later+"&after="+url.QueryEscape(next), ""), 200)
			require.Len(t, rest["grants"], 1)
			require.Nil(t, rest["next"])
			require.Empty(t, e.ok(with(req{role: domain.RoleWorker, sub: "worker-bob"}, "GET", "/v1/reviews?due_before="+later, ""), 200)["grants"])
			e.do(with(worker, "GET", "/v1/reviews?worker_id=worker-bob", "")).problem(t, 403, codeForbidden)
			e.do(with(req{role: domain.RoleService}, "GET", "/v1/reviews", "")).problem(t, 403, codeForbidden)
			e.do(with(worker, "GET", "/v1/reviews?after=nonsense", "")).problem(t, 400, codeInvalid)

			rv := e.ok(with(worker, "POST", "/v1/children/"+w.child+"/grants/"+w.member+"/review", `{"reason":"still agreed"}`), 200)
			reviewBy, err := time.Parse(time.RFC3339Nano, rv["review_by"].(string))
			require.NoError(t, err)
			require.WithinDuration(t, time.Now().Add(365*24*time.Hour), reviewBy, time.Minute)
			e.do(with(worker, "POST", "/v1/children/"+w.child+"/grants/"+parent+"/review", `{"reason":"x"}`)).problem(t, 409, codeConflict)
			e.do(with(req{role: domain.RoleWorker, sub: "worker-bob"}, "POST", "/v1/children/"+w.child+"/grants/"+w.member+"/review",
				`{"reason":"x"}`)).problem(t, 403, codeForbidden)
			e.do(with(worker, "POST", "/v1/children/"+w.child+"/grants/"+w.member+"/review", `{}`)).problem(t, 400, codeInvalid)
		})
	}
}
