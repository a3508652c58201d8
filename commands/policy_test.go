package commands_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
)

func dur(d time.Duration) *time.Duration { return &d }

// TestRule_R25_CommandsDecideWithTheRecordedPolicy: the initial policy is
// recorded once (two services racing record one); a manager's change is
// what another service sharing the log decides with from its next command;
// an end backdated to before the change keeps the grace period then in
// force; a change that changes nothing appends nothing; other roles and bad
// values are refused and append nothing.
func TestRule_R25_CommandsDecideWithTheRecordedPolicy(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, memory)
	// A second service on the same log, with other flags.
	other, err := commands.New(e.store, e.refusals, commands.Config{Clock: e.clock.Now, Logger: slog.New(slog.DiscardHandler),
		Policy: domain.Policy{GracePeriod: time.Hour}})
	require.NoError(t, err)

	var wg sync.WaitGroup
	recorded := make([]bool, 2)
	for i, svc := range []*commands.Service{e.svc, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, rec, err := svc.RecordInitialPolicy(ctx)
			require.NoError(t, err)
			recorded[i] = rec
		}()
	}
	wg.Wait()
	require.NotEqual(t, recorded[0], recorded[1], "exactly one service records the initial policy")
	initial := e.stream(t, domain.PolicyStream)
	require.Len(t, initial, 1)
	require.Equal(t, domain.RoleSystem, initial[0].ActorRole)
	require.Equal(t, commands.InitialPolicyReason, initial[0].Reason)
	first := initial[0].Event.(*domain.PolicySet).Policy()
	for _, svc := range []*commands.Service{e.svc, other} {
		cur, err := svc.CurrentPolicy(ctx)
		require.NoError(t, err)
		require.Equal(t, first, cur.Policy, "every service decides with the recorded one")
	}

	worker := e.worker()
	child := e.child(t, worker)
	carer := e.active(t, domain.KindFosterCarer)
	before := e.place(t, worker, child, carer.id, t0.Add(-30*day))

	// A manager shortens the grace period on one service, at t0+1h.
	e.clock.Set(t0.Add(time.Hour))
	mgr := as(e.actor(domain.RoleManager))
	res, err := e.svc.SetPolicy(ctx, mgr, commands.SetPolicy{Change: domain.PolicyChange{GracePeriod: dur(2 * day)}, Reason: "review"})
	require.NoError(t, err)
	require.Equal(t, e.head(t), res.Position)

	// The other service decides with it; an end backdated to before the
	// change keeps the grace period then in force.
	e.clock.Set(t0.Add(2 * time.Hour))
	r, err := other.EndPlacement(ctx, as(worker), commands.EndPlacement{ChildID: child, PlacementID: before, EndedAt: t0.Add(-day)})
	require.NoError(t, err)
	require.Equal(t, t0.Add(-day).Add(first.GracePeriod), r.GraceUntil)
	later := e.place(t, worker, child, carer.id, t0.Add(-12*time.Hour))
	r, err = other.EndPlacement(ctx, as(worker), commands.EndPlacement{ChildID: child, PlacementID: later, EndedAt: t0.Add(2 * time.Hour)})
	require.NoError(t, err)
	require.Equal(t, t0.Add(2*time.Hour).Add(2*day), r.GraceUntil)

	// The same value again appends nothing and answers the policy's position.
	head := e.head(t)
	res, err = other.SetPolicy(ctx, mgr, commands.SetPolicy{Change: domain.PolicyChange{GracePeriod: dur(2 * day)}})
	require.NoError(t, err)
	require.Equal(t, head, e.head(t))
	require.Equal(t, e.stream(t, domain.PolicyStream)[1].Position, res.Position)

	for _, tc := range []struct {
		name   string
		meta   commands.Meta
		change domain.PolicyChange
		want   error
	}{
		{"a worker", as(worker), domain.PolicyChange{GracePeriod: dur(day)}, domain.ErrRoleNotAllowed},
		{"the engine once a policy is recorded", as(domain.System), domain.PolicyChange{GracePeriod: dur(day)}, nil},
		{"a negative grace period", mgr, domain.PolicyChange{GracePeriod: dur(-day)}, domain.ErrInvalid},
		{"the warning after the timeout", mgr, domain.PolicyChange{SessionWarningAfter: dur(time.Hour)}, domain.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == nil {
				before := e.head(t)
				_, err := e.svc.SetPolicy(ctx, tc.meta, commands.SetPolicy{Change: tc.change})
				require.NoError(t, err)
				require.Equal(t, before, e.head(t), "appends nothing")
				return
			}
			e.refused(t, tc.meta, commands.CommandSetPolicy, "policy", tc.want, func(m commands.Meta) error {
				_, err := e.svc.SetPolicy(ctx, m, commands.SetPolicy{Change: tc.change})
				return err
			})
		})
	}

	// The invitation lifetime in force now.
	_, err = e.svc.SetPolicy(ctx, mgr, commands.SetPolicy{Change: domain.PolicyChange{InvitationTTL: dur(3 * day)}})
	require.NoError(t, err)
	inv, err := other.Invite(ctx, as(worker), commands.Invite{Email: e.uniq("new") + "@example.org", Kind: string(domain.KindParent)})
	require.NoError(t, err)
	require.Equal(t, e.clock.Now().Add(3*day), inv.ExpiresAt)
}
