package accessindex_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/internal/cputime"
	"github.com/accessledger/accessledger/internal/datagen"
	"github.com/accessledger/accessledger/projections/accessindex"
)

// County-scale measurements (datagen.County, about 1,000,000 events) are
// too big for `make bench`: generating the log takes minutes. They run only
// when CountyEnv is "1". CountyDirEnv may name a directory that keeps the
// SQLite log between runs, CountyPostgresEnv a postgres:// URL whose
// search_path schema keeps the PostgreSQL copy (generated when its log is
// empty); without them the log is generated afresh in temporary places.
const (
	CountyEnv         = "ACCESSLEDGER_BENCH_COUNTY"
	CountyDirEnv      = "ACCESSLEDGER_BENCH_COUNTY_DIR"
	CountyPostgresEnv = "ACCESSLEDGER_BENCH_COUNTY_POSTGRES_LOG"
	countySeed        = 1
)

// countyLog returns the URL of a database holding the county log, on
// backend "sqlite-file" or "postgres".
func countyLog(tb testing.TB, backend string) string {
	tb.Helper()
	if os.Getenv(CountyEnv) != "1" {
		tb.Skipf("county-scale measurement: set %s=1 (and optionally %s=DIR, %s=URL to keep the log)",
			CountyEnv, CountyDirEnv, CountyPostgresEnv)
	}
	var url string
	switch backend {
	case "sqlite-file":
		dir := os.Getenv(CountyDirEnv)
		if dir == "" {
			dir = tb.TempDir()
		}
		url = "sqlite:" + filepath.Join(dir, fmt.Sprintf("county-%d-log.db", countySeed))
	case "postgres":
		if url = os.Getenv(CountyPostgresEnv); url == "" {
			url = sqltest.Postgres(tb)
		}
	}
	ctx := context.Background()
	s := openStore(tb, sqltest.Open(tb, url))
	head, err := s.Head(ctx)
	require.NoError(tb, err)
	if head.IsZero() {
		start := time.Now()
		sum, err := datagen.Generate(ctx, datagen.County, datagen.BatchSink(s.AppendBatch), datagen.Options{Seed: countySeed})
		require.NoError(tb, err)
		tb.Logf("%s: generated %d events in %s", url, sum.Events, time.Since(start).Round(time.Millisecond))
	}
	return url
}

// BenchmarkCountyReplay measures the access index's start on the county log
// (CountyEnv): Run from opening the store until Ready, on an SQLite file and
// on PostgreSQL. It reports the records replayed per second, the CPU time
// the replay used (reading and folding overlap on two cores; on a loaded
// machine the wall time says less), and the heap the index holds per pair.
func BenchmarkCountyReplay(b *testing.B) {
	for _, backend := range []string{"sqlite-file", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			url := countyLog(b, backend)
			db := sqltest.Open(b, url)
			ctx := context.Background()
			var (
				ix   *accessindex.Index
				cpu  time.Duration
				wall time.Duration
			)
			for b.Loop() {
				ix = nil //nolint:ineffassign // drop the last index before measuring the next one
				runtime.GC()
				startCPU, start := cputime.Process(), time.Now()
				s, err := sqlstore.New(ctx, db)
				require.NoError(b, err)
				ix = accessindex.New(quiet)
				rctx, cancel := context.WithCancel(ctx)
				done := make(chan error, 1)
				go func() { done <- ix.Run(rctx, s) }()
				select {
				case <-ix.Ready():
				case err := <-done:
					b.Fatalf("Run: %v", err)
				}
				wall, cpu = time.Since(start), cputime.Process()-startCPU
				cancel()
				require.ErrorIs(b, <-done, context.Canceled)
				require.NoError(b, s.Close())
			}
			st := ix.Stats()
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			runtime.KeepAlive(ix)
			b.ReportMetric(float64(st.Applied)/wall.Seconds(), "records/s")
			b.ReportMetric(wall.Seconds(), "ready-s")
			b.ReportMetric(cpu.Seconds(), "cpu-s")
			b.ReportMetric(float64(st.Applied), "records")
			b.ReportMetric(float64(st.Pairs), "pairs")
			b.ReportMetric(float64(ms.HeapAlloc)/float64(st.Pairs), "heapB/pair")
		})
	}
}
