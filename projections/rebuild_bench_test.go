package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/internal/cputime"
	"github.com/accessledger/accessledger/internal/datagen"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/accesshistory"
	"github.com/accessledger/accessledger/projections/accounts"
	"github.com/accessledger/accessledger/projections/audit"
	"github.com/accessledger/accessledger/projections/ledger"
)

// rebuildScale is the history BenchmarkRebuild rebuilds from: three times
// datagen.Small, about 30,000 events (a thirtieth of a county).
var rebuildScale = datagen.Scale{Name: "bench", Regions: 1, Children: 300, Carers: 90, Members: 600, Years: 5}

// BenchmarkRebuild measures projections.Rebuild of each SQL read model (as
// accessd rebuild runs it) from a generated log of rebuildScale, on an
// SQLite file and on PostgreSQL; one op is one whole rebuild. It reports
// events/s and the CPU time of this process per event (user + system, from
// getrusage: the SQLite engine runs in the process, PostgreSQL's server
// does not).
func BenchmarkRebuild(b *testing.B) {
	models := []struct {
		name string
		new  func() projections.Projection
	}{
		{"audit", func() projections.Projection { return audit.New() }},
		{"access_history", func() projections.Projection { return accesshistory.New() }},
		{"accounts", func() projections.Projection { return accounts.New() }},
		{"ledger", func() projections.Projection { return ledger.New() }},
	}
	for _, be := range sqltest.Backends() {
		if be.Name == "sqlite-memory" {
			continue
		}
		b.Run(be.Name, func(b *testing.B) {
			ctx := context.Background()
			e := newEnv(b, be.URL(b))
			sum, err := datagen.Generate(ctx, rebuildScale, datagen.BatchSink(e.store.AppendBatch), datagen.Options{Seed: 1})
			require.NoError(b, err)
			for _, m := range models {
				b.Run(m.name, func(b *testing.B) {
					var cpu time.Duration
					for b.Loop() {
						before := cputime.Process()
						require.NoError(b, projections.Rebuild(ctx, e.db.DB, e.store, m.new(), nil,
							projections.WithLogger(quietLog)))
						cpu += cputime.Process() - before
					}
					events := float64(sum.Events) * float64(b.N)
					b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
					b.ReportMetric(float64(cpu.Nanoseconds())/events, "cpu-ns/event")
				})
			}
		})
	}
}
