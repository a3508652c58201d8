package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/internal/cputime"
)

// BenchmarkQueryWithArgs: one indexed read with bound arguments on an
// SQLite file, as the event store reads a stream: kept prepared by the
// statement cache (cache=on) or compiled each time (cache=off: the text
// differs each time, as bun's queries do), with its LIMIT in the text
// (limit=literal) or bound (limit=bound, which SQLite recompiles at every
// new binding). cpu-µs/op is the process's CPU time per query.
func BenchmarkQueryWithArgs(b *testing.B) {
	ctx := context.Background()
	db := openFile(b, filepath.Join(b.TempDir(), "q.db"), true)
	_, err := db.ExecContext(ctx, "CREATE TABLE ev (stream TEXT NOT NULL, version INTEGER NOT NULL, data BLOB, PRIMARY KEY (stream, version))")
	require.NoError(b, err)
	for i := range 200 {
		_, err := db.ExecContext(ctx, "INSERT INTO ev VALUES (?, ?, ?)", "s"+string(rune('a'+i%20)), i, []byte("x"))
		require.NoError(b, err)
	}
	raw := db.DB.DB // database/sql itself: bun would write the values into the text
	for _, on := range []bool{true, false} {
		name := "cache=on"
		if !on {
			name = "cache=off"
		}
		b.Run(name+"/limit=literal", func(b *testing.B) {
			b.ReportAllocs()
			cpu := cputime.Process()
			defer func() { reportCPU(b, cpu) }()
			for i := range b.N {
				q := "SELECT version, data FROM ev WHERE stream = ? AND version >= ? ORDER BY version LIMIT 500"
				if !on {
					q += " -- " + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676%26))
				}
				countRows(b, raw, q, "sc", i%3)
			}
		})
		b.Run(name+"/limit=bound", func(b *testing.B) {
			b.ReportAllocs()
			cpu := cputime.Process()
			defer func() { reportCPU(b, cpu) }()
			for i := range b.N {
				q := "SELECT version, data FROM ev WHERE stream = ? AND version >= ? ORDER BY version LIMIT ?"
				if !on {
					q += " -- " + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676%26))
				}
				require.Equal(b, 10, countRows(b, raw, q, "sc", 0, 500+i%2))
			}
		})
	}
}

// countRows runs q with args on db and counts its rows.
func countRows(tb testing.TB, db interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}, q string, args ...any) int {
	rows, err := db.QueryContext(context.Background(), q, args...)
	require.NoError(tb, err)
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	require.NoError(tb, rows.Err())
	return n
}

// reportCPU reports the process's CPU time per operation since start: the
// figure that holds on a loaded machine, where the wall time per operation
// counts the time other processes ran.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64((cputime.Process()-start).Nanoseconds())/1000/float64(b.N), "cpu-µs/op")
}

// TestStatementCache: a statement run with arguments is kept and run again
// from the cache (its answers right each time); the same text asked again
// while the first one's rows are still open runs uncached beside it; a
// failed statement is dropped and the next run prepares it again; a kept
// statement still answers after the schema changed; the cache never holds
// more than stmtCacheSize statements; statements without arguments are not
// kept.
func TestStatementCache(t *testing.T) {
	ctx := context.Background()
	db := openFile(t, filepath.Join(t.TempDir(), "c.db"), true)
	raw := db.DB.DB
	_, err := raw.ExecContext(ctx, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
	require.NoError(t, err)
	conn, err := raw.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	kept := func() (n int) {
		require.NoError(t, conn.Raw(func(dc any) error {
			n = dc.(*gatedConn).stmts.order.Len()
			return nil
		}))
		return n
	}
	for i := range 5 {
		_, err := conn.ExecContext(ctx, "INSERT INTO t (id, v) VALUES (?, ?)", i, fmt.Sprint("v", i))
		require.NoError(t, err)
	}
	require.Equal(t, 1, kept(), "the insert is kept")
	_, err = conn.ExecContext(ctx, "UPDATE t SET v = v")
	require.NoError(t, err)
	require.Equal(t, 1, kept(), "a statement without arguments is not kept")

	const q = "SELECT v FROM t WHERE id >= ? ORDER BY id"
	// values runs q with args and returns its first column, its rows closed.
	values := func(q string, args ...any) []string {
		rows, err := conn.QueryContext(ctx, q, args...)
		require.NoError(t, err)
		defer rows.Close()
		return readValues(t, rows)
	}
	for from := range 3 {
		require.Len(t, values(q, from), 5-from)
	}
	require.Equal(t, 2, kept())

	// Nested: the outer rows hold the kept statement.
	func() {
		outer, err := conn.QueryContext(ctx, q, 3)
		require.NoError(t, err)
		defer outer.Close()
		require.True(t, outer.Next())
		require.Equal(t, []string{"v1", "v2", "v3", "v4"}, values(q, 1))
		var v string
		require.NoError(t, outer.Scan(&v))
		require.Equal(t, "v3", v)
		require.Equal(t, []string{"v4"}, readValues(t, outer))
	}()

	// A failure (a constraint) drops the statement; the next run works.
	_, err = conn.ExecContext(ctx, "INSERT INTO t (id, v) VALUES (?, ?)", 1, "again")
	require.Error(t, err)
	require.Equal(t, 1, kept())
	_, err = conn.ExecContext(ctx, "INSERT INTO t (id, v) VALUES (?, ?)", 9, "v9")
	require.NoError(t, err)

	// A schema change under a kept statement.
	_, err = conn.ExecContext(ctx, "ALTER TABLE t ADD COLUMN w INTEGER NOT NULL DEFAULT 7")
	require.NoError(t, err)
	func() {
		rows, err := conn.QueryContext(ctx, "SELECT * FROM t WHERE id = ?", 9)
		require.NoError(t, err)
		defer rows.Close()
		cols, err := rows.Columns()
		require.NoError(t, err)
		require.Equal(t, []string{"id", "v", "w"}, cols)
		require.NoError(t, rows.Err())
	}()
	require.Equal(t, []string{"v4", "v9"}, values(q, 4), "kept before the change")

	// Bounded.
	for i := range stmtCacheSize + 10 {
		var n int
		require.NoError(t, conn.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*) + %d FROM t WHERE id >= ?", i), 0).Scan(&n))
		require.Equal(t, 6+i, n)
	}
	require.Equal(t, stmtCacheSize, kept())
}

// readValues reads the first column of the remaining rows.
func readValues(t *testing.T, rows *sql.Rows) []string {
	var vs []string
	for rows.Next() {
		var v string
		require.NoError(t, rows.Scan(&v))
		vs = append(vs, v)
	}
	require.NoError(t, rows.Err())
	return vs
}
