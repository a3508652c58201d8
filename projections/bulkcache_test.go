package projections_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
)

// cacheProbe is a projection that records, for every Apply, the number of
// records and SQLite's page cache setting (PRAGMA cache_size) of the
// transaction's connection, and writes one row a record.
type cacheProbe struct {
	batches []probedBatch
}

type probedBatch struct {
	records   int
	cacheSize int64
}

func (*cacheProbe) Name() string { return "cache_probe" }
func (*cacheProbe) Version() int { return 1 }

func (*cacheProbe) Tables() []projections.Table {
	return []projections.Table{{Name: "cache_probe", Create: func(_ dialect.Name, physical string) []string {
		return []string{fmt.Sprintf("CREATE TABLE %s (position BIGINT NOT NULL PRIMARY KEY)", physical)}
	}}}
}

func (c *cacheProbe) Load(context.Context, bun.IDB, projections.Tables, eventlog.Position) (bool, error) {
	c.batches = nil
	return false, nil
}

func (*cacheProbe) Replay([]eventlog.Record) error { return nil }

func (c *cacheProbe) Apply(ctx context.Context, tx bun.Tx, t projections.Tables, recs []eventlog.Record) error {
	var size int64
	if err := tx.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&size); err != nil {
		return err
	}
	c.batches = append(c.batches, probedBatch{records: len(recs), cacheSize: size})
	for _, r := range recs {
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+t.Name("cache_probe")+" (position) VALUES (?)", int64(r.Position.Commit)); err != nil {
			return err
		}
	}
	return nil
}

// cacheSizes returns the page cache setting of every connection of db's
// pool, holding them all at once so that each is a different one.
func cacheSizes(t *testing.T, db *bun.DB) []int64 {
	t.Helper()
	ctx := context.Background()
	n := db.Stats().MaxOpenConnections
	require.Positive(t, n, "the pool is bounded")
	conns := make([]bun.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			require.NoError(t, c.Close())
		}
	}()
	sizes := make([]int64, 0, n)
	for range n {
		c, err := db.Conn(ctx)
		require.NoError(t, err)
		conns = append(conns, c)
		var size int64
		require.NoError(t, c.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&size))
		sizes = append(sizes, size)
	}
	return sizes
}

// TestRebuildBulkPageCache checks SQLite's page cache during and after a
// rebuild: every bulk transaction runs with the large cache (64 MiB, on
// the connection the rebuild holds for them, or set for the transaction
// when the pool has one connection), the tail's with the connection's
// own, and afterwards every connection of the pool is back at its own
// setting and none is held.
func TestRebuildBulkPageCache(t *testing.T) {
	const bulkCache = -64 << 10 // PRAGMA cache_size in KiB, negative
	tests := []struct {
		name string
		url  func(testing.TB) string
	}{
		{name: "sqlite file, a pool of connections", url: sqltest.SQLiteFile},
		{name: "sqlite in memory, one connection", url: sqltest.SQLiteMemory},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.url(t))
			e.appendN(t, 350, 10)
			before := cacheSizes(t, e.db.DB)
			require.NotContains(t, before, int64(bulkCache))

			p := &cacheProbe{}
			require.NoError(t, projections.Rebuild(context.Background(), e.db.DB, e.store, p, nil,
				projections.WithRebuildBatchSize(100), projections.WithBatchSize(50), projections.WithLogger(testLogger(t))))

			// Three full pages in bulk; the last, short one in bulk but for
			// its last batch, which the swap applies.
			want := []probedBatch{{100, bulkCache}, {100, bulkCache}, {100, bulkCache}, {50, before[0]}}
			require.Equal(t, want, p.batches)
			require.Zero(t, e.db.DB.Stats().InUse, "connections still held")
			require.Equal(t, before, cacheSizes(t, e.db.DB))
			var rows int
			require.NoError(t, e.db.QueryRowContext(context.Background(), "SELECT count(*) FROM cache_probe").Scan(&rows))
			require.Equal(t, 350, rows)
		})
	}
}
