package main

// End-to-end tests of the audit trail, the access history and the
// published policy (R14 to R16).

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
)

func TestRule_R14_EveryChangeIsAnAuditedEventAndTheTrailVerifies(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		// Every command of the API, with the reasons the API takes.
		reasons := map[string]string{}
		child := w.registerChild()
		carer := w.account(string(domain.KindFosterCarer))
		member := w.account(string(domain.KindNetworkMember))
		pl := w.place(child, carer.id, now().Add(-day))
		reasons[domain.TypeAccessGranted] = "grandmother, agreed at review"
		w.grant(w.worker, child, member.id, "guardian", []string{"view"}, reasons[domain.TypeAccessGranted])
		reasons[domain.TypeAccessRevoked] = "contact suspended"
		w.cmd(w.worker, "POST", "/v1/children/"+child+"/grants/"+member.id+"/revoke", map[string]string{"reason": reasons[domain.TypeAccessRevoked]}, 200)
		reasons[domain.TypePlacementEnded] = "planned move"
		w.endPlacement(w.worker, child, pl, now(), reasons[domain.TypePlacementEnded])
		reasons[domain.TypeGraceEndedEarly] = "safeguarding"
		w.cmd(w.worker, "POST", "/v1/children/"+child+"/placements/"+pl+"/end-grace", map[string]string{"reason": reasons[domain.TypeGraceEndedEarly]}, 200)
		w.cmd(w.service, "PUT", "/v1/accounts/"+carer.id+"/phone", map[string]string{"phone": "+44 7700 900123"}, 200)
		reasons[domain.TypePhoneResetRequested] = "lost phone"
		w.cmd(w.worker, "POST", "/v1/accounts/"+carer.id+"/phone-reset-requests", map[string]string{"reason": reasons[domain.TypePhoneResetRequested]}, 200)
		w.cmd(w.portals, "POST", "/v1/accounts/"+carer.id+"/phone/clear", map[string]string{}, 200)
		w.cmd(w.manager, "POST", "/v1/children/"+child+"/allocation", map[string]string{"worker_id": "worker-zed"}, 200)
		reasons[domain.TypeAccountClosed] = "left fostering"
		w.cmd(w.portals, "POST", "/v1/accounts/"+member.id+"/close", map[string]string{"reason": reasons[domain.TypeAccountClosed]}, 200)
		ended := now().Add(-30 * day)
		child2 := w.registerChild()
		pl2 := w.place(child2, carer.id, now().Add(-60*day))
		w.endPlacement(w.worker, child2, pl2, ended, reasons[domain.TypePlacementEnded]) // and its expiry, at once

		entries := w.audit("")
		require.EqualValues(t, s.head(), len(entries), "one entry per event")
		types := map[string]bool{}
		for i, e := range entries {
			types[e.Type] = true
			require.EqualValues(t, i+1, e.Seq)
			require.NotEmpty(t, e.EventID, "%+v", e)
			require.NotEmpty(t, e.Actor, "%+v", e)
			require.NotEmpty(t, e.ActorRole, "%+v", e)
			require.NotNil(t, e.Reason, "every entry has a reason field: %+v", e)
			require.False(t, e.EffectiveAt.IsZero(), "%+v", e)
			require.False(t, e.RecordedAt.IsZero(), "%+v", e)
			require.Len(t, e.Hash, 64)
			if i > 0 {
				require.Equal(t, entries[i-1].Hash, e.PrevHash, "the chain links entry %d", e.Seq)
				require.False(t, e.RecordedAt.Before(entries[i-1].RecordedAt), "recorded in order")
			}
			if want, ok := reasons[e.Type]; ok {
				require.Equal(t, want, text(e.Reason), e.Type)
			}
		}
		for _, typ := range []string{domain.TypeChildRegistered, domain.TypeWorkerAllocated, domain.TypePlacementStarted,
			domain.TypePlacementEnded, domain.TypeGraceEndedEarly, domain.TypeGraceExpired, domain.TypeAccessGranted,
			domain.TypeAccessRevoked, domain.TypeAccountInvited, domain.TypeAccountActivated, domain.TypeIdentityLinked,
			domain.TypeAccountClosed, domain.TypePhoneResetRequested, domain.TypePhoneCleared, domain.TypePhoneEnrolled} {
			require.True(t, types[typ], "no %s in the trail", typ)
		}
		exp := auditOf(entries, domain.TypeGraceExpired)[0]
		require.True(t, ended.Add(domain.DefaultPolicy.GracePeriod).Equal(exp.EffectiveAt), "effective: the deadline")
		require.True(t, exp.RecordedAt.After(exp.EffectiveAt), "recorded: now")
		require.Equal(t, w.worker.sub, exp.Actor, "written by the end's command")

		var ok struct {
			OK          bool            `json:"ok"`
			Entries     int64           `json:"entries"`
			HeadHash    string          `json:"head_hash"`
			FirstBroken json.RawMessage `json:"first_broken"`
		}
		w.get(w.auditor, "/v1/audit/verify").decode(&ok)
		require.True(t, ok.OK)
		require.EqualValues(t, len(entries), ok.Entries)
		require.Equal(t, entries[len(entries)-1].Hash, ok.HeadHash)
		require.Equal(t, "null", string(ok.FirstBroken))

		// Edit one entry behind the server's back: verify names it.
		db := s.openDB()
		table := auditTable(t, s, db)
		const broken = 5
		res, err := db.ExecContext(context.Background(), "UPDATE "+table+" SET reason = 'nothing to see here' WHERE seq = ?", broken)
		require.NoError(t, err)
		n, err := res.RowsAffected()
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
		var bad struct {
			OK          bool  `json:"ok"`
			Entries     int64 `json:"entries"`
			FirstBroken *struct {
				Seq    int64  `json:"seq"`
				Reason string `json:"reason"`
			} `json:"first_broken"`
		}
		w.get(w.auditor, "/v1/audit/verify").decode(&bad)
		require.False(t, bad.OK)
		require.NotNil(t, bad.FirstBroken)
		require.EqualValues(t, broken, bad.FirstBroken.Seq)
		require.NotEmpty(t, bad.FirstBroken.Reason)
		require.EqualValues(t, broken-1, bad.Entries)

		// So does the operator's command, on the same store.
		args := append([]string{"audit", "verify", "--data-dir", s.dir}, s.storeFlags()...)
		code, out, errOut := runCmd(t, context.Background(), noEnv, args...)
		require.Equal(t, exitError, code, "%s%s", out, errOut)
		require.Contains(t, out, fmt.Sprintf("BROKEN at entry %d", broken))
	})
}

// auditTable finds the physical table of the audit trail: its name carries
// the read model's generation (audit_entries_g<N>, read through the view
// audit_entries).
func auditTable(t *testing.T, s *e2eServer, db *sqldb.DB) string {
	t.Helper()
	q := "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'audit_entries_g%'"
	if !s.isSQLite() {
		q = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name LIKE 'audit_entries_g%'"
	}
	rows, err := db.QueryContext(context.Background(), q)
	require.NoError(t, err)
	defer rows.Close()
	re := regexp.MustCompile(`^audit_entries_g(\d+)$`)
	best, gen := "", -1
	for rows.Next() {
		var name string
		require.NoError(t, rows.Scan(&name))
		if m := re.FindStringSubmatch(name); m != nil {
			if g, _ := strconv.Atoi(m[1]); g > gen {
				best, gen = name, g
			}
		}
	}
	require.NoError(t, rows.Err())
	require.NotEmpty(t, best, "no audit_entries_g<N> table")
	return best
}

func TestRule_R15_HistoryNamesTheEventsAndActorsOfEachAccess(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		child := w.registerChild()
		carer := w.account(string(domain.KindFosterCarer))
		member := w.account(string(domain.KindNetworkMember))
		pl := w.place(child, carer.id, now().Add(-10*day))
		w.grant(w.worker, child, member.id, "guardian", []string{"view"}, "grandmother")
		ben := s.as(domain.RoleWorker, "worker-ben-"+uuid.NewString()[:6])
		w.cmd(w.manager, "POST", "/v1/children/"+child+"/allocation", map[string]string{"worker_id": ben.sub}, 200)
		w.cmd(ben, "POST", "/v1/children/"+child+"/grants/"+member.id+"/revoke", map[string]string{"reason": "contact stopped"}, 200)
		w.endPlacement(ben, child, pl, now(), "moved")
		w.cmd(ben, "POST", "/v1/children/"+child+"/placements/"+pl+"/end-grace", map[string]string{"reason": "safeguarding"}, 200)

		entries := w.audit("child_id=" + child)
		granted := auditOf(entries, domain.TypeAccessGranted)[0]
		revoked := auditOf(entries, domain.TypeAccessRevoked)[0]

		all := w.history("/v1/children/"+child+"/history", "")
		m := intervalsOf(all, member.id)
		require.Len(t, m, 1, "%+v", all)
		require.Equal(t, "grant", text(m[0].Reason))
		require.Equal(t, []string{"view"}, strs(m[0].Permissions))
		require.True(t, granted.EffectiveAt.Equal(m[0].From))
		require.NotNil(t, m[0].To)
		require.True(t, revoked.EffectiveAt.Equal(*m[0].To))
		require.Equal(t, domain.TypeAccessGranted, m[0].OpenedByEvent.Type)
		require.Equal(t, text(granted.EventID), text(m[0].OpenedByEvent.EventID))
		require.Equal(t, w.worker.sub, m[0].OpenedByEvent.Actor)
		require.Equal(t, "worker", m[0].OpenedByEvent.ActorRole)
		require.Equal(t, domain.TypeAccessRevoked, m[0].ClosedByEvent.Type)
		require.Equal(t, ben.sub, m[0].ClosedByEvent.Actor, "the new worker revoked")

		c := intervalsOf(all, carer.id)
		require.Len(t, c, 2, "placement, then grace: %+v", c)
		sort.Slice(c, func(i, j int) bool { return c[i].From.Before(c[j].From) })
		require.Equal(t, "placement", text(c[0].Reason))
		require.Equal(t, allPerms, strs(c[0].Permissions))
		// The access begins when the account became active, after the
		// backdated start; but the placement, recorded after the
		// activation, is what opened it.
		require.Equal(t, domain.TypePlacementStarted, c[0].OpenedByEvent.Type)
		require.Equal(t, w.worker.sub, c[0].OpenedByEvent.Actor)
		require.Equal(t, domain.TypePlacementEnded, c[0].ClosedByEvent.Type)
		require.Equal(t, ben.sub, c[0].ClosedByEvent.Actor)
		require.Equal(t, "grace_period", text(c[1].Reason))
		require.Equal(t, []string{"view", "complete_outstanding"}, strs(c[1].Permissions))
		require.Equal(t, domain.TypePlacementEnded, c[1].OpenedByEvent.Type)
		require.Equal(t, domain.TypeGraceEndedEarly, c[1].ClosedByEvent.Type)
		require.Equal(t, ben.sub, c[1].ClosedByEvent.Actor)
		require.True(t, c[0].To.Equal(c[1].From))

		// Who could see the child at a time T in the past, and why.
		mid := granted.EffectiveAt.Add(revoked.EffectiveAt.Sub(granted.EffectiveAt) / 2)
		atMid := w.history("/v1/children/"+child+"/history", "at="+rfc(mid))
		require.Len(t, atMid, 2, "%+v", atMid)
		require.Len(t, intervalsOf(atMid, member.id), 1)
		require.Len(t, intervalsOf(atMid, carer.id), 1)
		require.Empty(t, w.history("/v1/children/"+child+"/history", "at="+rfc(now())), "nobody now")
		// The same from the account's side.
		acct := w.history("/v1/accounts/"+member.id+"/history", "")
		require.Len(t, acct, 1)
		require.Equal(t, child, text(acct[0].ChildID))
		require.Equal(t, text(m[0].OpenedByEvent.EventID), text(acct[0].OpenedByEvent.EventID))
		// And the check agrees at T.
		requireAccess(t, w.check(member.id, child, "view", mid), true, "grant")
	})
}

func TestRule_R16_PolicyIsPublished(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		type policy = api.Policy
		defaults := policy{GracePeriod: 7 * 24 * 3600, InvitationTTL: 14 * 24 * 3600, SessionIdleTimeout: 15 * 60, SessionWarningAfter: 10 * 60,
			ClosedAccountRetention: 2192 * 24 * 3600, ReviewPeriod: 365 * 24 * 3600}
		for _, tc := range []struct {
			name  string
			flags []string
			want  policy
		}{
			{"defaults", nil, defaults},
			{"flags", []string{"--grace-period", "90m", "--invitation-ttl", "48h", "--session-idle-timeout", "20m", "--session-warning-after", "12m",
				"--closed-account-retention", "8760h", "--review-period", "4380h"},
				policy{GracePeriod: 90 * 60, InvitationTTL: 48 * 3600, SessionIdleTimeout: 20 * 60, SessionWarningAfter: 12 * 60,
					ClosedAccountRetention: 365 * 24 * 3600, ReviewPeriod: 4380 * 3600}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := startServer(t, append(slices.Clone(store), tc.flags...)...)
				want := tc.want
				if len(store) > 0 && tc.flags != nil {
					// A shared store: the first server recorded the
					// defaults, which hold (R25: flags give only the
					// initial policy).
					want = defaults
				}
				for _, role := range []domain.Role{domain.RoleService, domain.RoleWorker, domain.RoleManager, domain.RolePortalsTeam, domain.RoleAuditor} {
					var got policy
					r := s.as(role, "anyone").do("GET", "/v1/policy", nil)
					require.Equal(t, 200, r.status, r.String())
					r.decode(&got)
					require.NotEmpty(t, got.Position)
					require.NotNil(t, got.SetByRole)
					require.Equal(t, "system", *got.SetByRole, "the initial policy, recorded by the engine")
					got.Position, got.SetAt, got.SetBy, got.SetByRole, got.Reason, got.SetPosition, got.EventID = "", nil, nil, nil, nil, nil, nil
					require.Equal(t, want, got, role)
				}
				s.anonymous().do("GET", "/v1/policy", nil).problem(401, "unauthenticated")
			})
		}
		// A warning at or after the idle timeout is refused at start.
		code, _, errOut := runCmd(t, context.Background(), noEnv, append([]string{"serve", "--data-dir", privateDir(t), "--addr", "127.0.0.1:0",
			"--session-idle-timeout", "10m", "--session-warning-after", "10m"}, store...)...)
		require.Equal(t, exitUsage, code, errOut)
	})
}
