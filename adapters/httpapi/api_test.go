package httpapi

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// TestEveryOperation runs a scenario through every documented operation
// on every backend, with real components, and requires each to answer 2xx
// at least once with a request and an answer that validate against
// docs/openapi.yaml (contract (b)).
func TestEveryOperation(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b.URL(t))
			w := e.buildWorld()
			auditor := req{role: domain.RoleAuditor, sub: "auditor-cy"}
			get := func(role domain.Role, path string) map[string]any {
				return e.ok(req{method: "GET", path: path, role: role, sub: string(role) + "-1"}, 200)
			}

			// Index queries.
			c := get(domain.RoleService, "/v1/check?account_id="+w.member+"&child_id="+w.child+"&permission=view&min_position="+w.lastPosition)
			require.Equal(t, true, c["allowed"])
			require.Equal(t, "grant", c["reason"])
			c = get(domain.RoleService, "/v1/check?account_id="+w.member+"&child_id="+w.child+"&permission=record")
			require.Equal(t, false, c["allowed"])
			c = get(domain.RoleWorker, "/v1/check?account_id="+w.carer+"&carer_id="+w.carer+"&permission=record")
			require.Equal(t, true, c["allowed"])
			require.Equal(t, "own_record", c["reason"])
			cs := e.ok(req{method: "POST", path: "/v1/checks", role: domain.RoleService, body: `{"checks":[` +
				`{"account_id":"` + w.member + `","child_id":"` + w.child + `","permission":"view"},` +
				`{"account_id":"` + w.carer + `","carer_id":"` + w.carer + `","permission":"record"}],"min_position":"` + w.lastPosition + `"}`}, 200)
			require.Len(t, cs["results"], 2)
			require.Equal(t, "grant", cs["results"].([]any)[0].(map[string]any)["reason"])
			require.Equal(t, "own_record", cs["results"].([]any)[1].(map[string]any)["reason"])
			ch := get(domain.RoleService, "/v1/accounts/"+w.carer+"/children")
			require.Len(t, ch["children"], 1)
			require.Equal(t, w.child, ch["children"].([]any)[0].(map[string]any)["child_id"])
			now := url.QueryEscape(time.Now().UTC().Format(time.RFC3339Nano))
			v := get(domain.RoleWorker, "/v1/children/"+w.child+"/viewers?at="+now)
			require.Len(t, v["viewers"], 2)

			// The child's record, from its stream.
			rec := get(domain.RoleManager, "/v1/children/"+w.child)
			require.Equal(t, "NCC-0001", rec["reference"])
			require.Equal(t, w.worker, rec["allocated_worker_id"])
			require.Equal(t, w.placement, rec["placements"].([]any)[0].(map[string]any)["placement_id"])
			require.Equal(t, "open", rec["placements"].([]any)[0].(map[string]any)["status"])
			require.Equal(t, w.member, rec["grants"].([]any)[0].(map[string]any)["account_id"])

			// Read models.
			h := get(domain.RoleAuditor, "/v1/children/"+w.child+"/history?min_position="+w.lastPosition)
			require.Len(t, h["intervals"], 2)
			iv := h["intervals"].([]any)[0].(map[string]any)
			require.NotNil(t, iv["opened_by_event"])
			h = get(domain.RoleAuditor, "/v1/children/"+w.child+"/history?as_of="+w.registerPosition)
			require.Empty(t, h["intervals"], "nobody could see the child when it was registered")
			h = get(domain.RoleAuditor, "/v1/children/"+w.child+"/history?known_at=2001-01-01T00:00:00Z")
			require.Empty(t, h["intervals"], "nothing was known in 2001")
			h = get(domain.RoleAuditor, "/v1/children/"+w.child+"/history?known_at="+url.QueryEscape(time.Now().Add(time.Minute).UTC().Format(time.RFC3339)))
			require.Len(t, h["intervals"], 2, "all is known a minute from now")
			require.NotNil(t, h["as_of"])
			h = get(domain.RoleAuditor, "/v1/children/"+w.child+"/history?at="+url.QueryEscape(w.startedAt.Add(time.Hour).Format(time.RFC3339)))
			require.Empty(t, h["intervals"], "the carer's account was not active yet")
			h = get(domain.RoleAuditor, "/v1/children/"+w.child+"/history?at="+now)
			require.Len(t, h["intervals"], 2)
			h = get(domain.RoleAuditor, "/v1/accounts/"+w.member+"/history")
			require.Len(t, h["intervals"], 1)
			h = get(domain.RoleAuditor, "/v1/accounts/"+w.member+"/history?at="+now)
			require.Equal(t, w.child, h["intervals"].([]any)[0].(map[string]any)["child_id"])
			a := get(domain.RoleService, "/v1/accounts/"+w.member)
			require.Equal(t, "active", a["status"])
			require.Equal(t, "network_member", a["kind"])
			require.Equal(t, true, a["needs_phone_enrolment"])
			require.Nil(t, a["phone_hint"])
			l := get(domain.RolePortalsTeam, "/v1/accounts?kind=foster_carer")
			require.Len(t, l["accounts"], 1)
			l = get(domain.RoleService, "/v1/accounts?identity_subject="+url.QueryEscape(w.memberSubject))
			require.Equal(t, w.member, l["accounts"].([]any)[0].(map[string]any)["account_id"])
			au := get(domain.RoleAuditor, "/v1/audit?limit=2")
			require.Len(t, au["entries"], 2)
			require.NotNil(t, au["next"])
			au = get(domain.RoleAuditor, "/v1/audit?child_id="+w.child+"&after="+au["next"].(string))
			require.NotEmpty(t, au["entries"])
			vr := get(domain.RoleAuditor, "/v1/audit/verify")
			require.Equal(t, true, vr["ok"])
			get(domain.RoleAuditor, "/v1/audit/verify?anchor_seq=1&anchor_hash="+
				get(domain.RoleAuditor, "/v1/audit?limit=1")["entries"].([]any)[0].(map[string]any)["hash"].(string))
			p := get(domain.RoleWorker, "/v1/policy")
			require.EqualValues(t, 7*24*3600, p["grace_period"])
			require.EqualValues(t, 15*60, p["session_idle_timeout"])

			// The remaining commands.
			worker := req{role: domain.RoleWorker, sub: w.worker}
			with := func(r req, method, path, body string) req {
				r.method, r.path, r.body = method, path, body
				return r
			}
			e.ok(with(req{role: domain.RoleService}, "PUT", "/v1/accounts/"+w.member+"/phone", `{"phone":"+44 7700 900123"}`), 200)
			e.ok(with(worker, "POST", "/v1/accounts/"+w.member+"/phone-reset-requests", `{"reason":"lost phone"}`), 200)
			e.ok(with(req{role: domain.RolePortalsTeam}, "POST", "/v1/accounts/"+w.member+"/phone/clear", `{}`), 200)
			rv := e.ok(with(worker, "POST", "/v1/children/"+w.child+"/grants/"+w.member+"/review", `{"reason":"still agreed"}`), 200)
			require.NotEmpty(t, rv["review_by"])
			due := get(domain.RoleManager, "/v1/reviews?due_before="+time.Now().UTC().AddDate(2, 0, 0).Format(time.RFC3339))
			require.NotEmpty(t, due["grants"])
			e.ok(with(worker, "POST", "/v1/children/"+w.child+"/grants/"+w.member+"/revoke", `{"reason":"review"}`), 200)
			end := e.ok(with(worker, "POST", "/v1/children/"+w.child+"/placements/"+w.placement+"/end",
				`{"ended_at":"`+time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)+`","reason":"moved"}`), 200)
			require.NotEmpty(t, end["grace_until"])
			e.ok(with(worker, "POST", "/v1/children/"+w.child+"/placements/"+w.placement+"/end-grace", `{"reason":"safeguarding\nconcern"}`), 200)
			mistake := e.ok(with(worker, "POST", "/v1/invitations", `{"email":"mistake@example.org","kind":"parent"}`), 201)
			e.ok(with(worker, "POST", "/v1/accounts/"+mistake["account_id"].(string)+"/invitation/cancel", `{"reason":"wrong address"}`), 200)
			planned := e.ok(with(worker, "POST", "/v1/children/"+w.child+"/placements",
				`{"carer_account_id":"`+w.carer+`","started_at":"`+time.Now().UTC().AddDate(0, 1, 0).Format(time.RFC3339)+`"}`), 201)
			e.ok(with(worker, "POST", "/v1/children/"+w.child+"/placements/"+planned["placement_id"].(string)+"/cancel", `{"reason":"the carer withdrew"}`), 200)
			e.ok(with(worker, "POST", "/v1/accounts/"+w.member+"/email-change-requests", `{"email":"member.new@example.org","reason":"new address"}`), 200)
			e.ok(with(req{role: domain.RolePortalsTeam}, "PUT", "/v1/accounts/"+w.member+"/email", `{"email":"member.new@example.org"}`), 200)
			e.ok(with(worker, "PUT", "/v1/children/"+w.child+"/retention",
				`{"retain_until":"`+time.Now().UTC().AddDate(50, 0, 0).Format(time.RFC3339)+`","reason":"kept until the care leaver turns 75"}`), 200)
			e.ok(with(req{role: domain.RoleManager, sub: w.manager}, "POST", "/v1/children/"+w.child+"/allocation", `{"worker_id":"worker-dee"}`), 200)
			e.ok(with(req{role: domain.RolePortalsTeam}, "POST", "/v1/accounts/"+w.member+"/close", `{"reason":"closed by mistake"}`), 200)
			e.ok(with(req{role: domain.RolePortalsTeam}, "POST", "/v1/accounts/"+w.member+"/reopen", `{"reason":"closed the wrong account"}`), 200)
			e.ok(with(req{role: domain.RoleManager, sub: w.manager}, "PUT", "/v1/policy", `{"grace_period":172800,"reason":"review"}`), 200)
			e.ok(with(req{role: domain.RolePortalsTeam}, "POST", "/v1/accounts/"+w.member+"/close", `{"reason":"asked to leave"}`), 200)
			// Erasure (R22): the dpo only. The account stays closed and
			// its history stays; what erasure removes the e2e tests show.
			e.do(with(worker, "POST", "/v1/accounts/"+w.member+"/erasure", `{"reason":"Art. 17"}`)).problem(t, 403, codeForbidden)
			e.do(with(req{role: domain.RoleDPO}, "POST", "/v1/accounts/"+w.member+"/erasure", `{}`)).problem(t, 400, codeInvalid)
			e.ok(with(req{role: domain.RoleDPO}, "POST", "/v1/children/"+w.child+"/erasure", `{"reason":"retention ended"}`), 200)
			last := e.ok(with(req{role: domain.RoleDPO}, "POST", "/v1/accounts/"+w.member+"/erasure", `{"reason":"Art. 17 request DPO-117"}`), 200)

			// Record views (R20; TestRule_R20_* check what they keep): the
			// member's account is closed, so the view raises an alert.
			portal := req{role: domain.RoleService, sub: "portal"}
			viewedAt := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339Nano)
			rv = e.ok(with(portal, "POST", "/v1/views?min_position="+last["position"].(string),
				`{"account_id":"`+w.member+`","child_id":"`+w.child+`","permission":"view","viewed_at":"`+viewedAt+`"}`), 200)
			require.Equal(t, false, rv["views"].([]any)[0].(map[string]any)["allowed"])
			e.ok(with(portal, "POST", "/v1/views", `{"views":[{"account_id":"`+w.carer+`","child_id":"`+w.child+
				`","permission":"record","viewed_at":"`+viewedAt+`"}]}`), 200)
			vp := get(domain.RoleAuditor, "/v1/children/"+w.child+"/views?limit=1")
			require.Len(t, vp["views"], 1)
			get(domain.RoleAuditor, "/v1/children/"+w.child+"/views?after="+vp["next"].(string))
			get(domain.RoleAuditor, "/v1/accounts/"+w.member+"/views?from="+url.QueryEscape(viewedAt))
			require.Len(t, get(domain.RoleAuditor, "/v1/alerts")["alerts"], 2, "the member is closed, the carer's grace ended")

			// Subject access exports (R21; TestRule_R21_SubjectAccessExport
			// checks what they hold).
			get(domain.RoleAuditor, "/v1/accounts/"+w.member+"/export?min_position="+last["position"].(string))
			get(domain.RoleDPO, "/v1/children/"+w.child+"/export")
			get(domain.RoleWorker, "/v1/children?reference=NCC-0001")

			// A refused command, for the security log.
			e.do(with(worker, "POST", "/v1/children/"+w.child+"/grants",
				`{"account_id":"`+w.member+`","relationship":"parent","permissions":["view"],"reason":"x"}`)).problem(t, 403, codeForbidden)
			sl := get(domain.RoleAuditor, "/v1/security-log?command=grant")
			require.Len(t, sl["entries"], 1)
			require.Equal(t, w.worker, sl["entries"].([]any)[0].(map[string]any)["actor_id"])

			c = get(domain.RoleService, "/v1/check?account_id="+w.carer+"&child_id="+w.child+"&permission=view&min_position="+last["position"].(string))
			require.Equal(t, false, c["allowed"])
			a = get(domain.RoleAuditor, "/v1/accounts/"+w.member+"?min_position="+last["position"].(string))
			require.Equal(t, "closed", a["status"])

			// The ledger (TestLedger_* check the proofs), once its tree has
			// the last event.
			lastPos, err := eventlog.ParsePosition(last["position"].(string))
			require.NoError(t, err)
			e.waitFor(lastPos)
			cp := e.checkpoint(e.publicKey())
			require.Positive(t, cp.Size)
			checkInclusion(t, e.inclusion("position="+last["position"].(string)), e.checkpoint(e.publicKey()))
			e.consistency("from_size=1")

			// Operations.
			e.ok(req{method: "GET", path: "/healthz"}, 200)
			e.ok(req{method: "GET", path: "/readyz"}, 200)
			require.Equal(t, 200, e.do(req{method: "GET", path: "/metrics"}).status)
			_ = auditor

			covered := e.contract.coveredOps()
			for _, rt := range routes() {
				if rt.Name == "watch" {
					continue // TestWatch
				}
				require.True(t, covered[rt.Name], "operation %s never answered 2xx", rt.Name)
			}
		})
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t))
	other := make([]byte, 32)
	for _, tc := range []struct {
		name   string
		header string
	}{
		{"no token", ""},
		{"garbage", "Bearer not-a-token"},
		{"wrong scheme", "Basic dXNlcjpwYXNz"},
		{"empty bearer", "Bearer "},
		{"other secret", "Bearer " + mintWith(t, other, domain.RoleAuditor, time.Hour)},
		{"expired", "Bearer " + mintAt(t, e.secret, domain.RoleAuditor, time.Now().Add(-2*time.Hour))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/v1/audit", "/v1/policy"} {
				r := req{method: "GET", path: path, header: map[string]string{}}
				if tc.header != "" {
					r.header["Authorization"] = tc.header
				}
				res := e.do(r)
				res.problem(t, 401, codeUnauthenticated)
				require.Contains(t, res.header.Get("WWW-Authenticate"), "Bearer")
			}
			before := e.head()
			r := req{method: "POST", path: "/v1/children", body: `{"reference":"X"}`, header: map[string]string{}}
			if tc.header != "" {
				r.header["Authorization"] = tc.header
			}
			e.do(r).problem(t, 401, codeUnauthenticated)
			require.Equal(t, before, e.head())
		})
	}
	// The public routes need no token.
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		require.Equal(t, 200, e.do(req{method: "GET", path: p}).status, p)
	}
}

func TestRoles_QueryRefusedAndLogged(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t))
	child := uuid.NewString()
	for _, tc := range []struct {
		role domain.Role
		path string
		op   string
		body string // a POST's
	}{
		{domain.RoleWorker, "/v1/audit", "audit_list", ""},
		{domain.RoleService, "/v1/audit/verify", "audit_verify", ""},
		{domain.RoleManager, "/v1/security-log", "security_log", ""},
		{domain.RoleService, "/v1/children/" + child + "/viewers", "child_viewers", ""},
		{domain.RoleWorker, "/v1/children/" + child + "/history", "child_history", ""},
		{domain.RolePortalsTeam, "/v1/check?account_id=" + child + "&child_id=" + child + "&permission=view", "check", ""},
		{domain.RoleWorker, "/v1/watch", "watch", ""},
		{domain.RoleManager, "/v1/accounts/" + child, "get_account", ""},
		{domain.RoleManager, "/v1/checks", "checks", `{"checks":[{"account_id":"` + child + `","child_id":"` + child + `","permission":"view"}]}`},
		{domain.RolePortalsTeam, "/v1/checks", "checks", `not even JSON: refused before the body is read`},
	} {
		t.Run(tc.op, func(t *testing.T) {
			method := "GET"
			if tc.body != "" {
				method = "POST"
			}
			res := e.do(req{method: method, path: tc.path, role: tc.role, sub: "nosy-" + tc.op + string(tc.role), body: tc.body,
				header: map[string]string{requestIDHeader: "req-" + tc.op}})
			p := res.problem(t, 403, codeForbidden)
			require.Contains(t, p.Detail, string(tc.role))
			sl := e.ok(req{method: "GET", path: "/v1/security-log?actor=nosy-" + tc.op + string(tc.role), role: domain.RoleAuditor}, 200)
			entries := sl["entries"].([]any)
			require.Len(t, entries, 1)
			en := entries[0].(map[string]any)
			require.Equal(t, "query_"+tc.op, en["command"])
			require.Equal(t, codeForbidden, en["code"])
			require.Equal(t, string(tc.role), en["actor_role"])
			require.Equal(t, "req-"+tc.op, en["request_id"])
		})
	}
}

func TestCommandRefusedByTheDomain(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t))
	w := e.buildWorld()
	before := e.head()
	// Another worker is not the child's allocated worker (R8).
	res := e.do(req{method: "POST", path: "/v1/children/" + w.child + "/grants", role: domain.RoleWorker, sub: "worker-eve",
		body: `{"account_id":"` + w.member + `","relationship":"parent","permissions":["view","record"],"reason":"because"}`})
	res.problem(t, 403, codeForbidden)
	// An auditor changes nothing.
	e.do(req{method: "POST", path: "/v1/children", role: domain.RoleAuditor, body: `{"reference":"R"}`}).problem(t, 403, codeForbidden)
	// A command on a child that does not exist.
	e.do(req{method: "POST", path: "/v1/children/" + uuid.NewString() + "/allocation", role: domain.RoleManager,
		body: `{"worker_id":"w"}`}).problem(t, 404, codeNotFound)
	// R10.
	e.do(req{method: "POST", path: "/v1/invitations", role: domain.RoleWorker, sub: w.worker,
		body: `{"email":"` + strings.ToUpper(w.carerEmail) + `","kind":"parent"}`}).problem(t, 409, codeAlreadyRegistered)
	require.Equal(t, before, e.head())
}

func TestNotFoundAndMethodNotAllowed(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t))
	id := uuid.NewString()
	for _, p := range []string{"/", "/v1", "/v1/nothing", "/v1/children/" + id, "/v1/check/", "/metrics/x"} {
		e.do(req{method: "GET", path: p, role: domain.RoleAuditor}).problem(t, 404, codeNotFound)
	}
	for _, tc := range []struct{ method, path, allow string }{
		{"PUT", "/v1/children", "GET, HEAD, POST"},
		{"DELETE", "/v1/accounts/" + id, "GET, HEAD"},
		{"GET", "/v1/accounts/" + id + "/phone", "PUT"},
		{"POST", "/v1/check", "GET, HEAD"},
		{"PATCH", "/v1/invitations", "POST"},
	} {
		res := e.do(req{method: tc.method, path: tc.path, role: domain.RoleWorker})
		res.problem(t, 405, codeInvalid)
		require.Equal(t, tc.allow, res.header.Get("Allow"))
	}
	// An accounts-read with an unknown account is the read model's 404.
	e.do(req{method: "GET", path: "/v1/accounts/" + id, role: domain.RoleAuditor}).problem(t, 404, codeNotFound)
}

func TestReadyz(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t))
	e.ready.Store(false)
	res := e.do(req{method: "GET", path: "/readyz"})
	res.problem(t, 503, codeStale)
	require.Equal(t, "1", res.header.Get("Retry-After"))
	e.ready.Store(true)
	require.Equal(t, "ready", e.ok(req{method: "GET", path: "/readyz"}, 200)["status"])
	require.Equal(t, "ok", e.ok(req{method: "GET", path: "/healthz"}, 200)["status"])
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t))
	e.buildWorld()
	e.do(req{method: "GET", path: "/v1/audit", role: domain.RoleWorker}).problem(t, 403, codeForbidden)
	e.do(req{method: "GET", path: "/no/such/path"}).problem(t, 404, codeNotFound)
	res := e.do(req{method: "GET", path: "/metrics"})
	require.Equal(t, 200, res.status)
	body := string(res.body)
	for _, want := range []string{
		`accessledger_http_request_duration_seconds_bucket{route="POST /v1/children",status_class="2xx",le="0.1"}`,
		`accessledger_http_request_duration_seconds_count{route="GET /v1/audit",status_class="4xx"} 1`,
		`accessledger_http_request_duration_seconds_count{route="unmatched",status_class="4xx"} 1`,
		`accessledger_commands_total{command="register_child",outcome="ok"} 1`,
		`accessledger_commands_total{command="invite",outcome="ok"} 2`,
		`accessledger_projection_lag_seconds{projection="audit"}`,
		`accessledger_projection_position{projection="access_history"}`,
		`accessledger_projection_caught_up{projection="accounts"}`,
		`accessledger_index_position `,
		`accessledger_watch_streams 0`,
	} {
		require.Contains(t, body, want)
	}
	require.NotContains(t, body, "/no/such/path", "a caller's path never becomes a label")
}

func TestRequestID(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t))
	res := e.do(req{method: "GET", path: "/v1/policy", role: domain.RoleWorker, header: map[string]string{requestIDHeader: "abc-123.x:y_z"}})
	require.Equal(t, "abc-123.x:y_z", res.header.Get(requestIDHeader))
	for _, bad := range []string{"has space", strings.Repeat("a", 129), "semi;colon", "ünï"} {
		res := e.do(req{method: "GET", path: "/v1/policy", role: domain.RoleWorker, header: map[string]string{requestIDHeader: bad}})
		_, err := uuid.Parse(res.header.Get(requestIDHeader))
		require.NoError(t, err, "a generated id replaces %q", bad)
	}
	res = e.do(req{method: "GET", path: "/v1/nothing"})
	require.NotEmpty(t, res.header.Get(requestIDHeader), "problems carry the id too")
	require.Contains(t, e.logs.String(), `"request_id":"abc-123.x:y_z"`)
	require.Contains(t, e.logs.String(), `"msg":"http request"`)
}

func TestPolicyAnswer(t *testing.T) {
	pol := domain.Policy{GracePeriod: 48 * time.Hour, InvitationTTL: 72 * time.Hour,
		SessionIdleTimeout: 20 * time.Minute, SessionWarningAfter: 15 * time.Minute}
	e := newEnv(t, sqltest.SQLiteMemory(t), func(c *setup) { c.Q.Policy, c.Q.Policies = pol, nil })
	p := e.ok(req{method: "GET", path: "/v1/policy", role: domain.RoleService}, 200)
	require.EqualValues(t, 48*3600, p["grace_period"])
	require.EqualValues(t, 72*3600, p["invitation_ttl"])
	require.EqualValues(t, 20*60, p["session_idle_timeout"])
	require.EqualValues(t, 15*60, p["session_warning_after"])
	require.Equal(t, eventlog.Start.String(), p["position"])
}

// TestRule_R25_PolicyOverHTTP: a manager changes some of the policy's
// settings with PUT /v1/policy; GET /v1/policy answers it with the event
// that set it, and with at= the one in force before; other roles are 403
// and bad values 400, appending nothing.
func TestRule_R25_PolicyOverHTTP(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t))
	before := time.Now().UTC().Add(-time.Second).Format(time.RFC3339Nano)
	manager := req{role: domain.RoleManager, sub: "manager-meg", method: "PUT", path: "/v1/policy"}
	for _, tc := range []struct {
		name   string
		r      req
		body   string
		status int
		code   string
	}{
		{"a worker", req{role: domain.RoleWorker, sub: "worker-ann"}, `{"grace_period":3600}`, 403, codeForbidden},
		{"an auditor", req{role: domain.RoleAuditor}, `{"grace_period":3600}`, 403, codeForbidden},
		{"a zero grace period", manager, `{"grace_period":0}`, 400, codeInvalid},
		{"a negative lifetime", manager, `{"invitation_ttl":-5}`, 400, codeInvalid},
		{"too long", manager, `{"closed_account_retention":99999999999}`, 400, codeInvalid},
		{"the warning after the timeout", manager, `{"session_warning_after":3600}`, 400, codeInvalid},
		{"a string", manager, `{"grace_period":"7d"}`, 400, codeInvalid},
		{"an unknown field", manager, `{"review_cycle":3600}`, 400, codeInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head := e.head()
			r := tc.r
			r.method, r.path, r.body = "PUT", "/v1/policy", tc.body
			e.do(r).problem(t, tc.status, tc.code)
			require.Equal(t, head, e.head(), "nothing appended")
		})
	}

	manager.body = `{"grace_period":172800,"session_idle_timeout":1800,"reason":"shorter grace after the review"}`
	res := e.ok(manager, 200)
	p := e.ok(req{method: "GET", path: "/v1/policy?min_position=" + res["position"].(string), role: domain.RoleService}, 200)
	require.EqualValues(t, 2*24*3600, p["grace_period"])
	require.EqualValues(t, 1800, p["session_idle_timeout"])
	require.EqualValues(t, 14*24*3600, p["invitation_ttl"], "settings left out are kept")
	require.Equal(t, "manager-meg", p["set_by"])
	require.Equal(t, "manager", p["set_by_role"])
	require.Equal(t, "shorter grace after the review", p["reason"])
	require.Equal(t, res["position"], p["set_position"])

	old := e.ok(req{method: "GET", path: "/v1/policy?at=" + url.QueryEscape(before), role: domain.RoleService}, 200)
	require.EqualValues(t, 7*24*3600, old["grace_period"], "the initial policy before the change")
	require.Equal(t, "system", old["set_by_role"])
	require.Equal(t, commands.InitialPolicyReason, old["reason"])

	// The same settings again record nothing.
	head := e.head()
	again := e.ok(manager, 200)
	require.Equal(t, head, e.head())
	require.Equal(t, res["position"], again["position"])
}
