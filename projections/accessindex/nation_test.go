package accessindex_test

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/datagen"
	"github.com/accessledger/accessledger/projections/accessindex"
)

// NationRegionsEnv names how many of the nation's fifty county-sized
// regions TestNationScaleIndex folds (1 to 50); unset, it is skipped.
const NationRegionsEnv = "ACCESSLEDGER_BENCH_NATION_REGIONS"

// NationHeapProfileEnv names a file TestNationScaleIndex writes a heap
// profile of the index to (in-use space after the fold), when set.
const NationHeapProfileEnv = "ACCESSLEDGER_BENCH_NATION_HEAP_PROFILE"

// TestNationScaleIndex measures the access index at nation scale without
// a store: the generator streams its appends straight into the index
// (positions numbered as a SQL store would), a batch at a time, so neither
// the log nor the generator's past regions are ever held in memory. It
// reports the fold rate (generation included: the generator runs a batch
// ahead on the other core) and the index's heap per pair, the figures of
// docs/performance.md's nation rows. Regions are independent, so the
// index grows linearly with them.
func TestNationScaleIndex(t *testing.T) {
	v := os.Getenv(NationRegionsEnv)
	if v == "" {
		t.Skipf("nation-scale measurement: set %s to the number of regions (1 to 50)", NationRegionsEnv)
	}
	regions, err := strconv.Atoi(v)
	require.NoError(t, err)
	require.True(t, regions >= 1 && regions <= datagen.Nation.Regions, "%s=%d", NationRegionsEnv, regions)
	sc := datagen.Nation
	sc.Children = sc.Children / sc.Regions * regions
	sc.Carers = sc.Carers / sc.Regions * regions
	sc.Members = sc.Members / sc.Regions * regions
	sc.Regions = regions

	heapProfile := os.Getenv(NationHeapProfileEnv)
	if heapProfile != "" {
		runtime.MemProfileRate = 4096
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	ix := accessindex.New()
	var seq uint64
	recs := make([]eventlog.Record, 0, 4096)
	start := time.Now()
	sum, err := datagen.Generate(context.Background(), sc, datagen.SinkFunc(func(_ context.Context, batch []datagen.Append) error {
		recs = recs[:0]
		for _, a := range batch {
			base, _ := a.Expected.Version()
			for i, e := range a.Events {
				seq++
				recs = append(recs, eventlog.Record{ID: e.ID, Stream: a.Stream, Version: base + uint64(i) + 1,
					Position: eventlog.At(seq), Type: e.Type, Data: e.Data, Meta: e.Meta})
			}
		}
		return ix.Apply(recs...)
	}), datagen.Options{Seed: 1})
	require.NoError(t, err)
	compacting := time.Now()
	ix.Compact() // as Run does when the index is ready
	compacted := time.Since(compacting)
	elapsed := time.Since(start)

	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	st := ix.Stats()
	heap := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("nation regions=%d events=%d children=%d accounts=%d pairs=%d elapsed=%s rate=%.0f events/s heap=%d MiB heap/pair=%d B compact=%s",
		regions, sum.Events, sum.Children, sum.Accounts, st.Pairs, elapsed.Round(time.Millisecond),
		float64(sum.Events)/elapsed.Seconds(), heap>>20, heap/int64(max(st.Pairs, 1)), compacted.Round(time.Millisecond))
	require.EqualValues(t, sum.Events, st.Applied)
	if heapProfile != "" {
		f, err := os.OpenFile(heapProfile, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		require.NoError(t, err)
		require.NoError(t, pprof.WriteHeapProfile(f))
		require.NoError(t, f.Close())
	}
	runtime.KeepAlive(ix)
}
