package projections_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
)

// stagedWarm is warm as a Stager. Its first probes Stages check that no
// transaction of this process holds the database's write lock while they
// run (a write transaction of their own would wait for it); before, when
// set, runs once, in the first Stage.
type stagedWarm struct {
	*warm
	db      *bun.DB
	probes  int
	stages  atomic.Int64
	blocked atomic.Int64 // probes that could not take the write lock
	before  func(recs []eventlog.Record)
}

func (s *stagedWarm) Stage(recs []eventlog.Record) (projections.Staged, error) {
	if n := s.stages.Add(1); n <= int64(s.probes) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		tx, err := s.db.BeginTx(ctx, nil)
		if err == nil {
			_, err = tx.ExecContext(ctx, "UPDATE projection_checkpoints SET name = name WHERE name = 'none'")
			err = errorsJoin(err, tx.Commit())
		}
		cancel()
		if err != nil {
			s.blocked.Add(1)
		}
	}
	if f := s.before; f != nil {
		s.before = nil
		f(recs)
	}
	return s.fold(recs), nil
}

func errorsJoin(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

var _ projections.Stager = (*stagedWarm)(nil)

// TestRunnerStagesBatchesBeforeItsTransaction: on SQLite, the runner
// computes a Stager's batch (Stage) before the transaction that writes it,
// so the file's write lock is held only for the writes; on PostgreSQL it
// applies in the transaction, as before. Either way the tables are what
// the log says, catching up and following.
func TestRunnerStagesBatchesBeforeItsTransaction(t *testing.T) {
	forBackends(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		e.appendN(t, 100, 8)
		p := &stagedWarm{warm: newWarm(), db: e.db.DB, probes: 5}
		r, _ := startRunner(t, e.db.DB, e.store, []projections.Projection{newCounts(1), p}, projections.WithBatchSize(10))
		waitAt(t, r, e.head(t))
		e.appendN(t, 60, 8)
		waitAt(t, r, e.head(t))
		require.Equal(t, expected(e.records(t), all), readSnapshot(t, e.db))
		require.Equal(t, 1, p.Loads(), "no reload")
		if e.db.Dialect().Name() == dialect.PG {
			require.Zero(t, p.stages.Load(), "PostgreSQL applies in the transaction")
			return
		}
		require.GreaterOrEqual(t, p.stages.Load(), int64(10), "every batch staged")
		require.Zero(t, p.blocked.Load(), "Stage ran while the write lock was held")
	})
}

// TestStagedBatchFindsTheCheckpointMovedAndReloads: another runner applies
// the batch between its Stage and its transaction. The transaction finds
// the checkpoint moved and the runner loads its state again (its state is
// already past the batch: replaying the batch on it would count it twice)
// and goes on from the other runner's checkpoint, writing each event once.
func TestStagedBatchFindsTheCheckpointMovedAndReloads(t *testing.T) {
	forBackends(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		if e.db.Dialect().Name() == dialect.PG {
			t.Skip("the runner stages live batches on SQLite only")
		}
		e.appendN(t, 40, 5)
		p := &stagedWarm{warm: newWarm(), db: e.db.DB}
		var moved atomic.Bool
		p.before = func(recs []eventlog.Record) {
			// What another runner would do: the rows of recs, and the
			// checkpoint past them, in one transaction. (This runs in the
			// runner's goroutine: failures are reported, not fatal.)
			ctx := context.Background()
			tx, err := e.db.BeginTx(ctx, nil)
			if !assert.NoError(t, err) {
				return
			}
			defer func() { _ = tx.Rollback() }()
			for _, rec := range recs {
				_, err := tx.ExecContext(ctx, "INSERT INTO warm_events_g1 (position, stream, nth_in_stream, nth) VALUES (?, ?, ?, ?)",
					int64(rec.Position.Commit), rec.Stream, int64(rec.Version), int64(rec.Position.Commit))
				if !assert.NoError(t, err) {
					return
				}
			}
			last := recs[len(recs)-1].Position
			_, err = tx.ExecContext(ctx, "UPDATE projection_checkpoints SET position_commit = ?, position_prepare = ? WHERE name = 'warm'",
				int64(last.Commit), int64(last.Prepare))
			if assert.NoError(t, err) && assert.NoError(t, tx.Commit()) {
				moved.Store(true)
			}
		}
		r, _ := startRunner(t, e.db.DB, e.store, []projections.Projection{newCounts(1), p}, projections.WithBatchSize(10))
		waitAt(t, r, e.head(t))
		e.appendN(t, 30, 5)
		waitAt(t, r, e.head(t))
		require.True(t, moved.Load())
		require.Equal(t, expected(e.records(t), all), readSnapshot(t, e.db))
		require.Equal(t, 2, p.Loads(), "loaded again after the checkpoint moved under a staged batch")
		require.NoError(t, statusOf(t, r, "warm").LastError)
	})
}

// committedWarm is stagedWarm telling which positions the runner said
// were committed, and whether the checkpoint row held each one when it
// was said.
type committedWarm struct {
	*stagedWarm
	t         *testing.T
	positions []eventlog.Position
}

func (c *committedWarm) Committed(pos eventlog.Position) {
	// The runner calls this between transactions, on its goroutine:
	// failures are reported, not fatal.
	var stored uint64
	err := c.db.QueryRowContext(context.Background(),
		"SELECT position_commit FROM projection_checkpoints WHERE name = 'warm'").Scan(&stored)
	if assert.NoError(c.t, err) {
		assert.Equal(c.t, pos.Commit, stored, "Committed(%s) said before its checkpoint committed", pos)
	}
	c.positions = append(c.positions, pos)
}

var _ projections.Committer = (*committedWarm)(nil)

// TestRunnerSaysWhatItCommitted: a Committer hears the checkpoint it was
// loaded at, then each batch's last position once its transaction has
// committed (never while a staged batch waits for the write lock), ending
// at the head.
func TestRunnerSaysWhatItCommitted(t *testing.T) {
	forBackends(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		e.appendN(t, 50, 5)
		p := &committedWarm{stagedWarm: &stagedWarm{warm: newWarm(), db: e.db.DB}, t: t}
		r, stop := startRunner(t, e.db.DB, e.store, []projections.Projection{p}, projections.WithBatchSize(10))
		waitAt(t, r, e.head(t))
		e.appendN(t, 30, 5)
		head := e.head(t)
		waitAt(t, r, head)
		stop()
		require.GreaterOrEqual(t, len(p.positions), 6, "the load, then every batch")
		require.True(t, p.positions[0].IsZero(), "first the checkpoint it was loaded at")
		for i := 1; i < len(p.positions); i++ {
			require.True(t, p.positions[i-1].Before(p.positions[i]), "in order, once each")
		}
		require.Equal(t, head, p.positions[len(p.positions)-1])
	})
}
