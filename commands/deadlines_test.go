package commands_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// deadlineBatch is a batch of the process manager's commands over a set-up
// log: three grace periods that ran out (two of them of one child, so of
// one stream), one not yet due, one sent by a worker, one invalid key and
// one command that is not a deadline's.
type deadlineBatch struct {
	batch []commands.DeadlineCommand
	// due are the indexes whose expiry must be appended, with their
	// placement.
	due map[int]uuid.UUID
	// refused are the indexes refused, with their sentinel.
	refused map[int]error
	unknown int
}

func system(key string) commands.Meta {
	return commands.Meta{Actor: domain.System, RequestID: key, IdempotencyKey: key}
}

// setUpDeadlines places and ends the placements at t0 (grace until t0+7d,
// one at t0+5d: grace until t0+12d) and moves the clock to t0+8d.
func (e *env) setUpDeadlines(t *testing.T) deadlineBatch {
	t.Helper()
	w := e.worker()
	c1, c2 := e.child(t, w), e.child(t, w)
	carerA, carerB := e.active(t, domain.KindFosterCarer), e.active(t, domain.KindFosterCarer)
	p1 := e.place(t, w, c1, carerA.id, t0.Add(-30*day))
	p2 := e.place(t, w, c1, carerB.id, t0.Add(-30*day))
	p3 := e.place(t, w, c2, carerA.id, t0.Add(-30*day))
	p4 := e.place(t, w, c2, carerB.id, t0.Add(-30*day))
	for _, p := range []uuid.UUID{p1, p2} {
		e.end(t, w, c1, p, t0)
	}
	e.end(t, w, c2, p3, t0)
	e.end(t, w, c2, p4, t0.Add(5*day))
	e.clock.Set(t0.Add(8 * day))
	expire := func(child, p uuid.UUID) commands.ExpireCarerAccess {
		return commands.ExpireCarerAccess{ChildID: child, PlacementID: p}
	}
	return deadlineBatch{
		batch: []commands.DeadlineCommand{
			{Meta: system("deadline/grace/" + p1.String() + "/1"), Command: expire(c1, p1)},
			{Meta: system("deadline/grace/" + p2.String() + "/1"), Command: expire(c1, p2)},
			{Meta: system("deadline/grace/" + p3.String() + "/1"), Command: expire(c2, p3)},
			{Meta: system("deadline/grace/" + p4.String() + "/1"), Command: expire(c2, p4)},
			{Meta: as(w), Command: expire(c2, p3)},
			{Meta: system("deadline/\x01"), Command: expire(c2, p3)},
			{Meta: system("deadline/x"), Command: commands.Grant{ChildID: c1}},
		},
		due:     map[int]uuid.UUID{0: p1, 1: p2, 2: p3},
		refused: map[int]error{3: domain.ErrNotDue, 4: domain.ErrRoleNotAllowed, 5: domain.ErrInvalid},
		unknown: 6,
	}
}

// graceExpired counts the GraceExpired events of each placement in the log.
func (e *env) graceExpired(t *testing.T) map[uuid.UUID]int {
	t.Helper()
	n := map[uuid.UUID]int{}
	for _, env := range e.since(t, eventlog.Start) {
		if g, ok := env.Event.(*domain.GraceExpired); ok {
			n[g.PlacementID]++
		}
	}
	return n
}

// check checks a batch's outcomes: the due ones succeeded with their
// expiry (appended now or found), the others refused or unknown.
func (b deadlineBatch) check(t *testing.T, outs []commands.DeadlineOutcome, wantEvents bool) {
	t.Helper()
	require.Len(t, outs, len(b.batch))
	for i, o := range outs {
		switch {
		case b.due[i] != uuid.Nil:
			require.NoError(t, o.Err, "command %d", i)
			require.False(t, o.Result.Position.IsZero())
			if !wantEvents {
				continue
			}
			require.Len(t, o.Events, 1, "command %d", i)
			g, ok := o.Events[0].Event.(*domain.GraceExpired)
			require.True(t, ok)
			require.Equal(t, b.due[i], g.PlacementID)
			require.Equal(t, t0.Add(7*day), g.ExpiredAt)
			require.Equal(t, o.Result.Position, o.Events[0].Position)
		case b.refused[i] != nil:
			require.ErrorIs(t, o.Err, b.refused[i], "command %d", i)
			require.Empty(t, o.Events)
		case i == b.unknown:
			require.ErrorIs(t, o.Err, commands.ErrUnknownDeadlineCommand)
		}
	}
}

// FireDeadlines decides each deadline command as its own method does and
// appends the due ones together, on each kind of store: the in-memory log
// (no AppendBatch: concurrent appends) and the SQL stores (one read of the
// streams, one AppendBatch). Two deadlines of one child are decided on one
// load, one after the other; refusals append nothing and are recorded; a
// repeated batch appends nothing and answers the first outcome; the single
// command with the same key afterwards appends nothing either.
func TestFireDeadlines(t *testing.T) {
	for _, tt := range []struct {
		name string
		url  func(testing.TB) string
	}{
		{"memory", func(testing.TB) string { return memory }},
		{"sqlite-file", sqltest.SQLiteFile},
		{"postgres", sqltest.Postgres},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.url(t))
			b := e.setUpDeadlines(t)
			ctx := context.Background()
			before, refusals := e.head(t), len(e.refusals.All())

			outs := e.svc.FireDeadlines(ctx, b.batch)
			b.check(t, outs, true)
			appended := e.since(t, before)
			require.Len(t, appended, 3, "one expiry per due deadline, nothing for the refused")
			require.Equal(t, map[uuid.UUID]int{b.due[0]: 1, b.due[1]: 1, b.due[2]: 1}, e.graceExpired(t))
			for i := range b.due {
				require.Equal(t, domain.System.ID, outs[i].Events[0].ActorID)
			}
			got := e.refusals.All()[refusals:]
			require.Len(t, got, len(b.refused), "each refusal recorded once")
			for _, r := range got {
				require.Equal(t, commands.CommandExpireCarerAccess, r.Command)
			}

			// Again: nothing appended, the first outcomes answered.
			head := e.head(t)
			again := e.svc.FireDeadlines(ctx, b.batch)
			b.check(t, again, true)
			require.Equal(t, head, e.head(t), "a repeated batch appends nothing")
			for i := range b.due {
				require.Equal(t, outs[i].Events[0].EventID, again[i].Events[0].EventID)
				require.Equal(t, outs[i].Result, again[i].Result)
			}
			// The single command with the same key is the same request.
			for i := range b.due {
				r, err := e.svc.ExpireCarerAccess(ctx, b.batch[i].Meta, b.batch[i].Command.(commands.ExpireCarerAccess))
				require.NoError(t, err)
				require.Equal(t, outs[i].Result, r)
			}
			require.Equal(t, head, e.head(t))
		})
	}
}

// batchFault wraps the SQL store: its AppendBatch fails as fault says, once
// each time fault is armed.
type batchFault struct {
	commands.Store
	batch eventlog.BatchAppender
	armed atomic.Bool
	// conflict: refuse the batch's first append as a concurrency conflict,
	// writing nothing. Else: write the batch, then report an error (the
	// commit's outcome unknown, or the process dying just after it).
	conflict bool
	batches  atomic.Int64
}

func (s *batchFault) AppendBatch(ctx context.Context, batch []eventlog.StreamAppend) ([]eventlog.AppendResult, error) {
	s.batches.Add(1)
	if !s.armed.CompareAndSwap(true, false) {
		return s.batch.AppendBatch(ctx, batch)
	}
	if s.conflict {
		return nil, &eventlog.BatchError{Index: 0, Stream: batch[0].Stream,
			Err: &eventlog.ConflictError{Stream: batch[0].Stream, Expected: batch[0].Expected}}
	}
	if _, err := s.batch.AppendBatch(ctx, batch); err != nil {
		return nil, err
	}
	return nil, errors.New("injected: the connection was lost at commit")
}

// A batch append that fails leaves every deadline exactly once: a
// conflict on one append carries that command out alone (with its own
// retries, and the later one on its stream too) and the rest in the
// batch; a batch written whose outcome was
// lost (an error at commit, or a crash right after it) fails every command
// of it, and the retry finds each expiry already written and appends
// nothing.
func TestFireDeadlinesWhenTheBatchAppendFails(t *testing.T) {
	for _, tt := range []struct {
		name     string
		conflict bool
		// firstOK: the first call's due commands succeed.
		firstOK bool
	}{
		{"a conflict carries that command out alone", true, true},
		{"an unknown outcome is retried, appending nothing", false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var fault *batchFault
			e := newEnv(t, sqltest.SQLiteFile(t), withStore(func(s commands.Store) commands.Store {
				fault = &batchFault{Store: s, batch: s.(eventlog.BatchAppender), conflict: tt.conflict}
				return fault
			}))
			b := e.setUpDeadlines(t)
			ctx := context.Background()
			fault.armed.Store(true)

			outs := e.svc.FireDeadlines(ctx, b.batch)
			if tt.firstOK {
				b.check(t, outs, false)
				require.Empty(t, outs[0].Events, "carried out alone: its own method answers no events")
				require.Len(t, outs[2].Events, 1)
			} else {
				// The batch was written but reported failed.
				for i := range b.due {
					require.Error(t, outs[i].Err, "command %d", i)
				}
			}
			require.Len(t, e.graceExpired(t), 3, "every due expiry written")
			head := e.head(t)
			again := e.svc.FireDeadlines(ctx, b.batch)
			b.check(t, again, true)
			require.Equal(t, head, e.head(t), "the retry appends nothing")
			require.Equal(t, map[uuid.UUID]int{b.due[0]: 1, b.due[1]: 1, b.due[2]: 1}, e.graceExpired(t), "exactly one expiry each")
			require.Positive(t, fault.batches.Load())
		})
	}
}
