package processmanager

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
)

// retentionScenario: accounts closed at t0 (retention ends at
// t0+retention), an account left open (never erased), children kept until
// a date set at registration, one whose date was moved later (its first
// deadline must erase nothing) and one the dpo erased first.
type retentionScenario struct {
	closed   []uuid.UUID
	open     uuid.UUID
	children []uuid.UUID // retained until t0+30 days
	moved    uuid.UUID   // until t0+30 days, then moved to t0+200 days
	early    uuid.UUID   // until t0+30 days, erased by the dpo at t0
}

var dpo = domain.Actor{ID: "dpo-1", Role: domain.RoleDPO}

func (e *env) setUpRetention(t *testing.T, closed, children int) retentionScenario {
	t.Helper()
	ctx := context.Background()
	var s retentionScenario
	for range closed {
		id := e.carer(t)
		_, err := e.svc.CloseAccount(ctx, as(domain.Actor{ID: "portals-1", Role: domain.RolePortalsTeam}),
			commands.CloseAccount{AccountID: id, Reason: "asked to leave"})
		require.NoError(t, err)
		s.closed = append(s.closed, id)
	}
	s.open = e.carer(t)
	until := t0.Add(30 * day)
	register := func() uuid.UUID {
		r, err := e.svc.RegisterChild(ctx, as(e.worker()), commands.RegisterChild{Reference: e.uniq("C"), RetainUntil: until})
		require.NoError(t, err)
		return r.ChildID
	}
	for range children {
		s.children = append(s.children, register())
	}
	s.moved = register()
	_, err := e.svc.SetRetention(ctx, as(dpo), commands.SetRetention{ChildID: s.moved, RetainUntil: t0.Add(200 * day), Reason: "court order"})
	require.NoError(t, err)
	s.early = register()
	_, err = e.svc.EraseChild(ctx, as(dpo), commands.EraseChild{ChildID: s.early, Reason: "Art. 17 request"})
	require.NoError(t, err)
	return s
}

// erasures counts the erasure events of the log, checking each one's
// actor, reason and time: the engine's at or after the date that was due.
func (e *env) erasures(t *testing.T) (accounts, children map[uuid.UUID]int) {
	t.Helper()
	accounts, children = map[uuid.UUID]int{}, map[uuid.UUID]int{}
	for _, r := range e.all(t) {
		env := decode(t, r)
		switch ev := env.Event.(type) {
		case *domain.AccountErased:
			accounts[ev.AccountID]++
			require.Equal(t, domain.System, domain.Actor{ID: env.ActorID, Role: env.ActorRole})
			require.Contains(t, env.Reason, "retention ended: closed accounts are kept 90 days")
			require.False(t, ev.ErasedAt.Before(t0.Add(retention)), "erased at %s", ev.ErasedAt)
		case *domain.ChildErased:
			children[ev.ChildID]++
			if env.ActorRole == domain.RoleSystem {
				require.Contains(t, env.Reason, "retention ended: the child's record was kept until")
				require.False(t, ev.ErasedAt.Before(t0.Add(30*day)), "erased at %s", ev.ErasedAt)
			}
		}
	}
	return accounts, children
}

// Retention (R22) with two process managers on one PostgreSQL database:
// each closed account and each child whose date has come is erased
// exactly once, as the engine (system) with the policy as the reason; an
// open account, a child whose date was moved later and nothing before its
// date are not; the keys are destroyed.
func TestRetentionErasesExactlyOnceWithTwoProcessManagers(t *testing.T) {
	const closed, children = 6, 6
	for _, variant := range []string{"a-gochannel-each", "postgres-bus"} {
		t.Run(variant, func(t *testing.T) {
			e, a, b, relayTo := twoReplicas(t, variant)
			caughtUp := e.startRelay(t, relayTo...)
			s := e.setUpRetention(t, closed, children)
			caughtUp()
			require.Eventually(t, func() bool {
				for _, id := range s.closed {
					if d, ok, err := b.Deadline(context.Background(), AccountRetentionID(id)); err != nil || !ok || d.State != StatePending {
						return false
					}
				}
				return true
			}, waitFor, 5*time.Millisecond, "the account retention deadlines recorded")
			d := a.deadline(t, AccountRetentionID(s.closed[0]))
			require.Equal(t, t0.Add(retention), d.DueAt)

			// A day after the children's date: the children are erased (not
			// the moved one), the accounts not yet.
			e.clock.Set(t0.Add(31 * day))
			require.Eventually(t, func() bool {
				_, ch := e.erasures(t)
				return len(ch) >= children+1
			}, waitFor, 5*time.Millisecond, "the children erased")
			// Past every date but the moved child's: the accounts too.
			e.clock.Set(t0.Add(retention + day))
			require.Eventually(t, func() bool {
				acc, _ := e.erasures(t)
				if len(acc) < closed {
					return false
				}
				for _, id := range s.closed {
					if d, ok, err := a.Deadline(context.Background(), AccountRetentionID(id)); err != nil || !ok || d.State != StateResolved {
						return false
					}
				}
				return true
			}, waitFor, 5*time.Millisecond, "the accounts erased")
			// Let any duplicate firing finish before counting.
			require.Eventually(t, func() bool { return len(a.spy.Calls())+len(b.spy.Calls()) >= closed+children+2 },
				waitFor, 5*time.Millisecond)

			accounts, kids := e.erasures(t)
			for _, id := range s.closed {
				require.Equal(t, 1, accounts[id], "account %s erased once", id)
			}
			require.Zero(t, accounts[s.open], "an open account is kept")
			require.Len(t, accounts, closed)
			for _, id := range s.children {
				require.Equal(t, 1, kids[id], "child %s erased once", id)
			}
			require.Zero(t, kids[s.moved], "a child whose date was moved later is kept")
			require.Equal(t, 1, kids[s.early], "the dpo's erasure, and no second one")
			require.Len(t, kids, children+1)
			e.erased.mu.Lock()
			for _, id := range s.closed {
				require.Positive(t, e.erased.accounts[id], "the key of %s destroyed", id)
			}
			require.Zero(t, e.erased.accounts[s.open])
			require.Zero(t, e.erased.children[s.moved])
			e.erased.mu.Unlock()
			for _, c := range append(a.spy.Calls(), b.spy.Calls()...) {
				require.NoError(t, c.Err)
			}

			// The moved child's date comes: it is erased then.
			e.clock.Set(t0.Add(201 * day))
			require.Eventually(t, func() bool {
				_, kids := e.erasures(t)
				return kids[s.moved] == 1
			}, waitFor, 5*time.Millisecond, "the moved child erased at its new date")
		})
	}
}

// TestRule_R25_AccountRetentionFollowsThePolicyAtClosure: an account
// closed before a manager shortened the retention period keeps the period
// in force at its closure; one closed after gets the new one, and the
// command erases it at that deadline.
func TestRule_R25_AccountRetentionFollowsThePolicyAtClosure(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		e := newEnv(t, url)
		p := e.start(t, nil)
		portals := as(domain.Actor{ID: "portals-1", Role: domain.RolePortalsTeam})
		before, after := e.carer(t), e.carer(t)
		_, err := e.svc.CloseAccount(ctx, portals, commands.CloseAccount{AccountID: before, Reason: "asked to leave"})
		require.NoError(t, err)

		e.clock.Set(t0.Add(day))
		shorter := 10 * day
		_, err = e.svc.SetPolicy(ctx, as(domain.Actor{ID: "manager-1", Role: domain.RoleManager}),
			commands.SetPolicy{Change: domain.PolicyChange{ClosedAccountRetention: &shorter}, Reason: "retention review"})
		require.NoError(t, err)
		_, err = e.svc.CloseAccount(ctx, portals, commands.CloseAccount{AccountID: after, Reason: "asked to leave"})
		require.NoError(t, err)
		e.relay(t)

		require.Equal(t, t0.Add(retention), p.waitState(t, AccountRetentionID(before), StatePending).DueAt)
		require.Equal(t, t0.Add(day+shorter), p.waitState(t, AccountRetentionID(after), StatePending).DueAt)

		e.clock.Set(t0.Add(day + shorter))
		require.Eventually(t, func() bool { return len(ofType(e.all(t), domain.TypeAccountErased)) == 1 },
			waitFor, 5*time.Millisecond, "the account closed after the change erased")
		erased := decode(t, ofType(e.all(t), domain.TypeAccountErased)[0])
		require.Equal(t, after, erased.Event.(*domain.AccountErased).AccountID)
		require.Contains(t, erased.Reason, "closed accounts are kept 10 days")
		e.relay(t)
		p.waitState(t, AccountRetentionID(after), StateResolved)
		require.Equal(t, StatePending, p.deadline(t, AccountRetentionID(before)).State)
	})
}
