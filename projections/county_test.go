package projections_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/internal/datagen"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/accesshistory"
	"github.com/accessledger/accessledger/projections/accessindex"
	"github.com/accessledger/accessledger/projections/accounts"
	"github.com/accessledger/accessledger/projections/audit"
)

// County-scale measurements (datagen.County, about 1,000,000 events) are
// too big for `make bench`: building the log and its read models takes
// minutes. They run only when CountyEnv is "1".
//
// CountyDirEnv may name a directory that keeps what they build between runs
// (the SQLite file of the log and its read models); CountyPostgresEnv a
// postgres:// URL whose search_path schema keeps the PostgreSQL copy (it is
// built when its event log is empty). Without them everything is built
// afresh in temporary places.
const (
	CountyEnv         = "ACCESSLEDGER_BENCH_COUNTY"
	CountyDirEnv      = "ACCESSLEDGER_BENCH_COUNTY_DIR"
	CountyPostgresEnv = "ACCESSLEDGER_BENCH_COUNTY_POSTGRES"
	countySeed        = 1
)

func needCounty(tb testing.TB) {
	tb.Helper()
	if os.Getenv(CountyEnv) != "1" {
		tb.Skipf("county-scale measurement: set %s=1 (and optionally %s=DIR, %s=URL to keep what it builds)",
			CountyEnv, CountyDirEnv, CountyPostgresEnv)
	}
}

// engineModels are the read models accessd runs, fresh.
func engineModels() []projections.Projection {
	return []projections.Projection{accesshistory.New(), audit.New(), accounts.New()}
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// countyDB returns the URL of a database holding the county log and the
// engine's read models caught up with it, on backend "sqlite-file" or
// "postgres".
func countyDB(tb testing.TB, backend string) string {
	tb.Helper()
	needCounty(tb)
	var url string
	switch backend {
	case "sqlite-file":
		dir := os.Getenv(CountyDirEnv)
		if dir == "" {
			dir = tb.TempDir()
		}
		url = "sqlite:" + filepath.Join(dir, fmt.Sprintf("county-%d.db", countySeed))
	case "postgres":
		if url = os.Getenv(CountyPostgresEnv); url == "" {
			url = sqltest.Postgres(tb)
		}
	default:
		tb.Fatalf("unknown backend %q", backend)
	}
	ctx := context.Background()
	db := sqltest.Open(tb, url)
	require.NoError(tb, sqlstore.Migrate(ctx, db))
	s, err := sqlstore.New(ctx, db)
	require.NoError(tb, err)
	defer func() { require.NoError(tb, s.Close()) }()
	head, err := s.Head(ctx)
	require.NoError(tb, err)
	if head.IsZero() {
		start := time.Now()
		sum, err := datagen.Generate(ctx, datagen.County, datagen.BatchSink(s.AppendBatch), datagen.Options{Seed: countySeed})
		require.NoError(tb, err)
		tb.Logf("%s: generated %d events in %s", db, sum.Events, time.Since(start).Round(time.Millisecond))
	}
	pg, lite := projections.Migrations()
	require.NoError(tb, sqldb.Migrate(ctx, db, projections.Component, pg, lite))
	start := time.Now()
	r, err := projections.NewRunner(db.DB, s, engineModels(), projections.WithLogger(quietLog))
	require.NoError(tb, err)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	require.NoError(tb, r.WaitCaughtUp(ctx))
	cancel()
	require.NoError(tb, <-done)
	if d := time.Since(start); d > time.Minute {
		tb.Logf("%s: read models built in %s", db, d.Round(time.Millisecond))
	}
	return url
}

// startResult is one start of the engine's read side.
type startResult struct {
	index, models, total time.Duration
	records              uint64
	pairs                int
	heap                 uint64
}

// startEngine does what accessd does at start on url, whose read models are
// caught up: it runs the projection runner and the access index until both
// are ready, then stops them.
func startEngine(tb testing.TB, url string) startResult {
	tb.Helper()
	ctx := context.Background()
	db := sqltest.Open(tb, url)
	runtime.GC()
	start := time.Now()
	s, err := sqlstore.New(ctx, db)
	require.NoError(tb, err)
	defer func() { require.NoError(tb, s.Close()) }()
	r, err := projections.NewRunner(db.DB, s, engineModels(), projections.WithLogger(quietLog))
	require.NoError(tb, err)
	ix := accessindex.New(accessindex.WithLogger(quietLog))
	rctx, cancel := context.WithCancel(ctx)
	runDone, ixDone := make(chan error, 1), make(chan error, 1)
	go func() { runDone <- r.Run(rctx) }()
	go func() { ixDone <- ix.Run(rctx, s) }()
	var res startResult
	ixReady, modelsReady := ix.Ready(), r.Ready()
	for ixReady != nil || modelsReady != nil {
		select {
		case <-ixReady:
			res.index, ixReady = time.Since(start), nil
		case <-modelsReady:
			res.models, modelsReady = time.Since(start), nil
		case err := <-ixDone:
			tb.Fatalf("index: %v", err)
		}
	}
	res.total = time.Since(start)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	res.heap = ms.HeapAlloc
	st := ix.Stats()
	res.records, res.pairs = st.Applied, st.Pairs
	cancel()
	require.NoError(tb, <-runDone)
	require.ErrorIs(tb, <-ixDone, context.Canceled)
	return res
}

// BenchmarkCountyStart measures the start of the engine's read side on the
// county log (CountyEnv): from opening the store until the access index and
// every read model have caught up with the log (what accessd reports as
// start_to_ready), on an SQLite file and on PostgreSQL. It reports the
// replay rate, when each part was ready, and the heap held once ready.
func BenchmarkCountyStart(b *testing.B) {
	for _, backend := range []string{"sqlite-file", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			url := countyDB(b, backend)
			var last startResult
			for b.Loop() {
				last = startEngine(b, url)
			}
			b.ReportMetric(float64(last.records)/last.index.Seconds(), "index-records/s")
			b.ReportMetric(last.index.Seconds(), "index-ready-s")
			b.ReportMetric(last.models.Seconds(), "models-ready-s")
			b.ReportMetric(last.total.Seconds(), "ready-s")
			b.ReportMetric(float64(last.heap)/(1<<20), "heap-MiB")
			b.ReportMetric(float64(last.records), "records")
		})
	}
}
