package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/eventstoretest"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// noRecheck is a re-check interval longer than any test: with it, a
// Subscribe hears of appends only through notifications.
const noRecheck = time.Hour

// openStore opens url, migrates it and returns a Store on it; both are
// closed when the test ends.
func openStore(t testing.TB, url string, opts ...sqlstore.Option) (*sqlstore.Store, *sqldb.DB) {
	t.Helper()
	db := sqltest.Open(t, url)
	return newStore(t, db, opts...), db
}

func newStore(t testing.TB, db *sqldb.DB, opts ...sqlstore.Option) *sqlstore.Store {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, sqlstore.Migrate(ctx, db))
	s, err := sqlstore.New(ctx, db, append([]sqlstore.Option{sqlstore.WithRecheckInterval(noRecheck)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func event(typ string) eventlog.EventData {
	return eventlog.EventData{
		ID:   uuid.New(),
		Type: typ,
		Data: []byte(`{"k":"v"}`),
		Meta: eventlog.Meta{ActorID: "a", ActorRole: "r", EffectiveAt: time.Now()},
	}
}

// forEachBackend runs f on every backend in names (all when empty). The
// PostgreSQL backend skips when sqltest.PostgresEnv is unset.
func forEachBackend(t *testing.T, f func(t *testing.T, url func(testing.TB) string), names ...string) {
	for _, b := range sqltest.Backends() {
		if len(names) > 0 && !contains(names, b.Name) {
			continue
		}
		t.Run(b.Name, func(t *testing.T) {
			if b.Name == "postgres" {
				sqltest.Postgres(t) // skip (or fail) once here rather than in every subtest
			}
			f(t, b.URL)
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestConformance(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		eventstoretest.RunWith(t, eventstoretest.Options{BulkWithoutRace: true}, func(t *testing.T) eventlog.Store {
			s, _ := openStore(t, url(t))
			return s
		})
	})
}

func TestMigrateIsIdempotent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		ctx := t.Context()
		db := sqltest.Open(t, url(t))
		for range 3 {
			require.NoError(t, sqlstore.Migrate(ctx, db))
		}
		var applied int
		require.NoError(t, db.NewRaw("SELECT count(*) FROM eventstore_migrations").Scan(ctx, &applied))
		require.Equal(t, 1, applied)
		s := newStore(t, db)
		head, err := s.Head(ctx)
		require.NoError(t, err)
		require.True(t, head.IsZero())
	})
}

func TestConcurrentMigrate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		u := url(t)
		dbs := []*sqldb.DB{sqltest.Open(t, u), sqltest.Open(t, u), sqltest.Open(t, u)}
		var wg sync.WaitGroup
		errs := make([]error, len(dbs))
		for i, db := range dbs {
			wg.Go(func() { errs[i] = sqlstore.Migrate(t.Context(), db) })
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
		var applied int
		require.NoError(t, dbs[0].NewRaw("SELECT count(*) FROM eventstore_migrations").Scan(t.Context(), &applied))
		require.Equal(t, 1, applied)
	}, "sqlite-file", "postgres")
}

func TestNewNeedsMigratedTables(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		db := sqltest.Open(t, url(t))
		_, err := sqlstore.New(t.Context(), db)
		require.ErrorContains(t, err, "Migrate")
	})
}

func TestNewValidatesOptions(t *testing.T) {
	db := sqltest.Open(t, sqltest.SQLiteMemory(t))
	require.NoError(t, sqlstore.Migrate(t.Context(), db))
	tests := []struct {
		name string
		opt  sqlstore.Option
		want string
	}{
		{"zero recheck", sqlstore.WithRecheckInterval(0), "recheck"},
		{"nil clock", sqlstore.WithClock(nil), "clock"},
		{"nil logger", sqlstore.WithLogger(nil), "logger"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sqlstore.New(t.Context(), db, tt.opt)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// TestSecondInstance: a Store on its own pool sees the first one's events,
// and its Subscribe is woken by them: on PostgreSQL through NOTIFY (the two
// Stores share nothing in the process), on SQLite through the process's
// per-file wake-up.
func TestSecondInstance(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		u := url(t)
		s1, _ := openStore(t, u)
		s2, _ := openStore(t, u)
		ctx := t.Context()

		first := event("first")
		res, err := s1.Append(ctx, "s", eventlog.NoStream, []eventlog.EventData{first})
		require.NoError(t, err)
		head, err := s2.Head(ctx)
		require.NoError(t, err)
		require.Equal(t, res.Position, head)

		got := make(chan eventlog.Record, 10)
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- s2.Subscribe(sctx, eventlog.Start, func(_ context.Context, r eventlog.Record) error {
				got <- r
				return nil
			})
		}()
		defer func() {
			cancel()
			require.ErrorIs(t, <-done, context.Canceled)
		}()
		require.Equal(t, first.ID, receive(t, got, 5*time.Second).ID)

		for i := range 3 {
			time.Sleep(50 * time.Millisecond)
			e := event(fmt.Sprint("live-", i))
			start := time.Now()
			_, err := s1.Append(ctx, "s", eventlog.Any, []eventlog.EventData{e})
			require.NoError(t, err)
			require.Equal(t, e.ID, receive(t, got, eventstoretest.WakeLatency).ID, "woken after %s", time.Since(start))
		}

		// And the other way round: s2 writes, s1 conflicts on the stale version.
		_, err = s2.Append(ctx, "s", eventlog.Exactly(4), []eventlog.EventData{event("from s2")})
		require.NoError(t, err)
		_, err = s1.Append(ctx, "s", eventlog.Exactly(4), []eventlog.EventData{event("stale")})
		require.ErrorIs(t, err, eventlog.ErrConflict)
	}, "sqlite-file", "postgres")
}

func receive(t *testing.T, ch <-chan eventlog.Record, within time.Duration) eventlog.Record {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(within):
		require.FailNow(t, "no event", "within %s", within)
		return eventlog.Record{}
	}
}

// TestRecheckFindsUnannouncedAppends: appends no notification reports (an
// SQLite file written by another process) reach a Subscribe at the next
// re-check.
func TestRecheckFindsUnannouncedAppends(t *testing.T) {
	u := sqltest.SQLiteFile(t)
	writer, _ := openStore(t, u)
	db := sqltest.Open(t, u)
	reader, err := sqlstore.NewDetached(t.Context(), db, sqlstore.WithRecheckInterval(200*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, reader.Close()) })

	got := make(chan eventlog.Record, 10)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		_ = reader.Subscribe(ctx, eventlog.Start, func(_ context.Context, r eventlog.Record) error {
			got <- r
			return nil
		})
	}()
	time.Sleep(50 * time.Millisecond)
	e := event("unannounced")
	_, err = writer.Append(t.Context(), "s", eventlog.NoStream, []eventlog.EventData{e})
	require.NoError(t, err)
	require.Equal(t, e.ID, receive(t, got, 2*time.Second).ID)
}

// TestListenerReconnects: when the LISTEN connection dies, the Store
// reconnects, catches up on what it missed, and is woken by NOTIFY again.
func TestListenerReconnects(t *testing.T) {
	u := sqltest.Postgres(t)
	writer, admin := openStore(t, u)
	// The reader's connections, its LISTEN connection among them, carry an
	// application_name of their own, to tell them from the writer's.
	reader, _ := openStore(t, u+"&application_name=reader")
	ctx := t.Context()

	got := make(chan eventlog.Record, 10)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_ = reader.Subscribe(sctx, eventlog.Start, func(_ context.Context, r eventlog.Record) error {
			got <- r
			return nil
		})
	}()

	listenQuery := `LISTEN "` + reader.Channel() + `"`
	listenerPID := func() int {
		rows, err := admin.QueryContext(ctx, "SELECT pid, query FROM pg_stat_activity WHERE application_name = 'reader'")
		require.NoError(t, err)
		defer func() { _ = rows.Close() }()
		var pids []int
		for rows.Next() {
			var pid int
			var query string
			require.NoError(t, rows.Scan(&pid, &query))
			if query == listenQuery {
				pids = append(pids, pid)
			}
		}
		require.NoError(t, rows.Err())
		if len(pids) != 1 {
			return 0
		}
		return pids[0]
	}
	old := listenerPID()
	require.NotZero(t, old, "one LISTEN connection for the schema")
	var killed bool
	require.NoError(t, admin.NewRaw("SELECT pg_terminate_backend(?)", old).Scan(ctx, &killed))
	require.True(t, killed)

	// Appended while the listener is down: no notification reaches it.
	missed := event("missed")
	_, err := writer.Append(ctx, "s", eventlog.NoStream, []eventlog.EventData{missed})
	require.NoError(t, err)
	require.Equal(t, missed.ID, receive(t, got, 10*time.Second).ID, "caught up after reconnecting")

	require.Eventually(t, func() bool { p := listenerPID(); return p != 0 && p != old }, 10*time.Second, 20*time.Millisecond)
	e := event("after")
	_, err = writer.Append(ctx, "s", eventlog.Any, []eventlog.EventData{e})
	require.NoError(t, err)
	require.Equal(t, e.ID, receive(t, got, eventstoretest.WakeLatency).ID, "woken by NOTIFY again")
}

// TestIdleListenerStaysConnected: a LISTEN connection that is pinged
// after each silent interval keeps its session (no reconnect) and keeps
// delivering notifications.
func TestIdleListenerStaysConnected(t *testing.T) {
	u := sqltest.Postgres(t)
	writer, admin := openStore(t, u)
	reader, _ := openStore(t, u+"&application_name=idle_reader", sqlstore.WithHealthInterval(30*time.Millisecond))
	ctx := t.Context()

	listenQuery := `LISTEN "` + reader.Channel() + `"`
	pid := func() int {
		var pid int
		err := admin.QueryRowContext(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = 'idle_reader' AND backend_type = 'client backend' AND query IN (?, '-- ping')", listenQuery).Scan(&pid)
		require.NoError(t, err)
		return pid
	}
	first := pid()

	got := make(chan eventlog.Record, 10)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_ = reader.Subscribe(sctx, eventlog.Start, func(_ context.Context, r eventlog.Record) error {
			got <- r
			return nil
		})
	}()
	time.Sleep(300 * time.Millisecond) // ten silent intervals, ten pings
	e := event("after idle")
	_, err := writer.Append(ctx, "s", eventlog.NoStream, []eventlog.EventData{e})
	require.NoError(t, err)
	require.Equal(t, e.ID, receive(t, got, eventstoretest.WakeLatency).ID)
	require.Equal(t, first, pid(), "the same LISTEN session")
}

// TestReaderSeesPrefix checks decision 2 directly on the SQL store, whose
// positions are dense: writers on two Stores (two pools; on SQLite the
// second shares no in-process lock with the first, like another process)
// append concurrently while readers on both Stores poll Head and ReadAll.
// Every reader must see positions 1, 2, 3, ... without a gap, and whenever
// Head says P, ReadAll must already return every event up to P.
func TestReaderSeesPrefix(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		u := url(t)
		s1, _ := openStore(t, u)
		db2 := sqltest.Open(t, u)
		s2, err := sqlstore.NewDetached(t.Context(), db2, sqlstore.WithRecheckInterval(noRecheck))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, s2.Close()) })
		stores := []*sqlstore.Store{s1, s2}
		ctx := t.Context()

		const writers, appendsEach = 8, 25
		var writing atomic.Bool
		writing.Store(true)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				s := stores[w%2]
				for i := range appendsEach {
					evs := []eventlog.EventData{event("a")}
					if i%3 == 0 {
						evs = append(evs, event("b"), event("c"))
					}
					if _, err := s.Append(ctx, fmt.Sprintf("w%d", w%5), eventlog.Any, evs); err != nil {
						t.Errorf("writer %d: %v", w, err)
						return
					}
				}
			})
		}

		var readers sync.WaitGroup
		ends := make([]uint64, 2)
		for r := range 2 {
			readers.Go(func() {
				s := stores[r]
				var last uint64
				defer func() { ends[r] = last }()
				for {
					final := !writing.Load()
					head, err := s.Head(ctx)
					if err != nil {
						t.Errorf("reader %d head: %v", r, err)
						return
					}
					recs, err := s.ReadAll(ctx, eventlog.At(last), 0)
					if err != nil {
						t.Errorf("reader %d: %v", r, err)
						return
					}
					for _, rec := range recs {
						if rec.Position.Commit != last+1 {
							t.Errorf("reader %d: position %d after %d", r, rec.Position.Commit, last)
							return
						}
						last = rec.Position.Commit
					}
					if last < head.Commit {
						t.Errorf("reader %d: head was %d but ReadAll stopped at %d", r, head.Commit, last)
						return
					}
					if final {
						return
					}
				}
			})
		}
		wg.Wait()
		writing.Store(false)
		readers.Wait()
		require.False(t, t.Failed())
		const total = writers*appendsEach + writers*((appendsEach+2)/3)*2
		head, err := s1.Head(ctx)
		require.NoError(t, err)
		require.Equal(t, eventlog.At(total), head)
		require.Equal(t, []uint64{total, total}, ends, "each reader ended having seen every event")
	}, "sqlite-file", "postgres")
}

// TestPositionsAreDense: refused, invalid and idempotent appends use up no
// position.
func TestPositionsAreDense(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		s, _ := openStore(t, url(t))
		ctx := t.Context()
		e := event("a")
		_, err := s.Append(ctx, "s", eventlog.NoStream, []eventlog.EventData{e})
		require.NoError(t, err)
		_, err = s.Append(ctx, "s", eventlog.NoStream, []eventlog.EventData{event("conflict")})
		require.ErrorIs(t, err, eventlog.ErrConflict)
		_, err = s.Append(ctx, "s", eventlog.Any, []eventlog.EventData{e})
		require.NoError(t, err)
		_, err = s.Append(ctx, "t", eventlog.Any, []eventlog.EventData{e})
		require.ErrorIs(t, err, eventlog.ErrDuplicateEventID)
		res, err := s.Append(ctx, "s", eventlog.Any, []eventlog.EventData{event("b"), event("c")})
		require.NoError(t, err)
		require.Equal(t, eventlog.At(3), res.Position)
	})
}

func TestTimesAreUTCMicroseconds(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		clock := time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.FixedZone("", 3600))
		s, _ := openStore(t, url(t), sqlstore.WithClock(func() time.Time { return clock }))
		tests := []struct {
			name string
			in   time.Time
		}{
			{"nanoseconds", time.Date(2026, 1, 2, 3, 4, 5, 999999999, time.UTC)},
			{"other zone", time.Date(2026, 1, 2, 3, 4, 5, 6000, time.FixedZone("", -9*3600-1800))},
			{"before 1970", time.Date(1969, 7, 20, 20, 17, 40, 1000, time.UTC)},
			{"year one", time.Time{}},
			{"far future", time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := event("time")
				e.Meta.EffectiveAt = tt.in
				e.Meta.RecordedAt = time.Time{}
				stream := uuid.NewString()
				_, err := s.Append(t.Context(), stream, eventlog.NoStream, []eventlog.EventData{e})
				require.NoError(t, err)
				recs, err := s.ReadStream(t.Context(), stream, 0, 0)
				require.NoError(t, err)
				require.Len(t, recs, 1)
				got := recs[0].Meta
				require.Equal(t, tt.in.UTC().Truncate(time.Microsecond), got.EffectiveAt)
				require.Equal(t, time.UTC, got.EffectiveAt.Location())
				require.Equal(t, clock.UTC().Truncate(time.Microsecond), got.RecordedAt, "the store's clock, in UTC")
			})
		}
	})
}

func TestAppendRefusesUnstorableText(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		s, _ := openStore(t, url(t))
		tests := []struct {
			name   string
			stream string
			edit   func(e *eventlog.EventData)
		}{
			{"NUL in stream", "a\x00b", func(*eventlog.EventData) {}},
			{"invalid UTF-8 in stream", "a\xffb", func(*eventlog.EventData) {}},
			{"NUL in type", "s", func(e *eventlog.EventData) { e.Type = "t\x00" }},
			{"NUL in actor", "s", func(e *eventlog.EventData) { e.Meta.ActorID = "\x00" }},
			{"invalid UTF-8 in role", "s", func(e *eventlog.EventData) { e.Meta.ActorRole = "\xc3" }},
			{"NUL in reason", "s", func(e *eventlog.EventData) { e.Meta.Reason = "why\x00" }},
			{"invalid UTF-8 in data", "s", func(e *eventlog.EventData) { e.Data = []byte("{\"a\":\"\xff\xfe\"}") }},
			{"effective time after year 9999", "s", func(e *eventlog.EventData) { e.Meta.EffectiveAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
			{"recorded time before year 1 in UTC", "s", func(e *eventlog.EventData) {
				e.Meta.RecordedAt = time.Date(1, 1, 1, 0, 30, 0, 0, time.FixedZone("", 3600))
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := event("ok")
				tt.edit(&e)
				_, err := s.Append(t.Context(), tt.stream, eventlog.Any, []eventlog.EventData{e})
				require.ErrorIs(t, err, eventlog.ErrInvalidAppend)
				head, err := s.Head(t.Context())
				require.NoError(t, err)
				require.True(t, head.IsZero())
			})
		}
	})
}

func TestErrorsNameTheStream(t *testing.T) {
	s, _ := openStore(t, sqltest.SQLiteMemory(t))
	_, err := s.Append(t.Context(), "child-42", eventlog.Exactly(3), []eventlog.EventData{event("a")})
	require.ErrorIs(t, err, eventlog.ErrConflict)
	require.True(t, strings.HasPrefix(err.Error(), `sqlstore: append to "child-42": `), err.Error())
}

func TestClose(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		db := sqltest.Open(t, url(t))
		require.NoError(t, sqlstore.Migrate(t.Context(), db))
		// Let the pool settle before counting goroutines.
		time.Sleep(20 * time.Millisecond)
		before := runtime.NumGoroutine()

		s, err := sqlstore.New(t.Context(), db, sqlstore.WithRecheckInterval(noRecheck))
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() {
			done <- s.Subscribe(t.Context(), eventlog.Start, func(context.Context, eventlog.Record) error { return nil })
		}()
		time.Sleep(50 * time.Millisecond)
		require.NoError(t, s.Close())
		require.NoError(t, s.Close(), "Close is idempotent")

		select {
		case err := <-done:
			require.ErrorIs(t, err, sqlstore.ErrClosed)
		case <-time.After(5 * time.Second):
			require.FailNow(t, "Subscribe did not return after Close")
		}
		_, err = s.Append(t.Context(), "s", eventlog.Any, []eventlog.EventData{event("late")})
		require.ErrorIs(t, err, sqlstore.ErrClosed)
		_, err = s.ReadAll(t.Context(), eventlog.Start, 0)
		require.ErrorIs(t, err, sqlstore.ErrClosed)
		_, err = s.ReadStream(t.Context(), "s", 0, 0)
		require.ErrorIs(t, err, sqlstore.ErrClosed)
		_, err = s.Head(t.Context())
		require.ErrorIs(t, err, sqlstore.ErrClosed)

		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		require.LessOrEqual(t, runtime.NumGoroutine(), before, "goroutines after Close, compared with before New")
	})
}

// TestSubscribeReportsStoreFailure: a Subscribe whose read of the
// database fails returns the failure, whether it had read nothing yet (a
// Store of another process) or had its first events from the appender's
// tail in memory and fails at its next read, at the re-check.
func TestSubscribeReportsStoreFailure(t *testing.T) {
	u := sqltest.SQLiteFile(t)
	db := sqltest.Open(t, u)
	s := newStore(t, db, sqlstore.WithRecheckInterval(50*time.Millisecond))
	_, err := s.Append(t.Context(), "s", eventlog.Any, []eventlog.EventData{event("a")})
	require.NoError(t, err)
	detached, err := sqlstore.NewDetached(t.Context(), sqltest.Open(t, u))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, detached.Close()) })
	_, err = db.ExecContext(t.Context(), "DROP TABLE events")
	require.NoError(t, err)
	for name, store := range map[string]*sqlstore.Store{"from the tail": s, "from the database": detached} {
		t.Run(name, func(t *testing.T) {
			seen := 0
			err := store.Subscribe(t.Context(), eventlog.Start, func(context.Context, eventlog.Record) error {
				seen++
				return nil
			})
			require.Error(t, err)
			require.False(t, errors.Is(err, context.Canceled))
			require.ErrorContains(t, err, "sqlstore: subscribe")
			if store == s {
				require.Equal(t, 1, seen, "the event the tail held")
			}
		})
	}
}
