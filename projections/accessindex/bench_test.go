package accessindex_test

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/cputime"
	"github.com/accessledger/accessledger/projections/accessindex"
	"github.com/accessledger/accessledger/projections/accessmodel"
)

// Sizes of the benchmarks' worlds (see generate: about 11 records and 3.4
// pairs per child).
const (
	replayChildren = 9_000  // about 100,000 records
	checkChildren  = 30_000 // about 100,000 pairs
)

// bigIndex is the index the check benchmarks share, built once.
var bigIndex = sync.OnceValue(func() (big struct {
	ix                 *accessindex.Index
	pairs              []accessmodel.Pair
	accounts, children []uuid.UUID
	at                 time.Time
}) {
	tb := &onceTB{}
	w := newWorld(tb, 4242)
	generate(w, checkChildren)
	big.ix = accessindex.New(quiet)
	if err := big.ix.Apply(w.take()...); err != nil {
		panic(err)
	}
	big.pairs = w.pairs(true)
	slices.SortFunc(big.pairs, func(a, b accessmodel.Pair) int {
		return cmp.Or(compareUUID(a.Child, b.Child), compareUUID(a.Account, b.Account))
	})
	// Visit pairs in a random order: no cache-friendly walk.
	w.rng.Shuffle(len(big.pairs), func(i, j int) { big.pairs[i], big.pairs[j] = big.pairs[j], big.pairs[i] })
	for id := range w.accounts {
		big.accounts = append(big.accounts, id)
	}
	for id := range w.children {
		big.children = append(big.children, id)
	}
	w.rng.Shuffle(len(big.accounts), func(i, j int) { big.accounts[i], big.accounts[j] = big.accounts[j], big.accounts[i] })
	w.rng.Shuffle(len(big.children), func(i, j int) { big.children[i], big.children[j] = big.children[j], big.children[i] })
	big.at = t0.AddDate(-1, 0, 0) // in the middle of the generated history
	return big
})

// onceTB lets the world report a generator bug outside a benchmark's
// goroutine: it panics.
type onceTB struct{ testing.TB }

func (*onceTB) Helper()                        {}
func (*onceTB) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }

// reportCPU reports the process's CPU time per operation since start, for
// n operations: on a loaded machine it moves far less than the time per
// operation.
func reportCPU(b *testing.B, start time.Duration, n int) {
	if cpu := cputime.Process() - start; cpu > 0 && n > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/op")
	}
}

func reportSize(b *testing.B, ix *accessindex.Index) {
	st := ix.Stats()
	b.ReportMetric(float64(st.Pairs), "pairs")
}

// checkSets are the pairs the check benchmarks visit: all of them in a
// random order (each check misses the CPU caches: the index is tens of
// megabytes), or a hot set of 1,000 (the caches hold it: the cost of the
// lookup and the policy alone).
func checkSets() []struct {
	name  string
	pairs []accessmodel.Pair
} {
	big := bigIndex()
	return []struct {
		name  string
		pairs []accessmodel.Pair
	}{{"random", big.pairs}, {"hot-1000", big.pairs[:1000]}}
}

// BenchmarkCheck is one check of a pair of an index of about 100,000 pairs:
// it must not allocate.
func BenchmarkCheck(b *testing.B) {
	big := bigIndex()
	for _, set := range checkSets() {
		b.Run(set.name, func(b *testing.B) {
			b.ReportAllocs()
			i, cpu := 0, cputime.Process()
			for b.Loop() {
				p := set.pairs[i%len(set.pairs)]
				i++
				if a := big.ix.Check(p.Account, p.Child, domain.View, big.at); a.Position.IsZero() {
					b.Fatal("no position")
				}
			}
			reportCPU(b, cpu, i)
			reportSize(b, big.ix)
		})
	}
}

// BenchmarkCheckParallel is BenchmarkCheck from GOMAXPROCS goroutines.
func BenchmarkCheckParallel(b *testing.B) {
	big := bigIndex()
	for _, set := range checkSets() {
		b.Run(set.name, func(b *testing.B) {
			b.ReportAllocs()
			var g atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := int(g.Add(7919)) // each goroutine starts elsewhere
				for pb.Next() {
					p := set.pairs[i%len(set.pairs)]
					i++
					_ = big.ix.Check(p.Account, p.Child, domain.View, big.at)
				}
			})
			reportSize(b, big.ix)
		})
	}
}

// BenchmarkCheckMany answers the same n random pairs of the big index with
// one CheckMany (one read lock, one position; into a reused slice) and
// with n Check calls (n locks, n position reads). ns/check is the cost of
// one pair either way.
func BenchmarkCheckMany(b *testing.B) {
	big := bigIndex()
	for _, n := range []int{100, 1_000} {
		items := make([]accessindex.CheckItem, n)
		for i := range items {
			p := big.pairs[(i*7919)%len(big.pairs)]
			items[i] = accessindex.CheckItem{Account: p.Account, Child: p.Child, Permission: domain.View}
		}
		b.Run(fmt.Sprintf("n=%d/how=many", n), func(b *testing.B) {
			b.ReportAllocs()
			dst := make([]accessindex.ItemAnswer, 0, n)
			for b.Loop() {
				var pos eventlog.Position
				if dst, pos = big.ix.CheckMany(items, big.at, dst); pos.IsZero() {
					b.Fatal("no position")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/check")
		})
		b.Run(fmt.Sprintf("n=%d/how=single", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for _, it := range items {
					if a := big.ix.Check(it.Account, it.Child, it.Permission, big.at); a.Position.IsZero() {
						b.Fatal("no position")
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/check")
		})
	}
}

// BenchmarkCheckWhileApplying is BenchmarkCheckParallel with a writer
// applying a record about every 100µs.
func BenchmarkCheckWhileApplying(b *testing.B) {
	big := bigIndex()
	w := newWorld(b, 99)
	generate(w, 2_000)
	recs := w.take()
	// A second index, so the shared one keeps its answers: fed the big
	// world's records first would take long; the writer's effect on the
	// readers is the lock, whatever the index's size.
	ix := accessindex.New(quiet)
	require.NoError(b, ix.Apply(recs[:len(recs)/2]...))
	pairs := w.pairs(true)
	ctx, cancel := context.WithCancel(b.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(100 * time.Microsecond)
		defer t.Stop()
		for _, r := range recs[len(recs)/2:] {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := ix.Apply(r); err != nil {
				panic(err)
			}
		}
	})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			p := pairs[i%len(pairs)]
			i++
			_ = ix.Check(p.Account, p.Child, domain.View, big.at)
		}
	})
	cancel()
	wg.Wait()
}

// BenchmarkChildrenOf lists the children of a random account.
func BenchmarkChildrenOf(b *testing.B) {
	big := bigIndex()
	b.ReportAllocs()
	i, n, cpu := 0, 0, cputime.Process()
	for b.Loop() {
		es, _ := big.ix.ChildrenOf(big.accounts[i%len(big.accounts)], big.at)
		n += len(es)
		i++
	}
	reportCPU(b, cpu, i)
	b.ReportMetric(float64(n)/float64(i), "entries/op")
	reportSize(b, big.ix)
}

// BenchmarkViewersOf lists the viewers of a random child.
func BenchmarkViewersOf(b *testing.B) {
	big := bigIndex()
	b.ReportAllocs()
	i, n, cpu := 0, 0, cputime.Process()
	for b.Loop() {
		es, _ := big.ix.ViewersOf(big.children[i%len(big.children)], big.at)
		n += len(es)
		i++
	}
	reportCPU(b, cpu, i)
	b.ReportMetric(float64(n)/float64(i), "entries/op")
	reportSize(b, big.ix)
}

// appendByStream appends records stream by stream (each stream's records in
// order, streams in the order they first appear), in appends of up to 500:
// the model needs only each stream's order, and one append costs about
// 0.6 ms on in-memory SQLite whatever its size, so the log's 100,000
// records load in about 20,000 appends instead of 80,000.
func appendByStream(tb testing.TB, s eventlog.Store, recs []eventlog.Record) eventlog.Position {
	var order []string
	byStream := map[string][]eventlog.EventData{}
	for _, r := range recs {
		if _, ok := byStream[r.Stream]; !ok {
			order = append(order, r.Stream)
		}
		byStream[r.Stream] = append(byStream[r.Stream], eventlog.EventData{ID: r.ID, Type: r.Type, Data: r.Data, Meta: r.Meta})
	}
	var head eventlog.Position
	for _, stream := range order {
		for evs := byStream[stream]; len(evs) > 0; {
			n := min(len(evs), 500)
			res, err := s.Append(context.Background(), stream, eventlog.Any, evs[:n])
			require.NoError(tb, err)
			head, evs = res.Position, evs[n:]
		}
	}
	return head
}

// BenchmarkReplay measures the start-up of an index: a replay of about
// 100,000 realistic records (generate) from an SQLite file, through Run
// until Ready. It reports the records per second and the heap the index
// holds per pair (live bytes, packed once ready), and, for comparison, the
// heap of an accessmodel.Model of the same log (the aggregates' fold the
// index kept before issue 18). The log is built in an in-memory
// SQLite database and copied to a file with VACUUM INTO, which is much
// faster than appending to a file with fsync on every commit.
func BenchmarkReplay(b *testing.B) {
	ctx := context.Background()
	path, n, head := buildReplayLog(b)
	s := openStore(b, sqltest.Open(b, "sqlite:"+path))
	runtime.GC()

	replay := func() *accessindex.Index {
		ix := accessindex.New(quiet)
		runUntilReady(b, ix, s)
		if st := ix.Stats(); st.Position != head || st.Applied != uint64(n) {
			b.Fatalf("replayed %d records to %s, want %d to %s", st.Applied, st.Position, n, head)
		}
		return ix
	}

	var pairs int
	for b.Loop() {
		pairs = replay().Stats().Pairs
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(n), "records")
	b.ReportMetric(float64(pairs), "pairs")

	heap := func(build func() any) float64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		v := build()
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(v)
		return float64(after.HeapAlloc) - float64(before.HeapAlloc)
	}
	b.ReportMetric(heap(func() any { return replay() })/float64(pairs), "heapB/pair")
	b.ReportMetric(heap(func() any {
		m := accessmodel.New()
		for after := eventlog.Start; ; {
			recs, err := s.ReadAll(ctx, after, accessindex.DefaultPageSize)
			require.NoError(b, err)
			if len(recs) == 0 {
				return m
			}
			for _, r := range recs {
				_, err := m.Apply(r)
				require.NoError(b, err)
			}
			after = recs[len(recs)-1].Position
		}
	})/float64(pairs), "modelB/pair")
}

// buildReplayLog writes the log of generate(replayChildren) to an SQLite
// file and returns its path, its number of records and its head. Nothing of
// the generator stays on the heap.
func buildReplayLog(b *testing.B) (string, int, eventlog.Position) {
	ctx := context.Background()
	start := time.Now()
	w := newWorld(b, 4243)
	generate(w, replayChildren)
	recs := w.take()
	generated := time.Since(start)

	start = time.Now()
	mem, err := sqldb.Open(ctx, sqltest.SQLiteMemory(b))
	require.NoError(b, err)
	defer func() { require.NoError(b, mem.Close()) }()
	require.NoError(b, sqlstore.Migrate(ctx, mem))
	s, err := sqlstore.New(ctx, mem)
	require.NoError(b, err)
	head := appendByStream(b, s, recs)
	require.NoError(b, s.Close())
	appended := time.Since(start)

	// The in-memory database lives in the memdb VFS: name the file's VFS.
	start = time.Now()
	path := filepath.Join(b.TempDir(), "replay.db")
	_, err = mem.ExecContext(ctx, "VACUUM INTO ?", "file:"+path+"?vfs=unix")
	require.NoError(b, err)
	b.Logf("log of %d records: generated in %s, appended in %s, copied to a file in %s", len(recs),
		generated.Round(time.Millisecond), appended.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	return path, len(recs), head
}

// snapshotTail is how many records BenchmarkReplayFromSnapshot replays
// after its snapshot: 1% of the log.
const snapshotTail = 1_000

// BenchmarkReplayFromSnapshot measures the start-up of an index from a
// snapshot: BenchmarkReplay's log, a snapshot taken snapshotTail records
// before its head, and each iteration LoadSnapshot and Run over the tail
// until Ready. It reports the snapshot's size per pair, and the time to
// write one (the applier is held only for the capture) and to load one.
func BenchmarkReplayFromSnapshot(b *testing.B) {
	ctx := context.Background()
	path, n, head := buildReplayLog(b)
	s := openStore(b, sqltest.Open(b, "sqlite:"+path))
	dir := b.TempDir()

	base := accessindex.New(quiet)
	for applied := 0; applied < n-snapshotTail; {
		recs, err := s.ReadAll(ctx, base.Position(), min(accessindex.DefaultPageSize, n-snapshotTail-applied))
		require.NoError(b, err)
		require.NoError(b, base.Apply(recs...))
		applied += len(recs)
	}
	var info accessindex.SnapshotInfo
	var write, capture time.Duration
	const writes = 3
	for range writes {
		var err error
		info, err = base.WriteSnapshot(ctx, dir)
		require.NoError(b, err)
		write += info.Elapsed
		capture += info.Capture
	}
	base = nil
	runtime.GC()

	var load time.Duration
	var pairs int
	for b.Loop() {
		ix := accessindex.New(quiet)
		li, err := ix.LoadSnapshot(ctx, dir, s)
		if err != nil {
			b.Fatalf("LoadSnapshot: %v", err)
		}
		load += li.Elapsed
		runUntilReady(b, ix, s)
		if st := ix.Stats(); st.Position != head || st.Applied != uint64(n) {
			b.Fatalf("replayed %d records to %s, want %d to %s", st.Applied, st.Position, n, head)
		}
		pairs = ix.Stats().Pairs
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(n), "records")
	b.ReportMetric(float64(pairs), "pairs")
	b.ReportMetric(float64(info.Bytes), "snapshotB")
	b.ReportMetric(float64(info.Bytes)/float64(info.Pairs), "snapshotB/pair")
	b.ReportMetric(float64(write.Milliseconds())/writes, "write-ms")
	b.ReportMetric(float64(capture.Milliseconds())/writes, "capture-ms")
	b.ReportMetric(float64(load.Milliseconds())/float64(b.N), "load-ms")
}

// memLog is a log held in memory (dense positions from 1), enough for
// LoadSnapshot's check.
type memLog []eventlog.Record

func (l memLog) Head(context.Context) (eventlog.Position, error) {
	if len(l) == 0 {
		return eventlog.Start, nil
	}
	return l[len(l)-1].Position, nil
}

func (l memLog) ReadAll(_ context.Context, after eventlog.Position, limit int) ([]eventlog.Record, error) {
	i := int(after.Commit) // positions are dense from 1
	if i >= len(l) {
		return nil, nil
	}
	return l[i:min(len(l), i+limit)], nil
}

func (l memLog) Subscribe(ctx context.Context, _ eventlog.Position, _ func(context.Context, eventlog.Record) error) error {
	<-ctx.Done()
	return ctx.Err()
}

// BenchmarkSnapshotLarge measures a snapshot of a county-sized index
// (generate(checkChildren): about 100,000 pairs, the county has 83,561):
// its size, the time to write it (WriteSnapshot, the applier held for the
// capture), and each iteration LoadSnapshot into a new index (read,
// checksum, decode, check against an in-memory log, derive).
func BenchmarkSnapshotLarge(b *testing.B) {
	ctx := context.Background()
	w := newWorld(b, 4242)
	generate(w, checkChildren)
	recs := memLog(w.take())
	ix := accessindex.New(quiet)
	require.NoError(b, ix.Apply(recs...))
	dir := b.TempDir()
	var info accessindex.SnapshotInfo
	var write, capture time.Duration
	const writes = 3
	for range writes {
		var err error
		info, err = ix.WriteSnapshot(ctx, dir)
		require.NoError(b, err)
		write += info.Elapsed
		capture += info.Capture
	}
	ix = nil
	runtime.GC()
	for b.Loop() {
		if _, err := accessindex.New(quiet).LoadSnapshot(ctx, dir, recs); err != nil {
			b.Fatalf("LoadSnapshot: %v", err)
		}
	}
	b.ReportMetric(float64(len(recs)), "records")
	b.ReportMetric(float64(info.Pairs), "pairs")
	b.ReportMetric(float64(info.Bytes), "snapshotB")
	b.ReportMetric(float64(info.Bytes)/float64(info.Pairs), "snapshotB/pair")
	b.ReportMetric(float64(write.Milliseconds())/writes, "write-ms")
	b.ReportMetric(float64(capture.Milliseconds())/writes, "capture-ms")
}
