package commands_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
)

// TestRule_R19_GrantsThatEndAndReviews: a time-limited grant answers its
// expires_at, an open-ended one its review date under the policy in force;
// the child's worker reviews an open-ended grant (the new review date is
// now plus the review period in force); the process manager's ExpireGrant
// is refused before expires_at, appends grant.expired.v1 once after it,
// and nothing when sent again or for a grant revoked in time; only the
// system actor sends it.
func TestRule_R19_GrantsThatEndAndReviews(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		meta := func(a domain.Actor) commands.Meta {
			return commands.Meta{Actor: a, RequestID: e.uniq("req"), CorrelationID: uuid.New(), CausationID: uuid.New()}
		}
		w := e.worker()
		child := e.child(t, w)
		limited, open, revoked := e.active(t, domain.KindParent), e.active(t, domain.KindGuardian), e.active(t, domain.KindParent)

		// A time-limited grant.
		end := t0.Add(35 * day)
		m, before := meta(w), e.head(t)
		g, err := e.svc.Grant(ctx, m, commands.Grant{ChildID: child, AccountID: limited.id, Relationship: "parent",
			Permissions: []string{"view"}, Reason: "until the hearing", ExpiresAt: end})
		require.NoError(t, err)
		require.Equal(t, commands.GrantMade{ExpiresAt: end, Position: g.Position}, g)
		got := requireAppended(t, e, before, g.Position, m, "until the hearing", domain.TypeAccessGranted)
		require.Equal(t, end, got[0].Event.(*domain.AccessGranted).ExpiresAt)

		// An open-ended grant under a 90-day review period set by a manager.
		ninety := 90 * day
		_, err = e.svc.SetPolicy(ctx, meta(e.actor(domain.RoleManager)), commands.SetPolicy{
			Change: domain.PolicyChange{ReviewPeriod: &ninety}, Reason: "quarterly reviews"})
		require.NoError(t, err)
		g, err = e.svc.Grant(ctx, meta(w), commands.Grant{ChildID: child, AccountID: open.id, Relationship: "guardian",
			Permissions: []string{"view"}, Reason: "guardian"})
		require.NoError(t, err)
		require.Equal(t, t0.Add(ninety), g.ReviewBy)
		require.True(t, g.ExpiresAt.IsZero())

		// Reviewed a month later: due 90 days after the review.
		e.clock.Advance(30 * day)
		defer e.clock.Set(t0)
		m, before = meta(w), e.head(t)
		rv, err := e.svc.ReviewGrant(ctx, m, commands.ReviewGrant{ChildID: child, AccountID: open.id, Reason: "still needed"})
		require.NoError(t, err)
		require.Equal(t, t0.Add(30*day+ninety), rv.ReviewBy)
		requireAppended(t, e, before, rv.Position, m, "still needed", domain.TypeGrantReviewed)
		for _, tc := range []struct {
			name string
			by   domain.Actor
			cmd  commands.ReviewGrant
			err  error
		}{
			{"another worker", e.worker(), commands.ReviewGrant{ChildID: child, AccountID: open.id, Reason: "r"}, domain.ErrNotAllocated},
			{"time-limited", w, commands.ReviewGrant{ChildID: child, AccountID: limited.id, Reason: "r"}, domain.ErrGrantTimeLimited},
			{"no grant", w, commands.ReviewGrant{ChildID: child, AccountID: revoked.id, Reason: "r"}, domain.ErrGrantNotFound},
			{"no reason", w, commands.ReviewGrant{ChildID: child, AccountID: open.id}, domain.ErrInvalid},
		} {
			_, err := e.svc.ReviewGrant(ctx, meta(tc.by), tc.cmd)
			require.ErrorIs(t, err, tc.err, tc.name)
		}

		// A time-limited grant revoked before it ends: the revocation names it.
		g, err = e.svc.Grant(ctx, meta(w), commands.Grant{ChildID: child, AccountID: revoked.id, Relationship: "parent",
			Permissions: []string{"view"}, Reason: "short", ExpiresAt: t0.Add(60 * day)})
		require.NoError(t, err)
		m, before = meta(w), e.head(t)
		r, err := e.svc.Revoke(ctx, m, commands.Revoke{ChildID: child, AccountID: revoked.id, Reason: "ended early"})
		require.NoError(t, err)
		got = requireAppended(t, e, before, r.Position, m, "ended early", domain.TypeAccessRevoked)
		require.Equal(t, e.clock.Now(), got[0].Event.(*domain.AccessRevoked).GrantedAt)
		revokedAt := e.clock.Now()

		// The process manager's expiry: the system only, not before expires_at, once.
		_, err = e.svc.ExpireGrant(ctx, meta(w), commands.ExpireGrant{ChildID: child, AccountID: limited.id, GrantedAt: t0})
		require.ErrorIs(t, err, domain.ErrRoleNotAllowed)
		e.clock.Set(end.Add(-time.Microsecond))
		_, err = e.svc.ExpireGrant(ctx, meta(domain.System), commands.ExpireGrant{ChildID: child, AccountID: limited.id, GrantedAt: t0})
		require.ErrorIs(t, err, domain.ErrNotDue)
		e.clock.Set(end.Add(time.Hour))
		m, before = meta(domain.System), e.head(t)
		x, err := e.svc.ExpireGrant(ctx, m, commands.ExpireGrant{ChildID: child, AccountID: limited.id, GrantedAt: t0})
		require.NoError(t, err)
		got = requireAppended(t, e, before, x.Position, m, "time-limited grant ran out", domain.TypeGrantExpired)
		require.Equal(t, &domain.GrantExpired{ChildID: child, AccountID: limited.id, GrantedAt: t0, ExpiredAt: end}, got[0].Event)
		head := e.head(t)
		x, err = e.svc.ExpireGrant(ctx, meta(domain.System), commands.ExpireGrant{ChildID: child, AccountID: limited.id, GrantedAt: t0})
		require.NoError(t, err)
		require.Equal(t, head, x.Position, "the expiry is recorded once")
		e.clock.Set(t0.Add(61 * day))
		x, err = e.svc.ExpireGrant(ctx, meta(domain.System), commands.ExpireGrant{ChildID: child, AccountID: revoked.id, GrantedAt: revokedAt})
		require.NoError(t, err)
		require.Equal(t, head, x.Position, "a grant revoked in time does not expire")

		// After expires_at the grant can neither be revoked nor reviewed.
		_, err = e.svc.Revoke(ctx, meta(w), commands.Revoke{ChildID: child, AccountID: limited.id, Reason: "late"})
		require.ErrorIs(t, err, domain.ErrGrantNotFound)
	})
}
