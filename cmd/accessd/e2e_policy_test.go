package main

import (
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/projections/ledger"
)

// policyWarning is what serve logs when its flags differ from the recorded
// policy.
const policyWarning = "flags give only the initial policy"

// TestRule_R25_ThePolicyIsRecordedAndEveryReplicaAppliesIt: the first
// server records its flags' policy; a second replica on the same store
// with other flags keeps the recorded one (and says so); a manager shortens
// the grace period on one replica and a placement ended on the other gets
// the new grace period, while one ended before the change keeps its
// grace_until; the history names each grace period and the policy event
// that set it, the audit trail the policy events; a restart with other
// flags keeps the recorded policy. On SQLite, one server plays both
// replicas.
func TestRule_R25_ThePolicyIsRecordedAndEveryReplicaAppliesIt(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		secretDir := privateDir(t)
		secret, err := auth.LoadOrCreateSecret(secretDir)
		require.NoError(t, err)
		shared := append(slices.Clone(store), "--secret-file", filepath.Join(secretDir, auth.SecretFileName),
			"--ledger-key", filepath.Join(secretDir, ledger.KeyFileName))
		a := startServer(t, append(slices.Clone(shared), "--grace-period", "72h", "--instance-id", "api-a")...)
		a.secret = secret
		b := a
		if len(store) > 0 {
			b = startServer(t, append(slices.Clone(shared), "--grace-period", "24h", "--instance-id", "api-b")...)
			b.secret = secret
			require.Contains(t, b.logText(), policyWarning, "the second replica's flags differ from the recorded policy")
		}
		require.NotContains(t, a.logText(), policyWarning)
		wa, wb := newWorld(a), newWorld(b)
		wb.worker = b.as(domain.RoleWorker, wa.worker.sub) // the children's worker, on the other replica

		initial := policyOf(t, wb, "")
		require.Equal(t, 72*3600, initial.GracePeriod, "every replica applies the recorded policy, not its flags")
		require.Equal(t, "system", *initial.SetByRole)
		require.Equal(t, commands.InitialPolicyReason, *initial.Reason)

		child := wa.registerChild()
		before, after := wa.account(string(domain.KindFosterCarer)), wa.account(string(domain.KindFosterCarer))
		p1 := wa.place(child, before.id, now().Add(-30*day))
		p2 := wa.place(child, after.id, now().Add(-30*day))
		wb.last = wa.last
		ended1 := now() // after the carer's activation: its grace interval starts at the end
		require.Equal(t, ended1.Add(72*time.Hour), wb.endPlacement(wb.worker, child, p1, ended1, "moved"))

		// Bad values and other roles change nothing.
		wa.manager.do("PUT", "/v1/policy", map[string]any{"grace_period": 0}).problem(http.StatusBadRequest, "invalid")
		wa.worker.do("PUT", "/v1/policy", map[string]any{"grace_period": 3600}).problem(http.StatusForbidden, "forbidden")

		changed := wa.cmd(wa.manager, "PUT", "/v1/policy", map[string]any{"grace_period": 48 * 3600, "reason": "grace review"}, http.StatusOK)
		wb.last = wa.last
		current := policyOf(t, wb, "")
		require.Equal(t, 48*3600, current.GracePeriod)
		require.Equal(t, changed["position"], *current.SetPosition)
		require.Equal(t, "grace review", *current.Reason)
		require.Equal(t, "manager", *current.SetByRole)
		old := policyOf(t, wb, "at="+rfc(ended1))
		require.Equal(t, 72*3600, old.GracePeriod, "the policy in force before the change")

		ended2 := now()
		require.Equal(t, ended2.Add(48*time.Hour), wb.endPlacement(wb.worker, child, p2, ended2, "moved"),
			"the other replica ends the placement with the new grace period")

		// The history names the grace period and the policy that set it.
		wa.last = wb.last
		graces := map[string]e2eInterval{}
		for _, iv := range wa.history("/v1/children/"+child+"/history", "") {
			if iv.Reason == api.Reason(domain.ReasonGracePeriod) {
				graces[iv.AccountID.String()] = iv
			}
		}
		require.Len(t, graces, 2)
		for _, tc := range []struct {
			account string
			grace   int
			policy  api.Policy
		}{{before.id, 72 * 3600, initial}, {after.id, 48 * 3600, current}} {
			iv := graces[tc.account]
			require.NotNil(t, iv.GracePeriod)
			require.Equal(t, tc.grace, *iv.GracePeriod)
			require.NotNil(t, iv.GracePolicy)
			require.Equal(t, *tc.policy.SetPosition, iv.GracePolicy.Position)
			require.Equal(t, *tc.policy.EventID, iv.GracePolicy.EventID)
		}
		policies := auditOf(wa.audit(""), domain.TypePolicySet)
		require.Len(t, policies, 2, "the audit trail shows the policy events")
		require.Equal(t, "grace review", policies[1].Reason)

		// A restart with other flags keeps the recorded policy.
		a.flags = append(slices.Clone(shared), "--grace-period", "1h", "--instance-id", "api-a")
		a.restart()
		a.secret = secret
		require.Contains(t, a.logText(), policyWarning)
		wa = newWorld(a)
		wa.last = wb.last
		require.Equal(t, 48*3600, policyOf(t, wa, "").GracePeriod)
		require.Len(t, auditOf(wa.audit(""), domain.TypePolicySet), 2, "no policy recorded again")
	})
}

// policyOf reads GET /v1/policy (with params) as w's service.
func policyOf(t *testing.T, w *e2eWorld, params string) api.Policy {
	t.Helper()
	path := "/v1/policy"
	if params != "" {
		path += "?" + params
	}
	var p api.Policy
	w.get(w.service, path).decode(&p)
	require.NotNil(t, p.SetPosition, "a recorded policy")
	require.False(t, strings.HasPrefix(*p.SetPosition, "0"), "a position")
	return p
}
