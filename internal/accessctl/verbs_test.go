package accessctl

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

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
	// tableStderr follows stderr with --output table (the lookups' notes).
	tableStderr string
	// answerType is the answer's content type (default application/json).
	answerType string
	// extra answers the verb's other requests by path: the lookups that
	// name ids in a table, the watch's first request. Every one is
	// requested once with --output table; with --output json only those
	// of jsonExtra.
	extra     map[string]reply
	jsonExtra []string
	// stdin is what the verb reads from standard input.
	stdin string
}

// Records the lookups answer (GET /v1/children/{id}, GET /v1/accounts/{id}).
func childRecord(id, reference string, grants ...string) reply {
	return reply{body: `{"child_id":"` + id + `","reference":` + jsonString(reference) + `,"erased":false,"allocated_worker_id":"w-1",` +
		`"retain_until":null,"placements":[],"grants":[` + strings.Join(grants, ",") + `],"at":"2026-02-02T00:00:00Z","position":"25"}`}
}

func grantRecord(account, relationship string) string {
	return `{"account_id":"` + account + `","relationship":"` + relationship + `","permissions":["view"],"granted_at":"2026-01-10T00:00:00Z",` +
		`"expires_at":null,"review_by":null,"revoked_at":null,"status":"active"}`
}

func accountRecord(id, kind string) reply {
	return reply{body: `{"account_id":"` + id + `","kind":"` + kind + `","status":"active","needs_phone_enrolment":false,"phone_hint":null,` +
		`"invited_at":"2026-01-01T00:00:00Z","expires_at":"2026-01-15T00:00:00Z","activated_at":"2026-01-02T00:00:00Z","closed_at":null,` +
		`"erased":false,"at":"2026-02-02T00:00:00Z","position":"25"}`}
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
			name: "register-child retained", args: []string{"register-child", "--reference", "NCC-2026-002", "--retain-until", "2096-01-05T10:30:00+01:00"},
			pattern: "POST /v1/children", path: "/v1/children",
			body:   `{"reference":"NCC-2026-002","retain_until":"2096-01-05T09:30:00Z"}`,
			answer: `{"position":"12","child_id":"` + childID + `"}`,
			table:  "child_id  " + childID + "\nposition  12\n",
		},
		{
			name: "set-retention", args: []string{"set-retention", "--child", childID, "--retain-until", "2096-01-05T09:30:00Z", "--reason", "court order"},
			pattern: "PUT /v1/children/{child_id}/retention", path: "/v1/children/" + childID + "/retention",
			body: `{"retain_until":"2096-01-05T09:30:00Z","reason":"court order"}`, answer: `{"position":"13"}`,
			table: "position  13\n",
		},
		{
			name: "set-policy", args: []string{"set-policy", "--grace-period", "2d", "--session-idle-timeout", "30m", "--reason", "review"},
			pattern: "PUT /v1/policy", path: "/v1/policy",
			body: `{"grace_period":172800,"reason":"review","session_idle_timeout":1800}`, answer: `{"position":"14"}`,
			table: "position  14\n",
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
			name: "activate", args: []string{"activate", "--account", accountID, "--identity-subject", "mynorfolk|8f2c", "--email", "Jo@Example.org"},
			pattern: "POST /v1/accounts/{account_id}/activation", path: "/v1/accounts/" + accountID + "/activation",
			body:   `{"identity_subject":"mynorfolk|8f2c","email":"Jo@Example.org"}`,
			answer: `{"position":"14"}`, table: "position  14\n",
		},
		{
			// A time with an offset is sent in UTC; an upper-case id is sent canonical.
			name: "place", args: []string{"place", "--child", strings.ToUpper(childID), "--carer", carerID, "--started-at", "2026-01-05T10:30:00+01:00"},
			pattern: "POST /v1/children/{child_id}/placements", path: "/v1/children/" + childID + "/placements",
			body:   `{"carer_account_id":"` + carerID + `","started_at":"2026-01-05T09:30:00Z"}`,
			answer: `{"placement_id":"` + placementID + `","position":"15"}`,
			table:  "placement_id  " + placementID + "\nstarted_at    2026-01-05 09:30:00 UTC\nposition      15\n",
		},
		{
			name: "end-placement", args: []string{"end-placement", "--child", childID, "--placement", placementID,
				"--ended-at", "2026-02-01T17:00:00Z", "--reason", "moved to a new carer"},
			pattern: "POST /v1/children/{child_id}/placements/{placement_id}/end",
			path:    "/v1/children/" + childID + "/placements/" + placementID + "/end",
			body:    `{"ended_at":"2026-02-01T17:00:00Z","reason":"moved to a new carer"}`,
			answer:  `{"grace_until":"2026-02-08T17:00:00Z","position":"16"}`,
			table:   "ended_at     2026-02-01 17:00:00 UTC\ngrace_until  2026-02-08 17:00:00 UTC\nposition     16\n",
		},
		{
			// The reason is optional in the API: none is sent.
			name: "end-placement without a reason", args: []string{"end-placement", "--child", childID, "--placement", placementID,
				"--ended-at", "2026-02-01T17:00:00Z"},
			pattern: "POST /v1/children/{child_id}/placements/{placement_id}/end",
			path:    "/v1/children/" + childID + "/placements/" + placementID + "/end",
			body:    `{"ended_at":"2026-02-01T17:00:00Z"}`,
			answer:  `{"grace_until":"2026-02-08T17:00:00Z","position":"16"}`,
			table:   "ended_at     2026-02-01 17:00:00 UTC\ngrace_until  2026-02-08 17:00:00 UTC\nposition     16\n",
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
			name: "review", args: []string{"review", "--child", childID, "--account", accountID, "--reason", "still agreed"},
			pattern: "POST /v1/children/{child_id}/grants/{account_id}/review",
			path:    "/v1/children/" + childID + "/grants/" + accountID + "/review",
			body:    `{"reason":"still agreed"}`, answer: `{"review_by":"2027-03-02T09:00:00Z","position":"19"}`,
			table: "review_by  2027-03-02 09:00:00 UTC\nposition   19\n",
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
			name: "enrol-phone", args: []string{"enrol-phone", "--account", accountID, "--phone", "+44 7700 900123"},
			pattern: "PUT /v1/accounts/{account_id}/phone", path: "/v1/accounts/" + accountID + "/phone",
			body: `{"phone":"+44 7700 900123"}`, answer: `{"position":"22"}`, table: "position  22\n",
		},
		{
			name: "close-account", args: []string{"close-account", "--account", accountID, "--reason", "left the network"},
			pattern: "POST /v1/accounts/{account_id}/close", path: "/v1/accounts/" + accountID + "/close",
			body: `{"reason":"left the network"}`, answer: `{"position":"22"}`, table: "position  22\n",
		},
		{
			name: "cancel-invitation", args: []string{"cancel-invitation", "--account", accountID, "--reason", "sent to the wrong address"},
			pattern: "POST /v1/accounts/{account_id}/invitation/cancel", path: "/v1/accounts/" + accountID + "/invitation/cancel",
			body: `{"reason":"sent to the wrong address"}`, answer: `{"position":"22"}`, table: "position  22\n",
		},
		{
			name: "reopen-account", args: []string{"reopen-account", "--account", accountID, "--reason", "closed the wrong account"},
			pattern: "POST /v1/accounts/{account_id}/reopen", path: "/v1/accounts/" + accountID + "/reopen",
			body: `{"reason":"closed the wrong account"}`, answer: `{"position":"22"}`, table: "position  22\n",
		},
		{
			name: "request-email-change", args: []string{"request-email-change", "--account", accountID, "--email", "new@example.org", "--reason", "moved"},
			pattern: "POST /v1/accounts/{account_id}/email-change-requests", path: "/v1/accounts/" + accountID + "/email-change-requests",
			body: `{"email":"new@example.org","reason":"moved"}`, answer: `{"position":"22"}`, table: "position  22\n",
		},
		{
			name: "change-email", args: []string{"change-email", "--account", accountID, "--email", "new@example.org"},
			pattern: "PUT /v1/accounts/{account_id}/email", path: "/v1/accounts/" + accountID + "/email",
			body: `{"email":"new@example.org"}`, answer: `{"position":"22"}`, table: "position  22\n",
		},
		{
			name: "cancel-placement", args: []string{"cancel-placement", "--child", childID, "--placement", placementID, "--reason", "carer withdrew"},
			pattern: "POST /v1/children/{child_id}/placements/{placement_id}/cancel",
			path:    "/v1/children/" + childID + "/placements/" + placementID + "/cancel",
			body:    `{"reason":"carer withdrew"}`, answer: `{"position":"22"}`, table: "position  22\n",
		},
		{
			name: "erase-account", args: []string{"erase-account", "--account", accountID, "--reason", "Art. 17 request DPO-117"},
			pattern: "POST /v1/accounts/{account_id}/erasure", path: "/v1/accounts/" + accountID + "/erasure",
			body: `{"reason":"Art. 17 request DPO-117"}`, answer: `{"position":"23"}`, table: "position  23\n",
		},
		{
			name: "erase-child", args: []string{"erase-child", "--child", childID, "--reason", "retention ended"},
			pattern: "POST /v1/children/{child_id}/erasure", path: "/v1/children/" + childID + "/erasure",
			body: `{"reason":"retention ended"}`, answer: `{"position":"24"}`, table: "position  24\n",
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
			// JSON lines from standard input; the answers in the file's
			// order, denials included, exit 0.
			name: "checks", args: []string{"checks", "--file", "-", "--at", "2026-03-01T00:00:00+01:00", "--min-position", "22"},
			stdin: `{"account_id":"` + carerID + `","child_id":"` + childID + `","permission":"complete_outstanding"}` + "\n\n" +
				`{"account_id":"` + accountID + `","carer_id":"` + carerID + `","permission":"view"}` + "\n" +
				`{"account_id":"` + accountID + `","child_id":"` + placementID + `","permission":"complete_outstanding"}` + "\n",
			pattern: "POST /v1/checks", path: "/v1/checks",
			body: `{"checks":[{"account_id":"` + carerID + `","child_id":"` + childID + `","permission":"complete_outstanding"},` +
				`{"account_id":"` + accountID + `","carer_id":"` + carerID + `","permission":"view"},` +
				`{"account_id":"` + accountID + `","child_id":"` + placementID + `","permission":"complete_outstanding"}],` +
				`"at":"2026-02-28T23:00:00Z","min_position":"22"}`,
			answer: `{"results":[{"allowed":true,"permissions":["view","complete_outstanding"],"reason":"grace_period","until":"2026-03-04T17:00:00Z"},` +
				`{"allowed":false,"permissions":[],"reason":"no_relationship","until":null},` +
				`{"allowed":false,"permissions":[],"reason":"not_found","until":null}],"position":"22","at":"2026-02-28T23:00:00Z"}`,
			table: "ACCOUNT                               CHILD OR CARER                              PERMISSION            ALLOWED  REASON           UNTIL\n" +
				carerID + "  child " + childID + "  complete_outstanding  yes      grace_period     2026-03-04 17:00:00 UTC\n" +
				accountID + "  carer " + carerID + "  view                  no       no_relationship  -\n" +
				accountID + "  child " + placementID + "  complete_outstanding  no       not_found        -\n" +
				"position: 22\n",
		},
		{
			name: "children", args: []string{"children", "--account", carerID, "--at", "2026-02-03T12:00:00Z"},
			pattern: "GET /v1/accounts/{account_id}/children", path: "/v1/accounts/" + carerID + "/children",
			query: url.Values{"at": {"2026-02-03T12:00:00Z"}},
			answer: `{"children":[` +
				`{"child_id":"` + childID + `","permissions":["view","complete_outstanding"],"reason":"grace_period","until":"2026-02-08T17:00:00Z"},` +
				`{"child_id":"` + placementID + `","permissions":["view","record","complete_outstanding"],"reason":"placement","until":null}` +
				`],"position":"23"}`,
			extra: map[string]reply{"/v1/children/" + childID: childRecord(childID, "NCC-2026-001"),
				"/v1/children/" + placementID: childRecord(placementID, "NCC-2026-002")},
			table: "CHILD                                 REFERENCE     RELATIONSHIP  PERMISSIONS                       REASON        UNTIL\n" +
				childID + "  NCC-2026-001  foster_carer  view,complete_outstanding         grace_period  2026-02-08 17:00:00 UTC\n" +
				placementID + "  NCC-2026-002  foster_carer  view,record,complete_outstanding  placement     -\n" +
				"position: 23\n",
		},
		{
			// A grant's relationship comes from the child's record; a child
			// the role may not read shows -, with one note.
			name: "children of a network member", args: []string{"children", "--account", accountID},
			pattern: "GET /v1/accounts/{account_id}/children", path: "/v1/accounts/" + accountID + "/children",
			query: url.Values{},
			answer: `{"children":[` +
				`{"child_id":"` + childID + `","permissions":["view"],"reason":"grant","until":null},` +
				`{"child_id":"` + placementID + `","permissions":["view","record"],"reason":"grant","until":null}` +
				`],"position":"23"}`,
			extra: map[string]reply{"/v1/children/" + childID: childRecord(childID, "NCC-2026-001", grantRecord(carerID, "parent"), grantRecord(accountID, "guardian")),
				"/v1/children/" + placementID: {status: 404, body: `{"title":"Not found","status":404,"detail":"no such child","code":"not_found"}`}},
			table: "CHILD                                 REFERENCE     RELATIONSHIP  PERMISSIONS  REASON  UNTIL\n" +
				childID + "  NCC-2026-001  guardian      view         grant   -\n" +
				placementID + "  -             -             view,record  grant   -\n" +
				"position: 23\n",
		},
		{
			name: "children, lookups forbidden", args: []string{"children", "--account", accountID},
			pattern: "GET /v1/accounts/{account_id}/children", path: "/v1/accounts/" + accountID + "/children",
			query: url.Values{},
			answer: `{"children":[` +
				`{"child_id":"` + childID + `","permissions":["view"],"reason":"grant","until":null},` +
				`{"child_id":"` + placementID + `","permissions":["view","record"],"reason":"grant","until":null}` +
				`],"position":"23"}`,
			extra: map[string]reply{"/v1/children/" + childID: {status: 403,
				body: `{"title":"Forbidden","status":403,"detail":"role service may not call get_child","code":"forbidden"}`}},
			table: "CHILD                                 REFERENCE  RELATIONSHIP  PERMISSIONS  REASON  UNTIL\n" +
				childID + "  -          -             view         grant   -\n" +
				placementID + "  -          -             view,record  grant   -\n" +
				"position: 23\n",
			tableStderr: "accessctl: children's references not shown: Forbidden: role service may not call get_child (code forbidden, status 403)\n",
		},
		{
			name: "viewers", args: []string{"viewers", "--child", childID, "--min-position", "23"},
			pattern: "GET /v1/children/{child_id}/viewers", path: "/v1/children/" + childID + "/viewers",
			query: url.Values{"min_position": {"23"}},
			answer: `{"viewers":[{"account_id":"` + accountID + `","permissions":["view"],"reason":"grant"},` +
				`{"account_id":"` + carerID + `","permissions":["view","complete_outstanding"],"reason":"grace_period","until":"2026-02-08T17:00:00Z"}],"position":"23"}`,
			extra: map[string]reply{"/v1/accounts/" + accountID: accountRecord(accountID, "parent"),
				"/v1/accounts/" + carerID: accountRecord(carerID, "foster_carer"),
				"/v1/children/" + childID: childRecord(childID, "NCC-2026-001", grantRecord(accountID, "parent"))},
			table: "ACCOUNT                               KIND          RELATIONSHIP  PERMISSIONS                REASON        UNTIL\n" +
				accountID + "  parent        parent        view                       grant         -\n" +
				carerID + "  foster_carer  foster_carer  view,complete_outstanding  grace_period  2026-02-08 17:00:00 UTC\n" +
				"position: 23\n",
		},
		{
			name: "history", args: []string{"history", "--child", childID},
			pattern: "GET /v1/children/{child_id}/history", path: "/v1/children/" + childID + "/history",
			query: url.Values{},
			answer: `{"intervals":[` +
				`{"account_id":"` + carerID + `","child_id":"` + childID + `","permissions":["view","record","complete_outstanding"],"reason":"placement",` +
				`"from":"2026-01-05T09:30:00Z","to":"2026-02-01T17:00:00Z",` +
				`"opened_by_event":{"event_id":"` + eventID1 + `","type":"placement.started.v1","actor":"w-1","actor_role":"worker"},` +
				`"closed_by_event":{"event_id":"` + eventID2 + `"}},` +
				`{"account_id":"` + accountID + `","child_id":"` + childID + `","permissions":["view"],"reason":"grant","from":"2026-01-10T00:00:00Z","to":null,` +
				`"opened_by_event":{"event_id":"` + eventID2 + `","type":"access.granted.v1","actor":"w-1"},"closed_by_event":null}]}`,
			extra: map[string]reply{"/v1/accounts/" + accountID: accountRecord(accountID, "parent"),
				"/v1/accounts/" + carerID: accountRecord(carerID, "foster_carer")},
			table: "ACCOUNT                               KIND          PERMISSIONS                       REASON     FROM                     TO                       OPENED BY                             CLOSED BY\n" +
				carerID + "  foster_carer  view,record,complete_outstanding  placement  2026-01-05 09:30:00 UTC  2026-02-01 17:00:00 UTC  placement.started.v1 by w-1 (worker)  " + eventID2 + "\n" +
				accountID + "  parent        view                              grant      2026-01-10 00:00:00 UTC  -                        access.granted.v1 by w-1              -\n",
		},
		{
			name: "history of an account", args: []string{"history", "--account", carerID, "--at", "2026-01-20T00:00:00Z"},
			pattern: "GET /v1/accounts/{account_id}/history", path: "/v1/accounts/" + carerID + "/history",
			query: url.Values{"at": {"2026-01-20T00:00:00Z"}},
			answer: `{"account_id":"` + carerID + `","intervals":[` +
				`{"account_id":"` + carerID + `","child_id":"` + childID + `","permissions":["view","record","complete_outstanding"],"reason":"placement",` +
				`"from":"2026-01-05T09:30:00Z","to":null,` +
				`"opened_by_event":{"event_id":"` + eventID1 + `","type":"placement.started.v1","actor":"w-1","actor_role":"worker","reason":"emergency placement"},` +
				`"closed_by_event":null}],"position":"21"}`,
			extra: map[string]reply{"/v1/children/" + childID: childRecord(childID, "NCC-2026-001")},
			table: "CHILD                                 REFERENCE     PERMISSIONS                       REASON     FROM                     TO  OPENED BY                                                    CLOSED BY\n" +
				childID + "  NCC-2026-001  view,record,complete_outstanding  placement  2026-01-05 09:30:00 UTC  -   placement.started.v1 by w-1 (worker): \"emergency placement\"  -\n" +
				"position: 21\n",
		},
		{
			name: "history at, as of", args: []string{"history", "--child", childID, "--at", "2026-01-20T00:00:00Z", "--as-of", "17", "--min-position", "20"},
			pattern: "GET /v1/children/{child_id}/history", path: "/v1/children/" + childID + "/history",
			query:  url.Values{"at": {"2026-01-20T00:00:00Z"}, "as_of": {"17"}, "min_position": {"20"}},
			answer: `{"intervals":[],"position":"20"}`,
			table:  "ACCOUNT  KIND  PERMISSIONS  REASON  FROM  TO  OPENED BY  CLOSED BY\nposition: 20\n",
		},
		{
			name: "history known at", args: []string{"history", "--account", accountID, "--known-at", "2026-01-20T00:00:00Z"},
			pattern: "GET /v1/accounts/{account_id}/history", path: "/v1/accounts/" + accountID + "/history",
			query:  url.Values{"known_at": {"2026-01-20T00:00:00Z"}},
			answer: `{"intervals":[],"position":"20"}`,
			table:  "CHILD  REFERENCE  PERMISSIONS  REASON  FROM  TO  OPENED BY  CLOSED BY\nposition: 20\n",
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
			// To standard output, as the server sent it (export_test.go
			// writes files, against a real server).
			name: "export", args: []string{"export", "--child", childID, "--out", "-"},
			pattern: "GET /v1/children/{child_id}/export", path: "/v1/children/" + childID + "/export",
			query:  url.Values{},
			answer: `{"subject":"child","child_id":"` + childID + `","events":[],"intervals":[],"refused":[]}`,
			table:  `{"subject":"child","child_id":"` + childID + `","events":[],"intervals":[],"refused":[]}`,
			json:   `{"subject":"child","child_id":"` + childID + `","events":[],"intervals":[],"refused":[]}`,
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
			name: "view", args: []string{"view", "--account", accountID, "--child", childID, "--permission", "view", "--at", "2026-03-01T00:00:00+01:00"},
			pattern: "POST /v1/views", path: "/v1/views",
			body:   `{"views":[{"account_id":"` + accountID + `","child_id":"` + childID + `","permission":"view","viewed_at":"2026-02-28T23:00:00Z"}]}`,
			answer: `{"views":[{"view_id":"` + carerID + `","allowed":false,"reason":"no_relationship"}],"position":"22"}`,
			table:  "view_id   " + carerID + "\nallowed   no\nreason    no_relationship\nposition  22\n",
		},
		{
			name: "views of a child", args: []string{"views", "--child", childID},
			pattern: "GET /v1/children/{child_id}/views", path: "/v1/children/" + childID + "/views", query: url.Values{},
			answer: `{"views":[{"view_id":"` + carerID + `","account_id":"` + accountID + `","child_id":"` + childID + `","permission":"view",` +
				`"viewed_at":"2026-01-06T10:00:00Z","recorded_at":"2026-01-06T10:00:01Z","allowed":true,"reason":"grant","decided_at_position":"21",` +
				`"reported_by":"portal"}],"next":null,"position":"24"}`,
			table: "VIEWED                   ACCOUNT                               CHILD                                 PERMISSION  ALLOWED  REASON  VIEW\n" +
				"2026-01-06 10:00:00 UTC  " + accountID + "  " + childID + "  view        yes      grant   " + carerID + "\n" +
				"position: 24\n",
		},
		{
			name: "views of an account", args: []string{"views", "--account", accountID, "--from", "2026-01-01T00:00:00Z",
				"--to", "2026-02-01T00:00:00Z", "--limit", "10", "--after", "1767693600000000_" + carerID},
			pattern: "GET /v1/accounts/{account_id}/views", path: "/v1/accounts/" + accountID + "/views",
			query: url.Values{"from": {"2026-01-01T00:00:00Z"}, "to": {"2026-02-01T00:00:00Z"}, "limit": {"10"},
				"after": {"1767693600000000_" + carerID}},
			answer: `{"views":[],"next":null,"position":"24"}`,
			table:  "VIEWED  ACCOUNT  CHILD  PERMISSION  ALLOWED  REASON  VIEW\nposition: 24\n",
		},
		{
			name: "alerts", args: []string{"alerts", "--limit", "1"},
			pattern: "GET /v1/alerts", path: "/v1/alerts", query: url.Values{"limit": {"1"}},
			answer: `{"alerts":[{"alert_id":"` + carerID + `","kind":"view_without_access","account_id":"` + accountID + `","child_id":"` + childID + `",` +
				`"at":"2026-01-06T10:00:00Z","raised_at":"2026-01-06T10:00:01Z","detail":"d","view_id":"` + childID + `"}],"next":"1767693600000000_` + carerID + `","position":"24"}`,
			table: "AT                       KIND                 ACCOUNT                               CHILD                                 VIEW                                  RAISED\n" +
				"2026-01-06 10:00:00 UTC  view_without_access  " + accountID + "  " + childID + "  " + childID + "  2026-01-06 10:00:01 UTC\n" +
				"next: 1767693600000000_" + carerID + " (more entries: run again with --after 1767693600000000_" + carerID + ", or use --all)\n" +
				"position: 24\n",
		},
		{
			name: "policy", args: []string{"policy"},
			pattern: "GET /v1/policy", path: "/v1/policy", query: url.Values{},
			answer: `{"grace_period":604800,"invitation_ttl":1209600,"session_idle_timeout":900,"session_warning_after":600,"position":"24"}`,
			table: "grace_period           7 days\ninvitation_ttl         14 days\nsession_idle_timeout   15 minutes\n" +
				"session_warning_after  10 minutes\nposition               24\n",
		},
		{
			name: "caseload", args: []string{"caseload", "--worker", "worker-ann", "--limit", "2"},
			pattern: "GET /v1/children", path: "/v1/children", query: url.Values{"allocated_to": {"worker-ann"}, "limit": {"2"}},
			answer: `{"children":[{"child_id":"` + childID + `","reference":"NCC-0001","allocated_worker_id":"worker-ann","erased":false}],"next":null,"position":"26"}`,
			table: "CHILD                                 REFERENCE  ALLOCATED WORKER\n" +
				childID + "  NCC-0001   worker-ann\n" +
				"position: 26\n",
		},
		{
			name: "reviews", args: []string{"reviews", "--worker", "worker-ann", "--due-before", "2027-04-01T00:00:00Z"},
			pattern: "GET /v1/reviews", path: "/v1/reviews", query: url.Values{"worker_id": {"worker-ann"}, "due_before": {"2027-04-01T00:00:00Z"}},
			answer: `{"grants":[{"child_id":"` + childID + `","account_id":"` + accountID + `","relationship":"parent","review_by":"2027-03-02T09:00:00Z","expires_at":null,"worker_id":"worker-ann"}],"next":null,"position":"26"}`,
			table: "CHILD                                 ACCOUNT                               RELATIONSHIP  REVIEW BY                EXPIRES AT  WORKER\n" +
				childID + "  " + accountID + "  parent        2027-03-02 09:00:00 UTC  -           worker-ann\n" +
				"position: 26\n",
		},
		{
			name: "accounts by email", args: []string{"accounts", "--email", "jo@example.org"},
			pattern: "GET /v1/accounts", path: "/v1/accounts", query: url.Values{"email": {"jo@example.org"}},
			answer: `{"accounts":[` + accountItem(accountID, `"jo@example.org"`, "parent", "invited", "null", "null", false, false) +
				`],"next":null,"at":"2026-01-06T00:00:00Z","position":"26"}`,
			table: "ACCOUNT                               EMAIL           KIND    STATUS   INVITED                  EXPIRES                  ACTIVATED  PHONE\n" +
				accountID + "  jo@example.org  parent  invited  2026-01-01 09:00:00 UTC  2026-01-15 09:00:00 UTC  -          -\n" +
				"position: 26\n",
		},
		{
			name: "accounts by identity subject", args: []string{"accounts", "--identity-subject", "mynorfolk|8f2c", "--at", "2026-01-06T00:00:00Z"},
			pattern: "GET /v1/accounts", path: "/v1/accounts",
			query:  url.Values{"identity_subject": {"mynorfolk|8f2c"}, "at": {"2026-01-06T00:00:00Z"}},
			answer: `{"accounts":[],"next":null,"at":"2026-01-06T00:00:00Z","position":"26"}`,
			table: "ACCOUNT  EMAIL  KIND  STATUS  INVITED  EXPIRES  ACTIVATED  PHONE\n" +
				"position: 26\n",
		},
		{
			name: "accounts filtered", args: []string{"accounts", "--status", "active", "--kind", "foster_carer", "--needs-phone-enrolment", "false",
				"--phone-reset-requested", "true", "--limit", "2", "--after", accountID},
			pattern: "GET /v1/accounts", path: "/v1/accounts",
			query: url.Values{"status": {"active"}, "kind": {"foster_carer"}, "needs_phone_enrolment": {"false"},
				"phone_reset_requested": {"true"}, "limit": {"2"}, "after": {accountID}},
			answer: `{"accounts":[` + accountItem(carerID, `"carer@example.org"`, "foster_carer", "active", `"***123"`, `"2026-01-02T10:00:00Z"`, false, true) + `,` +
				accountItem(placementID, "null", "foster_carer", "active", "null", `"2026-01-03T10:00:00Z"`, true, false) +
				`],"next":"` + placementID + `","at":"2026-01-06T00:00:00Z","position":"26"}`,
			table: "ACCOUNT                               EMAIL              KIND          STATUS  INVITED                  EXPIRES                  ACTIVATED                PHONE\n" +
				carerID + "  carer@example.org  foster_carer  active  2026-01-01 09:00:00 UTC  2026-01-15 09:00:00 UTC  2026-01-02 10:00:00 UTC  ***123, reset requested\n" +
				placementID + "  [erased]           foster_carer  active  2026-01-01 09:00:00 UTC  2026-01-15 09:00:00 UTC  2026-01-03 10:00:00 UTC  needs enrolment\n" +
				"next: " + placementID + " (more entries: run again with --after " + placementID + ", or use --all)\n" +
				"position: 26\n",
		},
		{
			name: "watch", args: []string{"watch", "--after", "40", "--count", "2"},
			pattern: "GET /v1/watch", path: "/v1/watch", query: url.Values{"after": {"40"}},
			answerType: "text/event-stream",
			answer: "retry: 1000\n: watching after position 40\n\n" +
				"event: access\ndata: " + watchEvent(carerID, childID, `["view","complete_outstanding"]`, "grace_period", `"2026-02-08T17:00:00Z"`, "41") + "\n\n" +
				": heartbeat 41\n\n" +
				"id: 42\nevent: access\ndata: " + watchEvent(accountID, childID, `[]`, "revoked", "null", "42") + "\n\n",
			extra:     map[string]reply{"/v1/policy": {body: `{"grace_period":604800,"invitation_ttl":1209600,"session_idle_timeout":900,"session_warning_after":600,"position":"24"}`}},
			jsonExtra: []string{"/v1/policy"},
			table: "POSITION    AT                       ACCOUNT                               CHILD                                 PERMISSIONS                       REASON              UNTIL\n" +
				"41          2026-02-01 17:00:01 UTC  " + carerID + "  " + childID + "  view,complete_outstanding         grace_period        2026-02-08 17:00:00 UTC\n" +
				"42          2026-02-01 17:00:01 UTC  " + accountID + "  " + childID + "  -                                 revoked             -\n",
			json: "{\"account_id\":\"" + carerID + "\",\"at\":\"2026-02-01T17:00:01.5Z\",\"child_id\":\"" + childID + "\",\"permissions\":[\"view\",\"complete_outstanding\"],\"position\":\"41\",\"reason\":\"grace_period\",\"until\":\"2026-02-08T17:00:00Z\"}\n" +
				"{\"account_id\":\"" + accountID + "\",\"at\":\"2026-02-01T17:00:01.5Z\",\"child_id\":\"" + childID + "\",\"permissions\":[],\"position\":\"42\",\"reason\":\"revoked\",\"until\":null}\n",
		},
	}
}

func accountItem(id, email, kind, status, hint, activated string, needsPhone, resetRequested bool) string {
	return `{"account_id":"` + id + `","email":` + email + `,"kind":"` + kind + `","status":"` + status + `",` +
		`"needs_phone_enrolment":` + jsonBool(needsPhone) + `,"phone_reset_requested":` + jsonBool(resetRequested) + `,"phone_hint":` + hint + `,` +
		`"invited_at":"2026-01-01T09:00:00Z","expires_at":"2026-01-15T09:00:00Z","activated_at":` + activated + `,"closed_at":null,` +
		`"erased":` + jsonBool(email == "null") + `,"at":"2026-01-06T00:00:00Z","position":"26"}`
}

func watchEvent(account, child, permissions, reason, until, position string) string {
	return `{"account_id":"` + account + `","child_id":"` + child + `","permissions":` + permissions + `,"reason":"` + reason +
		`","until":` + until + `,"at":"2026-02-01T17:00:01.5Z","position":"` + position + `"}`
}

func jsonBool(b bool) string {
	if b {
		return "true"
	}
	return "false"
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
				f := newFakeServer(t, testToken, func(r seenRequest) reply {
					if r.Pattern == tc.pattern && r.Path == tc.path {
						return reply{body: tc.answer, contentType: tc.answerType}
					}
					if rep, ok := tc.extra[r.Path]; ok {
						return rep
					}
					return reply{status: 404, body: `{"title":"Not found","status":404,"detail":"not in the case","code":"not_found"}`}
				})
				if tc.stdin != "" {
					was := stdin
					stdin = strings.NewReader(tc.stdin)
					t.Cleanup(func() { stdin = was })
				}
				res := runCLI(t, envFor(f), append(clone(tc.args), "--output", format)...)
				require.Empty(t, f.refusals(), "the fake server refused a request")
				require.Equal(t, tc.exit, res.code, "stderr: %s", res.stderr)
				wantStderr := tc.stderr
				if format == outputTable {
					wantStderr += tc.tableStderr
				}
				require.Equal(t, wantStderr, res.stderr)

				var main []seenRequest
				var others []string
				for _, req := range f.requests() {
					require.Equal(t, "Bearer "+testToken, req.Authorization)
					if req.Pattern == tc.pattern && req.Path == tc.path {
						main = append(main, req)
					} else {
						others = append(others, req.Path)
					}
				}
				require.Len(t, main, 1)
				wantOthers := tc.jsonExtra
				if format == outputTable {
					wantOthers = slices.Collect(maps.Keys(tc.extra))
				}
				require.ElementsMatch(t, wantOthers, others, "the requests besides the verb's own")
				req := main[0]
				isCommand := slices.ContainsFunc(commandRoutes, func(r apiRoute) bool { return r.pattern == tc.pattern })
				switch {
				case tc.body != "" && isCommand:
					require.JSONEq(t, tc.body, req.RawBody)
					if tc.pattern == "POST /v1/views" {
						require.Empty(t, req.IdempotencyKey, "recording views is a query with a body, not a command (R20)")
					} else {
						_, err := uuid.Parse(req.IdempotencyKey)
						require.NoError(t, err, "a command carries a generated Idempotency-Key")
					}
				case tc.body != "": // a query with a body
					require.JSONEq(t, tc.body, req.RawBody)
					require.Empty(t, req.Query)
					require.Empty(t, req.IdempotencyKey)
				default:
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
