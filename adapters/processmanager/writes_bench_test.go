package processmanager

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/internal/cputime"
)

// BenchmarkDeadlineWrites: what the handlers write for an event, one
// deadline recorded and then settled (setDue, then resolve: its read and
// its write), on an SQLite file through the unsynced pool the engine gives
// the process manager on the in-process bus, and on PostgreSQL. One
// operation is both writes of one deadline; cpu-µs/op is the process's CPU
// time per operation (on SQLite the statements run in this process).
func BenchmarkDeadlineWrites(b *testing.B) {
	for name, url := range map[string]func(testing.TB) string{"sqlite-file": sqltest.SQLiteFile, "postgres": sqltest.Postgres} {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			db := sqltest.Open(b, url(b))
			require.NoError(b, Migrate(ctx, db))
			w, err := db.Unsynced(ctx)
			require.NoError(b, err)
			tbl, err := newTable(w.DB)
			require.NoError(b, err)
			child, carer := uuid.New(), uuid.New()
			now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
			ev := uuid.New()
			b.ReportAllocs()
			cpu := cputime.Process()
			b.ResetTimer()
			for i := range b.N {
				s := graceSubject(child, uuid.New(), carer)
				_, err := tbl.setDue(sqldb.Yielding(ctx), s, now.Add(time.Duration(i)*time.Second), ev, ev, now)
				require.NoError(b, err)
				_, err = tbl.resolve(sqldb.Yielding(ctx), s, forever, ev, now)
				require.NoError(b, err)
			}
			b.StopTimer()
			b.ReportMetric(float64(cputime.Process()-cpu)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
		})
	}
}
