package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/cputime"
)

var bulkClock = time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)

func withBulkClock() sqlstore.Option {
	return sqlstore.WithClock(func() time.Time { return bulkClock })
}

// bulkEvent is an event with every field set and a deterministic id.
func bulkEvent(rng *rand.Rand, i int) eventlog.EventData {
	var id uuid.UUID
	for j := range id {
		id[j] = byte(rng.Uint32())
	}
	eff := bulkClock.Add(-time.Duration(rng.IntN(1000)) * time.Minute)
	meta := eventlog.Meta{ActorID: fmt.Sprint("actor-", i%3), ActorRole: "worker", Reason: fmt.Sprint("reason ", i),
		EffectiveAt: eff, RecordedAt: eff.Add(time.Minute), CorrelationID: id, CausationID: uuid.Nil}
	if i%5 == 0 {
		meta.RecordedAt = time.Time{} // the store's clock fills it
	}
	return eventlog.EventData{ID: id, Type: "bulk.tested.v1", Data: fmt.Appendf(nil, `{"i":%d}`, i), Meta: meta}
}

// bulkScript returns n appends over a few streams, each valid when done in
// order: NoStream for a new stream, else Exactly the version or Any, and
// every seventh one a retry of an earlier append (same events, same
// stream, any expected version: idempotent).
func bulkScript(seed uint64, n int) []sqlstore.StreamAppend {
	rng := rand.New(rand.NewPCG(seed, 1))
	versions := map[string]uint64{}
	var out []sqlstore.StreamAppend
	k := 0
	for len(out) < n {
		if len(out) > 3 && len(out)%7 == 0 {
			prev := out[rng.IntN(len(out))]
			out = append(out, sqlstore.StreamAppend{Stream: prev.Stream, Expected: eventlog.Exactly(999), Events: prev.Events})
			continue
		}
		stream := fmt.Sprint("stream-", rng.IntN(6))
		evs := make([]eventlog.EventData, 1+rng.IntN(3))
		for i := range evs {
			evs[i] = bulkEvent(rng, k)
			k++
		}
		exp := eventlog.Exactly(versions[stream])
		if rng.IntN(4) == 0 {
			exp = eventlog.Any
		}
		versions[stream] += uint64(len(evs))
		out = append(out, sqlstore.StreamAppend{Stream: stream, Expected: exp, Events: evs})
	}
	return out
}

func readAllRecords(t *testing.T, s *sqlstore.Store) []eventlog.Record {
	t.Helper()
	recs, err := s.ReadAll(t.Context(), eventlog.Start, 0)
	require.NoError(t, err)
	return recs
}

func TestAppendBatchEqualsAppendsOneByOne(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		ctx := t.Context()
		script := bulkScript(7, 60)
		one, _ := openStore(t, url(t), withBulkClock())
		bulk, _ := openStore(t, url(t), withBulkClock())

		var want []eventlog.AppendResult
		for _, a := range script {
			res, err := one.Append(ctx, a.Stream, a.Expected, a.Events)
			require.NoError(t, err)
			want = append(want, res)
		}
		var got []eventlog.AppendResult
		for start := 0; start < len(script); start += 13 {
			res, err := bulk.AppendBatch(ctx, script[start:min(start+13, len(script))])
			require.NoError(t, err)
			got = append(got, res...)
		}
		require.Equal(t, want, got, "every append's result as Append gives it")
		require.Equal(t, readAllRecords(t, one), readAllRecords(t, bulk), "the same log")

		h1, err := one.Head(ctx)
		require.NoError(t, err)
		h2, err := bulk.Head(ctx)
		require.NoError(t, err)
		require.Equal(t, h1, h2)
	})
}

func TestAppendBatchOrdersAndNumbers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		ctx := t.Context()
		s, _ := openStore(t, url(t), withBulkClock())
		_, err := s.Append(ctx, "a", eventlog.NoStream, []eventlog.EventData{event("before")})
		require.NoError(t, err)

		batch := []sqlstore.StreamAppend{
			{Stream: "a", Expected: eventlog.Exactly(1), Events: []eventlog.EventData{event("a2"), event("a3")}},
			{Stream: "b", Expected: eventlog.NoStream, Events: []eventlog.EventData{event("b1")}},
			{Stream: "a", Expected: eventlog.Exactly(3), Events: []eventlog.EventData{event("a4")}},
			{Stream: "b", Expected: eventlog.Any, Events: []eventlog.EventData{event("b2"), event("b3")}},
		}
		res, err := s.AppendBatch(ctx, batch)
		require.NoError(t, err)
		require.Equal(t, []eventlog.AppendResult{
			{Version: 3, Position: eventlog.At(3)},
			{Version: 1, Position: eventlog.At(4)},
			{Version: 4, Position: eventlog.At(5)},
			{Version: 3, Position: eventlog.At(7)},
		}, res)

		recs := readAllRecords(t, s)
		var types []string
		for i, r := range recs {
			require.Equal(t, eventlog.At(uint64(i+1)), r.Position, "dense positions")
			types = append(types, r.Type)
		}
		require.Equal(t, []string{"before", "a2", "a3", "b1", "a4", "b2", "b3"}, types, "batch order")
		for _, stream := range []string{"a", "b"} {
			evs, err := s.ReadStream(ctx, stream, 1, 0)
			require.NoError(t, err)
			for i, r := range evs {
				require.Equal(t, uint64(i+1), r.Version, "stream %s has no gaps", stream)
			}
		}
	})
}

// TestAppendBatchIsAtomic: when the third append of a batch fails, nothing
// of the batch is written, the error names it and wraps Append's error, and
// the log goes on without a gap.
func TestAppendBatchIsAtomic(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		stored := event("stored")
		first := event("first")
		tests := []struct {
			name  string
			third func() sqlstore.StreamAppend
			want  error
		}{
			{"wrong expected version", func() sqlstore.StreamAppend {
				return sqlstore.StreamAppend{Stream: "x", Expected: eventlog.Exactly(5), Events: []eventlog.EventData{event("c")}}
			}, eventlog.ErrConflict},
			{"stream created earlier in the batch", func() sqlstore.StreamAppend {
				return sqlstore.StreamAppend{Stream: "n", Expected: eventlog.NoStream, Events: []eventlog.EventData{event("c")}}
			}, eventlog.ErrConflict},
			{"event id stored elsewhere", func() sqlstore.StreamAppend {
				return sqlstore.StreamAppend{Stream: "y", Expected: eventlog.Any, Events: []eventlog.EventData{stored}}
			}, eventlog.ErrDuplicateEventID},
			{"event id used earlier in the batch", func() sqlstore.StreamAppend {
				return sqlstore.StreamAppend{Stream: "y", Expected: eventlog.Any, Events: []eventlog.EventData{event("c"), first}}
			}, eventlog.ErrDuplicateEventID},
			{"no events", func() sqlstore.StreamAppend {
				return sqlstore.StreamAppend{Stream: "y", Expected: eventlog.Any}
			}, eventlog.ErrInvalidAppend},
			{"NUL in a reason", func() sqlstore.StreamAppend {
				e := event("c")
				e.Meta.Reason = "a\x00b"
				return sqlstore.StreamAppend{Stream: "y", Expected: eventlog.Any, Events: []eventlog.EventData{e}}
			}, eventlog.ErrInvalidAppend},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ctx := t.Context()
				s, _ := openStore(t, url(t))
				_, err := s.Append(ctx, "x", eventlog.NoStream, []eventlog.EventData{stored})
				require.NoError(t, err)
				before := readAllRecords(t, s)

				batch := []sqlstore.StreamAppend{
					{Stream: "n", Expected: eventlog.NoStream, Events: []eventlog.EventData{first}},
					{Stream: "x", Expected: eventlog.Exactly(1), Events: []eventlog.EventData{event("b"), event("b")}},
					tt.third(),
					{Stream: "z", Expected: eventlog.Any, Events: []eventlog.EventData{event("d")}},
				}
				_, err = s.AppendBatch(ctx, batch)
				require.ErrorIs(t, err, tt.want)
				var be *sqlstore.BatchError
				require.True(t, errors.As(err, &be), "a *BatchError: %v", err)
				require.Equal(t, 2, be.Index)
				require.Equal(t, batch[2].Stream, be.Stream)

				require.Equal(t, before, readAllRecords(t, s), "nothing written")
				head, err := s.Head(ctx)
				require.NoError(t, err)
				require.Equal(t, eventlog.At(1), head, "no position taken")

				// The first two appends alone go through, right after.
				res, err := s.AppendBatch(ctx, batch[:2])
				require.NoError(t, err)
				require.Equal(t, eventlog.At(4), res[1].Position)
			})
		}
	})
}

// TestAppendBatchRetry: a batch retried after it was written writes nothing
// and answers as the first time; a batch mixing retried and new appends
// writes the new ones only, at dense positions.
func TestAppendBatchRetry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		ctx := t.Context()
		s, _ := openStore(t, url(t))
		batch := []sqlstore.StreamAppend{
			{Stream: "a", Expected: eventlog.NoStream, Events: []eventlog.EventData{event("a1"), event("a2")}},
			{Stream: "b", Expected: eventlog.NoStream, Events: []eventlog.EventData{event("b1")}},
		}
		first, err := s.AppendBatch(ctx, batch)
		require.NoError(t, err)
		again, err := s.AppendBatch(ctx, batch)
		require.NoError(t, err)
		require.Equal(t, first, again)
		require.Len(t, readAllRecords(t, s), 3)

		mixed := []sqlstore.StreamAppend{
			{Stream: "c", Expected: eventlog.NoStream, Events: []eventlog.EventData{event("c1")}},
			batch[0],
			{Stream: "a", Expected: eventlog.Exactly(2), Events: []eventlog.EventData{event("a3")}},
			batch[1],
		}
		res, err := s.AppendBatch(ctx, mixed)
		require.NoError(t, err)
		require.Equal(t, []eventlog.AppendResult{
			{Version: 1, Position: eventlog.At(4)}, first[0], {Version: 3, Position: eventlog.At(5)}, first[1],
		}, res)
		head, err := s.Head(ctx)
		require.NoError(t, err)
		require.Equal(t, eventlog.At(5), head, "retried appends take no positions")
		res1, err := s.Append(ctx, "d", eventlog.NoStream, []eventlog.EventData{event("d1")})
		require.NoError(t, err)
		require.Equal(t, eventlog.At(6), res1.Position)
	})
}

// TestAppendBatchWakesSubscribers: a Subscribe that only hears of appends
// through notifications (no re-check) receives a batch's events.
func TestAppendBatchWakesSubscribers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		ctx := t.Context()
		s, _ := openStore(t, url(t))
		got := make(chan eventlog.Record, 16)
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- s.Subscribe(sctx, eventlog.Start, func(_ context.Context, r eventlog.Record) error {
				got <- r
				return nil
			})
		}()
		defer func() {
			cancel()
			require.ErrorIs(t, <-done, context.Canceled)
		}()
		// Make sure the subscription is waiting before the batch.
		e0 := event("first")
		_, err := s.Append(ctx, "s", eventlog.NoStream, []eventlog.EventData{e0})
		require.NoError(t, err)
		require.Equal(t, e0.ID, receive(t, got, 10*time.Second).ID)

		batch := []sqlstore.StreamAppend{
			{Stream: "s", Expected: eventlog.Exactly(1), Events: []eventlog.EventData{event("s2")}},
			{Stream: "t", Expected: eventlog.NoStream, Events: []eventlog.EventData{event("t1"), event("t2")}},
		}
		_, err = s.AppendBatch(ctx, batch)
		require.NoError(t, err)
		for _, want := range []uuid.UUID{batch[0].Events[0].ID, batch[1].Events[0].ID, batch[1].Events[1].ID} {
			require.Equal(t, want, receive(t, got, 10*time.Second).ID)
		}
	})
}

// TestAppendBatchLargerThanItsStatements: a batch with more events, event
// ids and streams than one insert statement or one look-up takes is still
// one all-or-nothing append.
func TestAppendBatchLargerThanItsStatements(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		ctx := t.Context()
		s, _ := openStore(t, url(t))
		batch := make([]sqlstore.StreamAppend, 1500)
		for i := range batch {
			batch[i] = sqlstore.StreamAppend{Stream: fmt.Sprint("stream-", i), Expected: eventlog.NoStream,
				Events: []eventlog.EventData{event("big")}}
		}
		res, err := s.AppendBatch(ctx, batch)
		require.NoError(t, err)
		require.Equal(t, eventlog.At(1500), res[1499].Position)

		// Again, with a conflict in the last append: nothing of it is written.
		for i := range batch {
			batch[i].Expected = eventlog.Exactly(1)
			batch[i].Events = []eventlog.EventData{event("big2")}
		}
		batch[1499].Expected = eventlog.Exactly(2)
		_, err = s.AppendBatch(ctx, batch)
		require.ErrorIs(t, err, eventlog.ErrConflict)
		head, err := s.Head(ctx)
		require.NoError(t, err)
		require.Equal(t, eventlog.At(1500), head)

		batch[1499].Expected = eventlog.Exactly(1)
		res, err = s.AppendBatch(ctx, batch)
		require.NoError(t, err)
		require.Equal(t, eventlog.AppendResult{Version: 2, Position: eventlog.At(3000)}, res[1499])
		require.Len(t, readAllRecords(t, s), 3000)
	})
}

func TestAppendBatchEmptyAndClosed(t *testing.T) {
	s, _ := openStore(t, "sqlite::memory:")
	res, err := s.AppendBatch(t.Context(), nil)
	require.NoError(t, err)
	require.Empty(t, res)
	require.NoError(t, s.Close())
	_, err = s.AppendBatch(t.Context(), []sqlstore.StreamAppend{
		{Stream: "s", Expected: eventlog.Any, Events: []eventlog.EventData{event("e")}},
	})
	require.ErrorIs(t, err, sqlstore.ErrClosed)
}

// TestReadStreamsEqualsReadStreamOneByOne: ReadStreams returns what
// ReadStream returns for each stream, across more streams than one
// statement takes; a stream without events is absent.
func TestReadStreamsEqualsReadStreamOneByOne(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		ctx := t.Context()
		s, _ := openStore(t, url(t), withBulkClock())
		for start, script := 0, bulkScript(11, 80); start < len(script); start += 20 {
			_, err := s.AppendBatch(ctx, script[start:min(start+20, len(script))])
			require.NoError(t, err)
		}
		batch := make([]sqlstore.StreamAppend, 1200)
		for i := range batch {
			batch[i] = sqlstore.StreamAppend{Stream: fmt.Sprint("many-", i), Expected: eventlog.NoStream,
				Events: []eventlog.EventData{event("one"), event("two")}}
		}
		_, err := s.AppendBatch(ctx, batch)
		require.NoError(t, err)

		names := []string{"missing", "stream-0", "stream-5", "stream-0"}
		for i := range batch {
			names = append(names, batch[len(batch)-1-i].Stream)
		}
		got, err := s.ReadStreams(ctx, names)
		require.NoError(t, err)
		require.NotContains(t, got, "missing")
		require.Len(t, got, len(batch)+2)
		for _, name := range names[1:] {
			want, err := s.ReadStream(ctx, name, 1, 0)
			require.NoError(t, err)
			require.NotEmpty(t, want)
			require.Equal(t, want, got[name], name)
		}
		none, err := s.ReadStreams(ctx, nil)
		require.NoError(t, err)
		require.Empty(t, none)
	})
}

// BenchmarkAppendBatch measures batches of 500 one-event appends over
// 5,000 streams (Exactly versions), as a bulk load writes them. ns/op is per
// batch; events/s is the event throughput.
func BenchmarkAppendBatch(b *testing.B) {
	const appends, streams = 500, 5000
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			s, _ := openStore(b, be.url(b))
			ctx := context.Background()
			versions := make([]uint64, streams)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				batch := make([]sqlstore.StreamAppend, appends)
				for i := range batch {
					k := n % streams
					batch[i] = sqlstore.StreamAppend{Stream: fmt.Sprint("stream-", k), Expected: eventlog.Exactly(versions[k]),
						Events: []eventlog.EventData{event("bench.batched.v1")}}
					versions[k]++
					n++
				}
				if _, err := s.AppendBatch(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// ReadStreams reads many whole streams at once: each stream's events in
// version order, as ReadStream reads them; a stream that does not exist
// has no key.
func TestReadStreams(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		st, _ := openStore(t, url(t), withBulkClock())
		ctx := context.Background()
		_, err := st.AppendBatch(ctx, bulkScript(3, 40))
		require.NoError(t, err)
		tests := []struct {
			name    string
			streams []string
		}{
			{"none", nil},
			{"one", []string{"stream-1"}},
			{"several and a missing one", []string{"stream-0", "missing", "stream-3", "stream-5"}},
			{"all", []string{"stream-0", "stream-1", "stream-2", "stream-3", "stream-4", "stream-5"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := st.ReadStreams(ctx, tt.streams)
				require.NoError(t, err)
				want := map[string][]eventlog.Record{}
				for _, s := range tt.streams {
					recs, err := st.ReadStream(ctx, s, 1, 0)
					require.NoError(t, err)
					if len(recs) > 0 {
						want[s] = recs
					}
				}
				require.Equal(t, want, got)
			})
		}
	})
}

// BenchmarkAppendBatchImport measures the appends of an import
// (internal/importer): batches of 1,000 new streams of two events each
// (2,000 events, the import's default transaction), random stream names
// and event ids as the import's keyed ids are, payloads of about 300
// bytes. Run it with a fixed -benchtime (100x: 200,000 events, the county
// import's size): each batch lands in a larger log, so ns/op is the mean
// over that growth. cpu-s is the process's CPU time over the run.
func BenchmarkAppendBatchImport(b *testing.B) {
	const appends = 1000
	data := []byte(`{"child":"child-00000000-0000-0000-0000-000000000000","carer":"account-00000000-0000-0000-0000-000000000000",` +
		`"from":"2020-01-01T00:00:00Z","sealed":"v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`)
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			s, _ := openStore(b, be.url(b))
			ctx := context.Background()
			b.ReportAllocs()
			cpu := cputime.Process()
			n := 0
			for b.Loop() {
				b.StopTimer()
				batch := make([]sqlstore.StreamAppend, appends)
				for i := range batch {
					evs := []eventlog.EventData{event("bench.placed.v1"), event("bench.granted.v1")}
					for j := range evs {
						evs[j].Data = data
						evs[j].Meta.CorrelationID, evs[j].Meta.CausationID = uuid.New(), uuid.New()
					}
					batch[i] = sqlstore.StreamAppend{Stream: "child-" + uuid.NewString(), Expected: eventlog.NoStream, Events: evs}
					n += len(evs)
				}
				b.StartTimer()
				if _, err := s.AppendBatch(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric((cputime.Process() - cpu).Seconds(), "cpu-s")
		})
	}
}

// TestReadStreamsFrom: ReadStreamsFrom returns what ReadStream returns for
// each stream from its version (0 and 1 the whole stream), across more
// streams than one statement takes; a stream without events from there is
// absent; a stream named twice is read from the lower version.
func TestReadStreamsFrom(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		ctx := t.Context()
		s, _ := openStore(t, url(t), withBulkClock())
		_, err := s.AppendBatch(ctx, bulkScript(5, 60))
		require.NoError(t, err)
		batch := make([]sqlstore.StreamAppend, 700)
		for i := range batch {
			batch[i] = sqlstore.StreamAppend{Stream: fmt.Sprint("many-", i), Expected: eventlog.NoStream,
				Events: []eventlog.EventData{event("one"), event("two"), event("three")}}
		}
		_, err = s.AppendBatch(ctx, batch)
		require.NoError(t, err)
		length := func(stream string) uint64 {
			recs, err := s.ReadStream(ctx, stream, 1, 0)
			require.NoError(t, err)
			return uint64(len(recs))
		}
		many := make([]eventlog.StreamFrom, len(batch))
		for i := range batch {
			many[i] = eventlog.StreamFrom{Stream: batch[len(batch)-1-i].Stream, From: uint64(i % 5)} // 0 to 4: past the end too
		}
		tests := []struct {
			name string
			from []eventlog.StreamFrom
		}{
			{"none", nil},
			{"whole streams", []eventlog.StreamFrom{{Stream: "stream-0"}, {Stream: "stream-1", From: 1}}},
			{"ends, the last event, past the end, a missing stream", []eventlog.StreamFrom{
				{Stream: "stream-2", From: 3}, {Stream: "stream-3", From: length("stream-3")},
				{Stream: "stream-4", From: length("stream-4") + 1}, {Stream: "missing", From: 1}}},
			{"named twice: from the lower", []eventlog.StreamFrom{{Stream: "stream-5", From: 4}, {Stream: "stream-5", From: 2}}},
			{"more streams than a statement takes", many},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := s.ReadStreamsFrom(ctx, tt.from)
				require.NoError(t, err)
				lowest := map[string]uint64{}
				for _, f := range tt.from {
					if v, ok := lowest[f.Stream]; !ok || f.From < v {
						lowest[f.Stream] = f.From
					}
				}
				want := map[string][]eventlog.Record{}
				for stream, from := range lowest {
					recs, err := s.ReadStream(ctx, stream, from, 0)
					require.NoError(t, err)
					if len(recs) > 0 {
						want[stream] = recs
					}
				}
				require.Equal(t, want, got)
			})
		}
		require.NoError(t, s.Close())
		_, err = s.ReadStreamsFrom(ctx, []eventlog.StreamFrom{{Stream: "stream-0"}})
		require.ErrorIs(t, err, sqlstore.ErrClosed)
	})
}

// TestReadStreamsFromPlanWithoutStatistics: on PostgreSQL, ReadStreamsFrom
// reads each stream's end through the (stream, stream_version) index even
// when the events table has no statistics (after a bulk load, before
// autovacuum analyzes it, or with autovacuum off), where PostgreSQL
// estimates thousands of rows per stream: 500 streams OR-ed, or joined
// plainly, were planned as a scan of the whole table (seconds at county
// size).
func TestReadStreamsFromPlanWithoutStatistics(t *testing.T) {
	if os.Getenv(sqltest.PostgresEnv) == "" {
		t.Skipf("PostgreSQL only: set %s", sqltest.PostgresEnv)
	}
	ctx := t.Context()
	_, db := openStore(t, sqltest.Postgres(t))
	// 100,000 events in 4,000 streams, written by PostgreSQL itself; the
	// table is not analyzed.
	_, err := db.ExecContext(ctx, `INSERT INTO events (position, event_id, stream, stream_version, type, data,
		actor_id, actor_role, reason, effective_at, recorded_at, correlation_id, causation_id)
		SELECT g, gen_random_uuid(), 'stream-' || (g % 4000), g / 4000 + 1, 'test.event.v1', '{}',
			'actor', 'role', 'reason', now(), now(), gen_random_uuid(), gen_random_uuid()
		FROM generate_series(1, 100000) AS g`)
	require.NoError(t, err)
	var analyzed sql.NullTime
	require.NoError(t, db.QueryRowContext(ctx, `SELECT COALESCE(last_analyze, last_autoanalyze) FROM pg_stat_user_tables
		WHERE relname = 'events' AND schemaname = current_schema()`).Scan(&analyzed))
	if analyzed.Valid {
		t.Skip("autovacuum analyzed the events table already: the plan without statistics cannot be seen")
	}
	streams := make([]string, 500)
	for i := range streams {
		streams[i] = fmt.Sprint("stream-", i*7)
	}
	stmt, args := sqlstore.TailsStatementPG(streams)
	rows, err := db.DB.DB.QueryContext(ctx, "EXPLAIN "+stmt, args...) // database/sql: bun would format the $N itself
	require.NoError(t, err)
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var line string
		require.NoError(t, rows.Scan(&line))
		plan = append(plan, line)
	}
	require.NoError(t, rows.Err())
	text := strings.Join(plan, "\n")
	require.NotContains(t, text, "Seq Scan on events", text)
	require.Contains(t, text, "events_stream_version_key", text)
}

// TestAnalyze: Analyze gathers the events table's statistics on
// PostgreSQL and does nothing on SQLite; on a closed Store it fails.
func TestAnalyze(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		ctx := t.Context()
		s, db := openStore(t, url(t), withBulkClock())
		_, err := s.AppendBatch(ctx, bulkScript(5, 60))
		require.NoError(t, err)
		require.NoError(t, s.Analyze(ctx))
		if db.IsPostgres() {
			require.Eventually(t, func() bool {
				var analyzed sql.NullTime
				require.NoError(t, db.QueryRowContext(ctx, `SELECT last_analyze FROM pg_stat_user_tables
					WHERE relname = 'events' AND schemaname = current_schema()`).Scan(&analyzed))
				return analyzed.Valid
			}, 10*time.Second, 20*time.Millisecond, "events analyzed")
		}
		require.NoError(t, s.Close())
		if db.IsPostgres() {
			require.ErrorIs(t, s.Analyze(ctx), sqlstore.ErrClosed)
		}
	})
}
