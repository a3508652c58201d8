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
				rows, err := raw.QueryContext(ctx, q, "sc", i%3)
				require.NoError(b, err)
				for rows.Next() {
				}
				require.NoError(b, rows.Close())
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
				rows, err := raw.QueryContext(ctx, q, "sc", 0, 500+i%2)
				require.NoError(b, err)
				n := 0
				for rows.Next() {
					n++
				}
				require.NoError(b, rows.Close())
				require.Equal(b, 10, n)
			}
		})
	}
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
	read := func(rows *sql.Rows) []string {
		var vs []string
		for rows.Next() {
			var v string
			require.NoError(t, rows.Scan(&v))
			vs = append(vs, v)
		}
		require.NoError(t, rows.Err())
		return vs
	}
	for from := range 3 {
		rows, err := conn.QueryContext(ctx, q, from)
		require.NoError(t, err)
		require.Len(t, read(rows), 5-from)
		require.NoError(t, rows.Close())
	}
	require.Equal(t, 2, kept())

	// Nested: the outer rows hold the kept statement.
	outer, err := conn.QueryContext(ctx, q, 3)
	require.NoError(t, err)
	require.True(t, outer.Next())
	inner, err := conn.QueryContext(ctx, q, 1)
	require.NoError(t, err)
	require.Equal(t, []string{"v1", "v2", "v3", "v4"}, read(inner))
	require.NoError(t, inner.Close())
	var v string
	require.NoError(t, outer.Scan(&v))
	require.Equal(t, "v3", v)
	require.Equal(t, []string{"v4"}, read(outer))
	require.NoError(t, outer.Close())

	// A failure (a constraint) drops the statement; the next run works.
	_, err = conn.ExecContext(ctx, "INSERT INTO t (id, v) VALUES (?, ?)", 1, "again")
	require.Error(t, err)
	require.Equal(t, 1, kept())
	_, err = conn.ExecContext(ctx, "INSERT INTO t (id, v) VALUES (?, ?)", 9, "v9")
	require.NoError(t, err)

	// A schema change under a kept statement.
	_, err = conn.ExecContext(ctx, "ALTER TABLE t ADD COLUMN w INTEGER NOT NULL DEFAULT 7")
	require.NoError(t, err)
	rows, err := conn.QueryContext(ctx, "SELECT * FROM t WHERE id = ?", 9)
	require.NoError(t, err)
	cols, err := rows.Columns()
	require.NoError(t, err)
	require.Equal(t, []string{"id", "v", "w"}, cols)
	require.NoError(t, rows.Close())
	rows, err = conn.QueryContext(ctx, q, 4) // kept before the change
	require.NoError(t, err)
	require.Equal(t, []string{"v4", "v9"}, read(rows))
	require.NoError(t, rows.Close())

	// Bounded.
	for i := range stmtCacheSize + 10 {
		var n int
		require.NoError(t, conn.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*) + %d FROM t WHERE id >= ?", i), 0).Scan(&n))
		require.Equal(t, 6+i, n)
	}
	require.Equal(t, stmtCacheSize, kept())
}
