package httpapi

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain"
)

// viewJSON is one view of a POST /v1/views body.
func viewJSON(acct, child, perm string, at time.Time) string {
	return fmt.Sprintf(`{"account_id":%q,"child_id":%q,"permission":%q,"viewed_at":%q}`, acct, child, perm, at.Format(time.RFC3339Nano))
}

// allViews reads every page of a views list, limit at a time.
func (e *env) allViews(path string, limit int) []map[string]any {
	e.t.Helper()
	var out []map[string]any
	after := ""
	for pages := 0; pages < 100; pages++ {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		p := e.ok(req{method: "GET", path: fmt.Sprintf("%s%slimit=%d%s", path, sep, limit, after), role: domain.RoleAuditor}, 200)
		for _, v := range p["views"].([]any) {
			out = append(out, v.(map[string]any))
		}
		if p["next"] == nil {
			return out
		}
		after = "&after=" + url.QueryEscape(p["next"].(string))
	}
	e.t.Fatal("too many pages")
	return nil
}

// TestRule_R20_RecordViews: each view is kept with the access decision at
// its viewed_at; a view without access is kept too and raises an alert
// that auditors see in GET /v1/alerts, the security log and the watch
// stream; views are listed per child and per account with paging, and are
// in the subject access exports.
func TestRule_R20_RecordViews(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b.URL(t))
			w := e.buildWorld()
			_, watch, cancel := e.openWatchAs(domain.RoleAuditor, "", nil)
			defer cancel()
			portal := req{method: "POST", path: "/v1/views", role: domain.RoleService, sub: "portal-backend"}
			now := time.Now().UTC()
			before := w.startedAt.Add(-time.Hour) // before the carer's account was active
			stranger := uuid.NewString()

			// One view, allowed.
			portal.body = viewJSON(w.carer, w.child, "record", now)
			one := e.ok(portal, 200)
			require.Len(t, one["views"], 1)
			require.Equal(t, true, one["views"].([]any)[0].(map[string]any)["allowed"], one)
			require.Equal(t, "placement", one["views"].([]any)[0].(map[string]any)["reason"])

			// A batch: allowed, denied at its viewed_at, a permission the
			// grant does not give, an account the engine does not know.
			portal.body = `{"views":[` + strings.Join([]string{
				viewJSON(w.member, w.child, "view", now),
				viewJSON(w.carer, w.child, "view", before),
				viewJSON(w.member, w.child, "record", now),
				viewJSON(stranger, w.child, "view", now),
			}, ",") + `]}`
			batch := e.ok(portal, 200)
			require.Equal(t, w.lastPosition, batch["position"])
			var decided []string
			for _, v := range batch["views"].([]any) {
				m := v.(map[string]any)
				decided = append(decided, fmt.Sprintf("%v/%s", m["allowed"], m["reason"]))
			}
			require.Equal(t, []string{"true/grant", "false/account_not_active", "false/grant", "false/no_relationship"}, decided)
			deniedIDs := []string{}
			for _, v := range batch["views"].([]any)[1:] {
				deniedIDs = append(deniedIDs, v.(map[string]any)["view_id"].(string))
			}

			// Per child, oldest first, paged; per account.
			views := e.allViews("/v1/children/"+w.child+"/views", 2)
			require.Len(t, views, 5)
			require.Equal(t, w.carer, views[0]["account_id"], "the oldest first")
			require.Equal(t, "false", fmt.Sprint(views[0]["allowed"]))
			for _, v := range views {
				require.Equal(t, "portal-backend", v["reported_by"])
				require.Equal(t, w.child, v["child_id"])
			}
			require.Len(t, e.allViews("/v1/accounts/"+w.member+"/views", 1), 2)
			require.Len(t, e.allViews("/v1/accounts/"+stranger+"/views", 100), 1)
			require.Len(t, e.allViews("/v1/children/"+w.child+"/views?from="+url.QueryEscape(now.Add(-30*time.Second).Format(time.RFC3339Nano)), 10), 4)
			require.Len(t, e.allViews("/v1/children/"+w.child+"/views?to="+url.QueryEscape(now.Add(-30*time.Second).Format(time.RFC3339Nano)), 10), 1)

			// Alerts: one per view without access, in GET /v1/alerts, the
			// security log and the watch stream.
			al := e.ok(req{method: "GET", path: "/v1/alerts", role: domain.RoleAuditor}, 200)
			require.Len(t, al["alerts"], 3)
			var alerted []string
			for _, a := range al["alerts"].([]any) {
				m := a.(map[string]any)
				require.Equal(t, "view_without_access", m["kind"])
				alerted = append(alerted, m["view_id"].(string))
			}
			require.ElementsMatch(t, deniedIDs, alerted)
			sl := e.ok(req{method: "GET", path: "/v1/security-log?command=view", role: domain.RoleAuditor}, 200)
			require.Len(t, sl["entries"], 3)
			for _, en := range sl["entries"].([]any) {
				m := en.(map[string]any)
				require.Equal(t, "portal-backend", m["actor_id"])
				require.Equal(t, "view_without_access", m["code"])
			}
			streamed := map[string]bool{}
			timeout := time.After(10 * time.Second)
			for len(streamed) < 3 {
				select {
				case ev, ok := <-watch:
					require.True(t, ok, "stream ended")
					if ev.event != "alert" {
						continue
					}
					require.Empty(t, ev.id, "alerts have no position")
					var m map[string]any
					require.NoError(t, json.Unmarshal([]byte(ev.data), &m))
					require.NoError(t, loadDoc(t).Components.Schemas["Alert"].Value.VisitJSON(m, openapi3.EnableJSONSchema2020()), ev.data)
					require.False(t, streamed[m["alert_id"].(string)], "each alert once")
					streamed[m["alert_id"].(string)] = true
				case <-timeout:
					t.Fatalf("alerts on the watch stream: %d of 3", len(streamed))
				}
			}

			// The subject access exports hold the views and the alerts.
			ax := e.ok(req{method: "GET", path: "/v1/accounts/" + w.carer + "/export", role: domain.RoleAuditor}, 200)
			require.Len(t, ax["views"], 2)
			require.Len(t, ax["alerts"], 1)
			cx := e.ok(req{method: "GET", path: "/v1/children/" + w.child + "/export", role: domain.RoleDPO}, 200)
			require.Len(t, cx["views"], 5)
			require.Len(t, cx["alerts"], 3)
			require.Len(t, cx["refused"], 3, "the security log entries of the alerts name the child")
			csv := e.do(req{method: "GET", path: "/v1/children/" + w.child + "/export?format=csv", role: domain.RoleAuditor})
			require.Equal(t, 200, csv.status)
			files := readZip(t, csv.body)
			require.Len(t, files["views.csv"], 1+5, "a header and the views")
			require.Len(t, files["alerts.csv"], 1+3)
		})
	}
}

// TestRecordViews_Refused: bad input is answered 400 and keeps nothing;
// only the service records views, only auditors read them.
func TestRecordViews_Refused(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t))
	w := e.buildWorld()
	now := time.Now().UTC()
	good := viewJSON(w.member, w.child, "view", now)
	many := make([]string, 1001)
	for i := range many {
		many[i] = good
	}
	for name, body := range map[string]string{
		"1,001 views":        `{"views":[` + strings.Join(many, ",") + `]}`,
		"no views":           `{"views":[]}`,
		"views null":         `{"views":null}`,
		"one bad of two":     `{"views":[` + good + `,` + viewJSON(w.member, w.child, "edit", now) + `]}`,
		"future":             viewJSON(w.member, w.child, "view", now.Add(time.Hour)),
		"too old":            viewJSON(w.member, w.child, "view", now.AddDate(0, -2, 0)),
		"bad account":        viewJSON("nope", w.child, "view", now),
		"nil child":          viewJSON(w.member, uuid.Nil.String(), "view", now),
		"bad time":           strings.Replace(good, "T", " ", 1),
		"unknown field":      strings.Replace(good, `}`, `,"x":1}`, 1),
		"missing field":      `{"account_id":"` + w.member + `","child_id":"` + w.child + `","permission":"view"}`,
		"both forms":         `{"views":[` + good + `],"account_id":"` + w.member + `"}`,
		"duplicate key":      strings.Replace(good, `{`, `{"permission":"view",`, 1),
		"element not object": `{"views":["x"]}`,
		"not an object":      `[` + good + `]`,
		"bidi":               strings.Replace(good, `"view"`, `"\u202eview"`, 1),
	} {
		t.Run(name, func(t *testing.T) {
			e.do(req{method: "POST", path: "/v1/views", role: domain.RoleService, body: body}).problem(t, 400, codeInvalid)
		})
	}
	e.do(req{method: "POST", path: "/v1/views", role: domain.RoleWorker, body: good}).problem(t, 403, codeForbidden)
	e.do(req{method: "POST", path: "/v1/views", role: domain.RoleService, body: good,
		header: map[string]string{"Content-Type": "text/plain"}}).problem(t, 415, codeInvalid)
	huge := `{"views":[` + strings.Repeat(good+",", MaxViewsBodyBytes/len(good)) + good + `]}`
	require.Equal(t, 413, e.do(req{method: "POST", path: "/v1/views", role: domain.RoleService, body: huge}).status)
	e.do(req{method: "GET", path: "/v1/children/" + w.child + "/views", role: domain.RoleService}).problem(t, 403, codeForbidden)
	e.do(req{method: "GET", path: "/v1/alerts", role: domain.RoleWorker}).problem(t, 403, codeForbidden)
	for _, q := range []string{"after=x", "after=1_" + uuid.Nil.String(), "limit=0", "limit=1001", "from=2026-03-02T10:00:00Z&to=2026-03-02T09:00:00Z", "x=1"} {
		e.do(req{method: "GET", path: "/v1/children/" + w.child + "/views?" + q, role: domain.RoleAuditor}).problem(t, 400, codeInvalid)
		e.do(req{method: "GET", path: "/v1/alerts?" + q, role: domain.RoleAuditor}).problem(t, 400, codeInvalid)
	}
	require.Empty(t, e.allViews("/v1/children/"+w.child+"/views", 100), "nothing kept")
	require.Empty(t, e.ok(req{method: "GET", path: "/v1/alerts", role: domain.RoleAuditor}, 200)["alerts"])
	// The 1,000 views a body may hold are kept.
	body := `{"views":[` + strings.Join(many[:1000], ",") + `]}`
	require.Len(t, e.ok(req{method: "POST", path: "/v1/views", role: domain.RoleService, body: body}, 200)["views"], 1000)
	require.Len(t, e.allViews("/v1/children/"+w.child+"/views", 1000), 1000)
}
