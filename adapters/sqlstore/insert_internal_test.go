package sqlstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain/eventlog"
)

func liteStore(t *testing.T) *Store {
	t.Helper()
	ctx := context.Background()
	db := sqltest.Open(t, sqltest.SQLiteFile(t))
	require.NoError(t, Migrate(ctx, db))
	s, err := New(ctx, db)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// liteRow is a row with every column set, its times of the given instant.
func liteRow(pos int64, at time.Time) eventRow {
	return eventRow{
		Position: pos, EventID: uuid.New(), Stream: "stream-" + fmt.Sprint(pos), StreamVersion: 1,
		Type: "test.written.v1", Data: []byte(`{"a":"é\u2028","n":1}`), ActorID: "ann", ActorRole: "worker",
		Reason: "a reason", EffectiveAt: at, RecordedAt: at.Add(time.Microsecond),
		CorrelationID: uuid.New(), CausationID: uuid.Nil,
	}
}

// The prepared insert on SQLite writes every column exactly as bun's
// literal INSERT (the path before it) did: the same text, of the same
// SQLite type, so rows written before and after read alike.
func TestLiteInsertWritesAsBunDid(t *testing.T) {
	ctx := context.Background()
	s := liteStore(t)
	london, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	times := []time.Time{
		time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC),
		time.Date(2026, 3, 2, 9, 0, 0, 500_000_000, time.UTC),
		time.Date(2026, 7, 2, 9, 0, 0, 123_456_000, london),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	const cols = "typeof(event_id), event_id, typeof(stream), stream, typeof(data), data, typeof(effective_at), effective_at, " +
		"typeof(recorded_at), recorded_at, typeof(correlation_id), correlation_id, typeof(causation_id), causation_id, " +
		"typeof(stream_version), stream_version, type, actor_id, actor_role, reason"
	for i, at := range times {
		viaBun, viaLite := liteRow(int64(2*i+1), at), liteRow(int64(2*i+2), at)
		// The same row but for its event id and version (the unique keys).
		viaLite.Stream, viaLite.StreamVersion, viaLite.CorrelationID = viaBun.Stream, 2, viaBun.CorrelationID
		tx, err := s.db.BeginTx(ctx, nil)
		require.NoError(t, err)
		_, err = tx.NewInsert().Model(&[]eventRow{viaBun}).Exec(ctx)
		require.NoError(t, err)
		require.NoError(t, insertEventsLite(ctx, tx, []eventRow{viaLite}))
		require.NoError(t, tx.Commit())

		read := func(pos int64) []any {
			vals := make([]any, 20)
			ptrs := make([]any, len(vals))
			for j := range vals {
				ptrs[j] = &vals[j]
			}
			require.NoError(t, s.db.DB.DB.QueryRowContext(ctx, "SELECT "+cols+" FROM events WHERE position = ?", pos).Scan(ptrs...))
			return vals
		}
		b, l := read(viaBun.Position), read(viaLite.Position)
		require.Equal(t, viaLite.EventID.String(), l[1], "event id as text")
		require.Equal(t, int64(2), l[15])
		b[1], l[1], b[15], l[15] = nil, nil, nil, nil // the event ids and versions differ on purpose
		require.Equal(t, b, l, "time %s", at)
	}
}

// An insert that breaks a constraint (which the append's own checks
// exclude) rolls the whole transaction back, INSERT OR ROLLBACK: nothing
// of it stays, the caller's Rollback then finds no transaction, and the
// store and its write gate go on working.
func TestInsertFailureRollsBackEverything(t *testing.T) {
	ctx := context.Background()
	s := liteStore(t)
	_, err := s.Append(ctx, "stream-0", eventlog.NoStream, []eventlog.EventData{{ID: uuid.New(), Type: "test.appended.v1",
		Data: []byte(`{}`), Meta: eventlog.Meta{ActorID: "a", ActorRole: "r", EffectiveAt: time.Now()}}})
	require.NoError(t, err)

	now := time.Now().UTC().Truncate(time.Microsecond)
	tx, err := s.db.BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, insertEventsLite(ctx, tx, []eventRow{liteRow(2, now), liteRow(3, now)}))
	clash := liteRow(4, now)
	clash.Position = 1 // taken
	err = insertEventsLite(ctx, tx, []eventRow{liteRow(5, now), clash})
	require.ErrorContains(t, err, "UNIQUE constraint failed")
	require.Error(t, tx.Rollback(), "INSERT OR ROLLBACK ended the transaction: none left to roll back (the store's appends ignore this error)")

	var n int
	require.NoError(t, s.db.DB.DB.QueryRowContext(ctx, "SELECT COUNT(*) FROM events").Scan(&n))
	require.Equal(t, 1, n, "the rows inserted before the failure were rolled back with it")
	res, err := s.Append(ctx, "stream-0", eventlog.Exactly(1), []eventlog.EventData{{ID: uuid.New(), Type: "test.appended.v1",
		Data: []byte(`{}`), Meta: eventlog.Meta{ActorID: "a", ActorRole: "r", EffectiveAt: time.Now()}}})
	require.NoError(t, err, "the gate was released and the connection works")
	require.Equal(t, eventlog.AppendResult{Version: 2, Position: eventlog.At(2)}, res)
}

// Appends of every size split into statements of liteInsertRows rows and
// the powers of two below it: every event stored, in order.
func TestLiteInsertSizes(t *testing.T) {
	ctx := context.Background()
	for _, n := range []int{1, 7, liteInsertRows, liteInsertRows + 1, 3*liteInsertRows + 5, bulkCacheEvents + 3} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := liteStore(t)
			batch := make([]StreamAppend, n)
			for i := range batch {
				batch[i] = StreamAppend{Stream: fmt.Sprint("stream-", i%5), Expected: eventlog.Any, Events: []eventlog.EventData{{
					ID: uuid.New(), Type: "test.appended.v1", Data: fmt.Appendf(nil, `{"i":%d}`, i),
					Meta: eventlog.Meta{ActorID: "a", ActorRole: "r", EffectiveAt: time.Now()}}}}
			}
			_, err := s.AppendBatch(ctx, batch)
			require.NoError(t, err)
			recs, err := s.ReadAll(ctx, eventlog.Start, 0)
			require.NoError(t, err)
			require.Len(t, recs, n)
			for i, r := range recs {
				require.Equal(t, batch[i].Events[0].ID, r.ID)
				require.Equal(t, uint64(i+1), r.Position.Commit)
				require.Equal(t, uint64(i/5+1), r.Version)
			}
		})
	}
}
