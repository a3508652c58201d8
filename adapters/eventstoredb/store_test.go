package eventstoredb_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/eventstoredb"
	"github.com/accessledger/accessledger/adapters/eventstoredb/esdbtest"
	"github.com/accessledger/accessledger/adapters/eventstoretest"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// realURL is a real EventStoreDB/KurrentDB server to run the suite against
// as well (README: "EventStoreDB/KurrentDB").
var realURL = os.Getenv("EVENTSTORE_TEST_URL")

// suiteAppendSize is the maximum append size the suite needs (its largest
// append is 10,000 events of about 350 bytes); a real server must be
// started with at least this (KURRENTDB_MAX_APPEND_SIZE=16777216).
const suiteAppendSize = 16 << 20

var suiteOptions = eventstoretest.Options{StreamScopedIDs: true, BulkWithoutRace: true}

func open(t *testing.T, url string, opts ...eventstoredb.Option) *eventstoredb.Store {
	t.Helper()
	opts = append([]eventstoredb.Option{eventstoredb.WithLogger(testLogger(t))}, opts...)
	s, err := eventstoredb.Open(t.Context(), url, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// testLogger logs to the test's log until the test's cleanups run (those
// registered before it, such as a store's Close, run first). The client's
// connection goroutines can log after the store is closed and the test has
// ended: those lines are dropped (t.Log then would race with the test's end).
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.done = true
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

var nsSeq atomic.Int64

// namespace returns a namespace no other test uses, on any server.
func namespace() string {
	return fmt.Sprintf("t%d-%d-%s-", time.Now().Unix(), nsSeq.Add(1), uuid.NewString()[:8])
}

func TestConformance(t *testing.T) {
	t.Run("test server, one per store", func(t *testing.T) {
		eventstoretest.RunWith(t, suiteOptions, func(t *testing.T) eventlog.Store {
			srv := esdbtest.Start(t, esdbtest.WithMaxAppendSize(suiteAppendSize))
			return open(t, srv.URL())
		})
	})
	t.Run("test server, shared, namespaced", func(t *testing.T) {
		srv := esdbtest.Start(t, esdbtest.WithMaxAppendSize(suiteAppendSize))
		eventstoretest.RunWith(t, suiteOptions, func(t *testing.T) eventlog.Store {
			return open(t, srv.URL(), eventstoredb.WithNamespace(namespace()))
		})
	})
	t.Run("real server", func(t *testing.T) {
		if realURL == "" {
			t.Skip("EVENTSTORE_TEST_URL is not set")
		}
		eventstoretest.RunWith(t, suiteOptions, func(t *testing.T) eventlog.Store {
			return open(t, realURL, eventstoredb.WithNamespace(namespace()))
		})
	})
}

// servers returns the servers the adapter tests run against: a fresh test
// server, and the real one when EVENTSTORE_TEST_URL is set (namespaced).
func stores(t *testing.T, opts ...eventstoredb.Option) map[string]func(t *testing.T) *eventstoredb.Store {
	out := map[string]func(t *testing.T) *eventstoredb.Store{
		"test server": func(t *testing.T) *eventstoredb.Store {
			return open(t, esdbtest.Start(t).URL(), opts...)
		},
	}
	if realURL != "" {
		out["real server"] = func(t *testing.T) *eventstoredb.Store {
			return open(t, realURL, append([]eventstoredb.Option{eventstoredb.WithNamespace(namespace())}, opts...)...)
		}
	}
	return out
}

func ev(typ string) eventlog.EventData {
	return eventlog.EventData{ID: uuid.New(), Type: typ, Data: []byte(`{"k":"v"}`),
		Meta: eventlog.Meta{ActorID: "worker-1", ActorRole: "worker", EffectiveAt: time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC),
			RecordedAt: time.Date(2026, 3, 3, 10, 0, 1, 0, time.UTC), CorrelationID: uuid.New(), CausationID: uuid.New()}}
}

func appendN(t *testing.T, s eventlog.Store, stream string, n int) []eventlog.EventData {
	t.Helper()
	evs := make([]eventlog.EventData, n)
	for i := range evs {
		evs[i] = ev("test.v1")
	}
	_, err := s.Append(t.Context(), stream, eventlog.Any, evs)
	require.NoError(t, err)
	return evs
}

func TestSystemEventsAreNotInTheLog(t *testing.T) {
	srv := esdbtest.Start(t)
	s := open(t, srv.URL())
	srv.AppendSystemEvent("$stats-127.0.0.1:2113", "$statsCollected", []byte(`{}`))
	mine := appendN(t, s, "child-1", 2)
	srv.AppendSystemEvent("$scavenges", "$scavengeStarted", []byte(`{}`))

	all, err := s.ReadAll(t.Context(), eventlog.Start, 0)
	require.NoError(t, err)
	require.Len(t, all, 2)
	require.Equal(t, mine[1].ID, all[1].ID)

	head, err := s.Head(t.Context())
	require.NoError(t, err)
	require.Equal(t, all[1].Position, head, "Head skips the system event after our last one")

	got := make(chan eventlog.Record, 10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- s.Subscribe(ctx, eventlog.Start, func(_ context.Context, r eventlog.Record) error { got <- r; return nil })
	}()
	for i := range 2 {
		r := receive(t, got)
		require.Equal(t, mine[i].ID, r.ID)
	}
	srv.AppendSystemEvent("$scavenges", "$scavengeCompleted", []byte(`{}`))
	more := appendN(t, s, "account-1", 1)
	require.Equal(t, more[0].ID, receive(t, got).ID)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

func receive(t *testing.T, ch <-chan eventlog.Record) eventlog.Record {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no event within 20s")
	}
	return eventlog.Record{}
}

func TestStreamPrefixes(t *testing.T) {
	srv := esdbtest.Start(t)
	wide := open(t, srv.URL())
	narrow := open(t, srv.URL(), eventstoredb.WithStreamPrefixes("child-", "account-"))

	_, err := narrow.Append(t.Context(), "other-1", eventlog.NoStream, []eventlog.EventData{ev("x")})
	require.ErrorIs(t, err, eventlog.ErrInvalidAppend)
	_, err = narrow.Append(t.Context(), "$ours", eventlog.NoStream, []eventlog.EventData{ev("x")})
	require.ErrorIs(t, err, eventlog.ErrInvalidAppend)

	appendN(t, wide, "other-1", 3)
	c := appendN(t, narrow, "child-1", 1)
	appendN(t, wide, "other-2", 1)

	recs, err := narrow.ReadAll(t.Context(), eventlog.Start, 0)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, c[0].ID, recs[0].ID)
	head, err := narrow.Head(t.Context())
	require.NoError(t, err)
	require.Equal(t, recs[0].Position, head)

	wideAll, err := wide.ReadAll(t.Context(), eventlog.Start, 0)
	require.NoError(t, err)
	require.Len(t, wideAll, 5)
}

func TestNamespacesAreIsolated(t *testing.T) {
	srv := esdbtest.Start(t)
	a := open(t, srv.URL(), eventstoredb.WithNamespace("tenant-a/"))
	b := open(t, srv.URL(), eventstoredb.WithNamespace("tenant-b/"))
	ea := appendN(t, a, "child-1", 2)
	eb := appendN(t, b, "child-1", 3)

	ra, err := a.ReadStream(t.Context(), "child-1", 1, 0)
	require.NoError(t, err)
	require.Len(t, ra, 2)
	require.Equal(t, "child-1", ra[0].Stream, "records carry the port's stream name")
	require.Equal(t, ea[1].ID, ra[1].ID)
	rb, err := b.ReadAll(t.Context(), eventlog.Start, 0)
	require.NoError(t, err)
	require.Len(t, rb, 3)
	require.Equal(t, eb[2].ID, rb[2].ID)

	ha, err := a.Head(t.Context())
	require.NoError(t, err)
	require.Equal(t, ra[1].Position, ha)

	_, err = eventstoredb.Open(t.Context(), srv.URL(), eventstoredb.WithNamespace("$sys"))
	require.Error(t, err)
}

// TestResubscribesAfterDrop: a dropped subscription (a server restart, a
// leader change) is resumed from where it was, with no event lost or
// delivered twice, including events appended while it was down.
func TestResubscribesAfterDrop(t *testing.T) {
	srv := esdbtest.Start(t)
	s := open(t, srv.URL(), eventstoredb.WithResubscribe(20*time.Millisecond, 200*time.Millisecond, 50),
		eventstoredb.WithCallTimeout(2*time.Second))
	var mu sync.Mutex
	var got []uuid.UUID
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- s.Subscribe(ctx, eventlog.Start, func(_ context.Context, r eventlog.Record) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, r.ID)
			return nil
		})
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	var want []uuid.UUID
	add := func(n int) {
		for _, e := range appendN(t, s, "child-1", n) {
			want = append(want, e.ID)
		}
	}
	add(5)
	require.Eventually(t, func() bool { return count() == 5 }, 20*time.Second, 5*time.Millisecond)

	// A drop while caught up; events appended while it resubscribes.
	srv.DropSubscriptions()
	add(3)
	srv.AppendSystemEvent("$scavenges", "$scavengeStarted", []byte(`{}`))
	require.Eventually(t, func() bool { return count() == 8 }, 20*time.Second, 5*time.Millisecond)

	// The server goes away and comes back with its data.
	srv.Stop()
	_, err := s.Append(t.Context(), "child-2", eventlog.NoStream, []eventlog.EventData{ev("x")})
	require.ErrorIs(t, err, eventstoredb.ErrUnavailable)
	srv.Restart(t)
	add(4)
	require.Eventually(t, func() bool { return count() == 12 }, 30*time.Second, 5*time.Millisecond)

	for range 3 {
		srv.DropSubscriptions()
		add(1)
	}
	require.Eventually(t, func() bool { return count() == 15 }, 30*time.Second, 5*time.Millisecond)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, want, got, "every event once, in order")
}

// TestSubscribeGivesUp: a server that stays away ends Subscribe with
// ErrUnavailable after the configured retries, so the caller can report it.
func TestSubscribeGivesUp(t *testing.T) {
	srv := esdbtest.Start(t)
	s := open(t, srv.URL(), eventstoredb.WithResubscribe(10*time.Millisecond, 20*time.Millisecond, 2),
		eventstoredb.WithCallTimeout(time.Second))
	done := make(chan error, 1)
	go func() {
		done <- s.Subscribe(t.Context(), eventlog.Start, func(context.Context, eventlog.Record) error { return nil })
	}()
	require.Eventually(t, func() bool { return srv.Subscriptions() == 1 }, 10*time.Second, 5*time.Millisecond)
	srv.Stop()
	select {
	case err := <-done:
		require.ErrorIs(t, err, eventstoredb.ErrUnavailable)
	case <-time.After(60 * time.Second):
		t.Fatal("Subscribe did not give up")
	}
}

// TestDeadlines: every call but Subscribe ends within the call timeout when
// the server does not answer.
func TestDeadlines(t *testing.T) {
	srv := esdbtest.Start(t)
	s := open(t, srv.URL(), eventstoredb.WithCallTimeout(500*time.Millisecond))
	srv.Stop()
	calls := map[string]func(ctx context.Context) error{
		"append": func(ctx context.Context) error {
			_, err := s.Append(ctx, "child-1", eventlog.NoStream, []eventlog.EventData{ev("x")})
			return err
		},
		"read stream": func(ctx context.Context) error { _, err := s.ReadStream(ctx, "child-1", 1, 0); return err },
		"read all":    func(ctx context.Context) error { _, err := s.ReadAll(ctx, eventlog.Start, 10); return err },
		"head":        func(ctx context.Context) error { _, err := s.Head(ctx); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			err := call(t.Context())
			require.ErrorIs(t, err, eventstoredb.ErrUnavailable)
			require.Less(t, time.Since(start), 15*time.Second)
		})
	}
}

func TestOpenUnreachable(t *testing.T) {
	srv := esdbtest.Start(t)
	url := srv.URL()
	srv.Stop()
	start := time.Now()
	_, err := eventstoredb.Open(t.Context(), url, eventstoredb.WithCallTimeout(500*time.Millisecond), eventstoredb.WithLogger(testLogger(t)))
	require.ErrorIs(t, err, eventstoredb.ErrUnavailable)
	require.Less(t, time.Since(start), 15*time.Second)

	_, err = eventstoredb.Open(t.Context(), "http://nope")
	require.Error(t, err)
}

func TestAppendOverMaxAppendSize(t *testing.T) {
	srv := esdbtest.Start(t) // the server's default: 1 MiB
	s := open(t, srv.URL())
	big := ev("big")
	big.Data = []byte(`{"blob":"` + strings.Repeat("x", 1<<20) + `"}`)
	_, err := s.Append(t.Context(), "child-1", eventlog.NoStream, []eventlog.EventData{ev("small"), big})
	require.ErrorIs(t, err, eventlog.ErrInvalidAppend)
	recs, err := s.ReadAll(t.Context(), eventlog.Start, 0)
	require.NoError(t, err)
	require.Empty(t, recs)
}

// TestForeignEvents: an event in our streams that this engine did not write
// (metadata not ours) is reported, not silently skipped or misread.
func TestForeignEvents(t *testing.T) {
	srv := esdbtest.Start(t)
	s := open(t, srv.URL())
	raw := rawClient(t, srv.URL())
	_, err := raw.AppendToStream(t.Context(), "child-9", esdb.AppendToStreamOptions{},
		esdb.EventData{EventID: uuid.New(), EventType: "x", ContentType: esdb.ContentTypeJson, Data: []byte(`{}`), Metadata: []byte("not json")})
	require.NoError(t, err)
	_, err = s.ReadStream(t.Context(), "child-9", 1, 0)
	require.ErrorContains(t, err, "metadata is not ours")
	_, err = s.ReadAll(t.Context(), eventlog.Start, 0)
	require.ErrorContains(t, err, "metadata is not ours")
	err = s.Subscribe(t.Context(), eventlog.Start, func(context.Context, eventlog.Record) error { return nil })
	require.ErrorContains(t, err, "metadata is not ours")
}

func rawClient(t *testing.T, url string) *esdb.Client {
	conf, err := esdb.ParseConnectionString(url)
	require.NoError(t, err)
	conf.Logger = esdb.NoopLogging()
	c, err := esdb.NewClient(conf)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestClientLogsGoToSlog: the client's own log lines (here: a dropped
// subscription) reach the store's slog logger.
func TestClientLogsGoToSlog(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := esdbtest.Start(t)
	s, err := eventstoredb.Open(t.Context(), srv.URL(), eventstoredb.WithLogger(log),
		eventstoredb.WithResubscribe(10*time.Millisecond, 50*time.Millisecond, 100))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		_ = s.Subscribe(ctx, eventlog.Start, func(context.Context, eventlog.Record) error { return nil })
	}()
	require.Eventually(t, func() bool { return srv.Subscriptions() == 1 }, 10*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool {
		srv.DropSubscriptions() // again, until one lands on a live subscription
		mu.Lock()
		defer mu.Unlock()
		out := buf.String()
		return strings.Contains(out, "component=esdb-client") && strings.Contains(out, "subscription has dropped") &&
			strings.Contains(out, "subscribing again")
	}, 10*time.Second, 50*time.Millisecond, "logs:\n%s", func() string { mu.Lock(); defer mu.Unlock(); return buf.String() }())
	mu.Lock()
	defer mu.Unlock()
	require.NotContains(t, buf.String(), "[[", "arguments are spread, not printed as a slice")
	require.NotContains(t, buf.String(), "%!", "arguments match the format")
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestConflictReportsActualVersion: the port's conflict carries the
// stream's actual version, which the server's error does not.
func TestConflictReportsActualVersion(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			appendN(t, s, "child-1", 3)
			_, err := s.Append(t.Context(), "child-1", eventlog.Exactly(2), []eventlog.EventData{ev("x")})
			var ce *eventlog.ConflictError
			require.True(t, errors.As(err, &ce), "%v", err)
			require.Equal(t, uint64(3), ce.Actual)
			require.Equal(t, "child-1", ce.Stream)
			_, err = s.Append(t.Context(), "child-2", eventlog.Exactly(2), []eventlog.EventData{ev("x")})
			require.True(t, errors.As(err, &ce), "%v", err)
			require.Equal(t, uint64(0), ce.Actual)
		})
	}
}

// TestRecoversAfterOutage: calls made while the server is away fail with
// ErrUnavailable, and once it is back the store works again (the client
// closes itself for good after failing to reconnect; the store replaces it).
func TestRecoversAfterOutage(t *testing.T) {
	srv := esdbtest.Start(t)
	s := open(t, srv.URL(), eventstoredb.WithCallTimeout(2*time.Second))
	appendN(t, s, "child-1", 1)
	srv.Stop()
	for i := range 4 {
		_, err := s.Append(t.Context(), "child-1", eventlog.Any, []eventlog.EventData{ev("x")})
		require.ErrorIs(t, err, eventstoredb.ErrUnavailable, "call %d", i)
		_, err = s.Head(t.Context())
		require.ErrorIs(t, err, eventstoredb.ErrUnavailable, "call %d", i)
	}
	srv.Restart(t)
	// One event for every try: a try the server committed but the client
	// gave up on is then a retry, not a second event.
	y := ev("y")
	require.Eventually(t, func() bool {
		_, err := s.Append(t.Context(), "child-1", eventlog.Any, []eventlog.EventData{y})
		return err == nil
	}, 20*time.Second, 50*time.Millisecond)
	recs, err := s.ReadStream(t.Context(), "child-1", 1, 0)
	require.NoError(t, err)
	require.Len(t, recs, 2, "the first event and the one after the outage; nothing written while it was down")
}

func TestClosedStore(t *testing.T) {
	srv := esdbtest.Start(t)
	s, err := eventstoredb.Open(t.Context(), srv.URL(), eventstoredb.WithLogger(testLogger(t)))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, err = s.Head(t.Context())
	require.Error(t, err)
	err = s.Subscribe(t.Context(), eventlog.Start, func(context.Context, eventlog.Record) error { return nil })
	require.Error(t, err)
}
