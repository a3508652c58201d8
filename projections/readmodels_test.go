package projections_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun/dialect"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/internal/datagen"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/accesshistory"
	"github.com/accessledger/accessledger/projections/accounts"
	"github.com/accessledger/accessledger/projections/audit"
	"github.com/accessledger/accessledger/projections/ledger"
)

// readModels are the SQL read models of the engine, fresh.
func readModels() []projections.Projection {
	return []projections.Projection{audit.New(), accesshistory.New(), accounts.New(), ledger.New()}
}

// compareScale is the history TestRebuildMatchesIncremental compares on:
// about 4,000 events, a third of datagen.Small.
var compareScale = datagen.Scale{Name: "compare", Regions: 1, Children: 35, Carers: 10, Members: 70, Years: 5}

// TestRebuildMatchesIncremental checks, on a generated history
// (compareScale), that every read model holds the same rows, and its tables the
// same indexes, whether a runner applied the log in small batches as it
// arrived or Rebuild rebuilt it with its defaults (large batches, indexes
// built after the bulk of the log, multi-row inserts).
//
// It runs without the race detector (make test's RACE_SKIPPED): what it
// compares is SQL written two ways; the runner and Rebuild run one after
// the other, and their concurrency (queries and a runner going on during a
// rebuild's swap, two runners) is runner_test.go's, under the detector.
func TestRebuildMatchesIncremental(t *testing.T) {
	if raceEnabled {
		t.Skip("a 4,000-event history applied and rebuilt on three backends: runs without the race detector (make test's RACE_SKIPPED)")
	}
	t.Parallel()
	tests := []struct {
		name    string
		batch   int // the runner's batch
		rebuild []projections.Option
	}{
		{"rebuild defaults", 97, nil},
		{"rebuild in batches of 1,000", 500, []projections.Option{projections.WithRebuildBatchSize(1000)}},
	}
	forBackendsParallel(t, func(t *testing.T, url string) {
		ctx := context.Background()
		e := newEnv(t, url)
		_, err := datagen.Generate(ctx, compareScale, datagen.BatchSink(e.store.AppendBatch), datagen.Options{Seed: 7})
		require.NoError(t, err)
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := e.db.ExecContext(ctx, "DELETE FROM projection_checkpoints")
				require.NoError(t, err)
				r, stop := startRunner(t, e.db.DB, e.store, readModels(), projections.WithBatchSize(tc.batch))
				wctx, cancel := context.WithTimeout(ctx, 10*time.Minute) // modernc SQLite under -race is slow
				defer cancel()
				require.NoError(t, r.WaitCaughtUp(wctx))
				stop()
				incremental := map[string]tableDump{}
				for _, p := range readModels() {
					for _, tb := range p.Tables() {
						incremental[tb.Name] = dumpTable(t, e.db, p, tb.Name)
					}
				}
				for _, p := range readModels() {
					opts := append([]projections.Option{projections.WithLogger(testLogger(t))}, tc.rebuild...)
					require.NoError(t, projections.Rebuild(ctx, e.db.DB, e.store, p, nil, opts...))
					for _, tb := range p.Tables() {
						got := dumpTable(t, e.db, p, tb.Name)
						want := incremental[tb.Name]
						require.NotEmpty(t, want.rows, "table %s", tb.Name)
						require.Equal(t, want.indexes, got.indexes, "indexes of %s", tb.Name)
						require.Equal(t, len(want.rows), len(got.rows), "rows of %s", tb.Name)
						for i := range want.rows {
							require.Equal(t, want.rows[i], got.rows[i], "row %d of %s", i, tb.Name)
						}
					}
				}
			})
		}
	})
}

// tableDump is what a read model's table holds: its rows (through the
// view, sorted) and the definitions of its indexes (with the generation
// taken out of the names).
type tableDump struct {
	rows    []string
	indexes []string
}

// dumpTable reads the table logical of p: every row, as text, sorted, and
// the indexes of the physical table behind the view.
func dumpTable(t *testing.T, db *sqldb.DB, p projections.Projection, logical string) tableDump {
	t.Helper()
	ctx := context.Background()
	rows, err := db.QueryContext(ctx, "SELECT * FROM "+logical)
	require.NoError(t, err)
	defer func() { _ = rows.Close() }()
	cols, err := rows.Columns()
	require.NoError(t, err)
	var d tableDump
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		require.NoError(t, rows.Scan(ptrs...))
		var b strings.Builder
		for i, v := range vals {
			if bs, ok := v.([]byte); ok {
				v = fmt.Sprintf("%x", bs)
			}
			fmt.Fprintf(&b, "%s=%v;", cols[i], v)
		}
		d.rows = append(d.rows, b.String())
	}
	require.NoError(t, rows.Err())
	slices.Sort(d.rows)

	var gen int64
	require.NoError(t, db.NewRaw("SELECT generation FROM projection_checkpoints WHERE name = ?", p.Name()).Scan(ctx, &gen))
	physical := fmt.Sprintf("%s_g%d", logical, gen)
	q := "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL"
	if db.Dialect().Name() == dialect.PG {
		q = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = ?"
	}
	var names []string
	require.NoError(t, db.NewRaw(q, physical).Scan(ctx, &names))
	for _, n := range names {
		d.indexes = append(d.indexes, strings.Replace(n, physical, logical, 1))
	}
	slices.Sort(d.indexes)
	return d
}
