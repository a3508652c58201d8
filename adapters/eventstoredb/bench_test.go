package eventstoredb_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/eventstoredb"
	"github.com/accessledger/accessledger/adapters/eventstoredb/esdbtest"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/projtest"
)

// The benchmarks measure the adapter's own cost over gRPC on the loopback:
// the real client against esdbtest's in-process server, whose storage is
// in memory, so that ns/op is the adapter, the client and gRPC, not a
// disk. A real EventStoreDB adds its own write path to Append.

// benchStore opens a store on a new test server.
func benchStore(b *testing.B) *eventstoredb.Store {
	srv := esdbtest.Start(b)
	s, err := eventstoredb.Open(context.Background(), srv.URL(), eventstoredb.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(b, err)
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// benchRecords is a generated history of n children (about 12 records
// each): domain events with their real payloads and metadata.
func benchRecords(b *testing.B, n int) []eventlog.Record {
	w := projtest.New(b.Fatalf)
	day := 24 * time.Hour
	carers := make([]uuid.UUID, n/3+2)
	for i := range carers {
		carers[i] = w.Carer()
	}
	members := make([]uuid.UUID, n+1)
	for i := range members {
		members[i] = w.Member()
	}
	w.Advance(200 * day)
	for i := range n {
		c := w.RegisterChild()
		p := w.Place(c, carers[i%len(carers)], w.Now.Add(-100*day))
		w.End(c, p, w.Now.Add(-20*day))
		w.Place(c, carers[(i+1)%len(carers)], w.Now.Add(-10*day))
		w.Grant(c, members[i], domain.PermView)
		w.Grant(c, members[i+1], domain.PermView, domain.PermRecord)
		w.Revoke(c, members[i])
	}
	return w.Records
}

func eventData(r eventlog.Record) eventlog.EventData {
	return eventlog.EventData{ID: r.ID, Type: r.Type, Data: r.Data, Meta: r.Meta}
}

// BenchmarkAppend is one append of one event (a grant's, of about 200
// bytes of data and 300 of metadata) to one of 64 streams, with the
// stream's exact version as the command path appends (expected=exact), or
// with any version, after which the adapter reads the event back for its
// version (expected=any).
func BenchmarkAppend(b *testing.B) {
	proto := benchRecords(b, 1)
	var grant eventlog.Record
	for _, r := range proto {
		if r.Type == domain.TypeAccessGranted {
			grant = r
		}
	}
	require.NotEmpty(b, grant.Data)
	for _, exact := range []bool{true, false} {
		name := "expected=any"
		if exact {
			name = "expected=exact"
		}
		b.Run(name, func(b *testing.B) {
			s := benchStore(b)
			ctx := context.Background()
			streams := make([]string, 64)
			versions := make([]uint64, len(streams))
			for i := range streams {
				streams[i] = domain.ChildStream(uuid.New())
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				k := i % len(streams)
				ev := eventData(grant)
				ev.ID = uuid.New()
				expected := eventlog.Any
				if exact {
					expected = eventlog.NoStream
					if versions[k] > 0 {
						expected = eventlog.Exactly(versions[k])
					}
				}
				res, err := s.Append(ctx, streams[k], expected, []eventlog.EventData{ev})
				if err != nil {
					b.Fatal(err)
				}
				versions[k] = res.Version
				i++
			}
		})
	}
}

// BenchmarkReadAll is one ReadAll of a page of 500 records (a replay's
// page, accessindex.DefaultPageSize) from a random point of a log of about
// 4,300 generated records.
func BenchmarkReadAll(b *testing.B) {
	const page = 500
	s := benchStore(b)
	ctx := context.Background()
	recs := benchRecords(b, 400)
	// Append stream by stream, in appends of up to 100 events.
	byStream := map[string][]eventlog.EventData{}
	var order []string
	for _, r := range recs {
		if _, ok := byStream[r.Stream]; !ok {
			order = append(order, r.Stream)
		}
		byStream[r.Stream] = append(byStream[r.Stream], eventData(r))
	}
	for _, stream := range order {
		for evs := byStream[stream]; len(evs) > 0; {
			n := min(len(evs), 100)
			_, err := s.Append(ctx, stream, eventlog.Any, evs[:n])
			require.NoError(b, err)
			evs = evs[n:]
		}
	}
	all, err := s.ReadAll(ctx, eventlog.Start, 0)
	require.NoError(b, err)
	require.Len(b, all, len(recs))
	b.Logf("log of %d records", len(all))
	// Start points: every 97th record that has a full page after it.
	var starts []eventlog.Position
	for i := 0; i+page < len(all); i += 97 {
		starts = append(starts, all[i].Position)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		got, err := s.ReadAll(ctx, starts[i%len(starts)], page)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != page {
			b.Fatalf("read %d records, want %d", len(got), page)
		}
		i++
	}
	b.ReportMetric(float64(page)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
