package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
)

// openFile opens an SQLite file as Open does, with or without its gate.
func openFile(t testing.TB, path string, gated bool) *DB {
	t.Helper()
	ctx := context.Background()
	if gated {
		db, err := Open(ctx, "sqlite:"+path)
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
	require.NoError(t, createPrivate(path))
	db, err := openSQLite(ctx, sqliteDSN("file:"+escapeSQLitePath(filepath.ToSlash(path)), false, "FULL"), "sqlite:"+path, path, sqliteMaxConns, nil)
	require.NoError(t, err)
	require.NoError(t, enableWAL(ctx, db))
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestWriteGate: the transactions of two pools of one file, from many
// goroutines, all commit; the gate is free after a commit, a rollback, a
// BEGIN refused, and a context ended during a transaction.
func TestWriteGate(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "gate.db")
	a, b := openFile(t, path, true), openFile(t, path, true)
	_, err := a.ExecContext(ctx, "CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT NOT NULL)")
	require.NoError(t, err)
	gate := gateFor(path)

	var wg sync.WaitGroup
	errs := make(chan error, 16*20)
	for w := range 16 {
		db := []*DB{a, b}[w%2]
		wg.Go(func() {
			for i := range 20 {
				errs <- db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
					var n int
					if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
						return err
					}
					_, err := tx.ExecContext(ctx, "INSERT INTO t (id, who) VALUES (?, ?)", n+1, fmt.Sprintf("%d/%d", w, i))
					return err
				})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var n, maxID int
	require.NoError(t, a.QueryRowContext(ctx, "SELECT count(*), max(id) FROM t").Scan(&n, &maxID))
	require.Equal(t, 320, n, "every transaction committed, none lost to a busy lock")
	require.Equal(t, 320, maxID, "each read the count and wrote the next id under the lock")
	require.False(t, gate.isHeld(), "the gate is free")

	// Rollback frees the gate.
	tx, err := a.BeginTx(ctx, nil)
	require.NoError(t, err)
	require.True(t, gate.isHeld(), "a transaction holds the gate")
	require.NoError(t, tx.Rollback())
	require.False(t, gate.isHeld())

	// A context ended during a transaction: database/sql rolls it back,
	// and the gate is free.
	cctx, cancel := context.WithCancel(ctx)
	tx, err = a.BeginTx(cctx, nil)
	require.NoError(t, err)
	cancel()
	require.Eventually(t, func() bool { return !gate.isHeld() }, 5*time.Second, time.Millisecond)
	require.ErrorIs(t, tx.Commit(), sql.ErrTxDone)

	// A waiter whose context ends gives up without the gate.
	tx, err = a.BeginTx(ctx, nil)
	require.NoError(t, err)
	wctx, wcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer wcancel()
	_, err = b.BeginTx(wctx, nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, tx.Commit())
	require.False(t, gate.isHeld())
}

// TestWriteGateQueuesAutocommitWrites: an INSERT, UPDATE, DELETE or
// REPLACE outside a transaction queues at the gate while a transaction of
// another pool holds it (with the gate's timeout shortened, it gives up
// with errGateTimeout, where SQLite's busy handler would have waited its
// 10 s), and runs once the gate is free; a read outside a transaction does
// not queue; statements inside a transaction (read-only or not) do not take
// the gate again, and after a read-only transaction the connection's
// writes queue again.
func TestWriteGateQueuesAutocommitWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "auto.db")
	a, b := openFile(t, path, true), openFile(t, path, true)
	_, err := a.ExecContext(ctx, "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL DEFAULT 0)")
	require.NoError(t, err)
	gate := gateFor(path)
	gate.timeout = 30 * time.Millisecond // this test's file only

	for _, stmt := range []string{"INSERT INTO t (id) VALUES (1)", "  update t SET v = 1 WHERE id = 1", "\nDELETE FROM t WHERE id = 1",
		"REPLACE INTO t (id, v) VALUES (2, 2)"} {
		tx, err := a.BeginTx(ctx, nil)
		require.NoError(t, err)
		_, err = b.ExecContext(ctx, stmt)
		require.ErrorIs(t, err, errGateTimeout, "%q queued at the gate", stmt)
		var n int
		require.NoError(t, b.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n), "a read does not queue")
		_, err = b.ExecContext(ctx, "SELECT 1")
		require.NoError(t, err, "nor does a read through Exec")
		require.NoError(t, tx.Commit())
		_, err = b.ExecContext(ctx, stmt)
		require.NoError(t, err, stmt)
		require.False(t, gate.isHeld(), "the autocommit write freed the gate")
	}

	// Inside a transaction the statements run under its gate.
	require.NoError(t, a.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO t (id) VALUES (3)")
		return err
	}))
	// A read-only transaction takes no gate, nor do its statements; the
	// connection's writes after it queue again.
	c, err := b.Conn(ctx)
	require.NoError(t, err)
	defer c.Close()
	ro, err := c.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	require.NoError(t, err)
	require.False(t, gate.isHeld())
	var n int
	require.NoError(t, ro.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n))
	require.Equal(t, 2, n)
	require.NoError(t, ro.Commit())
	tx, err := a.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = c.ExecContext(ctx, "INSERT INTO t (id) VALUES (4)")
	require.ErrorIs(t, err, errGateTimeout, "the write after the read-only transaction queued")
	require.NoError(t, tx.Commit())
	_, err = c.ExecContext(ctx, "INSERT INTO t (id) VALUES (4)")
	require.NoError(t, err)
	require.False(t, gate.isHeld())
}

// TestWriteGateQueuesAutocommitWritesWithRows: a write outside a
// transaction that returns rows (RETURNING, read through Query) queues at
// the gate too, with and without bound arguments (a kept statement or
// not), and holds it until its rows are closed; a failing one frees it.
func TestWriteGateQueuesAutocommitWritesWithRows(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "returning.db")
	a, b := openFile(t, path, true), openFile(t, path, true)
	_, err := a.ExecContext(ctx, "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL DEFAULT 0)")
	require.NoError(t, err)
	gate := gateFor(path)
	gate.timeout = 30 * time.Millisecond // this test's file only

	for i, q := range []struct {
		query string
		args  []any
	}{
		{"INSERT INTO t (id) VALUES (1) RETURNING id", nil},
		{"UPDATE t SET v = v + 1 WHERE id = ? RETURNING v", []any{1}},
		{"DELETE FROM t WHERE id = ? RETURNING id", []any{1}},
	} {
		tx, err := a.BeginTx(ctx, nil)
		require.NoError(t, err)
		_, err = b.QueryContext(ctx, q.query, q.args...) //nolint:sqlclosecheck,rowserrcheck // it fails: no rows
		require.ErrorIs(t, err, errGateTimeout, "%q queued at the gate", q.query)
		require.NoError(t, tx.Commit())

		func() {
			rows, err := b.QueryContext(ctx, q.query, q.args...)
			require.NoError(t, err, q.query)
			defer func() { _ = rows.Close() }()
			require.True(t, gate.isHeld(), "%d: the open rows hold the gate", i)
			require.True(t, rows.Next())
			var n int
			require.NoError(t, rows.Scan(&n))
			require.True(t, gate.isHeld(), "%d: held while the rows are read", i)
			require.False(t, rows.Next()) // the end: database/sql closes the rows
			require.NoError(t, rows.Err())
		}()
		require.False(t, gate.isHeld(), "%d: closing the rows freed the gate", i)
	}
	_, err = b.QueryContext(ctx, "INSERT INTO missing (id) VALUES (1) RETURNING id") //nolint:sqlclosecheck,rowserrcheck // it fails
	require.Error(t, err)
	require.False(t, gate.isHeld(), "a failed write freed the gate")
	var n int
	require.NoError(t, b.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n), "a read does not queue")
	require.Zero(t, n)
}

// TestWriteGateTimesOutAsBusy: a waiter gives up after the gate's timeout
// with an error isBusy recognizes, as SQLite's busy timeout would.
func TestWriteGateTimesOutAsBusy(t *testing.T) {
	g := &writeGate{timeout: 20 * time.Millisecond}
	require.NoError(t, g.acquire(context.Background()))
	err := g.acquire(context.Background())
	require.ErrorIs(t, err, errGateTimeout)
	require.True(t, isBusy(err))
	g.release()
	require.NoError(t, g.acquire(context.Background()))
}

// TestWriteGateYielding: at each release the gate goes to the foreground
// waiters first, in arrival order, and to a yielding waiter after at most
// maxForegroundRun foreground hand-offs in a row while it waited; a waiter
// whose context ends leaves the queue, and one handed the gate as it gave
// up hands it on.
func TestWriteGateYielding(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		queue  string // arrival order behind the holder: f foreground, y yielding
		wantAt string // the order they get the gate
	}{
		{name: "foreground first", queue: "yyff", wantAt: "ffyy"},
		{name: "yielding alone in order", queue: "yyy", wantAt: "yyy"},
		{name: "foreground alone in order", queue: "fff", wantAt: "fff"},
		{name: "a yielding waiter after a run of foreground ones", queue: "yffffffff", wantAt: "ffffyffff"},
		{name: "two yielding waiters share the runs", queue: "yyffffffffff", wantAt: "ffffyffffyff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &writeGate{timeout: 10 * time.Second}
			require.NoError(t, g.acquire(ctx))
			var mu sync.Mutex
			var got []byte
			var wg sync.WaitGroup
			for i, kind := range []byte(tt.queue) {
				wctx := ctx
				if kind == 'y' {
					wctx = Yielding(ctx)
				}
				wg.Go(func() {
					require.NoError(t, g.acquire(wctx))
					mu.Lock()
					got = append(got, kind)
					mu.Unlock()
					g.release()
				})
				// Wait until it is queued, so that the arrival order is i's.
				require.Eventually(t, func() bool {
					g.mu.Lock()
					defer g.mu.Unlock()
					return len(g.fg)+len(g.yielding) == i+1
				}, 5*time.Second, 100*time.Microsecond)
			}
			g.release()
			wg.Wait()
			require.Equal(t, tt.wantAt, string(got))
			require.False(t, g.isHeld())
		})
	}

	t.Run("a waiter that gives up leaves the queue", func(t *testing.T) {
		g := &writeGate{timeout: 10 * time.Second}
		require.NoError(t, g.acquire(ctx))
		cctx, cancel := context.WithCancel(Yielding(ctx))
		errc := make(chan error, 1)
		go func() { errc <- g.acquire(cctx) }()
		require.Eventually(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.yielding) == 1 }, 5*time.Second, 100*time.Microsecond)
		cancel()
		require.ErrorIs(t, <-errc, context.Canceled)
		g.mu.Lock()
		require.Empty(t, g.yielding)
		g.mu.Unlock()
		g.release()
		require.False(t, g.isHeld(), "released with no waiter left: free")
	})

	t.Run("a waiter handed the gate as it gives up hands it on", func(t *testing.T) {
		for range 200 {
			g := &writeGate{timeout: 10 * time.Second}
			require.NoError(t, g.acquire(ctx))
			cctx, cancel := context.WithCancel(ctx)
			errc := make(chan error, 1)
			go func() { errc <- g.acquire(cctx) }()
			require.Eventually(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.fg) == 1 }, 5*time.Second, 10*time.Microsecond)
			go cancel()
			g.release()
			if err := <-errc; err == nil {
				g.release()
			}
			require.False(t, g.isHeld(), "the gate is free in the end, whoever won the race")
		}
	})
}

// BenchmarkContendedWrites: writers on one SQLite file (WAL,
// synchronous=FULL), each transaction a read and an insert, as the
// engine's command path and projections write beside one another; with
// the write gate and without (SQLite's busy handler alone). p99-ms is the
// latency of one transaction, waiting included.
func BenchmarkContendedWrites(b *testing.B) {
	for _, gated := range []bool{false, true} {
		for _, writers := range []int{1, 4, 16} {
			b.Run(fmt.Sprintf("gate=%v/writers=%d", gated, writers), func(b *testing.B) {
				ctx := context.Background()
				db := openFile(b, filepath.Join(b.TempDir(), "bench.db"), gated)
				_, err := db.ExecContext(ctx, "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT NOT NULL)")
				require.NoError(b, err)
				var mu sync.Mutex
				lat := make([]time.Duration, 0, b.N)
				var failed error
				b.ResetTimer()
				var wg sync.WaitGroup
				next := make(chan struct{}, b.N)
				for range b.N {
					next <- struct{}{}
				}
				close(next)
				for range writers {
					wg.Go(func() {
						for range next {
							t0 := time.Now()
							err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
								var n sql.NullInt64
								if err := tx.QueryRowContext(ctx, "SELECT max(id) FROM t").Scan(&n); err != nil {
									return err
								}
								_, err := tx.ExecContext(ctx, "INSERT INTO t (v) VALUES (?)", "x")
								return err
							})
							d := time.Since(t0)
							mu.Lock()
							lat = append(lat, d)
							if err != nil && failed == nil {
								failed = err
							}
							mu.Unlock()
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				if failed != nil && !errors.Is(failed, context.Canceled) {
					b.Fatal(failed)
				}
				slices.Sort(lat)
				if len(lat) > 0 {
					b.ReportMetric(float64(lat[(len(lat)*99)/100])/1e6, "p99-ms")
					b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max-ms")
				}
			})
		}
	}
}

// BenchmarkForegroundBesideBatches: one writer's transactions (a command's
// append: a read and an insert) on an SQLite file (WAL,
// synchronous=FULL) while four background writers (the read models'
// batches: 20 inserts a transaction) write as fast as they can, their
// contexts marked Yielding or not. p50-ms and p99-ms are the foreground
// transaction's latency, its wait at the gate included; bg-tx/op is how
// many background transactions committed per foreground one.
func BenchmarkForegroundBesideBatches(b *testing.B) {
	for _, yielding := range []bool{false, true} {
		b.Run(fmt.Sprintf("yielding=%v", yielding), func(b *testing.B) {
			ctx := context.Background()
			db := openFile(b, filepath.Join(b.TempDir(), "bench.db"), true)
			_, err := db.ExecContext(ctx, "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT NOT NULL)")
			require.NoError(b, err)
			bctx, stop := context.WithCancel(ctx)
			if yielding {
				bctx = Yielding(bctx)
			}
			var bgTx atomic.Int64
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for bctx.Err() == nil {
						err := db.RunInTx(bctx, nil, func(ctx context.Context, tx bun.Tx) error {
							for range 20 {
								if _, err := tx.ExecContext(ctx, "INSERT INTO t (v) VALUES (?)", "background"); err != nil {
									return err
								}
							}
							return nil
						})
						if err == nil {
							bgTx.Add(1)
						}
					}
				})
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
					var n sql.NullInt64
					if err := tx.QueryRowContext(ctx, "SELECT max(id) FROM t").Scan(&n); err != nil {
						return err
					}
					_, err := tx.ExecContext(ctx, "INSERT INTO t (v) VALUES (?)", "foreground")
					return err
				})
				lat = append(lat, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
				time.Sleep(time.Millisecond) // the client's turn
			}
			b.StopTimer()
			stop()
			wg.Wait()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
			b.ReportMetric(float64(lat[(len(lat)*99)/100])/1e6, "p99-ms")
			b.ReportMetric(float64(bgTx.Load())/float64(b.N), "bg-tx/op")
		})
	}
}
