package projections_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/projections"
)

// TestInsertRows checks that InsertRows writes every row, NULLs and values
// alike, in order, whatever the number of rows and columns.
func TestInsertRows(t *testing.T) {
	if raceEnabled {
		t.Skip("one goroutine writing 33,000 rows per backend: runs without the race detector (make test's RACE_SKIPPED)")
	}
	t.Parallel()
	tests := []struct {
		name string
		n    int
		cols int
	}{
		{"none", 0, 3},
		{"one", 1, 3},
		{"several", 1234, 3},
		{"more than a PostgreSQL statement takes", 10_001, 3},
		{"wide rows", 1000, 100},
	}
	for _, be := range sqltest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			t.Parallel() // each backend its own database
			db := sqltest.Open(t, be.URL(t))
			ctx := context.Background()
			for i, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					table := fmt.Sprintf("bulk_%d", i)
					cols := []projections.Column{{Name: "id", PGType: "bigint"}, {Name: "name", PGType: "text"}, {Name: "n", PGType: "bigint"}}
					ddl := "CREATE TABLE " + table + " (id BIGINT PRIMARY KEY, name TEXT, n BIGINT"
					for c := 3; c < tc.cols; c++ {
						cols = append(cols, projections.Column{Name: fmt.Sprintf("c%d", c), PGType: "text"})
						ddl += fmt.Sprintf(", c%d TEXT", c)
					}
					_, err := db.ExecContext(ctx, ddl+")")
					require.NoError(t, err)
					tx, err := db.BeginTx(ctx, nil)
					require.NoError(t, err)
					err = projections.InsertRows(ctx, tx, table, cols, tc.n, func(i int, dst []any) []any {
						dst = append(dst, int64(i),
							projections.NullString(sql.NullString{String: fmt.Sprintf("row '%d'", i), Valid: i%3 != 0}),
							projections.NullInt64(sql.NullInt64{Int64: int64(-i), Valid: i%2 == 0}))
						for c := 3; c < tc.cols; c++ {
							dst = append(dst, fmt.Sprint(c))
						}
						return dst
					})
					require.NoError(t, err)
					require.NoError(t, tx.Commit())

					rows, err := db.QueryContext(ctx, "SELECT id, name, n FROM "+table+" ORDER BY id")
					require.NoError(t, err)
					defer func() { _ = rows.Close() }()
					got := 0
					for rows.Next() {
						var id int64
						var name sql.NullString
						var n sql.NullInt64
						require.NoError(t, rows.Scan(&id, &name, &n))
						require.Equal(t, int64(got), id)
						if got%3 != 0 {
							require.Equal(t, sql.NullString{String: fmt.Sprintf("row '%d'", got), Valid: true}, name)
						} else {
							require.False(t, name.Valid)
						}
						if got%2 == 0 {
							require.Equal(t, sql.NullInt64{Int64: int64(-got), Valid: true}, n)
						} else {
							require.False(t, n.Valid)
						}
						got++
					}
					require.NoError(t, rows.Err())
					require.Equal(t, tc.n, got)
				})
			}
		})
	}
}

// TestInsertRowsWrongArity checks that a row with too few values is an
// error, not a misaligned insert.
func TestInsertRowsWrongArity(t *testing.T) {
	for _, be := range sqltest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			db := sqltest.Open(t, be.URL(t))
			ctx := context.Background()
			_, err := db.ExecContext(ctx, "CREATE TABLE bulk_bad (a BIGINT, b BIGINT)")
			require.NoError(t, err)
			tx, err := db.BeginTx(ctx, nil)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback() }()
			cols := []projections.Column{{Name: "a", PGType: "bigint"}, {Name: "b", PGType: "bigint"}}
			err = projections.InsertRows(ctx, tx, "bulk_bad", cols, 3, func(i int, dst []any) []any {
				return append(dst, int64(i))
			})
			require.ErrorContains(t, err, "has 1 values for 2 columns")
		})
	}
}

// TestUpdateRows checks that UpdateRows sets the given columns of the rows
// with the given keys, NULLs included, and leaves the others alone.
func TestUpdateRows(t *testing.T) {
	tests := []struct {
		name string
		keys []int64
	}{
		{"none", nil},
		{"one", []int64{3}},
		{"several, out of order, one missing", []int64{7, 1, 42, 4}},
	}
	for _, be := range sqltest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			db := sqltest.Open(t, be.URL(t))
			ctx := context.Background()
			for i, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					table := fmt.Sprintf("upd_%d", i)
					_, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (id BIGINT PRIMARY KEY, name TEXT, n BIGINT)")
					require.NoError(t, err)
					for id := int64(0); id < 10; id++ {
						_, err := db.ExecContext(ctx, "INSERT INTO "+table+" VALUES (?, 'old', 1)", id)
						require.NoError(t, err)
					}
					tx, err := db.BeginTx(ctx, nil)
					require.NoError(t, err)
					err = projections.UpdateRows(ctx, tx, table, projections.Column{Name: "id", PGType: "bigint"},
						[]projections.Column{{Name: "name", PGType: "text"}, {Name: "n", PGType: "bigint"}},
						len(tc.keys), func(i int, dst []any) []any {
							k := tc.keys[i]
							name := projections.NullString(sql.NullString{String: fmt.Sprint("new ", k), Valid: k%2 == 1})
							return append(dst, k, name, k*10)
						})
					require.NoError(t, err)
					require.NoError(t, tx.Commit())

					want := map[int64]string{}
					for id := int64(0); id < 10; id++ {
						want[id] = "old 1"
					}
					for _, k := range tc.keys {
						if k < 10 {
							want[k] = fmt.Sprint("<nil> ", k*10)
							if k%2 == 1 {
								want[k] = fmt.Sprint("new ", k, " ", k*10)
							}
						}
					}
					got := map[int64]string{}
					rows, err := db.QueryContext(ctx, "SELECT id, name, n FROM "+table)
					require.NoError(t, err)
					defer func() { _ = rows.Close() }()
					for rows.Next() {
						var id, n int64
						var name sql.NullString
						require.NoError(t, rows.Scan(&id, &name, &n))
						if name.Valid {
							got[id] = fmt.Sprint(name.String, " ", n)
						} else {
							got[id] = fmt.Sprint("<nil> ", n)
						}
					}
					require.NoError(t, rows.Err())
					require.Equal(t, want, got)
				})
			}
		})
	}
}

// TestUpsertRows checks that UpsertRows inserts new keys and replaces the
// other columns of stored ones.
func TestUpsertRows(t *testing.T) {
	for _, be := range sqltest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			db := sqltest.Open(t, be.URL(t))
			ctx := context.Background()
			_, err := db.ExecContext(ctx, "CREATE TABLE ups (k TEXT PRIMARY KEY, v TEXT, n BIGINT)")
			require.NoError(t, err)
			_, err = db.ExecContext(ctx, "INSERT INTO ups VALUES ('a', 'old', 1), ('b', 'old', 2)")
			require.NoError(t, err)
			cols := []projections.Column{{Name: "k", PGType: "text"}, {Name: "v", PGType: "text"}, {Name: "n", PGType: "bigint"}}
			rows := [][]any{{"b", "new", int64(20)}, {"c", nil, int64(30)}}
			tx, err := db.BeginTx(ctx, nil)
			require.NoError(t, err)
			require.NoError(t, projections.UpsertRows(ctx, tx, "ups", cols, 1, len(rows), func(i int, dst []any) []any {
				return append(dst, rows[i]...)
			}))
			require.NoError(t, tx.Commit())
			var got []string
			require.NoError(t, db.NewRaw("SELECT k || ':' || COALESCE(v, '-') || ':' || CAST(n AS TEXT) FROM ups ORDER BY k").Scan(ctx, &got))
			require.Equal(t, []string{"a:old:1", "b:new:20", "c:-:30"}, got)

			tx, err = db.BeginTx(ctx, nil)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback() }()
			require.Error(t, projections.UpsertRows(ctx, tx, "ups", cols, 3, 1, func(i int, dst []any) []any { return dst }))
		})
	}
}
