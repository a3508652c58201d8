package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
)

// TestRule_R22_TheEventLogHoldsPersonalDataSealed: an email, an identity
// subject, a child's reference and a worker's reason go into the event
// store sealed (the events table holds none of them in plain text), while
// every answer shows them as they were given (the audit trail's data and
// reasons).
func TestRule_R22_TheEventLogHoldsPersonalDataSealed(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		reference := "NCC-SEALED-" + strings.ToUpper(strings.ReplaceAll(t.Name(), "/", "-"))
		m := w.cmd(w.worker, "POST", "/v1/children", map[string]string{"reference": reference}, http.StatusCreated)
		child := m["child_id"].(string)
		carer := w.inviteEmail("sealed.carer."+strings.ToLower(strings.ReplaceAll(t.Name(), "/", "."))+"@example.org", string(domain.KindFosterCarer))
		require.NotEqual(t, domain.AccountIDForEmail(carer.email).String(), carer.id,
			"the account id is keyed: it cannot be computed from the email")
		w.activate(carer)
		pl := w.place(child, carer.id, now().Add(-time.Hour))
		const reason = "moved to her grandmother's in Leeds"
		w.endPlacement(w.worker, child, pl, now(), reason)

		var data strings.Builder
		for _, e := range w.audit("account_id=" + carer.id) {
			data.Write(e.Data)
		}
		require.Contains(t, data.String(), carer.email, "the audit trail answers the email opened")
		require.Contains(t, data.String(), carer.subject)
		var reasons []string
		for _, e := range w.audit("child_id=" + child) {
			reasons = append(reasons, text(e.Reason))
		}
		require.Contains(t, reasons, reason, "the audit trail answers the reason opened")
		require.Regexp(t, `(?m)^personal data in plain text: 0 of [1-9][0-9]* events$`, s.status())

		if s.flag("--event-store") != "" && strings.HasPrefix(s.flag("--event-store"), "esdb") {
			return // the events are in EventStoreDB: the same layer sealed them
		}
		rows, err := s.openDB().QueryContext(context.Background(), "SELECT data, reason FROM events")
		require.NoError(t, err)
		defer rows.Close()
		var stored strings.Builder
		for rows.Next() {
			var data []byte
			var reason string
			require.NoError(t, rows.Scan(&data, &reason))
			stored.Write(data)
			stored.WriteString(reason)
		}
		require.NoError(t, rows.Err())
		require.NotEmpty(t, stored.String())
		for _, v := range []string{reference, carer.email, carer.subject, reason} {
			require.NotContains(t, stored.String(), v, "the events table holds %q in plain text", v)
		}
		require.Contains(t, stored.String(), domain.SealedPrefix)
	})
}

// TestRule_R22_ErasureLeavesNoPersonalValueAndChangesNoDecision: the dpo
// erases a carer's account and a child. Afterwards no plain personal
// value of theirs is in any answer, in the event store or in the read
// store (the raw SQLite files; every PostgreSQL table); checks and
// history answer as before; the erasures are in the audit trail with the
// dpo's reason; accessd ledger verify passes.
func TestRule_R22_ErasureLeavesNoPersonalValueAndChangesNoDecision(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		tag := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
		reference := "NCC-ERASED-" + tag
		m := w.cmd(w.worker, "POST", "/v1/children", map[string]string{"reference": reference}, http.StatusCreated)
		child := m["child_id"].(string)
		carer := w.inviteEmail("erased."+tag+"@example.org", string(domain.KindFosterCarer))
		w.activate(carer)
		start := now().Add(-2 * time.Hour)
		pl := w.place(child, carer.id, start)
		const reason = "moved to her aunt's in Bradford after a review"
		ended := w.endPlacement(w.worker, child, pl, now().Add(-time.Hour), reason)
		personal := []string{reference, carer.email, carer.subject, reason}

		type decisions struct {
			checks  []e2eCheck
			child   []e2eInterval
			account []e2eInterval
		}
		times := []time.Time{start.Add(time.Minute), now(), ended.Add(time.Second)}
		decide := func() decisions {
			var d decisions
			for _, at := range times {
				c := w.check(carer.id, child, "view", at)
				c.Position = ""
				d.checks = append(d.checks, c)
			}
			d.child = w.history("/v1/children/"+child+"/history", "")
			d.account = w.history("/v1/accounts/"+carer.id+"/history", "")
			return d
		}
		// reasons takes the reasons out of the history's event refs, for
		// the comparison (erasure erases them), and returns them.
		reasons := func(d *decisions) []*string {
			var out []*string
			for _, ivs := range [][]e2eInterval{d.child, d.account} {
				for i := range ivs {
					for _, ref := range []**api.EventRef{&ivs[i].OpenedByEvent, &ivs[i].ClosedByEvent} {
						if *ref != nil {
							c := **ref
							out, c.Reason = append(out, c.Reason), nil
							*ref = &c
						}
					}
				}
			}
			return out
		}
		before := decide()
		beforeReasons := reasons(&before)
		require.NotEmpty(t, beforeReasons)
		for _, r := range beforeReasons {
			require.NotNil(t, r, "the history shows the reasons")
		}

		dpo := s.as(domain.RoleDPO, "dpo-"+tag)
		w.cmd(dpo, "POST", "/v1/accounts/"+carer.id+"/erasure", map[string]string{"reason": "Art. 17 request DPO-117"}, http.StatusOK)
		first := w.cmd(dpo, "POST", "/v1/children/"+child+"/erasure", map[string]string{"reason": "retention ended"}, http.StatusOK)
		again := w.cmd(dpo, "POST", "/v1/children/"+child+"/erasure", map[string]string{"reason": "twice"}, http.StatusOK)
		require.Equal(t, first["position"], again["position"], "erasing twice records nothing new")

		after := decide()
		for _, r := range reasons(&after) {
			require.Nil(t, r, "the reasons of the erased subjects' events read as erased")
		}
		require.Equal(t, before, after, "erasure changes no decision and no history")

		var answers strings.Builder
		entries := append(w.audit("child_id="+child), w.audit("account_id="+carer.id)...)
		var erasures []string
		for _, e := range entries {
			b, err := json.Marshal(e)
			require.NoError(t, err)
			answers.Write(b)
			if strings.HasSuffix(e.Type, ".erased.v1") {
				erasures = append(erasures, e.Type+": "+text(e.Reason))
			}
		}
		require.ElementsMatch(t, []string{"account.erased.v1: Art. 17 request DPO-117", "child.erased.v1: retention ended"}, erasures)
		require.Contains(t, answers.String(), domain.ErasedText)
		rec := w.get(w.worker, "/v1/children/"+child)
		answers.WriteString(rec.String())
		require.Contains(t, rec.String(), `"erased":true`)
		require.Contains(t, rec.String(), `"reference":null`)
		acct := w.get(w.auditor, "/v1/accounts/"+carer.id)
		answers.WriteString(acct.String())
		require.Contains(t, acct.String(), `"erased":true`)
		// The subject access exports, JSON and CSV (R21), show them erased.
		for _, path := range []string{"/v1/accounts/" + carer.id + "/export", "/v1/children/" + child + "/export"} {
			x := w.get(w.auditor, path)
			answers.Write(x.body)
			require.Contains(t, string(x.body), `"erased":true`)
			for _, f := range zipFiles(t, w.get(dpo, path+"?format=csv").body) {
				answers.Write(f)
			}
		}
		list := w.get(w.auditor, "/v1/accounts?email="+url.QueryEscape(carer.email))
		require.Contains(t, list.String(), `"accounts":[]`, "an erased email finds nothing")
		for _, v := range personal {
			require.NotContains(t, answers.String(), v)
		}

		s.stop()
		code, out := ledgerVerify(t, s)
		require.Equal(t, exitOK, code, out)
		require.Contains(t, out, "OK")

		if s.isSQLite() {
			raw := string(s.dbFiles())
			for _, v := range personal {
				require.NotContains(t, raw, v, "the SQLite files hold %q", v)
			}
			return
		}
		db := s.openDB()
		ctx := context.Background()
		var tables []string
		rows, err := db.QueryContext(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")
		require.NoError(t, err)
		for rows.Next() {
			var name string
			require.NoError(t, rows.Scan(&name))
			tables = append(tables, name)
		}
		require.NoError(t, rows.Err())
		require.NoError(t, rows.Close())
		require.NotEmpty(t, tables)
		for _, table := range tables {
			var dump string
			require.NoError(t, db.QueryRowContext(ctx, `SELECT coalesce(string_agg(t::text, ' '), '') FROM "`+table+`" t`).Scan(&dump))
			for _, v := range personal {
				require.NotContains(t, dump, v, "table %s holds %q", table, v)
			}
		}
	})
}
