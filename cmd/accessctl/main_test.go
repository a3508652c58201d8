package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
)

func TestMain(m *testing.M) {
	retryWait = time.Millisecond
	os.Exit(m.Run())
}

// testToken is the bearer token of the tests: distinctive, so that a test
// can tell that it is never printed.
const testToken = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3LTEifQ.SECRET-sig_123"

const (
	childID     = "0b6c2a8e-54f1-4b7e-9d0a-3c1e2f4a5b6c"
	accountID   = "7d1e9f20-3a4b-4c5d-8e6f-708192a3b4c5"
	carerID     = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
	placementID = "2c3d4e5f-6a7b-4c8d-9e0f-a1b2c3d4e5f6"
	eventID1    = "e1000000-0000-4000-8000-000000000001"
	eventID2    = "e2000000-0000-4000-8000-000000000002"
)

// result is one run of accessctl.
type result struct {
	stdout, stderr string
	code           int
}

// runCLI runs accessctl with args and env as the whole environment.
func runCLI(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	code := run(context.Background(), args, &stdout, &stderr, lookup)
	return result{stdout.String(), stderr.String(), code}
}

// envFor is the environment of a run against f with the test token.
func envFor(f *fakeServer) map[string]string {
	return map[string]string{envServer: f.URL, envToken: testToken}
}

// verbCase is one subcommand run against the fake server.
type verbCase struct {
	name    string
	args    []string
	pattern string     // the api.md route expected
	path    string     // the request's path
	query   url.Values // the request's query (GET)
	body    string     // the request's body (JSON, compared as JSON)
	answer  string     // the server's answer
	table   string     // stdout with --output table
	json    string     // stdout with --output json; "" means: the answer, compared as JSON
	stderr  string     // stderr (both formats)
	exit    int
}

func verbCases() []verbCase {
	return []verbCase{
		{
			name: "register-child", args: []string{"register-child", "--reference", "NCC-2026-001"},
			pattern: "POST /v1/children", path: "/v1/children",
			body:   `{"reference":"NCC-2026-001"}`,
			answer: `{"position":"12","child_id":"` + childID + `"}`,
			table:  "child_id  " + childID + "\nposition  12\n",
			json:   "{\n  \"child_id\": \"" + childID + "\",\n  \"position\": \"12\"\n}\n",
		},
		{
			name: "allocate", args: []string{"allocate", "--child", childID, "--worker", "w-2"},
			pattern: "POST /v1/children/{child_id}/allocation", path: "/v1/children/" + childID + "/allocation",
			body: `{"worker_id":"w-2"}`, answer: `{"position":"13"}`,
			table: "position  13\n", json: "{\n  \"position\": \"13\"\n}\n",
		},
		{
			name: "invite", args: []string{"invite", "--email", "jo@example.org", "--kind", "network_member"},
			pattern: "POST /v1/invitations", path: "/v1/invitations",
			body:   `{"email":"jo@example.org","kind":"network_member"}`,
			answer: `{"account_id":"` + accountID + `","expires_at":"2026-01-19T09:30:00Z","position":"14"}`,
			table:  "account_id  " + accountID + "\nexpires_at  2026-01-19 09:30:00 UTC\nposition    14\n",
		},
		{
			// A time with an offset is sent in UTC; an upper-case id is sent canonical.
			name: "place", args: []string{"place", "--child", strings.ToUpper(childID), "--carer", carerID, "--started-at", "2026-01-05T10:30:00+01:00"},
			pattern: "POST /v1/children/{child_id}/placements", path: "/v1/children/" + childID + "/placements",
			body:   `{"carer_account_id":"` + carerID + `","started_at":"2026-01-05T09:30:00Z"}`,
			answer: `{"placement_id":"` + placementID + `","position":"15"}`,
			table:  "placement_id  " + placementID + "\nposition      15\n",
		},
		{
			name: "end-placement", args: []string{"end-placement", "--child", childID, "--placement", placementID,
				"--ended-at", "2026-02-01T17:00:00Z", "--reason", "moved to a new carer"},
			pattern: "POST /v1/children/{child_id}/placements/{placement_id}/end",
			path:    "/v1/children/" + childID + "/placements/" + placementID + "/end",
			body:    `{"ended_at":"2026-02-01T17:00:00Z","reason":"moved to a new carer"}`,
			answer:  `{"grace_until":"2026-02-08T17:00:00Z","position":"16"}`,
			table:   "grace_until  2026-02-08 17:00:00 UTC\nposition     16\n",
		},
		{
			name: "end-grace", args: []string{"end-grace", "--child", childID, "--placement", placementID, "--reason", "safeguarding concern"},
			pattern: "POST /v1/children/{child_id}/placements/{placement_id}/end-grace",
			path:    "/v1/children/" + childID + "/placements/" + placementID + "/end-grace",
			body:    `{"reason":"safeguarding concern"}`, answer: `{"position":"17"}`,
			table: "position  17\n",
		},
		{
			name: "grant", args: []string{"grant", "--child", childID, "--account", accountID, "--relationship", "parent",
				"--permissions", "view, record", "--reason", "agreed at the review"},
			pattern: "POST /v1/children/{child_id}/grants", path: "/v1/children/" + childID + "/grants",
			body:   `{"account_id":"` + accountID + `","relationship":"parent","permissions":["view","record"],"reason":"agreed at the review"}`,
			answer: `{"position":"18"}`, table: "position  18\n",
		},
		{
			name: "revoke", args: []string{"revoke", "--child", childID, "--account", accountID, "--reason", "court order"},
			pattern: "POST /v1/children/{child_id}/grants/{account_id}/revoke",
			path:    "/v1/children/" + childID + "/grants/" + accountID + "/revoke",
			body:    `{"reason":"court order"}`, answer: `{"position":"19"}`, table: "position  19\n",
		},
		{
			name: "phone-reset", args: []string{"phone-reset", "--account", accountID, "--reason", "lost phone"},
			pattern: "POST /v1/accounts/{account_id}/phone-reset-requests", path: "/v1/accounts/" + accountID + "/phone-reset-requests",
			body: `{"reason":"lost phone"}`, answer: `{"position":"20"}`, table: "position  20\n",
		},
		{
			name: "clear-phone", args: []string{"clear-phone", "--account", accountID},
			pattern: "POST /v1/accounts/{account_id}/phone/clear", path: "/v1/accounts/" + accountID + "/phone/clear",
			body: `{}`, answer: `{"position":"21"}`, table: "position  21\n",
		},
		{
			name: "close-account", args: []string{"close-account", "--account", accountID, "--reason", "left the network"},
			pattern: "POST /v1/accounts/{account_id}/close", path: "/v1/accounts/" + accountID + "/close",
			body: `{"reason":"left the network"}`, answer: `{"position":"22"}`, table: "position  22\n",
		},
		{
			name: "check allowed", args: []string{"check", "--account", carerID, "--child", childID, "--permission", "record"},
			pattern: "GET /v1/check", path: "/v1/check",
			query:  url.Values{"account_id": {carerID}, "child_id": {childID}, "permission": {"record"}},
			answer: `{"allowed":true,"permissions":["view","record","complete_outstanding"],"reason":"placement","until":null,"position":"22"}`,
			table:  "allowed      yes\npermissions  view,record,complete_outstanding\nreason       placement\nuntil        -\nposition     22\n",
		},
		{
			name: "check denied", args: []string{"check", "--account", accountID, "--carer", carerID, "--permission", "view",
				"--at", "2026-03-01T00:00:00+01:00", "--min-position", "22"},
			pattern: "GET /v1/check", path: "/v1/check",
			query: url.Values{"account_id": {accountID}, "carer_id": {carerID}, "permission": {"view"},
				"at": {"2026-02-28T23:00:00Z"}, "min_position": {"22"}},
			answer: `{"allowed":false,"reason":"no_relationship","position":"22"}`,
			table:  "allowed      no\npermissions  -\nreason       no_relationship\nuntil        -\nposition     22\n",
			exit:   exitDenied,
		},
		{
			name: "children", args: []string{"children", "--account", carerID, "--at", "2026-02-03T12:00:00Z"},
			pattern: "GET /v1/accounts/{account_id}/children", path: "/v1/accounts/" + carerID + "/children",
			query: url.Values{"at": {"2026-02-03T12:00:00Z"}},
			answer: `{"children":[` +
				`{"child_id":"` + childID + `","permissions":["view","complete_outstanding"],"reason":"grace_period","until":"2026-02-08T17:00:00Z"},` +
				`{"child_id":"` + placementID + `","permissions":["view","record","complete_outstanding"],"reason":"placement","until":null}` +
				`],"position":"23"}`,
			table: "CHILD                                 PERMISSIONS                       REASON        UNTIL\n" +
				childID + "  view,complete_outstanding         grace_period  2026-02-08 17:00:00 UTC\n" +
				placementID + "  view,record,complete_outstanding  placement     -\n" +
				"position: 23\n",
		},
		{
			name: "viewers", args: []string{"viewers", "--child", childID, "--min-position", "23"},
			pattern: "GET /v1/children/{child_id}/viewers", path: "/v1/children/" + childID + "/viewers",
			query:  url.Values{"min_position": {"23"}},
			answer: `{"viewers":[{"account_id":"` + accountID + `","permissions":["view"],"reason":"grant"}],"position":"23"}`,
			table: "ACCOUNT                               PERMISSIONS  REASON  UNTIL\n" +
				accountID + "  view         grant   -\n" +
				"position: 23\n",
		},
		{
			name: "history", args: []string{"history", "--child", childID},
			pattern: "GET /v1/children/{child_id}/history", path: "/v1/children/" + childID + "/history",
			query: url.Values{},
			answer: `{"intervals":[` +
				`{"account_id":"` + carerID + `","permissions":["view","record","complete_outstanding"],"reason":"placement",` +
				`"from":"2026-01-05T09:30:00Z","to":"2026-02-01T17:00:00Z",` +
				`"opened_by_event":{"event_id":"` + eventID1 + `","type":"placement.started.v1","actor":"w-1","actor_role":"worker"},` +
				`"closed_by_event":{"event_id":"` + eventID2 + `"}},` +
				`{"account_id":"` + accountID + `","permissions":["view"],"reason":"grant","from":"2026-01-10T00:00:00Z","to":null,` +
				`"opened_by_event":{"event_id":"` + eventID2 + `","type":"access.granted.v1","actor":"w-1"},"closed_by_event":null}]}`,
			table: "ACCOUNT                               PERMISSIONS                       REASON     FROM                     TO                       OPENED BY                             CLOSED BY\n" +
				carerID + "  view,record,complete_outstanding  placement  2026-01-05 09:30:00 UTC  2026-02-01 17:00:00 UTC  placement.started.v1 by w-1 (worker)  " + eventID2 + "\n" +
				accountID + "  view                              grant      2026-01-10 00:00:00 UTC  -                        access.granted.v1 by w-1              -\n",
		},
		{
			name: "history at, as of", args: []string{"history", "--child", childID, "--at", "2026-01-20T00:00:00Z", "--as-of", "17", "--min-position", "20"},
			pattern: "GET /v1/children/{child_id}/history", path: "/v1/children/" + childID + "/history",
			query:  url.Values{"at": {"2026-01-20T00:00:00Z"}, "as_of": {"17"}, "min_position": {"20"}},
			answer: `{"intervals":[],"position":"20"}`,
			table:  "ACCOUNT  PERMISSIONS  REASON  FROM  TO  OPENED BY  CLOSED BY\nposition: 20\n",
		},
		{
			name: "account at", args: []string{"account", "--account", accountID, "--at", "2026-01-01T00:00:00Z"},
			pattern: "GET /v1/accounts/{account_id}", path: "/v1/accounts/" + accountID,
			query:  url.Values{"at": {"2026-01-01T00:00:00Z"}},
			answer: `{"account_id":"` + accountID + `","kind":"foster_carer","status":"invited","needs_phone_enrolment":false,"phone_hint":"***123","position":"2"}`,
			table: "account_id             " + accountID + "\nkind                   foster_carer\nstatus                 invited\n" +
				"needs_phone_enrolment  no\nphone_hint             ***123\nposition               2\n",
		},
		{
			name: "child", args: []string{"child", "--child", childID},
			pattern: "GET /v1/children/{child_id}", path: "/v1/children/" + childID,
			query: url.Values{},
			answer: `{"child_id":"` + childID + `","reference":"NCC-2026-001","allocated_worker_id":"w-1","retain_until":null,` +
				`"placements":[{"placement_id":"` + placementID + `","carer_account_id":"` + carerID + `","started_at":"2026-01-05T09:30:00Z",` +
				`"ended_at":"2026-02-01T17:00:00Z","grace_until":"2026-02-08T17:00:00Z","status":"in_grace"}],` +
				`"grants":[{"account_id":"` + accountID + `","relationship":"parent","permissions":["view","record"],"granted_at":"2026-01-10T00:00:00Z",` +
				`"expires_at":null,"review_by":null,"revoked_at":null,"status":"active"}],"at":"2026-02-02T00:00:00Z","position":"25"}`,
			table: "child_id          " + childID + "\nreference         NCC-2026-001\nallocated_worker  w-1\n" +
				"PLACEMENT                             CARER                                 STARTED                  ENDED                    GRACE UNTIL              STATUS\n" +
				placementID + "  " + carerID + "  2026-01-05 09:30:00 UTC  2026-02-01 17:00:00 UTC  2026-02-08 17:00:00 UTC  in_grace\n" +
				"GRANT TO                              RELATIONSHIP                          PERMISSIONS              GRANTED                  REVOKED                  STATUS\n" +
				accountID + "  parent                                view,record              2026-01-10 00:00:00 UTC  -                        active\n" +
				"position: 25\n",
		},
		{
			name: "account", args: []string{"account", "--account", accountID},
			pattern: "GET /v1/accounts/{account_id}", path: "/v1/accounts/" + accountID,
			query:  url.Values{},
			answer: `{"account_id":"` + accountID + `","kind":"parent","status":"active","needs_phone_enrolment":true,"phone_hint":null,"position":"24"}`,
			table: "account_id             " + accountID + "\nkind                   parent\nstatus                 active\n" +
				"needs_phone_enrolment  yes\nphone_hint             -\nposition               24\n",
		},
		{
			name: "audit", args: []string{"audit", "--child", childID, "--account", accountID, "--actor", "w-1",
				"--from", "2026-01-01T00:00:00Z", "--to", "2026-02-01T00:00:00Z", "--limit", "2", "--after", "7"},
			pattern: "GET /v1/audit", path: "/v1/audit",
			query: url.Values{"child_id": {childID}, "account_id": {accountID}, "actor": {"w-1"}, "from": {"2026-01-01T00:00:00Z"},
				"to": {"2026-02-01T00:00:00Z"}, "limit": {"2"}, "after": {"7"}},
			answer: `{"entries":[` + auditEntry(8, "placement.started.v1", "w-1", "worker", "", "2026-01-05T09:30:00Z", "2026-01-05T09:31:02.123456Z") + `,` +
				auditEntry(9, "access.granted.v1", "w-1", "worker", "agreed at the review", "2026-01-10T00:00:00Z", "2026-01-10T08:00:00Z") +
				`],"next":"9"}`,
			table: "SEQ  RECORDED                 EFFECTIVE                TYPE                  ACTOR         REASON\n" +
				"8    2026-01-05 09:31:02 UTC  2026-01-05 09:30:00 UTC  placement.started.v1  w-1 (worker)  -\n" +
				"9    2026-01-10 08:00:00 UTC  2026-01-10 00:00:00 UTC  access.granted.v1     w-1 (worker)  agreed at the review\n" +
				"next: 9 (more entries: run again with --after 9, or use --all)\n",
		},
		{
			name: "verify ok", args: []string{"verify"},
			pattern: "GET /v1/audit/verify", path: "/v1/audit/verify", query: url.Values{},
			answer: `{"ok":true,"entries":1234,"head_hash":"ab12","first_broken":null}`,
			table:  "audit trail OK: 1234 entries, head ab12\n",
		},
		{
			name: "verify with an anchor", args: []string{"verify", "--anchor", "1200:" + strings.Repeat("ab", 32)},
			pattern: "GET /v1/audit/verify", path: "/v1/audit/verify",
			query:  url.Values{"anchor_seq": {"1200"}, "anchor_hash": {strings.Repeat("ab", 32)}},
			answer: `{"ok":true,"entries":1234,"head_hash":"ef56","first_broken":null,"position":"30"}`,
			table:  "audit trail OK: 1234 entries, head ef56\nposition: 30\n",
		},
		{
			name: "verify broken", args: []string{"verify"},
			pattern: "GET /v1/audit/verify", path: "/v1/audit/verify", query: url.Values{},
			answer: `{"ok":false,"entries":56,"head_hash":"cd34","first_broken":{"seq":57,"reason":"hash mismatch (entry edited)"}}`,
			table:  "audit trail BROKEN at entry 57: hash mismatch (entry edited); 56 entries intact before it, last intact hash cd34\n",
			stderr: "accessctl: audit trail broken at entry 57: hash mismatch (entry edited)\n",
			exit:   exitError,
		},
		{
			name: "security-log", args: []string{"security-log"},
			pattern: "GET /v1/security-log", path: "/v1/security-log", query: url.Values{},
			answer: `{"entries":[{"id":1,"at":"2026-01-06T10:00:00Z","actor_id":"` + accountID + `","actor_role":"service","command":"grant",` +
				`"target":"child/` + childID + `","code":"forbidden","detail":"only the child's allocated worker may grant access"}],"position":"24"}`,
			table: "WHEN                     ACTOR                                           COMMAND  TARGET                                      CODE       DETAIL\n" +
				"2026-01-06 10:00:00 UTC  " + accountID + " (service)  grant    child/" + childID + "  forbidden  only the child's allocated worker may grant access\n" +
				"position: 24\n",
		},
		{
			name: "security-log filtered", args: []string{"security-log", "--actor", "w-9", "--command", "grant", "--code", "forbidden",
				"--from", "2026-01-01T00:00:00Z", "--to", "2026-02-01T00:00:00Z", "--limit", "10", "--after", "40"},
			pattern: "GET /v1/security-log", path: "/v1/security-log",
			query: url.Values{"actor": {"w-9"}, "command": {"grant"}, "code": {"forbidden"}, "from": {"2026-01-01T00:00:00Z"},
				"to": {"2026-02-01T00:00:00Z"}, "limit": {"10"}, "after": {"40"}},
			answer: `{"entries":[{"id":39,"at":"2026-01-06T10:00:00Z","actor_id":"w-9","actor_role":"worker","command":"grant","target":"child/x",` +
				`"code":"forbidden","detail":"not allocated","request_id":"r1","correlation_id":null}],"next":"39","position":"24"}`,
			table: "WHEN                     ACTOR         COMMAND  TARGET   CODE       DETAIL\n" +
				"2026-01-06 10:00:00 UTC  w-9 (worker)  grant    child/x  forbidden  not allocated\n" +
				"next: 39 (more entries: run again with --after 39, or use --all)\n" +
				"position: 24\n",
		},
		{
			name: "policy", args: []string{"policy"},
			pattern: "GET /v1/policy", path: "/v1/policy", query: url.Values{},
			answer: `{"grace_period":604800,"invitation_ttl":1209600,"session_idle_timeout":900,"session_warning_after":600,"position":"24"}`,
			table: "grace_period           7 days\ninvitation_ttl         14 days\nsession_idle_timeout   15 minutes\n" +
				"session_warning_after  10 minutes\nposition               24\n",
		},
	}
}

func auditEntry(seq int, typ, actor, role, reason, effective, recorded string) string {
	return `{"seq":` + jsonNumber(seq) + `,"event_id":"` + uuid.NewSHA1(uuid.NameSpaceOID, []byte(typ)).String() + `","type":"` + typ +
		`","stream":"child-` + childID + `","actor":"` + actor + `","actor_role":"` + role + `","reason":` + jsonString(reason) +
		`,"effective_at":"` + effective + `","recorded_at":"` + recorded + `","data":{"child_id":"` + childID + `"},` +
		`"prev_hash":"00","hash":"11"}`
}

func jsonNumber(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestVerbs runs every subcommand against the fake server in both output
// formats: the request must be the one api.md describes (method, path,
// query, body, token, Idempotency-Key on commands only) and the output and
// exit code the ones expected.
func TestVerbs(t *testing.T) {
	covered := map[string]bool{}
	for _, tc := range verbCases() {
		covered[tc.args[0]] = true
		for _, format := range []string{outputTable, outputJSON} {
			t.Run(tc.name+"/"+format, func(t *testing.T) {
				f := newFakeServer(t, testToken, fixed(reply{body: tc.answer}))
				res := runCLI(t, envFor(f), append(clone(tc.args), "--output", format)...)
				require.Empty(t, f.refusals(), "the fake server refused a request")
				require.Equal(t, tc.exit, res.code, "stderr: %s", res.stderr)
				require.Equal(t, tc.stderr, res.stderr)

				reqs := f.requests()
				require.Len(t, reqs, 1)
				req := reqs[0]
				require.Equal(t, tc.pattern, req.Pattern)
				require.Equal(t, tc.path, req.Path)
				require.Equal(t, "Bearer "+testToken, req.Authorization)
				if tc.body != "" {
					require.JSONEq(t, tc.body, req.RawBody)
					_, err := uuid.Parse(req.IdempotencyKey)
					require.NoError(t, err, "a command carries a generated Idempotency-Key")
				} else {
					require.Equal(t, tc.query, req.Query)
					require.Empty(t, req.IdempotencyKey)
				}

				switch {
				case format == outputTable:
					require.Equal(t, tc.table, res.stdout)
				case tc.json != "":
					require.Equal(t, tc.json, res.stdout)
				default:
					require.JSONEq(t, tc.answer, res.stdout)
					requireStableJSON(t, res.stdout)
				}
				require.NotContains(t, res.stdout+res.stderr, testToken)
			})
		}
	}
	for _, v := range verbs() {
		if v.ledger {
			continue // TestLedger*: against a real server, with real proofs
		}
		require.True(t, covered[v.name], "no case for %s", v.name)
	}
}

func clone(s []string) []string { return append([]string(nil), s...) }

// requireStableJSON checks that out is what writeJSON prints for it:
// indented, with sorted keys.
func requireStableJSON(t *testing.T, out string) {
	t.Helper()
	var again bytes.Buffer
	require.NoError(t, writeJSON(&again, []byte(out)))
	require.Equal(t, again.String(), out)
	require.True(t, strings.HasPrefix(out, "{\n  \""), "indented: %q", out)
}

func TestJSONOutputIsStable(t *testing.T) {
	answer := `{"z":1,"a":{"y":"<b>&","b":[3,2]},"n":12345678901234567890,"m":1.50}`
	f := newFakeServer(t, testToken, fixed(reply{body: answer}))
	res := runCLI(t, envFor(f), "policy", "--output", "json")
	require.Equal(t, exitOK, res.code, res.stderr)
	want := `{
  "a": {
    "b": [
      3,
      2
    ],
    "y": "<b>&"
  },
  "m": 1.50,
  "n": 12345678901234567890,
  "z": 1
}
`
	require.Equal(t, want, res.stdout, "sorted keys, numbers as sent, no HTML escaping")
}

// TestProblems checks how refusals are printed: the server's problem on
// one line of stderr, nothing on stdout, exit 1.
func TestProblems(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		reply  reply
		stderr string
	}{
		{
			name:   "forbidden",
			args:   []string{"grant", "--child", childID, "--account", accountID, "--relationship", "parent", "--permissions", "view", "--reason", "r"},
			reply:  reply{status: 403, body: `{"type":"about:blank","title":"Forbidden","status":403,"detail":"you are not the child's allocated worker","code":"forbidden"}`},
			stderr: "accessctl: Forbidden: you are not the child's allocated worker (code forbidden, status 403)\n",
		},
		{
			name:   "already registered",
			args:   []string{"invite", "--email", "jo@example.org", "--kind", "parent"},
			reply:  reply{status: 409, body: `{"title":"Already registered","status":409,"detail":"already registered: sign in with your existing account","code":"already_registered"}`},
			stderr: "accessctl: Already registered: already registered: sign in with your existing account (code already_registered, status 409)\n",
		},
		{
			name:   "not found, query",
			args:   []string{"account", "--account", accountID},
			reply:  reply{status: 404, body: `{"title":"Not found","status":404,"detail":"no account ` + accountID + `","code":"not_found"}`},
			stderr: "accessctl: Not found: no account " + accountID + " (code not_found, status 404)\n",
		},
		{
			name:   "stale",
			args:   []string{"viewers", "--child", childID, "--min-position", "999"},
			reply:  reply{status: 503, body: `{"title":"Not caught up","status":503,"detail":"position 999 not reached in time","code":"stale"}`},
			stderr: "accessctl: Not caught up: position 999 not reached in time (code stale, status 503)\n",
		},
		{
			name:  "internal, command: the key to retry with",
			args:  []string{"revoke", "--child", childID, "--account", accountID, "--reason", "r", "--idempotency-key", "k-1"},
			reply: reply{status: 500, body: `{"title":"Internal error","status":500,"code":"internal"}`},
			stderr: "accessctl: Internal error (code internal, status 500)\n" +
				"accessctl: the command may or may not have been carried out; to retry it safely, run it again with --idempotency-key k-1\n",
		},
		{
			name:   "not a problem document",
			args:   []string{"policy"},
			reply:  reply{status: 404, contentType: "text/plain; charset=utf-8", body: "404 page not found\n"},
			stderr: "accessctl: Not Found: 404 page not found (status 404)\n",
		},
		{
			name:   "an HTML page",
			args:   []string{"policy"},
			reply:  reply{status: 403, contentType: "text/html", body: "<html><body>denied</body></html>"},
			stderr: "accessctl: Forbidden (status 403)\n",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t, testToken, fixed(tc.reply))
			res := runCLI(t, envFor(f), tc.args...)
			require.Equal(t, exitError, res.code)
			require.Empty(t, res.stdout)
			require.Equal(t, tc.stderr, res.stderr)
		})
	}
}

// TestFakeServerRefusals: the fake's own problem answers (a wrong token)
// come back through the same path.
func TestWrongToken(t *testing.T) {
	f := newFakeServer(t, "another-token", nil)
	res := runCLI(t, envFor(f), "policy")
	require.Equal(t, exitError, res.code)
	require.Equal(t, "accessctl: Unauthenticated: a valid bearer token is required (code unauthenticated, status 401)\n", res.stderr)
	require.NotContains(t, res.stdout+res.stderr, testToken)
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string // added to the fake's environment
		want string            // in stderr
	}{
		{"no verb", nil, nil, "Usage: accessctl VERB"},
		{"unknown verb", []string{"frobnicate"}, nil, `unknown command "frobnicate"`},
		{"unknown flag", []string{"policy", "--frob"}, nil, "flag provided but not defined: -frob"},
		{"positional argument", []string{"account", "--account", accountID, "extra"}, nil, `unexpected argument "extra"`},
		{"missing flags", []string{"place"}, nil, "--child is required\n  --carer is required\n  --started-at is required"},
		{"bad uuid", []string{"allocate", "--child", "child-1", "--worker", "w"}, nil, `--child "child-1" is not an id: want a UUID`},
		{"nil uuid", []string{"account", "--account", uuid.Nil.String()}, nil, "is not an id"},
		{"bad time", []string{"end-placement", "--child", childID, "--placement", placementID, "--ended-at", "2026-02-01", "--reason", "r"}, nil,
			`--ended-at "2026-02-01" is not an RFC 3339 time`},
		{"blank reason", []string{"revoke", "--child", childID, "--account", accountID, "--reason", "  "}, nil, "--reason is required"},
		{"bad kind", []string{"invite", "--email", "a@b.c", "--kind", "friend"}, nil, `--kind "friend": want one of foster_carer, parent, guardian, network_member`},
		{"bad email", []string{"invite", "--email", "nobody", "--kind", "parent"}, nil, `--email "nobody" is not an email address`},
		{"bad relationship", []string{"grant", "--child", childID, "--account", accountID, "--relationship", "carer", "--permissions", "view", "--reason", "r"}, nil,
			`--relationship "carer": want one of parent, guardian, network_member`},
		{"grant permission not grantable", []string{"grant", "--child", childID, "--account", accountID, "--relationship", "parent",
			"--permissions", "view,complete_outstanding", "--reason", "r"}, nil, `--permissions: "complete_outstanding" is not one of view, record`},
		{"grant permission twice", []string{"grant", "--child", childID, "--account", accountID, "--relationship", "parent",
			"--permissions", "view,view", "--reason", "r"}, nil, `--permissions: "view" is listed twice`},
		{"check needs child or carer", []string{"check", "--account", accountID, "--permission", "view"}, nil, "--child or --carer is required"},
		{"check not both", []string{"check", "--account", accountID, "--child", childID, "--carer", carerID, "--permission", "view"}, nil,
			"give --child or --carer, not both"},
		{"check bad permission", []string{"check", "--account", accountID, "--child", childID, "--permission", "edit"}, nil,
			`--permission "edit": want one of view, record, complete_outstanding`},
		{"audit to before from", []string{"audit", "--from", "2026-02-01T00:00:00Z", "--to", "2026-01-01T00:00:00Z"}, nil, "is before --from"},
		{"audit negative limit", []string{"audit", "--limit", "-1"}, nil, "--limit -1: must be positive"},
		{"bad anchor", []string{"verify", "--anchor", "12:ABC"}, nil, `--anchor "12:ABC": want SEQ:HASH`},
		{"anchor without seq", []string{"verify", "--anchor", strings.Repeat("a", 64)}, nil, "want SEQ:HASH"},
		{"bad as-of", []string{"history", "--child", childID, "--as-of", "1 2"}, nil, `--as-of "1 2"`},
		{"security-log to not after from", []string{"security-log", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T00:00:00Z"}, nil,
			"is not after --from"},
		{"bad output", []string{"policy", "--output", "yaml"}, nil, `--output "yaml": want table or json`},
		{"bad output env", []string{"policy"}, map[string]string{envOutput: "xml"}, `--output "xml": want table or json`},
		{"bad timeout env", []string{"policy"}, map[string]string{envTimeout: "soon"}, `ACCESSLEDGER_TIMEOUT="soon" is not a duration`},
		{"negative timeout", []string{"policy", "--timeout", "-1s"}, nil, "--timeout -1s: must not be negative"},
		{"bad server", []string{"policy", "--server", "127.0.0.1:8080"}, nil, "is not an http:// or https:// URL"},
		{"server with query", []string{"policy", "--server", "http://h/?x=1"}, nil, "must not have a query"},
		{"idempotency key on a query", []string{"policy", "--idempotency-key", "k"}, nil, "--idempotency-key applies to commands only"},
		{"min-position on a command", []string{"clear-phone", "--account", accountID, "--min-position", "3"}, nil, "--min-position applies to queries only"},
		{"bad idempotency key", []string{"clear-phone", "--account", accountID, "--idempotency-key", "a b"}, nil, "--idempotency-key: only visible ASCII"},
		{"bad min-position", []string{"policy", "--min-position", "1 2"}, nil, `--min-position "1 2"`},
		{"no token", []string{"policy"}, map[string]string{envToken: ""}, "no token: use --token-file FILE"},
		{"token and token file", []string{"policy", "--token", "t", "--token-file", "/nonexistent"}, nil, "give --token or --token-file, not both"},
		{"missing token file", []string{"policy", "--token-file", "/nonexistent/token"}, nil, "cannot read the token file"},
		{"both token env vars", []string{"policy"}, map[string]string{envTokenFile: "/x"}, "set ACCESSLEDGER_TOKEN or ACCESSLEDGER_TOKEN_FILE, not both"},
		{"ledger alone", []string{"ledger"}, nil, "Usage: accessctl ledger SUBCOMMAND"},
		{"ledger with a flag first", []string{"ledger", "--checkpoint", "x"}, nil, "Usage: accessctl ledger SUBCOMMAND"},
		{"unknown ledger verb", []string{"ledger", "audit"}, nil, `unknown command "ledger audit"`},
		{"ledger verify without files", []string{"ledger", "verify"}, nil, "--checkpoint FILE is required\n  --public-key FILE is required"},
		{"ledger verify, missing key file", []string{"ledger", "verify", "--checkpoint", "/nonexistent/cp", "--public-key", "/nonexistent/key"}, nil,
			"--public-key: open /nonexistent/key: no such file or directory"},
		{"ledger verify, not a key", []string{"ledger", "verify", "--checkpoint", "/nonexistent/cp", "--public-key", "main_test.go"}, nil,
			"--public-key: main_test.go does not hold a verifier key"},
		{"ledger prove without event", []string{"ledger", "prove"}, nil, "--event is required"},
		{"ledger prove, bad event", []string{"ledger", "prove", "--event", "e-1"}, nil, `--event "e-1" is not an id`},
		{"ledger prove, missing checkpoint file", []string{"ledger", "prove", "--event", eventID1, "--checkpoint", "/nonexistent/cp"}, nil,
			"--checkpoint: open /nonexistent/cp"},
		{"min-position on a ledger verb", []string{"ledger", "checkpoint", "--min-position", "3"}, nil,
			"--min-position does not apply to ledger checkpoint"},
		{"ledger verb with an argument", []string{"ledger", "public-key", "extra"}, nil, `unexpected argument "extra"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t, testToken, nil)
			env := envFor(f)
			for k, v := range tc.env {
				env[k] = v
			}
			res := runCLI(t, env, tc.args...)
			require.Equal(t, exitUsage, res.code, "stderr: %s", res.stderr)
			require.Contains(t, res.stderr, tc.want)
			require.Empty(t, res.stdout)
			require.Empty(t, f.requests(), "nothing is sent after a usage error")
			require.Empty(t, f.refusals())
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		res := runCLI(t, nil, args...)
		require.Equal(t, exitOK, res.code)
		require.Contains(t, res.stdout, "Exit codes:")
		require.Contains(t, res.stdout, "Idempotency:")
		for _, v := range verbs() {
			require.Contains(t, res.stdout, "  "+v.name+" ")
		}
	}
	for _, v := range verbs() {
		words := strings.Fields(v.name) // "ledger verify" is two arguments
		for _, args := range [][]string{append(words, "-h"), append([]string{"help"}, words...)} {
			res := runCLI(t, nil, args...)
			require.Equal(t, exitOK, res.code)
			require.True(t, strings.HasPrefix(res.stdout, "Usage: accessctl "+v.name), res.stdout)
			require.Contains(t, res.stdout, v.endpoint)
		}
	}
	// The ledger's verbs are listed apart, and under "ledger".
	res := runCLI(t, nil, "help")
	require.Contains(t, res.stdout, ledgerTitle+"\n  ledger checkpoint ")
	for _, args := range [][]string{{"help", "ledger"}, {"ledger", "-h"}} {
		res := runCLI(t, nil, args...)
		require.Equal(t, exitOK, res.code)
		require.True(t, strings.HasPrefix(res.stdout, "Usage: accessctl ledger SUBCOMMAND"), res.stdout)
		for _, sub := range []string{"checkpoint", "public-key", "verify", "prove"} {
			require.Contains(t, res.stdout, "  ledger "+sub+" ")
		}
	}
	res = runCLI(t, nil, "ledger", "verify", "-h")
	require.Contains(t, res.stdout, "a query of the ledger; takes no --min-position")
	require.Contains(t, res.stdout, "--checkpoint FILE")
	res = runCLI(t, nil, "check", "-h")
	require.Contains(t, res.stdout, "Exits 0 when allowed and 3 when denied")
	require.Contains(t, res.stdout, "--permission PERMISSION")
}

func TestEnvironmentAndFlagPrecedence(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("  \n"+testToken+"-file\r\n\t"), 0o600))
	otherFile := filepath.Join(dir, "other")
	require.NoError(t, os.WriteFile(otherFile, []byte(testToken+"-envfile\n"), 0o600))

	cases := []struct {
		name      string
		env       map[string]string
		args      []string
		wantToken string
		wantFlag  bool // the request goes to the server named by --server, not by the environment
		wantJSON  bool
	}{
		{name: "environment only", env: map[string]string{envToken: testToken}, wantToken: testToken},
		{name: "--token beats the environment", env: map[string]string{envToken: "env-token"}, args: []string{"--token", testToken + "-flag"},
			wantToken: testToken + "-flag"},
		{name: "--token-file beats ACCESSLEDGER_TOKEN, trimmed", env: map[string]string{envToken: "env-token"}, args: []string{"--token-file", tokenFile},
			wantToken: testToken + "-file"},
		{name: "ACCESSLEDGER_TOKEN_FILE", env: map[string]string{envTokenFile: otherFile}, wantToken: testToken + "-envfile"},
		{name: "--token-file beats ACCESSLEDGER_TOKEN_FILE", env: map[string]string{envTokenFile: otherFile}, args: []string{"--token-file", tokenFile},
			wantToken: testToken + "-file"},
		{name: "--server beats ACCESSLEDGER_SERVER", env: map[string]string{envToken: testToken}, wantToken: testToken, wantFlag: true},
		{name: "global flags before the verb", env: map[string]string{envToken: "x"}, args: []string{"--token", testToken + "-flag"},
			wantToken: testToken + "-flag", wantFlag: true},
		{name: "ACCESSLEDGER_OUTPUT", env: map[string]string{envToken: testToken, envOutput: "json"}, wantToken: testToken, wantJSON: true},
		{name: "--output beats ACCESSLEDGER_OUTPUT", env: map[string]string{envToken: testToken, envOutput: "json"}, args: []string{"--output", "table"},
			wantToken: testToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			answer := fixed(reply{body: `{"position":"5","account_id":"` + accountID + `","kind":"parent","status":"invited","needs_phone_enrolment":false,"phone_hint":"**7"}`})
			envSrv := newFakeServer(t, tc.wantToken, answer)
			flagSrv := newFakeServer(t, tc.wantToken, answer)
			env := map[string]string{envServer: envSrv.URL}
			for k, v := range tc.env {
				env[k] = v
			}
			args := []string{"account", "--account", accountID}
			if tc.wantFlag {
				args = append(args, "--server", flagSrv.URL)
			}
			if tc.name == "global flags before the verb" {
				args = append(append([]string{"--server", flagSrv.URL}, tc.args...), "account", "--account", accountID)
			} else {
				args = append(args, tc.args...)
			}
			res := runCLI(t, env, args...)
			require.Equal(t, exitOK, res.code, res.stderr)
			target, other := envSrv, flagSrv
			if tc.wantFlag {
				target, other = flagSrv, envSrv
			}
			require.Len(t, target.requests(), 1)
			require.Empty(t, other.requests())
			require.Empty(t, target.refusals(), "the token sent was not %q", tc.wantToken)
			if tc.wantJSON {
				require.True(t, strings.HasPrefix(res.stdout, "{\n"), res.stdout)
			} else {
				require.True(t, strings.HasPrefix(res.stdout, "account_id "), res.stdout)
			}
			require.NotContains(t, res.stdout+res.stderr, testToken)
		})
	}
}

// TestTokenNeverPrinted runs accessctl every way that prints something,
// with a token that would be recognisable, and looks for it.
func TestTokenNeverPrinted(t *testing.T) {
	dir := t.TempDir()
	badFile := filepath.Join(dir, "bad")
	require.NoError(t, os.WriteFile(badFile, []byte("Bearer "+testToken), 0o600))

	f := newFakeServer(t, testToken, fixed(reply{status: 403, body: `{"title":"Forbidden","status":403,"detail":"no","code":"forbidden"}`}))
	runs := [][]string{
		{"policy"},
		{"policy", "-h"},
		{"help"},
		{"policy", "--token", testToken + " with a space"},
		{"policy", "--token", testToken + "\x00"},
		{"policy", "--token-file", badFile},
		{"policy", "--server", "http://user:" + testToken + "@127.0.0.1:1/"},
		{"policy", "--server", "http://user:" + testToken + "@[::1"},
		{"check", "--account", accountID, "--child", childID, "--permission", "view", "--token", testToken, "--frob"},
	}
	for _, c := range verbCases() {
		runs = append(runs, c.args)
	}
	for _, args := range runs {
		res := runCLI(t, envFor(f), args...)
		require.NotContains(t, res.stdout+res.stderr, testToken, "%v", args)
		require.NotContains(t, res.stdout+res.stderr, "SECRET", "%v", args)
	}
}

func TestIdempotencyKey(t *testing.T) {
	f := newFakeServer(t, testToken, nil)
	args := []string{"clear-phone", "--account", accountID}
	require.Equal(t, exitOK, runCLI(t, envFor(f), args...).code)
	require.Equal(t, exitOK, runCLI(t, envFor(f), args...).code)
	require.Equal(t, exitOK, runCLI(t, envFor(f), append(args, "--idempotency-key", "retry-42")...).code)
	reqs := f.requests()
	require.Len(t, reqs, 3)
	for _, r := range reqs[:2] {
		_, err := uuid.Parse(r.IdempotencyKey)
		require.NoError(t, err)
	}
	require.NotEqual(t, reqs[0].IdempotencyKey, reqs[1].IdempotencyKey, "a new key per invocation")
	require.Equal(t, "retry-42", reqs[2].IdempotencyKey)
}

// TestRetrySameKey: a command that got 503 is sent again with the same key
// and its answer printed once.
func TestRetrySameKey(t *testing.T) {
	var calls atomic.Int32
	f := newFakeServer(t, testToken, func(seenRequest) reply {
		if calls.Add(1) == 1 {
			return reply{status: 503, body: `{"title":"Unavailable","status":503,"code":"internal"}`}
		}
		return reply{body: `{"position":"9"}`}
	})
	res := runCLI(t, envFor(f), "end-grace", "--child", childID, "--placement", placementID, "--reason", "r")
	require.Equal(t, exitOK, res.code, res.stderr)
	require.Equal(t, "position  9\n", res.stdout)
	reqs := f.requests()
	require.Len(t, reqs, 2)
	require.NotEmpty(t, reqs[0].IdempotencyKey)
	require.Equal(t, reqs[0].IdempotencyKey, reqs[1].IdempotencyKey)
	require.Equal(t, reqs[0].RawBody, reqs[1].RawBody)
}

// TestReplayedAnswer: an answer replayed for an Idempotency-Key is printed
// as usual, with a note on stderr that nothing was changed now.
func TestReplayedAnswer(t *testing.T) {
	f := newFakeServer(t, testToken, fixed(reply{body: `{"position":"9"}`, header: http.Header{"Idempotent-Replayed": {"true"}}}))
	res := runCLI(t, envFor(f), "revoke", "--child", childID, "--account", accountID, "--reason", "r", "--idempotency-key", "k-9")
	require.Equal(t, exitOK, res.code)
	require.Equal(t, "position  9\n", res.stdout)
	require.Equal(t, "accessctl: the server had already carried out this command (Idempotency-Key k-9): "+
		"this is its first answer, nothing was changed now\n", res.stderr)
}

func TestNetworkErrors(t *testing.T) {
	t.Run("nobody listening", func(t *testing.T) {
		f := newFakeServer(t, testToken, nil)
		url := f.URL
		f.Close()
		res := runCLI(t, map[string]string{envServer: url, envToken: testToken},
			"close-account", "--account", accountID, "--reason", "r", "--idempotency-key", "k-7")
		require.Equal(t, exitError, res.code)
		require.Empty(t, res.stdout)
		require.Contains(t, res.stderr, "accessctl: cannot reach the server at "+url+": ")
		require.Contains(t, res.stderr, "connection refused")
		require.Contains(t, res.stderr, "run it again with --idempotency-key k-7\n")
	})
	t.Run("timeout", func(t *testing.T) {
		f := newFakeServer(t, testToken, fixed(reply{block: true}))
		res := runCLI(t, envFor(f), "viewers", "--child", childID, "--timeout", "200ms")
		require.Equal(t, exitError, res.code)
		require.Equal(t, "accessctl: no answer from "+f.URL+" within 200ms (see --timeout)\n", res.stderr)
		require.LessOrEqual(t, len(f.requests()), 1, "a timed-out request is not retried past --timeout")
	})
	t.Run("unreadable answer", func(t *testing.T) {
		f := newFakeServer(t, testToken, fixed(reply{body: "not json"}))
		res := runCLI(t, envFor(f), "policy")
		require.Equal(t, exitError, res.code)
		require.Contains(t, res.stderr, "accessctl: unreadable answer from GET "+f.URL+"/v1/policy (status 200)")
	})
}

func TestServerPathPrefix(t *testing.T) {
	f := newFakeServer(t, testToken, nil)
	res := runCLI(t, map[string]string{envServer: f.URL + "/", envToken: testToken}, "clear-phone", "--account", accountID)
	require.Equal(t, exitOK, res.code, res.stderr)
	require.Equal(t, "/v1/accounts/"+accountID+"/phone/clear", f.requests()[0].Path)
}

func TestAuditAll(t *testing.T) {
	pages := map[string]string{
		"":  `{"entries":[` + auditEntry(1, "child.registered.v1", "w-1", "worker", "", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z") + `],"next":"1"}`,
		"1": `{"entries":[` + auditEntry(2, "worker.allocated.v1", "m-1", "manager", "cover", "2026-01-02T00:00:00Z", "2026-01-02T00:00:00Z") + `],"next":"2"}`,
		"2": `{"entries":[],"next":null}`,
	}
	answer := func(r seenRequest) reply { return reply{body: pages[r.Query.Get("after")]} }

	t.Run("table", func(t *testing.T) {
		f := newFakeServer(t, testToken, answer)
		res := runCLI(t, envFor(f), "audit", "--all", "--limit", "1", "--actor", "w-1")
		require.Equal(t, exitOK, res.code, res.stderr)
		require.Equal(t, "SEQ  RECORDED                 EFFECTIVE                TYPE                 ACTOR          REASON\n"+
			"1    2026-01-01 00:00:00 UTC  2026-01-01 00:00:00 UTC  child.registered.v1  w-1 (worker)   -\n"+
			"2    2026-01-02 00:00:00 UTC  2026-01-02 00:00:00 UTC  worker.allocated.v1  m-1 (manager)  cover\n", res.stdout)
		reqs := f.requests()
		require.Len(t, reqs, 3)
		for i, after := range []string{"", "1", "2"} {
			want := url.Values{"limit": {"1"}, "actor": {"w-1"}}
			if after != "" {
				want.Set("after", after)
			}
			require.Equal(t, want, reqs[i].Query)
		}
	})
	t.Run("json merges the pages", func(t *testing.T) {
		f := newFakeServer(t, testToken, answer)
		res := runCLI(t, envFor(f), "audit", "--all", "--output", "json")
		require.Equal(t, exitOK, res.code, res.stderr)
		var got struct {
			Entries []struct {
				Seq int `json:"seq"`
			} `json:"entries"`
			Next any `json:"next"`
		}
		require.NoError(t, json.Unmarshal([]byte(res.stdout), &got))
		require.Len(t, got.Entries, 2)
		require.Equal(t, 1, got.Entries[0].Seq)
		require.Equal(t, 2, got.Entries[1].Seq)
		require.Nil(t, got.Next)
		requireStableJSON(t, res.stdout)
	})
	t.Run("a repeated cursor stops", func(t *testing.T) {
		f := newFakeServer(t, testToken, fixed(reply{body: `{"entries":[],"next":"5"}`}))
		res := runCLI(t, envFor(f), "audit", "--all")
		require.Equal(t, exitError, res.code)
		require.Contains(t, res.stderr, `the server answered cursor "5" twice`)
		require.Len(t, f.requests(), 2)
	})
}

func TestSecurityLogAll(t *testing.T) {
	entry := func(id int, actor string) string {
		return `{"id":` + jsonNumber(id) + `,"at":"2026-01-0` + jsonNumber(id) + `T10:00:00Z","actor_id":"` + actor +
			`","actor_role":"worker","command":"revoke","target":"child/c","code":"forbidden","detail":"d"}`
	}
	pages := map[string]string{
		"":  `{"entries":[` + entry(3, "w-3") + `,` + entry(2, "w-2") + `],"next":"2","position":"8"}`,
		"2": `{"entries":[` + entry(1, "w-1") + `],"next":null,"position":"8"}`,
	}
	f := newFakeServer(t, testToken, func(r seenRequest) reply { return reply{body: pages[r.Query.Get("after")]} })
	res := runCLI(t, envFor(f), "security-log", "--all", "--code", "forbidden")
	require.Equal(t, exitOK, res.code, res.stderr)
	require.Equal(t, "WHEN                     ACTOR         COMMAND  TARGET   CODE       DETAIL\n"+
		"2026-01-03 10:00:00 UTC  w-3 (worker)  revoke   child/c  forbidden  d\n"+
		"2026-01-02 10:00:00 UTC  w-2 (worker)  revoke   child/c  forbidden  d\n"+
		"2026-01-01 10:00:00 UTC  w-1 (worker)  revoke   child/c  forbidden  d\n"+
		"position: 8\n", res.stdout)
	reqs := f.requests()
	require.Len(t, reqs, 2)
	require.Equal(t, url.Values{"code": {"forbidden"}}, reqs[0].Query)
	require.Equal(t, url.Values{"code": {"forbidden"}, "after": {"2"}}, reqs[1].Query)

	res = runCLI(t, envFor(f), "security-log", "--all", "--output", "json")
	require.Equal(t, exitOK, res.code, res.stderr)
	var merged struct {
		Entries []struct {
			ID int `json:"id"`
		} `json:"entries"`
		Position string `json:"position"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &merged))
	require.Len(t, merged.Entries, 3)
	require.Equal(t, 1, merged.Entries[2].ID)
	require.Equal(t, "8", merged.Position)
}

// TestNamesMatchDomain keeps the CLI's lists of names (validated before
// sending) in step with the domain's.
func TestNamesMatchDomain(t *testing.T) {
	require.Equal(t, []string{string(domain.KindFosterCarer), string(domain.KindParent), string(domain.KindGuardian),
		string(domain.KindNetworkMember)}, accountKinds)
	require.Equal(t, []string{string(domain.RelParent), string(domain.RelGuardian), string(domain.RelNetworkMember)}, relationships)
	require.Equal(t, domain.All.Names(), checkPermissions)
	for _, p := range checkPermissions {
		_, err := domain.ParsePermission(p)
		require.NoError(t, err)
	}
	require.Equal(t, []string{domain.PermView, domain.PermRecord}, grantPermissions)
}
