// Package nationtest is the common part of the nation-scale measurements
// (accessindex's TestNationScaleIndex, accesshistory's
// TestNationScaleHistoryFold): how many of the nation's regions to fold,
// read from the environment, the generator's appends streamed into a fold
// as records, with the heap in use before and after, and a heap profile.
// The measurements run only when RegionsEnv is set.
package nationtest

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
)

// RegionsEnv names how many of the nation's fifty county-sized regions a
// measurement folds (1 to 50); unset, the measurement is skipped.
const RegionsEnv = "ACCESSLEDGER_BENCH_NATION_REGIONS"

// HeapProfileEnv names a file a measurement writes a heap profile to
// (in-use space after its fold), when set.
const HeapProfileEnv = "ACCESSLEDGER_BENCH_NATION_HEAP_PROFILE"

// Scale returns the scale of the nation's first regions, as many as
// RegionsEnv says, and that number; it skips t when RegionsEnv is unset.
// With HeapProfileEnv set, it samples the heap finely for the profile.
func Scale(t testing.TB) (datagen.Scale, int) {
	t.Helper()
	v := os.Getenv(RegionsEnv)
	if v == "" {
		t.Skipf("nation-scale measurement: set %s to the number of regions (1 to 50)", RegionsEnv)
	}
	regions, err := strconv.Atoi(v)
	require.NoError(t, err)
	require.True(t, regions >= 1 && regions <= datagen.Nation.Regions, "%s=%d", RegionsEnv, regions)
	if os.Getenv(HeapProfileEnv) != "" {
		runtime.MemProfileRate = 4096
	}
	return datagen.Nation.FirstRegions(regions), regions
}

// Folded is what Fold measured.
type Folded struct {
	Summary datagen.Summary
	// Last is the last record folded.
	Last eventlog.Record
	// Elapsed is the generation and the fold, done included.
	Elapsed time.Duration
	// Heap is the heap in use after the fold less before it, each after a
	// collection.
	Heap int64
}

// Fold streams sc's appends (seed 1) into fold, a batch of records at a
// time, positions numbered as a SQL store would; neither the log nor the
// generator's past regions are held. done, when not nil, runs after the
// last batch, before the heap is measured.
func Fold(t testing.TB, sc datagen.Scale, fold func([]eventlog.Record) error, done func()) Folded {
	t.Helper()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var out Folded
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
		if len(recs) > 0 {
			out.Last = recs[len(recs)-1]
		}
		return fold(recs)
	}), datagen.Options{Seed: 1})
	require.NoError(t, err)
	if done != nil {
		done()
	}
	out.Summary, out.Elapsed = sum, time.Since(start)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	out.Heap = int64(after.HeapInuse) - int64(before.HeapInuse)
	return out
}

// WriteHeapProfile writes a heap profile (mode 0600) to the file
// HeapProfileEnv names, when it is set.
func WriteHeapProfile(t testing.TB) {
	t.Helper()
	path := os.Getenv(HeapProfileEnv)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	require.NoError(t, pprof.WriteHeapProfile(f))
	require.NoError(t, f.Close())
}
