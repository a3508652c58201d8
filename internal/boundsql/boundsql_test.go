package boundsql_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/internal/boundsql"
)

func TestNumbered(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"SELECT v FROM t WHERE id = ?", "SELECT v FROM t WHERE id = $1"},
		{"UPDATE t SET v = ?, w = ? WHERE (a, b) < (?, ?) AND c = ?", "UPDATE t SET v = $1, w = $2 WHERE (a, b) < ($3, $4) AND c = $5"},
		{"INSERT INTO t VALUES (?,?,?,?,?,?,?,?,?,?,?)", "INSERT INTO t VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"},
		{"SELECT 'é' || ?", "SELECT 'é' || $1"},
	} {
		require.Equal(t, tt.want, boundsql.Numbered(tt.in), tt.in)
	}
}

// otherIDB is a bun.IDB of a kind For does not know: its statements go
// through bun's formatting.
type otherIDB struct{ bun.IDB }

// TestRunnerOnEveryHandle: on every backend, a Runner of a *bun.DB, of the
// sqldb.DB wrapper, of a bun.Tx and of a bun.Conn runs its statements
// with bound parameters (PostgreSQL's numbered) and answers what bun
// does; one of an unknown bun.IDB runs them through bun. Writes in a
// Runner of a bun.Tx are the transaction's.
func TestRunnerOnEveryHandle(t *testing.T) {
	ctx := context.Background()
	for name, url := range map[string]func(testing.TB) string{
		"sqlite-file": sqltest.SQLiteFile, "sqlite-memory": sqltest.SQLiteMemory, "postgres": sqltest.Postgres,
	} {
		t.Run(name, func(t *testing.T) {
			db := sqltest.Open(t, url(t))
			_, err := db.ExecContext(ctx, "CREATE TABLE bq (id BIGINT PRIMARY KEY, v TEXT NOT NULL)")
			require.NoError(t, err)
			t.Cleanup(func() { _, _ = db.ExecContext(context.Background(), "DROP TABLE bq") })

			const ins = "INSERT INTO bq (id, v) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET v = excluded.v WHERE bq.v < excluded.v"
			const get = "SELECT v FROM bq WHERE id = ?"
			read := func(r boundsql.Runner, id int64) (string, error) {
				var v string
				err := r.QueryRowContext(ctx, get, id).Scan(&v)
				return v, err
			}
			for i, r := range []boundsql.Runner{boundsql.For(db.DB), boundsql.For(db), boundsql.For(otherIDB{db.DB})} {
				require.Equal(t, i < 2, r.Bound())
				id := int64(i + 1)
				res, err := r.ExecContext(ctx, ins, id, "a?b")
				require.NoError(t, err)
				n, err := res.RowsAffected()
				require.NoError(t, err)
				require.EqualValues(t, 1, n)
				res, err = r.ExecContext(ctx, ins, id, "a") // not greater: no change
				require.NoError(t, err)
				n, err = res.RowsAffected()
				require.NoError(t, err)
				require.EqualValues(t, 0, n)
				v, err := read(r, id)
				require.NoError(t, err)
				require.Equal(t, "a?b", v, "a ? in a value is a value")
				_, err = read(r, 99)
				require.ErrorIs(t, err, sql.ErrNoRows)
				require.Len(t, ids(t, r, id), int(id))
			}

			// In a transaction: bound, and rolled back with it.
			err = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
				r := boundsql.For(tx)
				require.True(t, r.Bound())
				_, err := r.ExecContext(ctx, ins, 10, "t")
				require.NoError(t, err)
				v, err := read(r, 10)
				require.NoError(t, err)
				require.Equal(t, "t", v)
				return sql.ErrTxDone // roll back
			})
			require.ErrorIs(t, err, sql.ErrTxDone)
			_, err = read(boundsql.For(db), 10)
			require.ErrorIs(t, err, sql.ErrNoRows)

			if name == "sqlite-memory" {
				return // one connection, held by the pool
			}
			conn, err := db.DB.Conn(ctx)
			require.NoError(t, err)
			defer conn.Close()
			for _, r := range []boundsql.Runner{boundsql.For(conn), boundsql.For(&conn)} {
				require.True(t, r.Bound())
				v, err := read(r, 1)
				require.NoError(t, err)
				require.Equal(t, "a?b", v)
			}
		})
	}
}

// ids runs a query of several rows through r: the ids up to id.
func ids(t *testing.T, r boundsql.Runner, id int64) []int64 {
	t.Helper()
	rows, err := r.QueryContext(context.Background(), "SELECT id FROM bq WHERE id <= ? ORDER BY id", id)
	require.NoError(t, err)
	defer func() { require.NoError(t, rows.Close()) }()
	var out []int64
	for rows.Next() {
		var got int64
		require.NoError(t, rows.Scan(&got))
		out = append(out, got)
	}
	require.NoError(t, rows.Err())
	return out
}
