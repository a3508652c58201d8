package projections_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
)

// stagedCounts is counts as a Stager: Stage keeps the records, Write
// applies them (counts' Apply reads only its tables), and the failAt-th
// Write fails.
type stagedCounts struct {
	*counts
	failAt int
	writes int
	stages atomic.Int64
	// returned is set once Rebuild has returned; a Stage after it counts
	// in late.
	returned atomic.Bool
	late     atomic.Int64
}

var errStagedWrite = errors.New("staged write failed")

func (s *stagedCounts) Stage(recs []eventlog.Record) (projections.Staged, error) {
	if s.returned.Load() {
		s.late.Add(1)
	}
	s.stages.Add(1)
	return stagedBatch{s: s, recs: recs}, nil
}

type stagedBatch struct {
	s    *stagedCounts
	recs []eventlog.Record
}

func (b stagedBatch) Write(ctx context.Context, tx bun.Tx, t projections.Tables) error {
	b.s.writes++
	if b.s.writes == b.s.failAt {
		return errStagedWrite
	}
	return b.s.counts.Apply(ctx, tx, t, b.recs)
}

// TestRebuildStagedWriteFails (review): a staged batch's Write fails while
// the next batch was already staged: the rebuild fails with the Write's
// error, swaps nothing (checkpoint and live rows unchanged), drops its
// target tables, and stages nothing once it has returned. Without the
// failure the staged rebuild builds what Apply does.
func TestRebuildStagedWriteFails(t *testing.T) {
	forBackends(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		e.appendN(t, 300, 10)
		opts := []projections.Option{projections.WithRebuildBatchSize(50), projections.WithBatchSize(10),
			projections.WithLogger(testLogger(t))}
		require.NoError(t, projections.Rebuild(context.Background(), e.db.DB, e.store, newCounts(1), nil, opts...))
		before := readCounts(t, e.db)

		p := &stagedCounts{counts: newCounts(1), failAt: 2}
		err := projections.Rebuild(context.Background(), e.db.DB, e.store, p, nil, opts...)
		p.returned.Store(true)
		require.ErrorIs(t, err, errStagedWrite)
		require.GreaterOrEqual(t, p.stages.Load(), int64(2))
		require.Equal(t, stored{Generation: 2, Version: 1, Position: 300}, checkpointOf(t, e.db, "counts"))
		require.Equal(t, before, readCounts(t, e.db))
		require.Equal(t, []string{"counts_g2"}, tablesLike(t, e.db, "counts_g"), "the failed rebuild's tables dropped")
		time.Sleep(50 * time.Millisecond)
		require.Zero(t, p.late.Load(), "no Stage after Rebuild returned")

		ok := &stagedCounts{counts: newCounts(1)}
		require.NoError(t, projections.Rebuild(context.Background(), e.db.DB, e.store, ok, nil, opts...))
		require.Equal(t, stored{Generation: 3, Version: 1, Position: 300}, checkpointOf(t, e.db, "counts"))
		require.Equal(t, countsPart(expected(e.records(t), 300)), readCounts(t, e.db))
	})
}
