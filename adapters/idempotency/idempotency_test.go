package idempotency_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/idempotency"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/internal/cputime"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct{ now atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.now.Store(t0.UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.now.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.now.Add(int64(d)) }
func (c *clock) opt() idempotency.Option { return idempotency.WithClock(c.Now) }

func open(t *testing.T, url string) *sqldb.DB {
	t.Helper()
	db := sqltest.Open(t, url)
	pg, lite := idempotency.Migrations()
	require.NoError(t, sqldb.Migrate(context.Background(), db, idempotency.Component, pg, lite))
	return db
}

func forEachBackend(t *testing.T, f func(t *testing.T, db *sqldb.DB)) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f(t, open(t, b.URL(t)))
		})
	}
}

func rowCount(t *testing.T, db bun.IDB) int {
	t.Helper()
	n, err := db.NewSelect().Table("idempotency_keys").Count(context.Background())
	require.NoError(t, err)
	return int(n)
}

func TestMigrationsAreIdempotent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		pg, lite := idempotency.Migrations()
		require.NoError(t, sqldb.Migrate(context.Background(), db, idempotency.Component, pg, lite))
		require.Equal(t, 0, rowCount(t, db))
	})
}

func TestTransitions(t *testing.T) {
	ctx := context.Background()
	created := idempotency.Response{Status: 201, ContentType: "application/json", Body: []byte(`{"child_id":"c","position":"p"}`)}
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		c := newClock()
		s := idempotency.New(db, c.opt(), idempotency.WithLease(30*time.Second), idempotency.WithRetention(time.Hour))

		// A first request claims the key.
		r, err := s.Begin(ctx, "w-1", "k-1", "fp-a")
		require.NoError(t, err)
		require.Nil(t, r)

		// While it runs, a retry is told to wait, and another request with
		// the key is refused.
		_, err = s.Begin(ctx, "w-1", "k-1", "fp-a")
		require.ErrorIs(t, err, idempotency.ErrInProgress)
		_, err = s.Begin(ctx, "w-1", "k-1", "fp-b")
		require.ErrorIs(t, err, idempotency.ErrKeyReused)

		// Keys are per actor: another caller's same key is its own.
		r, err = s.Begin(ctx, "w-2", "k-1", "fp-b")
		require.NoError(t, err)
		require.Nil(t, r)

		// The first request finishes; a retry gets the same answer.
		require.NoError(t, s.Finish(ctx, "w-1", "k-1", created))
		c.Advance(10 * time.Minute)
		r, err = s.Begin(ctx, "w-1", "k-1", "fp-a")
		require.NoError(t, err)
		require.Equal(t, &created, r)
		r, err = s.Begin(ctx, "w-1", "k-1", "fp-a")
		require.NoError(t, err)
		require.Equal(t, &created, r, "replayed as often as asked")

		// The key stays bound to its request.
		_, err = s.Begin(ctx, "w-1", "k-1", "fp-b")
		require.ErrorIs(t, err, idempotency.ErrKeyReused)

		// Finish and Abandon do not touch a done answer.
		require.ErrorIs(t, s.Finish(ctx, "w-1", "k-1", idempotency.Response{Status: 500}), idempotency.ErrNotClaimed)
		require.NoError(t, s.Abandon(ctx, "w-1", "k-1"))
		r, err = s.Begin(ctx, "w-1", "k-1", "fp-a")
		require.NoError(t, err)
		require.Equal(t, &created, r)

		// Abandon frees a pending claim: the retry runs.
		require.NoError(t, s.Abandon(ctx, "w-2", "k-1"))
		require.ErrorIs(t, s.Finish(ctx, "w-2", "k-1", created), idempotency.ErrNotClaimed)
		r, err = s.Begin(ctx, "w-2", "k-1", "fp-b")
		require.NoError(t, err)
		require.Nil(t, r)
		require.NoError(t, s.Abandon(ctx, "w-2", "k-1"))
		require.NoError(t, s.Abandon(ctx, "w-2", "k-1"), "abandoning nothing is fine")
		r, err = s.Begin(ctx, "w-2", "k-1", "fp-c")
		require.NoError(t, err, "an abandoned key is free for any request")
		require.Nil(t, r)

		// A 4xx answer is replayed too, without a content type or body.
		require.NoError(t, s.Finish(ctx, "w-2", "k-1", idempotency.Response{Status: 204}))
		r, err = s.Begin(ctx, "w-2", "k-1", "fp-c")
		require.NoError(t, err)
		require.Equal(t, &idempotency.Response{Status: 204}, r)

		// After the retention the answer is forgotten and the key is free,
		// for any request.
		c.Advance(time.Hour)
		r, err = s.Begin(ctx, "w-1", "k-1", "fp-z")
		require.NoError(t, err)
		require.Nil(t, r)
		_, err = s.Begin(ctx, "w-1", "k-1", "fp-z")
		require.ErrorIs(t, err, idempotency.ErrInProgress, "the new claim holds")
	})
}

func TestExpiredPendingIsTakenOver(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		c := newClock()
		s := idempotency.New(db, c.opt()) // default lease: 30 s
		require.Equal(t, idempotency.DefaultLease, s.Lease())
		require.Equal(t, idempotency.DefaultRetention, s.Retention())

		r, err := s.Begin(ctx, "w-1", "k", "fp")
		require.NoError(t, err)
		require.Nil(t, r)
		// The process dies. Within the lease the retry waits...
		c.Advance(idempotency.DefaultLease - time.Microsecond)
		_, err = s.Begin(ctx, "w-1", "k", "fp")
		require.ErrorIs(t, err, idempotency.ErrInProgress)
		// ... a different request is refused even after the lease ...
		c.Advance(time.Microsecond)
		_, err = s.Begin(ctx, "w-1", "k", "other")
		require.ErrorIs(t, err, idempotency.ErrKeyReused)
		// ... and the same request takes the claim over once it is over.
		r, err = s.Begin(ctx, "w-1", "k", "fp")
		require.NoError(t, err)
		require.Nil(t, r)
		// The new claim has a fresh lease.
		c.Advance(idempotency.DefaultLease / 2)
		_, err = s.Begin(ctx, "w-1", "k", "fp")
		require.ErrorIs(t, err, idempotency.ErrInProgress)
		// The taker finishes; the dead process's answer would come too late.
		ok := idempotency.Response{Status: 200, ContentType: "application/json", Body: []byte("{}")}
		require.NoError(t, s.Finish(ctx, "w-1", "k", ok))
		require.ErrorIs(t, s.Finish(ctx, "w-1", "k", idempotency.Response{Status: 201}), idempotency.ErrNotClaimed)
		r, err = s.Begin(ctx, "w-1", "k", "fp")
		require.NoError(t, err)
		require.Equal(t, &ok, r)
		require.Equal(t, 1, rowCount(t, db))
	})
}

func TestConcurrentBeginClaimsOnce(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		for _, expired := range []bool{false, true} {
			c := newClock()
			s := idempotency.New(db, c.opt())
			key := "fresh"
			if expired {
				// Every Begin races to take over a dead process's claim.
				key = "expired"
				_, err := s.Begin(ctx, "w-1", key, "fp")
				require.NoError(t, err)
				c.Advance(time.Minute)
			}
			const n = 8
			var claimed, inProgress atomic.Int32
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					r, err := s.Begin(ctx, "w-1", key, "fp")
					switch {
					case err == nil && r == nil:
						claimed.Add(1)
					case errors.Is(err, idempotency.ErrInProgress):
						inProgress.Add(1)
					default:
						errs[i] = err
					}
				})
			}
			close(start)
			wg.Wait()
			for _, err := range errs {
				require.NoError(t, err)
			}
			require.EqualValues(t, 1, claimed.Load(), "expired=%v: exactly one Begin claims the key", expired)
			require.EqualValues(t, n-1, inProgress.Load())
		}
	})
}

func TestPurge(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		c := newClock()
		s := idempotency.New(db, c.opt(), idempotency.WithRetention(time.Hour))
		done := idempotency.Response{Status: 200, Body: []byte("x")}

		_, err := s.Begin(ctx, "a", "old-done", "fp")
		require.NoError(t, err)
		require.NoError(t, s.Finish(ctx, "a", "old-done", done))
		_, err = s.Begin(ctx, "a", "old-pending", "fp")
		require.NoError(t, err)
		c.Advance(40 * time.Minute)
		_, err = s.Begin(ctx, "a", "new-done", "fp")
		require.NoError(t, err)
		require.NoError(t, s.Finish(ctx, "a", "new-done", done))
		require.Equal(t, 3, rowCount(t, db))

		// Purge deletes rows claimed strictly before the bound.
		n, err := s.Purge(ctx, t0)
		require.NoError(t, err)
		require.Zero(t, n)
		n, err = s.Purge(ctx, t0.Add(time.Microsecond))
		require.NoError(t, err)
		require.EqualValues(t, 2, n)
		require.Equal(t, 1, rowCount(t, db))
		r, err := s.Begin(ctx, "a", "new-done", "fp")
		require.NoError(t, err)
		require.Equal(t, &done, r)
		r, err = s.Begin(ctx, "a", "old-done", "fp")
		require.NoError(t, err)
		require.Nil(t, r, "a purged key is claimed afresh")

		// PurgeExpired uses the retention.
		n, err = s.PurgeExpired(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
		c.Advance(time.Hour) // both rows claimed at t0+40m are exactly the retention old
		n, err = s.PurgeExpired(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
		c.Advance(time.Microsecond)
		n, err = s.PurgeExpired(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 2, n)
		require.Equal(t, 0, rowCount(t, db))
	})
}

func TestBodyRoundTrip(t *testing.T) {
	ctx := context.Background()
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	large := make([]byte, 64<<10)
	_, err := rand.Read(large)
	require.NoError(t, err)
	maxBody := make([]byte, idempotency.MaxBodyBytes)
	_, err = rand.Read(maxBody)
	require.NoError(t, err)

	bodies := map[string][]byte{
		"every byte value": allBytes,
		"NUL only":         {0},
		"invalid UTF-8":    []byte("\xff\xfe\x00\xc3("),
		"64 KiB random":    large,
		"largest allowed":  maxBody,
		"JSON":             []byte(`{"position":"AAAA","detail":"é \u0000"}` + "\n"),
	}
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		s := idempotency.New(db)
		for name, body := range bodies {
			t.Run(name, func(t *testing.T) {
				want := idempotency.Response{Status: 409, ContentType: "application/problem+json; charset=utf-8", Body: body}
				key := strings.ReplaceAll(name, " ", "-")
				r, err := s.Begin(ctx, "w", key, "fp")
				require.NoError(t, err)
				require.Nil(t, r)
				require.NoError(t, s.Finish(ctx, "w", key, want))
				r, err = s.Begin(ctx, "w", key, "fp")
				require.NoError(t, err)
				require.Equal(t, want.Status, r.Status)
				require.Equal(t, want.ContentType, r.ContentType)
				require.Equal(t, len(body), len(r.Body))
				require.True(t, string(body) == string(r.Body), "body differs")
			})
		}
	})
}

func TestInvalidInput(t *testing.T) {
	ctx := context.Background()
	db := open(t, sqltest.SQLiteMemory(t))
	s := idempotency.New(db)

	for _, key := range []string{
		"", " ", "a b", "tab\t", "nl\n", "nul\x00", "del\x7f", "é", "\xff",
		strings.Repeat("k", idempotency.MaxKeyBytes+1),
	} {
		_, err := s.Begin(ctx, "w", key, "fp")
		require.ErrorIs(t, err, idempotency.ErrInvalidKey, "%q", key)
		require.ErrorIs(t, err, domain.ErrInvalid, "%q", key)
		require.ErrorIs(t, s.Finish(ctx, "w", key, idempotency.Response{Status: 200}), idempotency.ErrInvalidKey)
		require.ErrorIs(t, s.Abandon(ctx, "w", key), idempotency.ErrInvalidKey)
	}
	for _, key := range []string{"a", "!", "~", `"quoted"`, "8e0f3a4c-1d2b-4c5e-9f60-7a8b9c0d1e2f",
		strings.Repeat("k", idempotency.MaxKeyBytes)} {
		require.NoError(t, idempotency.CheckKey(key), "%q", key)
		r, err := s.Begin(ctx, "w", key, "fp")
		require.NoError(t, err, "%q", key)
		require.Nil(t, r)
	}

	_, err := s.Begin(ctx, "", "k", "fp")
	require.ErrorContains(t, err, "actor is empty")
	_, err = s.Begin(ctx, "w", "k", "")
	require.ErrorContains(t, err, "fingerprint is empty")
	_, err = s.Begin(ctx, "w\x00", "k", "fp")
	require.ErrorContains(t, err, "NUL")

	_, err = s.Begin(ctx, "w", "k", "fp")
	require.NoError(t, err)
	for _, r := range []idempotency.Response{
		{Status: 0}, {Status: 99}, {Status: 600},
		{Status: 200, ContentType: "text/plain\r\nX-Evil: 1"},
		{Status: 200, ContentType: strings.Repeat("a", idempotency.MaxContentTypeBytes+1)},
		{Status: 200, Body: make([]byte, idempotency.MaxBodyBytes+1)},
	} {
		require.Error(t, s.Finish(ctx, "w", "k", r))
	}
	_, err = s.Begin(ctx, "w", "k", "fp")
	require.ErrorIs(t, err, idempotency.ErrInProgress, "a refused Finish leaves the claim pending")

	require.Panics(t, func() { idempotency.WithLease(0) })
	require.Panics(t, func() { idempotency.WithRetention(-time.Second) })
	require.Panics(t, func() { idempotency.WithClock(nil) })
}

func TestInsideATransaction(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			s := idempotency.New(tx)
			r, err := s.Begin(ctx, "w", "k", "fp")
			require.NoError(t, err)
			require.Nil(t, r)
			return s.Finish(ctx, "w", "k", idempotency.Response{Status: 201})
		})
		require.NoError(t, err)
		r, err := idempotency.New(db).Begin(ctx, "w", "k", "fp")
		require.NoError(t, err)
		require.Equal(t, &idempotency.Response{Status: 201}, r)
	})
}

// keyQueries is a bun query hook that counts the queries bun formats on
// the idempotency_keys table (values written into their text).
type keyQueries struct{ n atomic.Int64 }

func (h *keyQueries) BeforeQuery(ctx context.Context, e *bun.QueryEvent) context.Context {
	if strings.Contains(e.Query, "idempotency_keys") {
		h.n.Add(1)
	}
	return ctx
}

func (h *keyQueries) AfterQuery(context.Context, *bun.QueryEvent) {}

// viaBun is a bun.IDB the store knows no database/sql handle of.
type viaBun struct{ *bun.DB }

// TestStatementsBindTheirValues: on every handle the store knows (the
// engine's sqldb.DB, a *bun.DB, a bun.Tx, a bun.Conn) its statements run
// with bound values, beside bun (so that their text is the same each time
// and a statement cache keeps them); on another bun.IDB they run through
// bun, and give the same answers.
func TestStatementsBindTheirValues(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		hook := &keyQueries{}
		hooked := db.DB.WithQueryHook(hook) // the same pool, its bun queries counted
		runs := 0
		run := func(t *testing.T, idb bun.IDB, key string) {
			runs++
			s := idempotency.New(idb)
			r, err := s.Begin(ctx, "w", key, "fp")
			require.NoError(t, err)
			require.Nil(t, r)
			require.NoError(t, s.Finish(ctx, "w", key, idempotency.Response{Status: 201, ContentType: "application/json", Body: []byte("{}\n")}))
			r, err = s.Begin(ctx, "w", key, "fp")
			require.NoError(t, err)
			require.Equal(t, &idempotency.Response{Status: 201, ContentType: "application/json", Body: []byte("{}\n")}, r)
			_, err = s.Begin(ctx, "w", key, "other")
			require.ErrorIs(t, err, idempotency.ErrKeyReused)
			r, err = s.Begin(ctx, "w", key+"-2", "fp")
			require.NoError(t, err)
			require.Nil(t, r)
			require.NoError(t, s.Abandon(ctx, "w", key+"-2"))
			_, err = s.Purge(ctx, t0)
			require.NoError(t, err)
		}
		t.Run("bound", func(t *testing.T) {
			run(t, &sqldb.DB{DB: hooked}, "sqldb")
			run(t, hooked, "bun")
			require.NoError(t, hooked.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
				run(t, tx, "tx")
				return nil
			}))
			if !strings.Contains(db.String(), "memory") { // one connection, held by the pool
				conn, err := hooked.Conn(ctx)
				require.NoError(t, err)
				run(t, conn, "conn")
				require.NoError(t, conn.Close())
			}
			require.Zero(t, hook.n.Load(), "no statement on idempotency_keys went through bun's formatting")
		})
		t.Run("through bun", func(t *testing.T) {
			run(t, viaBun{hooked}, "other")
			require.Positive(t, hook.n.Load())
		})
		require.Equal(t, runs, rowCount(t, db), "the answers kept, the abandoned claims gone")
	})
}

// BenchmarkBeginFinish: one key's claim and answer, as the HTTP layer
// makes them for a command with an Idempotency-Key, on an SQLite file
// (WAL) through the pool the engine writes them through (Unsynced).
// cpu-us/op is the process's CPU time per key.
func BenchmarkBeginFinish(b *testing.B) {
	ctx := context.Background()
	db := sqltest.Open(b, "sqlite:"+b.TempDir()+"/keys.db")
	pg, lite := idempotency.Migrations()
	require.NoError(b, sqldb.Migrate(ctx, db, idempotency.Component, pg, lite))
	unsynced, err := db.Unsynced(ctx)
	require.NoError(b, err)
	s := idempotency.New(unsynced)
	answer := idempotency.Response{Status: 200, ContentType: "application/json",
		Body: []byte(`{"expires_at":null,"review_by":"2027-03-02T09:00:00Z","position":"0000000000001234"}` + "\n")}
	b.ReportAllocs()
	b.ResetTimer()
	start := cputime.Process()
	for i := range b.N {
		key := "bench-" + strconv.Itoa(i)
		r, err := s.Begin(ctx, "worker-1", key, "POST /v1/children/x/grants 0123456789abcdef")
		if err != nil || r != nil {
			b.Fatal(r, err)
		}
		if err := s.Finish(ctx, "worker-1", key, answer); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cputime.Process()-start).Microseconds())/float64(b.N), "cpu-us/op")
}
