package accesshistory

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/datagen"
	"github.com/accessledger/accessledger/projections/accessmodel"
)

// nationRegionsEnv names how many of the nation's fifty county-sized
// regions TestNationScaleHistoryFold folds (1 to 50); unset, it is
// skipped. It is the variable of accessindex's TestNationScaleIndex.
const nationRegionsEnv = "ACCESSLEDGER_BENCH_NATION_REGIONS"

// nationHeapProfileEnv names a file TestNationScaleHistoryFold writes a
// heap profile to (in-use space after the fold), when set.
const nationHeapProfileEnv = "ACCESSLEDGER_BENCH_NATION_HEAP_PROFILE"

// TestNationScaleHistoryFold measures the access history's in-memory fold
// (the model with provenance, and each pair's current rows: what every
// replica running the projections holds) at nation scale without a store:
// the generator streams its appends straight into the fold, whose writes
// are dropped. It reports the fold's heap per pair and its snapshot's size,
// write time and load time (decoding, the model's restore and the rows'
// map), the figures of docs/performance.md's nation section.
func TestNationScaleHistoryFold(t *testing.T) {
	v := os.Getenv(nationRegionsEnv)
	if v == "" {
		t.Skipf("nation-scale measurement: set %s to the number of regions (1 to 50)", nationRegionsEnv)
	}
	regions, err := strconv.Atoi(v)
	require.NoError(t, err)
	require.True(t, regions >= 1 && regions <= datagen.Nation.Regions, "%s=%d", nationRegionsEnv, regions)
	sc := datagen.Nation.FirstRegions(regions)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	p := New()
	p.model, p.rows, p.nextID = accessmodel.New(), map[accessmodel.Pair][]keptRow{}, 1
	var seq uint64
	var inserts, supersedes int
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
		p.mu.Lock()
		defer p.mu.Unlock()
		w, err := p.fold(recs)
		inserts += len(w.inserts)
		supersedes += len(w.supersedes)
		return err
	}), datagen.Options{Seed: 1})
	require.NoError(t, err)
	elapsed := time.Since(start)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapInuse) - int64(before.HeapInuse)
	pairs := len(p.rows)
	t.Logf("nation history fold: regions=%d events=%d pairs=%d rows inserted=%d supersedes=%d elapsed=%s rate=%.0f events/s heap=%d MiB heap/pair=%d B",
		regions, sum.Events, pairs, inserts, supersedes, elapsed.Round(time.Millisecond), float64(sum.Events)/elapsed.Seconds(),
		heap>>20, heap/int64(max(pairs, 1)))
	require.EqualValues(t, sum.Events, p.model.Applied())
	if path := os.Getenv(nationHeapProfileEnv); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		require.NoError(t, err)
		require.NoError(t, pprof.WriteHeapProfile(f))
		require.NoError(t, f.Close())
	}

	dir := t.TempDir()
	w, err := p.WriteSnapshot(context.Background(), dir)
	require.NoError(t, err)
	started := time.Now()
	data, err := os.ReadFile(filepath.Join(dir, SnapshotFile))
	require.NoError(t, err)
	pl, err := decodeSnapshot(data)
	require.NoError(t, err)
	m, err := accessmodel.Restore(pl.Model)
	require.NoError(t, err)
	rows := pl.rows()
	load := time.Since(started)
	t.Logf("nation history snapshot: pairs=%d bytes=%d (%d B/pair) write=%s (fold held %s) load=%s",
		w.Pairs, w.Bytes, int64(w.Bytes)/int64(max(w.Pairs, 1)), w.Elapsed.Round(time.Millisecond), w.Capture.Round(time.Millisecond),
		load.Round(time.Millisecond))
	require.Len(t, rows, pairs)
	require.Equal(t, p.model.Applied(), m.Applied())
}
