package projections_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
)

func TestCatchUpThenFollow(t *testing.T) {
	forBackends(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		e.appendN(t, 700, 20)

		var mu sync.Mutex
		batches := map[string][]int{}
		hook := projections.WithAfterApplyHook(func(name string, recs []eventlog.Record) error {
			mu.Lock()
			defer mu.Unlock()
			batches[name] = append(batches[name], len(recs))
			return nil
		})
		c, w := newCounts(1), newWarm()
		r, _ := startRunner(t, e.db.DB, e.store, []projections.Projection{c, w}, projections.WithBatchSize(100), hook)
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		require.NoError(t, r.WaitCaughtUp(ctx))
		require.Equal(t, expected(e.records(t), all), readSnapshot(t, e.db))

		mu.Lock()
		require.Equal(t, []int{100, 100, 100, 100, 100, 100, 100}, batches["counts"], "catch-up applies one page per transaction")
		require.Equal(t, []int{100, 100, 100, 100, 100, 100, 100}, batches["warm"])
		mu.Unlock()

		// Live: appends while the runner follows.
		for range 10 {
			e.appendN(t, 30, 20)
		}
		head := e.head(t)
		waitAt(t, r, head)
		require.Equal(t, expected(e.records(t), all), readSnapshot(t, e.db))
		for _, s := range r.Status() {
			require.Equal(t, int64(1), s.Generation, s.Name)
			require.Equal(t, head, s.Head, s.Name)
			require.Zero(t, s.Lag, s.Name)
			require.NoError(t, s.LastError, s.Name)
			require.False(t, s.Rebuilding, s.Name)
		}
		require.Equal(t, stored{Generation: 1, Version: 1, Position: head.Commit}, checkpointOf(t, e.db, "counts"))
		require.Equal(t, stored{Generation: 1, Version: 1, Position: head.Commit}, checkpointOf(t, e.db, "warm"))
		require.EqualValues(t, head.Commit, c.applied.Load())
		require.Zero(t, c.replayed.Load())
		require.Equal(t, 1, w.Loads(), "no reload")
		mu.Lock()
		for _, n := range batches["counts"] {
			require.LessOrEqual(t, n, 100)
		}
		mu.Unlock()
	})
}

func TestFailedWriteRollsBackAndRecovers(t *testing.T) {
	forBackends(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		e.appendN(t, 100, 5)
		const poison = 55
		var failing atomic.Bool
		var failures atomic.Int64
		failing.Store(true)
		c := newCounts(1)
		c.fail = func(recs []eventlog.Record) error {
			if failing.Load() && recs[0].Position.Commit <= poison && poison <= recs[len(recs)-1].Position.Commit {
				failures.Add(1)
				return errors.New("injected failure after writing")
			}
			return nil
		}
		w := newWarm()
		r, _ := startRunner(t, e.db.DB, e.store, []projections.Projection{c, w}, projections.WithBatchSize(10))

		// Let it fail and retry a few times: nothing may change.
		require.Eventually(t, func() bool { return failures.Load() >= 3 }, waitFor, 5*time.Millisecond)
		// The lag goes on across the retries (a retry's new session does
		// not report 0 before it has read the failing page again).
		deadline := time.Now().Add(waitFor)
		for from := failures.Load(); failures.Load() < from+3; time.Sleep(time.Millisecond) {
			require.Positive(t, statusOf(t, r, "counts").Lag, "lag between retries")
			require.True(t, time.Now().Before(deadline), "3 more retries")
		}
		s := statusOf(t, r, "counts")
		require.ErrorContains(t, s.LastError, "injected failure")
		require.False(t, s.CaughtUp)
		require.Equal(t, uint64(50), s.Position.Commit)
		require.Positive(t, s.Lag, "lag counts from the first unapplied event")
		require.Equal(t, stored{Generation: 1, Version: 1, Position: 50}, checkpointOf(t, e.db, "counts"),
			"the failed batch did not move the checkpoint")
		recs := e.records(t)
		require.Equal(t, countsPart(expected(recs, 50)), readCounts(t, e.db), "the failed batch's writes were rolled back")

		// The other projection is not held back.
		waitAtFor(t, r, "warm", e.head(t))

		failing.Store(false)
		waitAt(t, r, e.head(t))
		require.Equal(t, expected(recs, all), readSnapshot(t, e.db))
		require.NoError(t, statusOf(t, r, "counts").LastError)
		require.EqualValues(t, 100, c.applied.Load(), "every event written once")
	})
}

// waitAtFor waits until projection name of r is caught up at head.
func waitAtFor(t testing.TB, r *projections.Runner, name string, head eventlog.Position) {
	t.Helper()
	require.Eventually(t, func() bool {
		s := statusOf(t, r, name)
		return s.CaughtUp && !s.Position.Before(head)
	}, waitFor, 5*time.Millisecond, "%s did not reach %s", name, head)
}

// gatedLog holds back the events a subscription delivers while closed.
type gatedLog struct {
	projections.Log
	mu   sync.Mutex
	gate chan struct{} // closed while open
	// subscribed counts Subscribe calls: a worker subscribes once it has
	// caught up page by page, and only the subscription is gated.
	subscribed atomic.Int64
}

// waitSubscribed waits until n workers follow g through Subscribe. Until
// then a worker reads new events with ReadAll, which the gate does not hold
// back.
func (g *gatedLog) waitSubscribed(t testing.TB, n int64) {
	t.Helper()
	require.Eventually(t, func() bool { return g.subscribed.Load() >= n }, waitFor, time.Millisecond,
		"%d of %d workers subscribed", g.subscribed.Load(), n)
}

func newGatedLog(l projections.Log, open bool) *gatedLog {
	g := &gatedLog{Log: l, gate: make(chan struct{})}
	if open {
		close(g.gate)
	}
	return g
}

func (g *gatedLog) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.gate:
	default:
		close(g.gate)
	}
}

func (g *gatedLog) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.gate:
		g.gate = make(chan struct{})
	default:
	}
}

func (g *gatedLog) Subscribe(ctx context.Context, after eventlog.Position, handle func(context.Context, eventlog.Record) error) error {
	g.subscribed.Add(1)
	return g.Log.Subscribe(ctx, after, func(ctx context.Context, rec eventlog.Record) error {
		g.mu.Lock()
		gate := g.gate
		g.mu.Unlock()
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		return handle(ctx, rec)
	})
}

func TestRunnerReplaysWhatAnotherRunnerApplied(t *testing.T) {
	forBackends(t, func(t *testing.T, url string) {
		e1 := newEnv(t, url)
		e2 := e1.second(t)
		e1.appendN(t, 100, 8)

		c1, c2 := newCounts(1), newCounts(1)
		g1, g2 := newGatedLog(e1.store, true), newGatedLog(e2.store, false)
		r1, _ := startRunner(t, e1.db.DB, g1, []projections.Projection{c1, newWarm()}, projections.WithBatchSize(16))
		h1 := e1.head(t)
		waitAt(t, r1, h1)
		r2, _ := startRunner(t, e2.db.DB, g2, []projections.Projection{c2, newWarm()}, projections.WithBatchSize(16))
		waitAt(t, r2, h1)
		require.Zero(t, c2.applied.Load(), "r2 starts at r1's checkpoint")
		// Both runners follow through the gated subscription from here on.
		g1.waitSubscribed(t, 2)
		g2.waitSubscribed(t, 2)

		// r1 applies 50 events while r2's subscription is held back.
		e1.appendN(t, 50, 8)
		h2 := e1.head(t)
		waitAt(t, r1, h2)
		g1.shut()
		g2.open()
		waitAt(t, r2, h2)
		require.Zero(t, c2.applied.Load(), "r2 found the checkpoint moved and wrote nothing")
		require.EqualValues(t, 50, c2.replayed.Load())

		// Now r2 writes: its warm projection's memory must include the 50
		// events it replayed.
		e2.appendN(t, 30, 8)
		h3 := e1.head(t)
		waitAt(t, r2, h3)
		require.EqualValues(t, 30, c2.applied.Load())
		require.Equal(t, expected(e1.records(t), all), readSnapshot(t, e1.db))

		g1.open()
		waitAt(t, r1, h3)
		require.EqualValues(t, 30, c1.replayed.Load())
		require.EqualValues(t, 150, c1.applied.Load())
		require.Equal(t, expected(e1.records(t), all), readSnapshot(t, e1.db))
	})
}

func TestTwoRunnersApplyEveryEventOnce(t *testing.T) {
	forBackends(t, func(t *testing.T, url string) {
		e1 := newEnv(t, url)
		e2 := e1.second(t)
		e1.appendN(t, 200, 10)

		c1, c2 := newCounts(1), newCounts(1)
		c2.applied, c2.replayed = c1.applied, c1.replayed
		r1, _ := startRunner(t, e1.db.DB, e1.store, []projections.Projection{c1, newWarm()}, projections.WithBatchSize(7))
		r2, _ := startRunner(t, e2.db.DB, e2.store, []projections.Projection{c2, newWarm()}, projections.WithBatchSize(11))

		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for i := range 4 {
			st := e1.store
			if i%2 == 1 {
				st = e2.store
			}
			wg.Go(func() { errs <- appendEvents(ctx, st, 150, 10) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		head := e1.head(t)
		waitAt(t, r1, head)
		waitAt(t, r2, head)
		want := expected(e1.records(t), all)
		require.Equal(t, want, readSnapshot(t, e1.db))
		require.EqualValues(t, head.Commit, c1.applied.Load(), "every event written exactly once across both runners")
		t.Logf("events written %d, replayed %d", c1.applied.Load(), c1.replayed.Load())

		// A rebuild from scratch gives the same tables; both runners carry on
		// on the new generation.
		rebuildAll(t, e1.db.DB, e1.store)
		require.Equal(t, want, readSnapshot(t, e1.db))
		e2.appendN(t, 40, 10)
		head = e1.head(t)
		waitAt(t, r1, head)
		waitAt(t, r2, head)
		require.Equal(t, expected(e1.records(t), all), readSnapshot(t, e1.db))
		require.Equal(t, int64(2), statusOf(t, r1, "counts").Generation)
		require.Equal(t, int64(2), statusOf(t, r2, "warm").Generation)
	})
}

func TestRebuildSwapsWhileQueriesAndRunnerGoOn(t *testing.T) {
	forBackends(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		e.appendN(t, 1500, 30)
		r, _ := startRunner(t, e.db.DB, e.store, []projections.Projection{newCounts(1), newWarm()}, projections.WithBatchSize(100))
		waitAt(t, r, e.head(t))
		n0 := int64(e.head(t).Commit)

		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		// Queries through the views: in one statement (one snapshot), the two
		// tables of counts and its checkpoint must agree, and never show less
		// than the events before the rebuild.
		stop := make(chan struct{})
		var queries atomic.Int64
		qerr := make(chan error, 1)
		go func() {
			defer close(qerr)
			var lastPos int64
			for {
				select {
				case <-stop:
					return
				default:
				}
				var byStream, byType, pos int64
				err := e.db.QueryRowContext(ctx, "SELECT (SELECT COALESCE(SUM(events), 0) FROM counts), "+
					"(SELECT COALESCE(SUM(events), 0) FROM count_types), "+
					"(SELECT position_commit FROM projection_checkpoints WHERE name = 'counts')").Scan(&byStream, &byType, &pos)
				if err == nil && (byStream != byType || byStream != pos || byStream < n0 || pos < lastPos) {
					err = fmt.Errorf("inconsistent view: counts %d, count_types %d, checkpoint %d, at least %d and %d",
						byStream, byType, pos, n0, lastPos)
				}
				lastPos = pos
				if err != nil {
					qerr <- err
					return
				}
				queries.Add(1)
			}
		}()
		appended := make(chan error, 1)
		go func() { appended <- appendEvents(ctx, e.store, 300, 30) }()

		var calls [][2]uint64
		err := projections.Rebuild(ctx, e.db.DB, e.store, newCounts(1), func(done, total uint64) {
			calls = append(calls, [2]uint64{done, total})
		}, projections.WithBatchSize(50), projections.WithLogger(testLogger(t)))
		require.NoError(t, err)
		require.NoError(t, <-appended)
		// A few more queries on the new generation.
		before := queries.Load()
		require.Eventually(t, func() bool { return queries.Load() > before+5 }, waitFor, time.Millisecond)
		close(stop)
		require.NoError(t, <-qerr)
		t.Logf("%d queries during the rebuild", queries.Load())

		require.GreaterOrEqual(t, len(calls), 30)
		require.Equal(t, [2]uint64{0, calls[0][1]}, calls[0])
		require.GreaterOrEqual(t, calls[0][1], uint64(n0))
		for i := 1; i < len(calls); i++ {
			require.GreaterOrEqual(t, calls[i][0], calls[i-1][0])
			require.GreaterOrEqual(t, calls[i][1], calls[i][0])
		}
		last := calls[len(calls)-1]
		require.Equal(t, last[0], last[1])

		cp := checkpointOf(t, e.db, "counts")
		require.Equal(t, int64(2), cp.Generation)
		require.GreaterOrEqual(t, cp.Position, last[0], "a runner may have moved on since")
		require.Equal(t, []string{"counts_g2"}, tablesLike(t, e.db, "counts_g"))
		require.Equal(t, []string{"count_types_g2"}, tablesLike(t, e.db, "count_types_g"))

		// An idle runner notices the new generation at its next batch.
		e.appendN(t, 1, 30)
		head := e.head(t)
		waitAt(t, r, head)
		require.Equal(t, expected(e.records(t), all), readSnapshot(t, e.db))
		require.Equal(t, int64(2), statusOf(t, r, "counts").Generation)
		require.Equal(t, int64(1), statusOf(t, r, "warm").Generation)
	})
}

func TestNewVersionRebuildsAtStart(t *testing.T) {
	forBackends(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		e.appendN(t, 400, 12)
		r, stop := startRunner(t, e.db.DB, e.store, []projections.Projection{newCounts(1)}, projections.WithBatchSize(64))
		waitAt(t, r, e.head(t))
		stop()
		require.Equal(t, []string{"counts_g1"}, tablesLike(t, e.db, "counts_g"))

		c2 := newCounts(2)
		r, _ = startRunner(t, e.db.DB, e.store, []projections.Projection{c2}, projections.WithBatchSize(64))
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		require.NoError(t, r.WaitCaughtUp(ctx))
		head := e.head(t)
		require.Equal(t, stored{Generation: 2, Version: 2, Position: head.Commit}, checkpointOf(t, e.db, "counts"))
		require.Equal(t, countsPart(expected(e.records(t), all)), readCounts(t, e.db))
		var tags []int64
		require.NoError(t, e.db.NewRaw("SELECT DISTINCT version_tag FROM counts").Scan(ctx, &tags))
		require.Equal(t, []int64{2}, tags, "the tables were built by version 2")
		require.Equal(t, []string{"counts_g2"}, tablesLike(t, e.db, "counts_g"))
		if e.db.IsPostgres() {
			// The rebuild gathered the new table's statistics (autovacuum
			// is off on the CI machine).
			require.Eventually(t, func() bool {
				var analyzed int
				require.NoError(t, e.db.NewRaw(`SELECT COUNT(*) FROM pg_stat_user_tables WHERE relname = 'counts_g2'
					AND schemaname = current_schema() AND last_analyze IS NOT NULL`).Scan(ctx, &analyzed))
				return analyzed == 1
			}, waitFor, 20*time.Millisecond, "counts_g2 analyzed")
		}

		e.appendN(t, 50, 12)
		waitAt(t, r, e.head(t))
		require.Equal(t, countsPart(expected(e.records(t), all)), readCounts(t, e.db))
		require.EqualValues(t, e.head(t).Commit, c2.applied.Load())
	})
}

func TestVersionChangedUnderARunnerStopsIt(t *testing.T) {
	forBackends(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		e.appendN(t, 100, 5)
		c1 := newCounts(1)
		r, _ := startRunner(t, e.db.DB, e.store, []projections.Projection{c1})
		waitAt(t, r, e.head(t))

		require.NoError(t, projections.Rebuild(context.Background(), e.db.DB, e.store, newCounts(2), nil,
			projections.WithLogger(testLogger(t))))
		rebuiltAt := checkpointOf(t, e.db, "counts")
		e.appendN(t, 20, 5)
		require.Eventually(t, func() bool {
			return errors.Is(statusOf(t, r, "counts").LastError, projections.ErrStale)
		}, waitFor, 5*time.Millisecond)
		require.False(t, statusOf(t, r, "counts").CaughtUp)
		require.Equal(t, rebuiltAt, checkpointOf(t, e.db, "counts"), "the old version wrote nothing")
		require.EqualValues(t, 100, c1.applied.Load())
	})
}

func TestInterruptedRebuildLeavesTheLiveTables(t *testing.T) {
	forBackends(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		e.appendN(t, 300, 10)
		r, stop := startRunner(t, e.db.DB, e.store, []projections.Projection{newCounts(1)})
		waitAt(t, r, e.head(t))
		stop()
		want := countsPart(expected(e.records(t), all))

		ctx, cancel := context.WithCancel(context.Background())
		err := projections.Rebuild(ctx, e.db.DB, e.store, newCounts(1), func(done, total uint64) {
			if done >= 100 {
				cancel()
			}
		}, projections.WithBatchSize(50), projections.WithLogger(testLogger(t)))
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, stored{Generation: 1, Version: 1, Position: 300}, checkpointOf(t, e.db, "counts"))
		require.Equal(t, want, readCounts(t, e.db))
		require.Equal(t, []string{"counts_g1"}, tablesLike(t, e.db, "counts_g"), "the unfinished generation is dropped")

		// A crash would leave the next generation's tables behind: the next
		// rebuild drops them first.
		_, err = e.db.ExecContext(context.Background(), "CREATE TABLE counts_g2 (junk TEXT)")
		require.NoError(t, err)
		require.NoError(t, projections.Rebuild(context.Background(), e.db.DB, e.store, newCounts(1), nil,
			projections.WithLogger(testLogger(t))))
		require.Equal(t, stored{Generation: 2, Version: 1, Position: 300}, checkpointOf(t, e.db, "counts"))
		require.Equal(t, want, readCounts(t, e.db))
		require.Equal(t, []string{"counts_g2"}, tablesLike(t, e.db, "counts_g"))
	})
}

func TestConcurrentRebuildsTakeTurns(t *testing.T) {
	forBackends(t, func(t *testing.T, url string) {
		e1 := newEnv(t, url)
		e2 := e1.second(t)
		e1.appendN(t, 400, 10)
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		errs := make(chan error, 2)
		for _, e := range []*env{e1, e2} {
			go func() {
				errs <- projections.Rebuild(ctx, e.db.DB, e.store, newCounts(1), nil, projections.WithBatchSize(40),
					projections.WithLeaseTiming(5*time.Second, 5*time.Millisecond), projections.WithLogger(testLogger(t)))
			}()
		}
		require.NoError(t, <-errs)
		require.NoError(t, <-errs)
		// The first rebuild creates generation 1 (ensure) and builds 2; the
		// second waits for the lease and builds 3.
		require.Equal(t, stored{Generation: 3, Version: 1, Position: 400}, checkpointOf(t, e1.db, "counts"))
		require.Equal(t, countsPart(expected(e1.records(t), all)), readCounts(t, e1.db))
		require.Equal(t, []string{"counts_g3"}, tablesLike(t, e1.db, "counts_g"))
	})
}

// TestRebuildWritesNothingOnceItsLeaseIsTaken: another rebuild takes the
// lease (as it would once the lease expired unrenewed) between two of a
// rebuild's batches. The rebuild fails with ErrRebuildLeaseLost before
// its next batch commits, and leaves the target generation's tables,
// now the other rebuild's, in place.
func TestRebuildWritesNothingOnceItsLeaseIsTaken(t *testing.T) {
	forBackends(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		e.appendN(t, 300, 10)
		require.NoError(t, projections.Rebuild(context.Background(), e.db.DB, e.store, newCounts(1), nil,
			projections.WithLogger(testLogger(t))))
		before := readCounts(t, e.db)
		var taken bool
		var after []uint64
		err := projections.Rebuild(context.Background(), e.db.DB, e.store, newCounts(1), func(done, _ uint64) {
			if taken {
				after = append(after, done)
				return
			}
			if done >= 100 {
				_, err := e.db.ExecContext(context.Background(), "UPDATE projection_checkpoints SET rebuild_owner = 'thief', "+
					"rebuild_expires_at = ? WHERE name = 'counts'", time.Now().Add(time.Hour).UnixMicro())
				require.NoError(t, err)
				taken = true
			}
		}, projections.WithBatchSize(50), projections.WithLeaseTiming(time.Hour, 5*time.Millisecond),
			projections.WithLogger(testLogger(t)))
		require.ErrorIs(t, err, projections.ErrRebuildLeaseLost)
		require.True(t, taken)
		require.Empty(t, after, "no batch committed after the lease was taken")
		require.Equal(t, stored{Generation: 2, Version: 1, Position: 300}, checkpointOf(t, e.db, "counts"))
		require.Equal(t, before, readCounts(t, e.db))
		require.Equal(t, []string{"counts_g2", "counts_g3"}, tablesLike(t, e.db, "counts_g"),
			"the target generation's tables are the other rebuild's")
	})
}

func TestNewRunnerChecksItsArguments(t *testing.T) {
	e := newEnv(t, "sqlite::memory:")
	bad := &tableless{name: "bad", tables: []projections.Table{
		{Name: "Upper", Create: noCreate},
		{Name: "x_g12", Create: noCreate},
		{Name: "nocreate"},
	}}
	_, err := projections.NewRunner(e.db.DB, e.store, []projections.Projection{newCounts(1), newCounts(1), bad,
		&tableless{name: "Bad Name"}}, projections.WithBatchSize(0))
	require.ErrorContains(t, err, "batch size 0")
	_, err = projections.NewRunner(e.db.DB, e.store, []projections.Projection{newCounts(1)}, projections.WithRebuildBatchSize(-1))
	require.ErrorContains(t, err, "rebuild batch size -1")
	_, err = projections.NewRunner(e.db.DB, e.store, []projections.Projection{newCounts(1), newCounts(1), bad,
		&tableless{name: "Bad Name"}})
	require.Error(t, err)
	for _, want := range []string{`"counts" appears twice`, `"counts" is also declared by counts`, `"Upper"`, `"x_g12"`, `"nocreate" has no Create`, `"Bad Name"`} {
		require.ErrorContains(t, err, want)
	}
	_, err = projections.NewRunner(nil, nil, nil)
	require.ErrorContains(t, err, "db is nil")
	require.ErrorContains(t, err, "log is nil")

	r, err := projections.NewRunner(e.db.DB, e.store, nil)
	require.NoError(t, err)
	require.NoError(t, r.WaitCaughtUp(context.Background()), "no projections: ready at once")
}

func noCreate(dialect.Name, string) []string { return nil }

// tableless is a projection that only holds state in memory.
type tableless struct {
	name   string
	tables []projections.Table
}

func (p *tableless) Name() string                   { return p.name }
func (p *tableless) Version() int                   { return 1 }
func (p *tableless) Tables() []projections.Table    { return p.tables }
func (p *tableless) Replay([]eventlog.Record) error { return nil }
func (p *tableless) Load(context.Context, bun.IDB, projections.Tables, eventlog.Position) (bool, error) {
	return true, nil
}
func (p *tableless) Apply(context.Context, bun.Tx, projections.Tables, []eventlog.Record) error {
	return nil
}

func TestRunTwiceFails(t *testing.T) {
	e := newEnv(t, "sqlite::memory:")
	r, _ := startRunner(t, e.db.DB, e.store, []projections.Projection{&tableless{name: "mem"}})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.NoError(t, r.WaitCaughtUp(ctx))
	require.ErrorIs(t, r.Run(ctx), projections.ErrAlreadyRunning)
}

func TestSwapDoesNotStallQueriesBehindALongOne(t *testing.T) {
	e := newEnv(t, sqltest.Postgres(t))
	e.appendN(t, 100, 5)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.NoError(t, projections.Rebuild(ctx, e.db.DB, e.store, newCounts(1), nil, projections.WithLogger(testLogger(t))))

	// A long query holds the view.
	long, err := e.db.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer func() { _ = long.Rollback() }()
	var n int
	require.NoError(t, long.QueryRowContext(ctx, "SELECT count(*) FROM counts").Scan(&n))

	logs := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- projections.Rebuild(ctx, e.db.DB, e.store, newCounts(1), nil,
			projections.WithSwapLockTimeout(50*time.Millisecond), projections.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	}()
	require.Eventually(t, func() bool { return strings.Count(logs.String(), "retrying the swap") >= 3 }, waitFor, 5*time.Millisecond)
	// Other queries still get through between the attempts.
	for range 5 {
		qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
		require.NoError(t, e.db.QueryRowContext(qctx, "SELECT count(*) FROM counts").Scan(&n))
		qcancel()
	}
	require.NoError(t, long.Rollback())
	require.NoError(t, <-done)
	require.Equal(t, int64(3), checkpointOf(t, e.db, "counts").Generation)
	require.Equal(t, countsPart(expected(e.records(t), all)), readCounts(t, e.db))
}

// retyped is a log whose records all read as one type: what a projection
// reads through it differs from the stored log.
type retyped struct{ projections.Log }

func (l retyped) fix(recs []eventlog.Record) []eventlog.Record {
	out := make([]eventlog.Record, len(recs))
	for i, r := range recs {
		r.Type = "test.retyped.v1"
		out[i] = r
	}
	return out
}

func (l retyped) ReadAll(ctx context.Context, after eventlog.Position, limit int) ([]eventlog.Record, error) {
	recs, err := l.Log.ReadAll(ctx, after, limit)
	return l.fix(recs), err
}

func (l retyped) Subscribe(ctx context.Context, after eventlog.Position, h func(context.Context, eventlog.Record) error) error {
	return l.Log.Subscribe(ctx, after, func(ctx context.Context, r eventlog.Record) error { return h(ctx, l.fix([]eventlog.Record{r})[0]) })
}

// TestWithLogForGivesAProjectionItsOwnLog: the ledger reads the log as
// stored while the read models read it opened (adapters/personaldata); a
// projection given its own log reads only that one, in catch-up and
// follow alike.
func TestWithLogForGivesAProjectionItsOwnLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sqltest.SQLiteMemory(t))
	e.appendN(t, 60, 4)
	c := newCounts(1)
	r, _ := startRunner(t, e.db.DB, retyped{e.store}, []projections.Projection{c, newWarm()},
		projections.WithLogFor(c.Name(), e.store), projections.WithBatchSize(16))
	waitAt(t, r, e.head(t))
	e.appendN(t, 40, 4)
	waitAt(t, r, e.head(t))
	require.Equal(t, expected(e.records(t), all), readSnapshot(t, e.db), "counts read the stored types")
}

// TestWarmStartReplaysOnlyAfterIt: a WarmStarter's warm-up replays only
// the records after its WarmStart, up to the checkpoint, and the rows it
// writes afterwards are those of a full warm-up.
func TestWarmStartReplaysOnlyAfterIt(t *testing.T) {
	forBackends(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		e.appendN(t, 100, 7)
		r, stop := startRunner(t, e.db.DB, e.store, []projections.Projection{newWarm()})
		waitAt(t, r, e.head(t))
		stop()

		recs := e.records(t)
		saved := &warmStart{warm: newWarm(), from: recs[59].Position, perStream: map[string]int64{}, total: 60}
		for _, rec := range recs[:60] {
			saved.perStream[rec.Stream]++
		}
		e.appendN(t, 20, 7)
		r, stop = startRunner(t, e.db.DB, e.store, []projections.Projection{saved})
		waitAt(t, r, e.head(t))
		stop()
		require.Equal(t, 40, saved.replayed, "records 61..100 only")
		all := e.records(t)
		var got []warmRow
		require.NoError(t, e.db.NewRaw("SELECT position, stream, nth_in_stream, nth FROM warm_events ORDER BY position").
			Scan(context.Background(), &got))
		require.Equal(t, expected(all, all[len(all)-1].Position.Commit).Warm, got)
	})
}

// TestRebuildTransactionsRenewTheLease: on SQLite every bulk transaction of
// a rebuild renews its lease as it commits (it holds the file's write lock,
// which the renewing goroutine would wait for: at county scale on a loaded
// machine a batch or an index outlasted the lease and the rebuild gave
// itself up). The renewing goroutine ticks every 10 s here, so only the
// transactions can have moved the expiry past the end of each batch.
func TestRebuildTransactionsRenewTheLease(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteFile(t))
	e.appendN(t, 300, 10)
	const lease = 30 * time.Second
	p := newCounts(1)
	var applied []time.Time // when each bulk batch was written
	p.fail = func(recs []eventlog.Record) error {
		if len(recs) == 100 {
			time.Sleep(50 * time.Millisecond)
			applied = append(applied, time.Now())
		}
		return nil
	}
	var expiries []time.Time // the lease's expiry after each batch
	progress := func(done, _ uint64) {
		if done == 0 || done%100 != 0 || len(expiries) == len(applied) {
			return
		}
		var until int64
		require.NoError(t, e.db.QueryRowContext(context.Background(),
			"SELECT rebuild_expires_at FROM projection_checkpoints WHERE name = 'counts'").Scan(&until))
		expiries = append(expiries, time.UnixMicro(until))
	}
	require.NoError(t, projections.Rebuild(context.Background(), e.db.DB, e.store, p, progress,
		projections.WithRebuildBatchSize(100), projections.WithBatchSize(50),
		projections.WithLeaseTiming(lease, 5*time.Millisecond), projections.WithLogger(testLogger(t))))
	require.Len(t, applied, 3)
	require.Len(t, expiries, 3)
	for i := range applied {
		require.False(t, expiries[i].Before(applied[i].Add(lease)), "batch %d: the lease expires at %s, less than the lease after the batch (%s)",
			i, expiries[i], applied[i])
	}
	require.Equal(t, stored{Generation: 2, Version: 1, Position: 300}, checkpointOf(t, e.db, "counts"))
	require.Equal(t, countsPart(expected(e.records(t), all)), readCounts(t, e.db))
}

// TestRunnerLingers: a runner with WithLinger writes the events that
// arrive one append at a time, while it follows the log, in a few batches
// instead of one each, and applies every one of them.
func TestRunnerLingers(t *testing.T) {
	forBackends(t, func(t *testing.T, url string) {
		tests := []struct {
			name   string
			linger time.Duration
		}{{"without", 0}, {"with", 300 * time.Millisecond}}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := newEnv(t, url)
				var batches atomic.Int64
				c := newCounts(1)
				r, _ := startRunner(t, e.db.DB, e.store, []projections.Projection{c}, projections.WithLinger(tt.linger),
					projections.WithAfterApplyHook(func(string, []eventlog.Record) error { batches.Add(1); return nil }))
				waitAt(t, r, e.head(t))
				before := batches.Load()
				const appends = 20
				for i := range appends {
					_, err := e.store.Append(t.Context(), fmt.Sprint(tt.name, "-", i), eventlog.NoStream,
						[]eventlog.EventData{{ID: uuid.New(), Type: testTypes[0], Data: []byte(`{"n":1}`),
							Meta: eventlog.Meta{ActorID: "tester", ActorRole: "test", EffectiveAt: time.Now()}}})
					require.NoError(t, err)
					time.Sleep(10 * time.Millisecond) // each append on its own: without a linger the runner takes it at once
				}
				waitAt(t, r, e.head(t))
				require.Equal(t, countsPart(expected(e.records(t), all)), readCounts(t, e.db))
				n := batches.Load() - before
				if tt.linger > 0 {
					require.LessOrEqual(t, n, int64(appends/4), "%d batches for %d appends", n, appends)
				} else {
					require.Greater(t, n, int64(appends/4), "%d batches for %d appends", n, appends)
				}
			})
		}
	})
}

func TestLingerMustNotBeNegative(t *testing.T) {
	_, err := projections.NewRunner(nil, nil, nil, projections.WithLinger(-time.Millisecond))
	require.ErrorContains(t, err, "linger")
}
