package accessindex_test

import (
	"context"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
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
	sc := datagen.Nation.FirstRegions(regions)

	heapProfile := os.Getenv(NationHeapProfileEnv)
	if heapProfile != "" {
		runtime.MemProfileRate = 4096
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	ix := accessindex.New()
	var seq uint64
	var last eventlog.Record
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
		if len(recs) > 0 {
			last = recs[len(recs)-1]
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
	nationChecks(t, ix)
	nationSnapshot(t, ix, last, heap)
	if heapProfile != "" {
		f, err := os.OpenFile(heapProfile, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		require.NoError(t, err)
		require.NoError(t, pprof.WriteHeapProfile(f))
		require.NoError(t, f.Close())
	}
	runtime.KeepAlive(ix)
}

// nationChecks logs the latency of checks of random pairs of ix, timed one
// at a time (the load tool's check.inprocess method), and their allocations.
func nationChecks(t *testing.T, ix *accessindex.Index) {
	pairs := ix.SamplePairsForTest(1 << 20)
	require.NotEmpty(t, pairs)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
	at := time.Now()
	allowed := 0
	res := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			p := pairs[i%len(pairs)]
			if ix.Check(p[0], p[1], domain.View, at).Allowed {
				allowed++
			}
		}
	})
	lat := make([]time.Duration, 0, 2_000_000)
	for i := 0; i < cap(lat); i++ {
		p := pairs[i%len(pairs)]
		t0 := time.Now()
		_ = ix.Check(p[0], p[1], domain.View, at)
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	t.Logf("nation checks: random pairs=%d ns/op=%d allocs/op=%d p50=%s p99=%s p999=%s (one call at a time, timer included)",
		len(pairs), res.NsPerOp(), res.AllocsPerOp(), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)*999/1000])
	require.Zero(t, res.AllocsPerOp())
}

// nationSnapshot writes ix's snapshot, loads it into a new index (checked
// against a log holding last, the record at its position) and logs the
// snapshot's size, the write's and the load's times and the loaded
// index's heap; the loaded index must hold what ix holds.
func nationSnapshot(t *testing.T, ix *accessindex.Index, last eventlog.Record, heap int64) {
	ctx := context.Background()
	dir := t.TempDir()
	w, err := ix.WriteSnapshot(ctx, dir)
	require.NoError(t, err)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	loaded := accessindex.New()
	l, err := loaded.LoadSnapshot(ctx, dir, lastRecordLog{last})
	require.NoError(t, err)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	lheap := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("nation snapshot: pairs=%d bytes=%d (%d B/pair) write=%s (applier held %s) load=%s loaded heap=%d MiB (folded: %d MiB)",
		w.Pairs, w.Bytes, int64(w.Bytes)/int64(max(w.Pairs, 1)), w.Elapsed.Round(time.Millisecond), w.Capture.Round(time.Millisecond),
		l.Elapsed.Round(time.Millisecond), lheap>>20, heap>>20)
	require.Equal(t, w.Pairs, l.Pairs)
	require.Equal(t, ix.Stats().Pairs, loaded.Stats().Pairs)
	runtime.KeepAlive(loaded)
}

// lastRecordLog is a log of which only the last record is readable: all a
// snapshot's load reads of it.
type lastRecordLog struct{ last eventlog.Record }

func (l lastRecordLog) Head(context.Context) (eventlog.Position, error) { return l.last.Position, nil }

func (l lastRecordLog) ReadAll(_ context.Context, after eventlog.Position, limit int) ([]eventlog.Record, error) {
	if limit < 1 || !after.Before(l.last.Position) {
		return nil, nil
	}
	return []eventlog.Record{l.last}, nil
}

func (l lastRecordLog) Subscribe(ctx context.Context, _ eventlog.Position, _ func(context.Context, eventlog.Record) error) error {
	<-ctx.Done()
	return ctx.Err()
}
