package accessindex_test

import (
	"context"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/nationtest"
	"github.com/accessledger/accessledger/projections/accessindex"
)

// TestNationScaleIndex measures the access index at nation scale without
// a store: the generator streams its appends straight into the index
// (nationtest). It reports the fold rate (generation included: the
// generator runs a batch ahead on the other core), the index's heap per
// pair, checks of random pairs and the index's snapshot, the figures of
// docs/performance.md's nation rows. Regions are independent, so the
// index grows linearly with them.
func TestNationScaleIndex(t *testing.T) {
	sc, regions := nationtest.Scale(t)
	ix := accessindex.New()
	var compacted time.Duration
	f := nationtest.Fold(t, sc, func(recs []eventlog.Record) error { return ix.Apply(recs...) }, func() {
		compacting := time.Now()
		ix.Compact() // as Run does when the index is ready
		compacted = time.Since(compacting)
	})
	st := ix.Stats()
	t.Logf("nation regions=%d events=%d children=%d accounts=%d pairs=%d elapsed=%s rate=%.0f events/s heap=%d MiB heap/pair=%d B compact=%s",
		regions, f.Summary.Events, f.Summary.Children, f.Summary.Accounts, st.Pairs, f.Elapsed.Round(time.Millisecond),
		float64(f.Summary.Events)/f.Elapsed.Seconds(), f.Heap>>20, f.Heap/int64(max(st.Pairs, 1)), compacted.Round(time.Millisecond))
	require.EqualValues(t, f.Summary.Events, st.Applied)
	nationChecks(t, ix)
	nationSnapshot(t, ix, f.Last, f.Heap)
	nationtest.WriteHeapProfile(t)
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
