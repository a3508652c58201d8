package processmanager

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
)

// A placement end records a grace deadline at grace_until; the scheduler
// sleeps until exactly then, fires once with the system actor, the
// deadline's idempotency key and the PlacementEnded as causation, and the
// GraceExpired that comes back resolves the deadline.
func TestGraceDeadlineFiresExactlyAtGraceUntil(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		p := e.start(t, nil)
		pl := e.place(t, t0.Add(-30*day))
		due := e.end(t, pl, t0)
		require.Equal(t, t0.Add(grace), due)

		n := p.idle.count()
		recs := e.relay(t)
		ended := ofType(recs, domain.TypePlacementEnded)
		require.Len(t, ended, 1)
		id := GraceID(pl.placeID)
		d := p.deadline(t, id)
		require.Equal(t, Deadline{
			ID: id, Kind: KindGrace, ChildID: pl.child, PlacementID: pl.placeID, AccountID: pl.carer,
			DueAt: due, SourceEventID: ended[0].ID, CorrelationID: ended[0].Meta.CorrelationID,
			State: StatePending, UpdatedAt: t0,
		}, d)
		n = p.idle.waitWake(t, n, due)

		// A microsecond early nothing fires, even when the scheduler looks.
		e.clock.Set(due.Add(-time.Microsecond))
		p.wake()
		p.idle.waitWake(t, n, due)
		require.Empty(t, p.spy.Calls())

		e.clock.Set(due)
		d = p.waitSettled(t, id)
		calls := p.spy.Calls()
		require.Len(t, calls, 1)
		require.Equal(t, due, calls[0].At, "fired exactly at the deadline")
		require.NoError(t, calls[0].Err)
		require.Equal(t, commands.ExpireCarerAccess{ChildID: pl.child, PlacementID: pl.placeID}, calls[0].Command)
		require.Equal(t, commands.Meta{
			Actor: domain.System, RequestID: id,
			CorrelationID: ended[0].Meta.CorrelationID, CausationID: ended[0].ID,
			IdempotencyKey: "deadline/" + id + "/" + strconv.FormatInt(due.UnixMicro(), 10),
		}, calls[0].Meta)
		require.Equal(t, 1, d.Attempts)
		require.Empty(t, d.ClaimedBy)
		require.Empty(t, d.LastError)

		recs = e.relay(t)
		require.Len(t, recs, 1)
		exp := decode(t, recs[0])
		require.Equal(t, &domain.GraceExpired{ChildID: pl.child, PlacementID: pl.placeID, CarerAccountID: pl.carer, ExpiredAt: due}, exp.Event)
		require.Equal(t, due, exp.EffectiveAt, "effective at the deadline")
		require.Equal(t, ended[0].ID, exp.CausationID)
		require.Equal(t, ended[0].Meta.CorrelationID, exp.CorrelationID)
		require.Equal(t, domain.System.ID, exp.ActorID)

		d = p.deadline(t, id)
		require.Equal(t, StateResolved, d.State)
		require.Equal(t, recs[0].ID, d.ResolvedBy)
		pending, err := p.Pending(context.Background())
		require.NoError(t, err)
		require.Empty(t, pending)
		// The scheduler settles its view after the handler has returned:
		// wait until it sleeps for nothing before reading its status.
		p.idle.waitWake(t, n, due.Add(never))
		st, err := p.Status(context.Background())
		require.NoError(t, err)
		require.False(t, st.NextWake.Before(due.Add(never)), "nothing left to wake for")
		st.NextWake = time.Time{}
		require.Equal(t, Status{InstanceID: p.InstanceID(), Running: true, Fired: 1}, st)
	})
}

// R5: the carer is placed again before the deadline. The command is sent
// and the aggregate decides nothing: the deadline is fired and no expiry
// is written.
func TestRePlacedCarerExpiresNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		p := e.start(t, nil)
		pl := e.place(t, t0.Add(-30*day))
		due := e.end(t, pl, t0)
		e.clock.Set(t0.Add(day))
		_, err := e.svc.StartPlacement(context.Background(), as(pl.worker),
			commands.StartPlacement{ChildID: pl.child, CarerAccountID: pl.carer, StartedAt: t0.Add(day)})
		require.NoError(t, err)
		e.relay(t)

		e.clock.Set(due.Add(time.Hour))
		p.waitSettled(t, GraceID(pl.placeID))
		calls := p.spy.Calls()
		require.Len(t, calls, 1)
		require.NoError(t, calls[0].Err)
		require.Empty(t, e.relay(t), "no expiry event")
		require.Empty(t, ofType(e.all(t), domain.TypeGraceExpired))
	})
}

// R6: the worker ends the grace period early: the deadline is resolved and
// never fires.
func TestGraceEndedEarlyNeverFires(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		p := e.start(t, nil)
		pl := e.place(t, t0.Add(-30*day))
		due := e.end(t, pl, t0)
		e.relay(t)
		e.clock.Set(t0.Add(day))
		_, err := e.svc.EndGrace(context.Background(), as(pl.worker),
			commands.EndGrace{ChildID: pl.child, PlacementID: pl.placeID, Reason: "safeguarding concern"})
		require.NoError(t, err)
		recs := e.relay(t)
		require.Len(t, ofType(recs, domain.TypeGraceEndedEarly), 1)
		d := p.deadline(t, GraceID(pl.placeID))
		require.Equal(t, StateResolved, d.State)
		require.Equal(t, recs[0].ID, d.ResolvedBy)

		n := p.idle.count()
		e.clock.Set(due.Add(day))
		p.wake()
		p.idle.waitWake(t, n, due.Add(day).Add(never))
		require.Empty(t, p.spy.Calls())
		require.Empty(t, ofType(e.all(t), domain.TypeGraceExpired))
	})
}

// Duplicate deliveries change nothing: one row, one firing, one expiry.
func TestDuplicateDeliveries(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		p := e.start(t, nil)
		pl := e.place(t, t0.Add(-30*day))
		due := e.end(t, pl, t0)
		recs := e.relay(t)
		id := GraceID(pl.placeID)
		first := p.deadline(t, id)

		e.clock.Set(t0.Add(time.Hour))
		ended := ofType(recs, domain.TypePlacementEnded)
		e.publish(t, nil, ended[0], ended[0], ended[0])
		require.Equal(t, first, p.deadline(t, id), "a duplicate changes nothing, not even updated_at")
		pending, err := p.Pending(context.Background())
		require.NoError(t, err)
		require.Len(t, pending, 1)

		e.clock.Set(due)
		p.waitSettled(t, id)
		expired := e.fresh(t)
		require.Len(t, expired, 1)
		e.publish(t, nil, expired[0], ended[0], expired[0], ended[0])
		d := p.deadline(t, id)
		require.Equal(t, StateResolved, d.State)
		require.Equal(t, expired[0].ID, d.ResolvedBy)

		e.clock.Set(due.Add(day))
		p.wake()
		require.Len(t, p.spy.Calls(), 1)
		require.Len(t, ofType(e.all(t), domain.TypeGraceExpired), 1)
	})
}

// Order is not relied on: an expiry that arrives before the placement end
// that set its deadline leaves the deadline resolved, and nothing fires.
func TestOutOfOrderDelivery(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		p := e.start(t, nil)
		pl := e.place(t, t0.Add(-30*day))
		// Ended long ago: the service writes PlacementEnded and GraceExpired.
		due := e.end(t, pl, t0.Add(-10*day))
		recs := e.fresh(t)
		ended, expired := ofType(recs, domain.TypePlacementEnded), ofType(recs, domain.TypeGraceExpired)
		require.Len(t, ended, 1)
		require.Len(t, expired, 1)

		e.publish(t, nil, expired[0])
		d := p.deadline(t, GraceID(pl.placeID))
		require.Equal(t, StateResolved, d.State)
		require.True(t, d.DueAt.IsZero())
		e.publish(t, nil, ended[0])
		d = p.deadline(t, GraceID(pl.placeID))
		require.Equal(t, StateResolved, d.State)
		// An end recorded after its grace period sets no deadline: its own
		// command wrote the expiry.
		require.True(t, d.DueAt.IsZero(), "due %s", due)
		require.Equal(t, expired[0].ID, d.ResolvedBy)

		n := p.idle.count()
		p.wake()
		p.idle.waitWake(t, n, t0.Add(never))
		require.Empty(t, p.spy.Calls())
		require.Len(t, ofType(e.all(t), domain.TypeGraceExpired), 1)
	})
}

// R9: an unaccepted invitation expires at expires_at, once; an accepted
// one never does.
func TestInvitationExpiry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		p := e.start(t, nil)
		open, _ := e.invite(t)
		accepted, email := e.invite(t)
		e.activate(t, accepted, email)
		recs := e.relay(t)
		invited := ofType(recs, domain.TypeAccountInvited)
		require.Len(t, invited, 2)
		due := t0.Add(ttl)
		require.Equal(t, due, p.deadline(t, InvitationID(open)).DueAt)
		require.Equal(t, StateResolved, p.deadline(t, InvitationID(accepted)).State)

		e.clock.Set(due)
		d := p.waitSettled(t, InvitationID(open))
		require.Equal(t, 1, d.Attempts)
		calls := p.spy.Calls()
		require.Len(t, calls, 1)
		require.Equal(t, commands.ExpireInvitation{AccountID: open}, calls[0].Command)
		require.Equal(t, invited[0].ID, calls[0].Meta.CausationID)
		require.Equal(t, due, calls[0].At)

		recs = e.relay(t)
		require.Len(t, recs, 1)
		require.Equal(t, &domain.InvitationExpired{AccountID: open, ExpiredAt: due}, decode(t, recs[0]).Event)
		require.Equal(t, StateResolved, p.deadline(t, InvitationID(open)).State)
		require.Len(t, ofType(e.all(t), domain.TypeInvitationExpired), 1)
	})
}

// A renewed invitation moves the deadline to its new expiry, whatever the
// order the invitations and the first expiry arrive in, and expires again
// there: the idempotency key of each firing names its due.
func TestRenewedInvitationExpiresAgain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		p := e.start(t, nil)
		account, email := e.invite(t)
		first := e.relay(t)
		due1 := t0.Add(ttl)
		e.clock.Set(due1)
		p.waitSettled(t, InvitationID(account))
		expired1 := e.fresh(t)
		require.Len(t, expired1, 1)

		e.clock.Set(due1.Add(day))
		r, err := e.svc.Invite(context.Background(), as(e.worker()), commands.Invite{Email: email, Kind: string(domain.KindFosterCarer)})
		require.NoError(t, err)
		require.Equal(t, account, r.AccountID)
		due2 := r.ExpiresAt
		renewed := e.fresh(t)
		require.Len(t, renewed, 1)

		// The renewal first, then the first expiry and invitation again.
		e.publish(t, nil, renewed[0], expired1[0], first[0])
		d := p.deadline(t, InvitationID(account))
		require.Equal(t, StatePending, d.State)
		require.Equal(t, due2, d.DueAt)
		require.Equal(t, renewed[0].ID, d.SourceEventID)
		require.Zero(t, d.Attempts)

		e.clock.Set(due2)
		p.waitSettled(t, InvitationID(account))
		expired2 := e.relay(t)
		require.Len(t, expired2, 1)
		require.Equal(t, &domain.InvitationExpired{AccountID: account, ExpiredAt: due2}, decode(t, expired2[0]).Event)
		require.Equal(t, StateResolved, p.deadline(t, InvitationID(account)).State)

		calls := p.spy.Calls()
		require.Len(t, calls, 2)
		require.NotEqual(t, calls[0].Meta.IdempotencyKey, calls[1].Meta.IdempotencyKey)
		require.Len(t, ofType(e.all(t), domain.TypeInvitationExpired), 2)
	})
}

// A restart reloads the table and fires the deadlines that fell due while
// nothing ran at once; it takes back its own old claims at once, and waits
// for the lease of another instance's.
func TestRestartFiresOverdueAtOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		ctx := context.Background()
		first := e.start(t, nil, func(c *Config) { c.InstanceID = "pm-a" })
		plain, own, other := e.place(t, t0.Add(-30*day)), e.place(t, t0.Add(-30*day)), e.place(t, t0.Add(-30*day))
		due := e.end(t, plain, t0)
		require.Equal(t, due, e.end(t, own, t0))
		require.Equal(t, due, e.end(t, other, t0))
		e.relay(t)
		first.stop()

		// While nothing runs, the deadlines fall due, and two of them are
		// claimed as if by crashed firings: one of this instance's, one of
		// another's.
		e.clock.Set(due.Add(time.Hour))
		now := e.clock.Now()
		lease := 10 * time.Minute
		_, err := e.db.ExecContext(ctx, `UPDATE deadlines SET claimed_by = ?, claimed_until = ? WHERE id = ?`,
			"pm-a", now.Add(lease).UnixMicro(), GraceID(own.placeID))
		require.NoError(t, err)
		_, err = e.db.ExecContext(ctx, `UPDATE deadlines SET claimed_by = ?, claimed_until = ? WHERE id = ?`,
			"pm-dead", now.Add(lease).UnixMicro(), GraceID(other.placeID))
		require.NoError(t, err)

		second := e.start(t, newBus(t), func(c *Config) { c.InstanceID = "pm-a"; c.Lease = lease })
		second.waitSettled(t, GraceID(plain.placeID))
		second.waitSettled(t, GraceID(own.placeID))
		require.Equal(t, StatePending, second.deadline(t, GraceID(other.placeID)).State)
		require.Len(t, second.spy.Calls(), 2)
		for _, c := range second.spy.Calls() {
			require.Equal(t, now, c.At, "fired at once")
		}
		second.idle.waitWake(t, 0, now.Add(lease))

		e.clock.Set(now.Add(lease))
		second.waitSettled(t, GraceID(other.placeID))
		require.Len(t, second.spy.Calls(), 3)
		expired := ofType(e.all(t), domain.TypeGraceExpired)
		require.Len(t, expired, 3)
		for _, r := range expired {
			require.Equal(t, due, decode(t, r).EffectiveAt, "effective at the deadline, not when fired")
		}
	})
}

// ErrNotDue (the service's clock behind ours) is retried at the later of
// the due and the backoff, without an expiry, until the service agrees.
func TestNotDueIsRetried(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		p := e.start(t, nil, func(c *Config) { c.Backoff = time.Second; c.MaxBackoff = time.Minute })
		pl := e.place(t, t0.Add(-30*day))
		due := e.end(t, pl, t0)
		e.relay(t)
		id := GraceID(pl.placeID)

		e.skew.Store(int64(-5 * time.Second))
		n := p.idle.count()
		e.clock.Set(due)
		p.idle.waitWake(t, n, due.Add(time.Second))
		d := p.deadline(t, id)
		require.Equal(t, StatePending, d.State)
		require.Equal(t, 1, d.Attempts)
		require.Contains(t, d.LastError, "deadline not reached yet")
		require.Empty(t, d.ClaimedBy)
		require.Equal(t, due.Add(time.Second), d.ClaimedUntil)
		calls := p.spy.Calls()
		require.Len(t, calls, 1)
		require.ErrorIs(t, calls[0].Err, domain.ErrNotDue)
		st, err := p.Status(context.Background())
		require.NoError(t, err)
		require.Equal(t, 1, st.Pending)
		require.Equal(t, 1, st.Overdue)
		require.Equal(t, 1, st.Failing)
		require.Contains(t, st.LastError, "deadline not reached yet")

		e.skew.Store(0)
		e.clock.Set(due.Add(time.Second))
		d = p.waitSettled(t, id)
		require.Equal(t, 2, d.Attempts)
		require.Empty(t, d.LastError)
		require.Len(t, ofType(e.all(t), domain.TypeGraceExpired), 1)
	})
}

// Other failures are retried with an exponential backoff, keeping the last
// error, until the command succeeds.
func TestFailuresBackOff(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		p := e.start(t, nil, func(c *Config) { c.Backoff = time.Second; c.MaxBackoff = 3 * time.Second })
		pl := e.place(t, t0.Add(-30*day))
		due := e.end(t, pl, t0)
		e.relay(t)
		id := GraceID(pl.placeID)
		p.spy.fail.Store(3)

		n := p.idle.count()
		e.clock.Set(due)
		for i, wait := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second} {
			now := e.clock.Now()
			n = p.idle.waitWake(t, n, now.Add(wait))
			d := p.deadline(t, id)
			require.Equal(t, StatePending, d.State)
			require.Equal(t, i+1, d.Attempts)
			require.Equal(t, errStoreDown.Error(), d.LastError)
			e.clock.Set(now.Add(wait))
		}
		d := p.waitSettled(t, id)
		require.Equal(t, 4, d.Attempts)
		require.Empty(t, d.LastError)
		require.Len(t, p.spy.Calls(), 4)
		// The counters move just after the row is settled.
		require.Eventually(t, func() bool {
			st, err := p.Status(context.Background())
			return err == nil && st.Fired == 1 && st.Failures == 3
		}, 10*time.Second, 5*time.Millisecond)
		require.Len(t, ofType(e.all(t), domain.TypeGraceExpired), 1)
	})
}

// The table's rules on their own: the latest due and the furthest
// resolution win in any order.
func TestTableIsOrderIndependent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		ctx := context.Background()
		tb, err := newTable(e.db)
		require.NoError(t, err)
		account := uuid.New()
		s := invitationSubject(account)
		ev := func(n byte) uuid.UUID { return uuid.UUID{15: n} }
		d1, d2 := t0.Add(ttl), t0.Add(ttl+20*day)
		type op func() error
		ops := []op{
			func() error { _, err := tb.setDue(ctx, s, d1, ev(1), uuid.Nil, t0); return err },
			func() error { _, err := tb.resolve(ctx, s, micros(d1), ev(2), t0); return err },
			func() error { _, err := tb.setDue(ctx, s, d2, ev(3), uuid.Nil, t0); return err },
		}
		perms := [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}, {2, 2, 1, 1, 0, 0}}
		for _, perm := range perms {
			_, err := e.db.ExecContext(ctx, `DELETE FROM deadlines`)
			require.NoError(t, err)
			for _, i := range perm {
				require.NoError(t, ops[i]())
			}
			d, ok, err := tb.get(ctx, s.id)
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, StatePending, d.State, "order %v", perm)
			require.Equal(t, d2, d.DueAt, "order %v", perm)
			require.Equal(t, ev(3), d.SourceEventID, "order %v", perm)
			require.Equal(t, ev(2), d.ResolvedBy, "order %v", perm)
		}
		// Resolved for good by either of two events: the smaller id is kept.
		for _, perm := range [][]byte{{7, 9}, {9, 7}} {
			for _, n := range perm {
				_, err := tb.resolve(ctx, s, forever, ev(n), t0)
				require.NoError(t, err)
			}
			d, _, err := tb.get(ctx, s.id)
			require.NoError(t, err)
			require.Equal(t, StateResolved, d.State)
			require.Equal(t, ev(7), d.ResolvedBy)
		}
	})
}

func TestNewChecksConfig(t *testing.T) {
	_, err := New(Config{Lease: -time.Second, Backoff: time.Minute, MaxBackoff: time.Second})
	require.Error(t, err)
	for _, want := range []string{"DB is nil", "Publisher is nil", "Subscriber is nil", "Commands is nil",
		"Lease -1s is negative", "MaxBackoff 1s is below Backoff 1m0s"} {
		require.Contains(t, err.Error(), want)
	}
}

func TestRunTwice(t *testing.T) {
	e := newEnv(t, "sqlite::memory:")
	p := e.start(t, nil)
	require.ErrorIs(t, p.Run(context.Background()), ErrAlreadyRunning)
}

// TestALateEndFiresNothing: an end recorded after its grace period carries
// its expiry (R4), so the process manager schedules nothing for it: no
// command is sent even when the expiry's own message has not come yet
// (issue 18: no command for a deadline already settled).
func TestALateEndFiresNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		p := e.start(t, nil)
		pl := e.place(t, t0.Add(-30*day))
		e.end(t, pl, t0.Add(-10*day))
		ended := ofType(e.fresh(t), domain.TypePlacementEnded)
		require.Len(t, ended, 1)
		e.publish(t, nil, ended[0])
		n := p.idle.count()
		p.wake()
		p.idle.waitWake(t, n, t0.Add(never))
		require.Empty(t, p.spy.Calls(), "no expiry command for an end that brought its expiry")
	})
}
