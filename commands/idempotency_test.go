package commands_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
)

func keyed(a domain.Actor, key string) commands.Meta {
	return commands.Meta{Actor: a, IdempotencyKey: key}
}

// TestIdempotency: a command retried with the same key (and actor) answers
// the first answer, ids and position included, and appends nothing, even
// after the stream moved on; another key, or another actor with the same
// key, is a new command.
func TestIdempotency(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)

		t.Run("register_child", func(t *testing.T) {
			w := e.worker()
			first, err := e.svc.RegisterChild(ctx, keyed(w, "k1"), commands.RegisterChild{Reference: "C-1"})
			require.NoError(t, err)
			// The stream moves on before the retry.
			_, err = e.svc.AllocateWorker(ctx, as(e.actor(domain.RoleManager)), commands.AllocateWorker{ChildID: first.ChildID, WorkerID: "w2"})
			require.NoError(t, err)
			head := e.head(t)

			again, err := e.svc.RegisterChild(ctx, keyed(w, "k1"), commands.RegisterChild{Reference: "C-1"})
			require.NoError(t, err)
			require.Equal(t, first, again, "the first answer: same child id and position")
			require.Equal(t, head, e.head(t), "nothing appended")

			// Another request (another key, or another actor's) for the same
			// reference is refused, naming the child (R17).
			var taken *domain.AlreadyRegistered
			_, err = e.svc.RegisterChild(ctx, keyed(w, "k2"), commands.RegisterChild{Reference: "C-1"})
			require.ErrorAs(t, err, &taken)
			require.Equal(t, first.ChildID, taken.ChildID)
			_, err = e.svc.RegisterChild(ctx, keyed(e.worker(), "k1"), commands.RegisterChild{Reference: "c-1"})
			require.ErrorAs(t, err, &taken)
			require.Equal(t, first.ChildID, taken.ChildID)
			require.Equal(t, head, e.head(t), "nothing appended")
			other, err := e.svc.RegisterChild(ctx, keyed(w, "k2"), commands.RegisterChild{Reference: "C-2"})
			require.NoError(t, err)
			require.NotEqual(t, first.ChildID, other.ChildID, "another reference: another child")
		})

		t.Run("invite", func(t *testing.T) {
			w := e.worker()
			cmd := commands.Invite{Email: "idem@example.org", Kind: "parent"}
			first, err := e.svc.Invite(ctx, keyed(w, "k"), cmd)
			require.NoError(t, err)
			head := e.head(t)
			e.clock.Advance(day)
			defer e.clock.Set(t0)
			again, err := e.svc.Invite(ctx, keyed(w, "k"), cmd)
			require.NoError(t, err)
			require.Equal(t, first, again, "same account id, expires_at and position")
			require.Equal(t, head, e.head(t))
			// Without the key the retry is a second invitation: refused.
			_, err = e.svc.Invite(ctx, as(w), cmd)
			require.ErrorIs(t, err, domain.ErrAlreadyInvited)
		})

		t.Run("start_placement, end_placement (two events), grant", func(t *testing.T) {
			w, refusals := e.worker(), len(e.refusals.All())
			child, carer, parent := e.child(t, w), e.active(t, domain.KindFosterCarer), e.active(t, domain.KindParent)

			place := commands.StartPlacement{ChildID: child, CarerAccountID: carer.id, StartedAt: t0.Add(-30 * day)}
			p1, err := e.svc.StartPlacement(ctx, keyed(w, "p"), place)
			require.NoError(t, err)
			head := e.head(t)
			p1again, err := e.svc.StartPlacement(ctx, keyed(w, "p"), place)
			require.NoError(t, err)
			require.Equal(t, p1, p1again)
			require.Equal(t, head, e.head(t))

			end := commands.EndPlacement{ChildID: child, PlacementID: p1.PlacementID, EndedAt: t0.Add(-10 * day), Reason: "late"}
			ended, err := e.svc.EndPlacement(ctx, keyed(w, "p"), end) // the same key, another command: independent
			require.NoError(t, err)
			require.Len(t, e.since(t, head), 2, "ended and expired at once")
			g := commands.Grant{ChildID: child, AccountID: parent.id, Relationship: "parent", Permissions: []string{"view"}, Reason: "r"}
			granted, err := e.svc.Grant(ctx, keyed(w, "p"), g)
			require.NoError(t, err)
			head = e.head(t)

			endedAgain, err := e.svc.EndPlacement(ctx, keyed(w, "p"), end)
			require.NoError(t, err)
			require.Equal(t, ended, endedAgain, "grace_until and the position of the second event")
			grantedAgain, err := e.svc.Grant(ctx, keyed(w, "p"), g)
			require.NoError(t, err)
			require.Equal(t, granted, grantedAgain)
			require.Equal(t, head, e.head(t))

			p2, err := e.svc.StartPlacement(ctx, keyed(w, "p2"), commands.StartPlacement{ChildID: child, CarerAccountID: carer.id, StartedAt: t0})
			require.NoError(t, err)
			require.NotEqual(t, p1.PlacementID, p2.PlacementID)
			require.Len(t, e.refusals.All(), refusals)
		})

		t.Run("activate", func(t *testing.T) {
			a, svc := e.invited(t, domain.KindParent), e.actor(domain.RoleService)
			cmd := commands.Activate{AccountID: a.id, IdentitySubject: a.subject, Email: a.email}
			first, err := e.svc.Activate(ctx, keyed(svc, "a"), cmd)
			require.NoError(t, err)
			w := e.worker()
			e.grant(t, w, e.child(t, w), a.id) // another stream moves on
			head := e.head(t)
			again, err := e.svc.Activate(ctx, keyed(svc, "a"), cmd)
			require.NoError(t, err)
			require.Equal(t, first, again)
			require.Equal(t, head, e.head(t))
		})

		t.Run("the ids are derived: a replayed key decides the same event ids", func(t *testing.T) {
			// Two services on the same store (two server instances): the
			// same key decides the same ids, so the second finds the first's
			// event and appends nothing.
			w := e.worker()
			svc2, err := commands.New(e.store, e.refusals, commands.Config{Clock: e.clock.Now})
			require.NoError(t, err)
			first, err := e.svc.RegisterChild(ctx, keyed(w, "shared"), commands.RegisterChild{Reference: "C-9"})
			require.NoError(t, err)
			second, err := svc2.RegisterChild(ctx, keyed(w, "shared"), commands.RegisterChild{Reference: "C-9"})
			require.NoError(t, err)
			require.Equal(t, first, second)
		})
	})
}

// TestIdempotencyKeyChecked: an over-long or unprintable key is invalid.
func TestIdempotencyKeyChecked(t *testing.T) {
	e := newEnv(t, memory)
	w := e.worker()
	for _, key := range []string{strings.Repeat("k", commands.MaxIdempotencyKey+1), "a\nb", "\xff"} {
		before := e.head(t)
		_, err := e.svc.RegisterChild(context.Background(), keyed(w, key), commands.RegisterChild{Reference: "C"})
		require.ErrorIs(t, err, domain.ErrInvalid)
		require.Equal(t, "invalid", commands.Code(err))
		require.Equal(t, before, e.head(t))
	}
	_, err := e.svc.RegisterChild(context.Background(), keyed(w, strings.Repeat("k", commands.MaxIdempotencyKey)), commands.RegisterChild{Reference: "C"})
	require.NoError(t, err)
}

// TestRule_R3_ExpireCarerAccess: the process manager's expiry is refused
// before the deadline (not due: conflict), appends one GraceExpired at or
// after it, and is a no-op (success, nothing appended, the stream's last
// position) when sent again, after the worker ended the grace early (R6), or
// when the carer was placed again before the deadline (R5).
func TestRule_R3_ExpireCarerAccess(t *testing.T) {
	ctx := context.Background()
	grace := domain.DefaultPolicy.GracePeriod
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		expire := func(child, p uuid.UUID) func(commands.Meta) error {
			return func(m commands.Meta) error {
				_, err := e.svc.ExpireCarerAccess(ctx, m, commands.ExpireCarerAccess{ChildID: child, PlacementID: p})
				return err
			}
		}
		system := commands.Meta{Actor: domain.System, CausationID: uuid.New()}
		setup := func(t *testing.T) (domain.Actor, uuid.UUID, account, uuid.UUID) {
			e.clock.Set(t0)
			w := e.worker()
			child, carer := e.child(t, w), e.active(t, domain.KindFosterCarer)
			p := e.place(t, w, child, carer.id, t0.Add(-30*day))
			ended := e.end(t, w, child, p, t0)
			require.Equal(t, t0.Add(grace), ended.GraceUntil)
			return w, child, carer, p
		}

		t.Run("before, at and after the deadline", func(t *testing.T) {
			_, child, _, p := setup(t)
			e.clock.Set(t0.Add(grace - 1))
			e.refused(t, system, "expire_carer_access", placementT(child, p), domain.ErrNotDue, expire(child, p))

			e.clock.Set(t0.Add(grace))
			before := e.head(t)
			r, err := e.svc.ExpireCarerAccess(ctx, system, commands.ExpireCarerAccess{ChildID: child, PlacementID: p})
			require.NoError(t, err)
			got := e.since(t, before)
			require.Equal(t, []string{domain.TypeGraceExpired}, types(got))
			require.Equal(t, t0.Add(grace), got[0].EffectiveAt)
			require.Equal(t, system.CausationID, got[0].CausationID)
			require.Equal(t, r.Position, got[0].Position)

			e.clock.Set(t0.Add(grace + day))
			again, err := e.svc.ExpireCarerAccess(ctx, system, commands.ExpireCarerAccess{ChildID: child, PlacementID: p})
			require.NoError(t, err, "sent again: a no-op")
			require.Equal(t, r.Position, again.Position, "the stream's last position")
			require.Equal(t, r.Position, e.head(t))
		})

		t.Run("late: long after the deadline it still expires once", func(t *testing.T) {
			_, child, _, p := setup(t)
			e.clock.Set(t0.Add(30 * grace))
			before := e.head(t)
			_, err := e.svc.ExpireCarerAccess(ctx, system, commands.ExpireCarerAccess{ChildID: child, PlacementID: p})
			require.NoError(t, err)
			got := e.since(t, before)
			require.Len(t, got, 1)
			require.Equal(t, t0.Add(grace), got[0].EffectiveAt, "effective at the deadline, not when the job ran")
		})

		t.Run("after a re-placement with the same carer in the grace period (R5)", func(t *testing.T) {
			w, child, carer, p := setup(t)
			e.clock.Set(t0.Add(2 * day))
			e.place(t, w, child, carer.id, t0.Add(2*day))
			e.clock.Set(t0.Add(grace))
			before := e.head(t)
			r, err := e.svc.ExpireCarerAccess(ctx, system, commands.ExpireCarerAccess{ChildID: child, PlacementID: p})
			require.NoError(t, err)
			require.Equal(t, before, e.head(t), "nothing happens")
			require.Equal(t, before, r.Position)
		})

		t.Run("after the grace was ended early (R6)", func(t *testing.T) {
			w, child, _, p := setup(t)
			e.clock.Set(t0.Add(day))
			_, err := e.svc.EndGrace(ctx, as(w), commands.EndGrace{ChildID: child, PlacementID: p, Reason: "concern"})
			require.NoError(t, err)
			e.clock.Set(t0.Add(grace))
			before := e.head(t)
			_, err = e.svc.ExpireCarerAccess(ctx, system, commands.ExpireCarerAccess{ChildID: child, PlacementID: p})
			require.NoError(t, err)
			require.Equal(t, before, e.head(t))
		})

		t.Run("a placement that has not ended, an unknown placement or child", func(t *testing.T) {
			w, child, carer, _ := setup(t)
			e.clock.Set(t0.Add(day))
			open := e.place(t, w, child, carer.id, t0.Add(day))
			e.refused(t, system, "expire_carer_access", placementT(child, open), domain.ErrPlacementNotEnded, expire(child, open))
			unknown := uuid.New()
			e.refused(t, system, "expire_carer_access", placementT(child, unknown), domain.ErrPlacementNotFound, expire(child, unknown))
			e.refused(t, system, "expire_carer_access", placementT(unknown, unknown), domain.ErrChildNotFound, expire(unknown, unknown))
		})
	})
}

// TestRule_R9_ExpireInvitation: not due before the deadline; one
// InvitationExpired at it; a no-op again or once the account is active.
func TestRule_R9_ExpireInvitation(t *testing.T) {
	ctx := context.Background()
	ttl := domain.DefaultPolicy.InvitationTTL
	e := newEnv(t, memory)
	system := commands.Meta{Actor: domain.System}
	a := e.invited(t, domain.KindParent)
	expire := func(m commands.Meta) error {
		_, err := e.svc.ExpireInvitation(ctx, m, commands.ExpireInvitation{AccountID: a.id})
		return err
	}
	e.clock.Set(t0.Add(ttl - 1))
	e.refused(t, system, "expire_invitation", accountT(a.id), domain.ErrNotDue, expire)

	e.clock.Set(t0.Add(ttl))
	before := e.head(t)
	r, err := e.svc.ExpireInvitation(ctx, system, commands.ExpireInvitation{AccountID: a.id})
	require.NoError(t, err)
	require.Equal(t, []string{domain.TypeInvitationExpired}, types(e.since(t, before)))
	again, err := e.svc.ExpireInvitation(ctx, system, commands.ExpireInvitation{AccountID: a.id})
	require.NoError(t, err)
	require.Equal(t, r, again)
	require.Equal(t, r.Position, e.head(t))

	// An expired invitation cannot be accepted, and is renewed by inviting
	// again.
	_, err = e.svc.Activate(ctx, as(e.actor(domain.RoleService)), commands.Activate{AccountID: a.id, IdentitySubject: a.subject, Email: a.email})
	require.ErrorIs(t, err, domain.ErrInvitationExpired)
	renewed, err := e.svc.Invite(ctx, as(e.worker()), commands.Invite{Email: a.email, Kind: "parent"})
	require.NoError(t, err)
	require.Equal(t, t0.Add(2*ttl), renewed.ExpiresAt)

	activeAcct := e.active(t, domain.KindParent)
	e.clock.Set(t0.Add(10 * ttl))
	before = e.head(t)
	_, err = e.svc.ExpireInvitation(ctx, system, commands.ExpireInvitation{AccountID: activeAcct.id})
	require.NoError(t, err)
	require.Equal(t, before, e.head(t), "an accepted invitation does not expire")

	unknown := uuid.New()
	e.refused(t, system, "expire_invitation", accountT(unknown), domain.ErrAccountNotFound, func(m commands.Meta) error {
		_, err := e.svc.ExpireInvitation(ctx, m, commands.ExpireInvitation{AccountID: unknown})
		return err
	})
}
