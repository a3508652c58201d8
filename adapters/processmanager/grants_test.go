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

// grantScenario: one child's time-limited grants ending at t0+10 days
// (expiring), one revoked before its end, one replaced by an open-ended
// grant before its end, and an open-ended grant (no deadline).
type grantScenario struct {
	child              uuid.UUID
	expiring           []uuid.UUID
	revoked, replaced  uuid.UUID
	openEnded          uuid.UUID
	grantedAt, expires time.Time
}

// member returns an active parent's account.
func (e *env) member(t *testing.T) uuid.UUID {
	t.Helper()
	email := e.uniq("parent") + "@example.org"
	r, err := e.svc.Invite(context.Background(), as(e.worker()), commands.Invite{Email: email, Kind: string(domain.KindParent)})
	require.NoError(t, err)
	e.activate(t, r.AccountID, email)
	return r.AccountID
}

func (e *env) setUpGrants(t *testing.T, expiring int) grantScenario {
	t.Helper()
	ctx := context.Background()
	w := e.worker()
	r, err := e.svc.RegisterChild(ctx, as(w), commands.RegisterChild{Reference: e.uniq("C")})
	require.NoError(t, err)
	s := grantScenario{child: r.ChildID, grantedAt: e.clock.Now().UTC().Truncate(time.Microsecond), expires: t0.Add(10 * day)}
	grant := func(account uuid.UUID, until time.Time) {
		_, err := e.svc.Grant(ctx, as(w), commands.Grant{ChildID: s.child, AccountID: account, Relationship: "parent",
			Permissions: []string{"view"}, Reason: "contact", ExpiresAt: until})
		require.NoError(t, err)
	}
	for range expiring {
		s.expiring = append(s.expiring, e.member(t))
		grant(s.expiring[len(s.expiring)-1], s.expires)
	}
	s.revoked, s.replaced, s.openEnded = e.member(t), e.member(t), e.member(t)
	grant(s.revoked, s.expires)
	grant(s.replaced, s.expires)
	grant(s.openEnded, time.Time{})
	e.clock.Advance(time.Hour)
	_, err = e.svc.Revoke(ctx, as(w), commands.Revoke{ChildID: s.child, AccountID: s.revoked, Reason: "ended early"})
	require.NoError(t, err)
	grant(s.replaced, time.Time{})
	return s
}

// grantExpiries counts the grant.expired.v1 events per account, checking
// each one's actor, reason and time.
func (e *env) grantExpiries(t *testing.T, s grantScenario) map[uuid.UUID]int {
	t.Helper()
	out := map[uuid.UUID]int{}
	for _, r := range ofType(e.all(t), domain.TypeGrantExpired) {
		env := decode(t, r)
		ev := env.Event.(*domain.GrantExpired)
		require.Equal(t, domain.System, domain.Actor{ID: env.ActorID, Role: env.ActorRole})
		require.Equal(t, "time-limited grant ran out", env.Reason)
		require.Equal(t, s.expires, ev.ExpiredAt)
		require.False(t, env.RecordedAt.Before(s.expires), "recorded at %s", env.RecordedAt)
		out[ev.AccountID]++
	}
	return out
}

// TestRule_R19_AGrantsExpiryIsRecordedOnceAtItsEnd: a time-limited grant
// sets a grant_expiry deadline at its expires_at; its revocation resolves
// it; at the deadline the process manager sends ExpireGrant, which records
// grant.expired.v1 once (and nothing for a grant replaced before its end),
// and the expiry event resolves the deadline.
func TestRule_R19_AGrantsExpiryIsRecordedOnceAtItsEnd(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		p := e.start(t, nil)
		s := e.setUpGrants(t, 2)
		e.relay(t)

		d := p.deadline(t, GrantExpiryID(s.child, s.expiring[0], s.grantedAt))
		require.Equal(t, KindGrantExpiry, d.Kind)
		require.Equal(t, s.expires, d.DueAt)
		require.Equal(t, s.child, d.ChildID)
		require.Equal(t, s.expiring[0], d.AccountID)
		require.Equal(t, StatePending, d.State)
		require.Equal(t, StateResolved, p.deadline(t, GrantExpiryID(s.child, s.revoked, s.grantedAt)).State, "revoking settles it")
		require.Equal(t, StatePending, p.deadline(t, GrantExpiryID(s.child, s.replaced, s.grantedAt)).State)
		_, ok, err := p.Deadline(context.Background(), GrantExpiryID(s.child, s.openEnded, s.grantedAt))
		require.NoError(t, err)
		require.False(t, ok, "an open-ended grant has no deadline")

		e.clock.Set(s.expires.Add(-time.Second))
		require.Empty(t, e.grantExpiries(t, s), "nothing before the end")

		e.clock.Set(s.expires.Add(time.Minute))
		for _, id := range s.expiring {
			p.waitSettled(t, GrantExpiryID(s.child, id, s.grantedAt))
		}
		p.waitSettled(t, GrantExpiryID(s.child, s.replaced, s.grantedAt))
		e.relay(t)
		for _, id := range s.expiring {
			p.waitState(t, GrantExpiryID(s.child, id, s.grantedAt), StateResolved)
		}
		got := e.grantExpiries(t, s)
		require.Len(t, got, len(s.expiring))
		for _, id := range s.expiring {
			require.Equal(t, 1, got[id], "grant to %s expired once", id)
		}
	})
}

// Two process managers on one PostgreSQL database (a gochannel each, the
// relay publishing every event twice to both; and the PostgreSQL bus): each
// time-limited grant's expiry is recorded exactly once.
func TestRule_R19_TwoProcessManagersExpireEachGrantOnce(t *testing.T) {
	const expiring = 8
	for _, variant := range []string{"a-gochannel-each", "postgres-bus"} {
		t.Run(variant, func(t *testing.T) {
			e, a, b, relayTo := twoReplicas(t, variant)
			caughtUp := e.startRelay(t, relayTo...)
			s := e.setUpGrants(t, expiring)
			caughtUp()
			require.Eventually(t, func() bool {
				for _, id := range s.expiring {
					if d, ok, err := b.Deadline(context.Background(), GrantExpiryID(s.child, id, s.grantedAt)); err != nil || !ok || d.State != StatePending {
						return false
					}
				}
				return true
			}, waitFor, 5*time.Millisecond, "the grant expiry deadlines recorded")

			e.clock.Set(s.expires.Add(time.Hour))
			require.Eventually(t, func() bool {
				for _, id := range s.expiring {
					if d, ok, err := a.Deadline(context.Background(), GrantExpiryID(s.child, id, s.grantedAt)); err != nil || !ok || d.State != StateResolved {
						return false
					}
				}
				return true
			}, waitFor, 5*time.Millisecond, "the grants expired")
			// Let any duplicate firing finish before counting (the replaced grant's too).
			require.Eventually(t, func() bool { return len(a.spy.Calls())+len(b.spy.Calls()) >= expiring+1 }, waitFor, 5*time.Millisecond)
			got := e.grantExpiries(t, s)
			require.Len(t, got, expiring)
			for _, id := range s.expiring {
				require.Equal(t, 1, got[id], "grant to %s expired once", id)
			}
			for _, c := range append(a.spy.Calls(), b.spy.Calls()...) {
				require.NoError(t, c.Err)
			}
		})
	}
}
