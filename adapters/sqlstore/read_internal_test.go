package sqlstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// bunRecords reads the log the way the store did before its read path
// scanned rows by hand: bun model scanning of eventRow. It is the oracle
// the hand-written path must match exactly.
func bunRecords(ctx context.Context, t *testing.T, s *Store, after eventlog.Position, limit int) []eventlog.Record {
	t.Helper()
	var rows []eventRow
	q := s.db.NewSelect().Model(&rows).Where("position > ?", after.Commit).Order("position")
	if limit > 0 {
		q = q.Limit(int64(limit))
	}
	require.NoError(t, q.Scan(ctx))
	if len(rows) == 0 {
		return nil
	}
	out := make([]eventlog.Record, len(rows))
	for i, r := range rows {
		out[i] = eventlog.Record{
			ID: r.EventID, Stream: r.Stream, Version: uint64(r.StreamVersion),
			Position: eventlog.At(uint64(r.Position)), Type: r.Type, Data: []byte(r.Data),
			Meta: eventlog.Meta{
				ActorID: r.ActorID, ActorRole: r.ActorRole, Reason: r.Reason,
				EffectiveAt: r.EffectiveAt.UTC(), RecordedAt: r.RecordedAt.UTC(),
				CorrelationID: r.CorrelationID, CausationID: r.CausationID,
			},
		}
	}
	return out
}

// TestReadPathMatchesBun appends events with every kind of value the store
// accepts (times with and without fractions, at the ends of the supported
// years, text in several scripts, empty reasons, nil and random ids) and
// checks that ReadAll and ReadStream return exactly what bun's model
// scanning returns, field by field (require.Equal compares the times'
// representation too, not only their instants).
func TestReadPathMatchesBun(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db := sqltest.Open(t, b.URL(t))
			require.NoError(t, Migrate(ctx, db))
			s, err := New(ctx, db)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, s.Close()) })

			rng := rand.New(rand.NewPCG(7, 11))
			times := []time.Time{
				time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC),
				time.Date(2026, 3, 2, 9, 0, 0, 123456000, time.UTC),
				time.Date(2026, 3, 2, 9, 0, 0, 100000000, time.UTC),
				time.Date(2024, 2, 29, 23, 59, 59, 999999000, time.UTC),
				time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC),
				time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
				time.Date(2026, 6, 1, 12, 0, 0, 0, time.FixedZone("CEST", 2*3600)),
				time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC),
			}
			texts := []string{"", "worker-1", "a reason with spaces", "Zoë Ødegård", "名前", "emoji 🙂", `quote " and \ slash`}
			streams := []string{"child-1", "account-2", "é-stream", "s"}
			for i := range 120 {
				n := 1 + rng.IntN(5)
				evs := make([]eventlog.EventData, n)
				for j := range evs {
					corr := uuid.Nil
					if rng.IntN(2) == 0 {
						corr = uuid.New()
					}
					evs[j] = eventlog.EventData{
						ID:   uuid.New(),
						Type: fmt.Sprintf("test.type%d.v1", rng.IntN(4)),
						Data: []byte(fmt.Sprintf(`{"i":%d,"text":%q,"nested":{"a":[1,2,3]}}`, i, texts[rng.IntN(len(texts))])),
						Meta: eventlog.Meta{
							ActorID: texts[rng.IntN(len(texts))], ActorRole: texts[rng.IntN(len(texts))],
							Reason:      texts[rng.IntN(len(texts))],
							EffectiveAt: times[rng.IntN(len(times))], RecordedAt: times[rng.IntN(len(times))],
							CorrelationID: corr, CausationID: uuid.New(),
						},
					}
					if rng.IntN(5) == 0 {
						evs[j].Meta.RecordedAt = time.Time{} // the store's clock fills it
					}
				}
				_, err := s.Append(ctx, streams[rng.IntN(len(streams))], eventlog.Any, evs)
				require.NoError(t, err)
			}

			for _, tc := range []struct {
				after eventlog.Position
				limit int
			}{{eventlog.Start, 0}, {eventlog.Start, 7}, {eventlog.At(100), 50}, {eventlog.At(10_000), 5}} {
				got, err := s.ReadAll(ctx, tc.after, tc.limit)
				require.NoError(t, err)
				require.Equal(t, bunRecords(ctx, t, s, tc.after, tc.limit), got, "ReadAll(%s, %d)", tc.after, tc.limit)
			}
			all := bunRecords(ctx, t, s, eventlog.Start, 0)
			for _, stream := range streams {
				var want []eventlog.Record
				for _, r := range all {
					if r.Stream == stream && r.Version >= 3 {
						want = append(want, r)
					}
				}
				got, err := s.ReadStream(ctx, stream, 3, 0)
				require.NoError(t, err)
				require.Equal(t, want, got, "ReadStream(%q)", stream)
			}
		})
	}
}

// TestParseTimeAgreesWithBunLayouts checks the hand-written parser of
// SQLite's text times against time.Parse on random valid times, and that it
// refuses (leaving the slow path to decide) anything not in its one form.
func TestParseTimeAgreesWithBunLayouts(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20_000 {
		sec := rng.Int64N(253402300799) - 62135596800 // years 1-9999
		tm := time.Unix(sec, rng.Int64N(1e9)).UTC()
		for _, layout := range []string{"2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999-07:00", "2006-01-02 15:04:05-07:00"} {
			s := tm.Format(layout)
			want, err := time.Parse("2006-01-02 15:04:05.999999999-07:00", s)
			require.NoError(t, err)
			got, ok := parseStoredTime([]byte(s))
			require.True(t, ok, s)
			require.Equal(t, want.UTC(), got.UTC(), s)
		}
	}
	for _, s := range []string{
		"", "2026-03-02", "2026-03-02 09:00:00", "2026-03-02 09:00:00Z", "2026-03-02T09:00:00+00:00",
		"2026-03-02 09:00:00+01:00", "2026-02-30 09:00:00+00:00", "2026-13-02 09:00:00+00:00",
		"2026-03-02 24:00:00+00:00", "2026-03-02 09:00:00.+00:00", "2026-03-02 09:00:00.1234567890+00:00",
		"2026-03-02 09:00:0x+00:00", "+026-03-02 09:00:00+00:00",
	} {
		_, ok := parseStoredTime([]byte(s))
		require.False(t, ok, s)
	}
	// The slow path still reads what bun wrote in other forms.
	for s, want := range map[string]time.Time{
		"2026-03-02 09:00:00+01:00":        time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC),
		"2026-03-02 09:00:00.5":            time.Date(2026, 3, 2, 9, 0, 0, 5e8, time.UTC),
		"2026-03-02T09:00:00.25Z":          time.Date(2026, 3, 2, 9, 0, 0, 25e7, time.UTC),
		"2026-03-02 09:00:00.000001-02:30": time.Date(2026, 3, 2, 11, 30, 0, 1000, time.UTC),
	} {
		got, err := parseTime([]byte(s))
		require.NoError(t, err, s)
		require.True(t, want.Equal(got), "%s: got %s", s, got)
	}
	_, err := parseTime([]byte("not a time"))
	require.ErrorIs(t, err, errTimeFormat)
}

// TestReadPathFallsBackToColumns: rows that the packed SQLite read cannot
// split (a NUL byte in a text column, which Append refuses but another
// writer could store) or whose times are in another form are still read
// exactly as bun reads them, by the column-by-column query.
func TestReadPathFallsBackToColumns(t *testing.T) {
	ctx := context.Background()
	db := sqltest.Open(t, sqltest.SQLiteMemory(t))
	require.NoError(t, Migrate(ctx, db))
	s, err := New(ctx, db)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	_, err = s.Append(ctx, "stream-a", eventlog.Any, []eventlog.EventData{{
		ID: uuid.New(), Type: "test.appended.v1", Data: []byte(`{"a":1}`),
		Meta: eventlog.Meta{ActorID: "ann", ActorRole: "worker", EffectiveAt: time.Now()},
	}})
	require.NoError(t, err)

	insert := func(pos int64, actor, reason, effective string) {
		_, err := db.DB.DB.ExecContext(ctx, `INSERT INTO events (position, event_id, stream, stream_version, type, data,
			actor_id, actor_role, reason, effective_at, recorded_at, correlation_id, causation_id)
			VALUES (?, ?, 'stream-b', ?, 'test.written.v1', '{"b":2}', ?, 'worker', ?, ?, '2026-03-02 09:00:00+00:00', ?, ?)`,
			pos, uuid.NewString(), pos, actor, reason, effective, uuid.NewString(), uuid.Nil.String())
		require.NoError(t, err)
	}
	insert(2, "bob", "plain", "2026-03-02T09:00:00.5Z")
	insert(3, "nul\x00in the actor", "shifts\x00every field", "2026-03-02 09:00:00+00:00")
	insert(4, "carol", "", "2026-03-02 10:00:00-01:00")

	for _, limit := range []int{0, 1, 2} {
		for _, after := range []eventlog.Position{eventlog.Start, eventlog.At(1), eventlog.At(2)} {
			got, err := s.ReadAll(ctx, after, limit)
			require.NoError(t, err)
			require.Equal(t, bunRecords(ctx, t, s, after, limit), got, "ReadAll(%s, %d)", after, limit)
		}
	}
	got, err := s.ReadStream(ctx, "stream-b", 1, 0)
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, "nul\x00in the actor", got[1].Meta.ActorID)
	require.Equal(t, "shifts\x00every field", got[1].Meta.Reason)
}
