package httpapi

import (
	"archive/zip"
	"bytes"
	"encoding/csv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain"
)

// readZip opens a CSV export: every file is a CSV with a header row; it
// returns each file's records, the header first.
func readZip(t *testing.T, body []byte) map[string][][]string {
	t.Helper()
	z, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	require.NoError(t, err)
	out := map[string][][]string{}
	for _, f := range z.File {
		require.True(t, strings.HasSuffix(f.Name, ".csv"), f.Name)
		rc, err := f.Open()
		require.NoError(t, err)
		recs, err := csv.NewReader(rc).ReadAll()
		require.NoError(t, rc.Close())
		require.NoError(t, err, f.Name)
		require.NotEmpty(t, recs, "%s has a header row", f.Name)
		for _, h := range recs[0] {
			require.Regexp(t, `^[a-z_]+$`, h, "%s: header", f.Name)
		}
		out[f.Name] = recs
	}
	return out
}

// column returns the cells of column name of a CSV file's rows.
func column(t *testing.T, recs [][]string, name string) []string {
	t.Helper()
	i := -1
	for j, h := range recs[0] {
		if h == name {
			i = j
		}
	}
	require.GreaterOrEqual(t, i, 0, "no column %s in %v", name, recs[0])
	var out []string
	for _, r := range recs[1:] {
		out = append(out, r[i])
	}
	return out
}

// TestRule_R21_SubjectAccessExport: the export of an account and of a child
// holds their lifecycle, every event about them with actors and reasons,
// every interval their history holds, their placements and grants and the
// refusals that named them, as JSON and as a zip of CSV files; after an
// erasure it holds no personal value of theirs.
func TestRule_R21_SubjectAccessExport(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b.URL(t))
			w := e.buildWorld()
			worker := req{role: domain.RoleWorker, sub: w.worker}
			with := func(r req, method, path, body string) req {
				r.method, r.path, r.body = method, path, body
				return r
			}
			// A refusal about the member (a second grant by a worker who
			// is not the child's... the manager may not grant), and a
			// revoke whose reason a spreadsheet would read as a formula.
			e.do(with(req{role: domain.RoleAuditor, sub: "auditor-cy"}, "POST", "/v1/children/"+w.child+"/grants",
				`{"account_id":"`+w.member+`","relationship":"parent","permissions":["view"],"reason":"x"}`)).problem(t, 403, codeForbidden)
			last := e.ok(with(worker, "POST", "/v1/children/"+w.child+"/grants/"+w.member+"/revoke", `{"reason":"=HYPERLINK(\"http://x\")"}`), 200)
			token := last["position"].(string)
			auditor := func(path string) req {
				return req{method: "GET", path: path, role: domain.RoleAuditor, sub: "auditor-cy"}
			}

			// The member's export, as JSON.
			x := e.ok(auditor("/v1/accounts/"+w.member+"/export?min_position="+token), 200)
			require.Equal(t, "account", x["subject"])
			acct := x["account"].(map[string]any)
			require.Equal(t, w.memberEmail, acct["email"])
			require.Equal(t, w.memberSubject, acct["identity_subject"])
			require.Equal(t, false, acct["erased"])
			types := map[string]int{}
			for _, ev := range x["events"].([]any) {
				types[ev.(map[string]any)["type"].(string)]++
			}
			require.Equal(t, map[string]int{"email.claimed.v1": 1, "account.invited.v1": 1, "account.activated.v1": 1, "identity.linked.v1": 1,
				"grant.made.v1": 1, "grant.revoked.v1": 1}, types)
			// Every interval the history holds, with the reasons behind it.
			h := e.ok(auditor("/v1/accounts/"+w.member+"/history?min_position="+token), 200)
			require.NotEmpty(t, h["intervals"])
			require.Len(t, x["intervals"], len(h["intervals"].([]any)))
			for i, iv := range h["intervals"].([]any) {
				xi := x["intervals"].([]any)[i].(map[string]any)
				for k, v := range iv.(map[string]any) {
					require.Equal(t, v, xi[k], "interval %d, %s", i, k)
				}
			}
			grantIv := x["intervals"].([]any)[0].(map[string]any)
			require.Equal(t, "grant", grantIv["reason"])
			require.Equal(t, "grandmother, agreed at review", grantIv["opened_by_reason"])
			require.Equal(t, `=HYPERLINK("http://x")`, grantIv["closed_by_reason"])
			require.Len(t, x["grants"], 1)
			g := x["grants"].([]any)[0].(map[string]any)
			require.Equal(t, w.child, g["child_id"])
			require.Equal(t, "revoked", g["status"])
			require.Empty(t, x["placements"])
			require.Len(t, x["refused"], 1)
			require.Equal(t, "auditor-cy", x["refused"].([]any)[0].(map[string]any)["actor_id"])

			// The carer's: the placement.
			cx := e.ok(auditor("/v1/accounts/"+w.carer+"/export"), 200)
			require.Len(t, cx["placements"], 1)
			require.Equal(t, w.placement, cx["placements"].([]any)[0].(map[string]any)["placement_id"])
			require.Empty(t, cx["refused"])

			// The child's, by the dpo: its record, events and history; the
			// carer's and the member's personal data are not in it.
			kx := e.do(req{method: "GET", path: "/v1/children/" + w.child + "/export", role: domain.RoleDPO, sub: "dpo-1"})
			require.Equal(t, 200, kx.status, string(kx.body))
			require.Equal(t, `attachment; filename="child-`+w.child+`-export.json"`, kx.header.Get("Content-Disposition"))
			for _, personal := range []string{w.memberEmail, w.carerEmail, w.memberSubject, w.carerSubject} {
				require.NotContains(t, string(kx.body), personal)
			}
			k := kx.json(t)
			require.Equal(t, "NCC-0001", k["child"].(map[string]any)["reference"])
			ch := e.ok(auditor("/v1/children/"+w.child+"/history?min_position="+token), 200)
			require.Len(t, k["intervals"], len(ch["intervals"].([]any)))
			require.Len(t, k["refused"], 1)

			// As CSV: a zip that encoding/csv reads, a header row per
			// file, a row per element of the JSON document.
			zr := e.do(auditor("/v1/accounts/" + w.member + "/export?format=csv"))
			require.Equal(t, 200, zr.status, string(zr.body))
			require.Equal(t, "application/zip", zr.header.Get("Content-Type"))
			require.Equal(t, `attachment; filename="account-`+w.member+`-export.zip"`, zr.header.Get("Content-Disposition"))
			files := readZip(t, zr.body)
			require.ElementsMatch(t, []string{"account.csv", "events.csv", "intervals.csv", "placements.csv", "grants.csv", "refused.csv",
				"views.csv", "alerts.csv"},
				keys(files))
			require.Equal(t, []string{w.memberEmail}, column(t, files["account.csv"], "email"))
			require.Len(t, files["events.csv"], 1+len(x["events"].([]any)))
			require.Len(t, files["intervals.csv"], 1+len(x["intervals"].([]any)))
			require.Len(t, files["grants.csv"], 2)
			require.Len(t, files["placements.csv"], 1, "the header only")
			require.Len(t, files["refused.csv"], 2)
			require.Equal(t, []string{"grandmother, agreed at review"}, column(t, files["intervals.csv"], "opened_by_reason"))
			require.Equal(t, []string{`'=HYPERLINK("http://x")`}, column(t, files["intervals.csv"], "closed_by_reason"),
				"a formula is written as text")
			kfiles := readZip(t, e.do(auditor("/v1/children/"+w.child+"/export?format=csv")).body)
			require.Equal(t, []string{"NCC-0001"}, column(t, kfiles["child.csv"], "reference"))
			require.Len(t, kfiles["placements.csv"], 2)

			// Who may ask, and bad requests.
			e.do(with(worker, "GET", "/v1/accounts/"+w.member+"/export", "")).problem(t, 403, codeForbidden)
			e.do(req{method: "GET", path: "/v1/children/" + w.child + "/export", role: domain.RoleService}).problem(t, 403, codeForbidden)
			e.do(auditor("/v1/accounts/"+w.member+"/export?format=xml")).problem(t, 400, codeInvalid)
			e.do(auditor("/v1/accounts/"+w.member+"/export?formats=csv")).problem(t, 400, codeInvalid)
			e.do(auditor("/v1/accounts/not-a-uuid/export")).problem(t, 400, codeInvalid)
			e.do(auditor("/v1/accounts/0b0b0b0b-0000-4000-8000-000000000000/export")).problem(t, 404, codeNotFound)
			e.do(auditor("/v1/children/0b0b0b0b-0000-4000-8000-000000000000/export?format=csv")).problem(t, 404, codeNotFound)

			// After erasure (R22): the fields are null; ids, times and
			// intervals are all still there. (This log has no personal-data
			// layer: that the events' values read as erased too, the
			// end-to-end test TestRule_R22_ErasureLeavesNoPersonalValueAndChangesNoDecision
			// shows.)
			e.ok(with(req{role: domain.RoleDPO, sub: "dpo-1"}, "POST", "/v1/accounts/"+w.member+"/erasure", `{"reason":"Art. 17 DPO-1"}`), 200)
			er := e.ok(with(req{role: domain.RoleDPO, sub: "dpo-1"}, "POST", "/v1/children/"+w.child+"/erasure", `{"reason":"retention ended"}`), 200)
			xe := e.ok(auditor("/v1/accounts/"+w.member+"/export?min_position="+er["position"].(string)), 200)
			acct = xe["account"].(map[string]any)
			require.Equal(t, true, acct["erased"])
			require.Nil(t, acct["email"])
			require.Nil(t, acct["identity_subject"])
			require.NotNil(t, acct["erased_at"])
			require.Equal(t, x["intervals"], xe["intervals"])
			require.Equal(t, len(x["events"].([]any))+1, len(xe["events"].([]any)), "and the erasure")
			kz := readZip(t, e.do(auditor("/v1/children/"+w.child+"/export?format=csv")).body)
			require.Equal(t, []string{""}, column(t, kz["child.csv"], "reference"))
			require.Equal(t, []string{"true"}, column(t, kz["child.csv"], "erased"))
			e.contract.check(t)
		})
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
