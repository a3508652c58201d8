package sqlstore_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// BenchmarkConcurrentAppends measures appends of one event each from
// several writers at once, each on streams of its own, as concurrent
// commands append: ns/op is per append over all writers; p99-ms is one
// append's latency. On SQLite the appends waiting meanwhile are committed
// together (group commit), sharing an fsync.
func BenchmarkConcurrentAppends(b *testing.B) {
	for _, be := range benchBackends {
		for _, writers := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("%s/writers=%d", be.name, writers), func(b *testing.B) {
				s, _ := openStore(b, be.url(b))
				ctx := context.Background()
				var next atomic.Int64
				lat := make([][]time.Duration, writers)
				var failed atomic.Pointer[error]
				b.ResetTimer()
				var wg sync.WaitGroup
				for w := range writers {
					wg.Go(func() {
						for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
							t0 := time.Now()
							if _, err := s.Append(ctx, fmt.Sprintf("w%d-%d", w, i%16), eventlog.Any,
								[]eventlog.EventData{event("bench.appended.v1")}); err != nil {
								failed.CompareAndSwap(nil, &err)
								return
							}
							lat[w] = append(lat[w], time.Since(t0))
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				if e := failed.Load(); e != nil {
					b.Fatal(*e)
				}
				all := slices.Concat(lat...)
				slices.Sort(all)
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
				if len(all) > 0 {
					b.ReportMetric(float64(all[len(all)*99/100])/1e6, "p99-ms")
				}
			})
		}
	}
}

// BenchmarkFollowers measures appends of one event each from eight
// writers while eight subscribers follow the log, as the read models, the
// index, the process manager and the relays follow it in the engine: an op
// is one append, delivered to every subscriber. read=tail is Subscribe as it
// is (the events just appended read from memory), read=database reads every
// event from the table.
func BenchmarkFollowers(b *testing.B) {
	const writers, followers = 8, 8
	for _, be := range benchBackends {
		for _, mode := range []string{"tail", "database"} {
			b.Run(be.name+"/read="+mode, func(b *testing.B) {
				var opts []sqlstore.Option
				if mode == "database" {
					opts = append(opts, sqlstore.WithoutTail())
				}
				s, _ := openStore(b, be.url(b), opts...)
				ctx, cancel := context.WithCancel(context.Background())
				start, err := s.Head(ctx)
				if err != nil {
					b.Fatal(err)
				}
				var seen [followers]atomic.Int64
				var subs sync.WaitGroup
				for f := range followers {
					subs.Go(func() {
						_ = s.Subscribe(ctx, start, func(context.Context, eventlog.Record) error {
							seen[f].Add(1)
							return nil
						})
					})
				}
				defer func() {
					cancel()
					subs.Wait()
				}()
				var next atomic.Int64
				var failed atomic.Pointer[error]
				b.ResetTimer()
				var wg sync.WaitGroup
				for w := range writers {
					wg.Go(func() {
						for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
							if _, err := s.Append(ctx, fmt.Sprintf("w%d-%d", w, i%16), eventlog.Any,
								[]eventlog.EventData{event("bench.appended.v1")}); err != nil {
								failed.CompareAndSwap(nil, &err)
								return
							}
						}
					})
				}
				wg.Wait()
				for f := range followers {
					for seen[f].Load() < int64(b.N) {
						time.Sleep(100 * time.Microsecond)
					}
				}
				b.StopTimer()
				if e := failed.Load(); e != nil {
					b.Fatal(*e)
				}
			})
		}
	}
}
