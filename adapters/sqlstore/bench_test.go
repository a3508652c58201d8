package sqlstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/cputime"
)

// benchBackends are the backends benchmarks run on: the SQLite file (the
// embedded default, with fsync on every commit) and PostgreSQL when
// sqltest.PostgresEnv is set.
var benchBackends = []struct {
	name string
	url  func(testing.TB) string
}{
	{"sqlite-file", sqltest.SQLiteFile},
	{"postgres", sqltest.Postgres},
}

// BenchmarkAppend measures appends of 1 and 100 events (Any version, over
// 64 streams). ns/op is per append; events/s is the event throughput;
// cpu-µs/op the process's CPU per append (the fsync's wait excluded).
func BenchmarkAppend(b *testing.B) {
	for _, be := range benchBackends {
		for _, n := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/events=%d", be.name, n), func(b *testing.B) {
				s, _ := openStore(b, be.url(b))
				ctx := context.Background()
				batches := make([][]eventlog.EventData, 64)
				b.ReportAllocs()
				cpu := cputime.Process()
				i := 0
				for b.Loop() {
					evs := batches[i%len(batches)][:0]
					for range n {
						evs = append(evs, event("bench.appended.v1"))
					}
					batches[i%len(batches)] = evs
					if _, err := s.Append(ctx, fmt.Sprint("stream-", i%len(batches)), eventlog.Any, evs); err != nil {
						b.Fatal(err)
					}
					i++
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
				b.ReportMetric(float64((cputime.Process()-cpu).Nanoseconds())/1000/float64(b.N), "cpu-µs/op")
			})
		}
	}
}

// BenchmarkReadAll measures reading pages of 500 events from random places
// of a 20,000-event log. ns/op is per page.
func BenchmarkReadAll(b *testing.B) {
	const total, page = 20_000, 500
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			s, db := openStore(b, be.url(b))
			ctx := context.Background()
			for i := 0; i < total; i += 1000 {
				evs := make([]eventlog.EventData, 1000)
				for j := range evs {
					evs[j] = event("bench.loaded.v1")
				}
				_, err := s.Append(ctx, fmt.Sprint("stream-", i%7), eventlog.Any, evs)
				require.NoError(b, err)
			}
			if db.IsPostgres() {
				_, err := db.ExecContext(ctx, "ANALYZE events")
				require.NoError(b, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				after := eventlog.At(uint64(rand.IntN(total - page)))
				recs, err := s.ReadAll(ctx, after, page)
				if err != nil {
					b.Fatal(err)
				}
				if len(recs) != page {
					b.Fatalf("read %d events, want %d", len(recs), page)
				}
			}
			b.ReportMetric(float64(b.N*page)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkReadTail measures the reads a command and a subscription make
// between two commands: ReadStream of a stream's last events after the
// version a cache holds (limit 500, 1 event found), and ReadAll of the log
// after a recent position (limit 500, 2 events found), on a log of 2,000
// events over 100 streams. ns/op is per read, both kinds alternating;
// cpu-µs/op the process's CPU time per read (the PostgreSQL server's not
// included).
func BenchmarkReadTail(b *testing.B) {
	const streams, perStream = 100, 20
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			s, _ := openStore(b, be.url(b))
			ctx := context.Background()
			for v := range perStream {
				for i := range streams {
					_, err := s.Append(ctx, fmt.Sprint("stream-", i), eventlog.Exactly(uint64(v)), []eventlog.EventData{event("bench.loaded.v1")})
					require.NoError(b, err)
				}
			}
			head, err := s.Head(ctx)
			require.NoError(b, err)
			b.ReportAllocs()
			cpu := cputime.Process()
			i := 0
			for b.Loop() {
				if i%2 == 0 {
					recs, err := s.ReadStream(ctx, fmt.Sprint("stream-", i%streams), perStream, 500)
					if err != nil || len(recs) != 1 {
						b.Fatal(err, len(recs))
					}
				} else {
					recs, err := s.ReadAll(ctx, eventlog.At(head.Commit-2), 500)
					if err != nil || len(recs) != 2 {
						b.Fatal(err, len(recs))
					}
				}
				i++
			}
			b.ReportMetric(float64((cputime.Process()-cpu).Nanoseconds())/1000/float64(b.N), "cpu-µs/op")
		})
	}
}

// BenchmarkReadStreamBesideWrites reads a whole stream (100 events) of a
// log of 1,000 such streams right after another connection appended to
// the log, as a command reads a child's stream that is not kept while the
// read models and other commands write: SQLite then begins each read with
// its connection's page cache emptied. ns/op and cpu-µs/op are per read
// (the append not included).
func BenchmarkReadStreamBesideWrites(b *testing.B) {
	const streams, perStream = 1000, 100
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			s, _ := openStore(b, be.url(b))
			ctx := context.Background()
			for v := range perStream {
				batch := make([]sqlstore.StreamAppend, streams)
				for i := range batch {
					batch[i] = sqlstore.StreamAppend{Stream: fmt.Sprint("stream-", i), Expected: eventlog.Exactly(uint64(v)),
						Events: []eventlog.EventData{event("bench.loaded.v1")}}
				}
				_, err := s.AppendBatch(ctx, batch)
				require.NoError(b, err)
			}
			b.ReportAllocs()
			var cpu time.Duration
			i := 0
			for b.Loop() {
				b.StopTimer()
				_, err := s.Append(ctx, "writes", eventlog.Any, []eventlog.EventData{event("bench.written.v1")})
				require.NoError(b, err)
				c0 := cputime.Process()
				b.StartTimer()
				recs, err := s.ReadStream(ctx, fmt.Sprint("stream-", (i*7919)%streams), 1, 0)
				if err != nil || len(recs) != perStream {
					b.Fatal(err, len(recs))
				}
				cpu += cputime.Process() - c0
				i++
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/1000/float64(b.N), "cpu-µs/op")
		})
	}
}
