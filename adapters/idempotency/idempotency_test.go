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

// mode is how a Store keeps the claims of running requests.
type mode struct {
	name    string
	durable bool // claims are pending rows (the default), not in the Store's memory
}

var modes = []mode{{name: "durable", durable: true}, {name: "in-process"}}

// New is idempotency.New in the mode.
func (m mode) New(db bun.IDB, opts ...idempotency.Option) *idempotency.Store {
	if !m.durable {
		opts = append(opts, idempotency.WithClaimsInProcess())
	}
	return idempotency.New(db, opts...)
}

// forEachBackend runs f on a fresh database of each backend, in each mode.
func forEachBackend(t *testing.T, f func(t *testing.T, db *sqldb.DB, m mode)) {
	for _, b := range sqltest.Backends() {
		for _, m := range modes {
			t.Run(b.Name+"/"+m.name, func(t *testing.T) {
				f(t, open(t, b.URL(t)), m)
			})
		}
	}
}

func rowCount(t *testing.T, db bun.IDB) int {
	t.Helper()
	n, err := db.NewSelect().Table("idempotency_keys").Count(context.Background())
	require.NoError(t, err)
	return int(n)
}

func TestMigrationsAreIdempotent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB, m mode) {
		pg, lite := idempotency.Migrations()
		require.NoError(t, sqldb.Migrate(context.Background(), db, idempotency.Component, pg, lite))
		require.Equal(t, 0, rowCount(t, db))
	})
}

func TestTransitions(t *testing.T) {
	ctx := context.Background()
	created := idempotency.Response{Status: 201, ContentType: "application/json", Body: []byte(`{"child_id":"c","position":"p"}`)}
	forEachBackend(t, func(t *testing.T, db *sqldb.DB, m mode) {
		c := newClock()
		s := m.New(db, c.opt(), idempotency.WithLease(30*time.Second), idempotency.WithRetention(time.Hour))

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
	forEachBackend(t, func(t *testing.T, db *sqldb.DB, m mode) {
		c := newClock()
		s := m.New(db, c.opt()) // default lease: 30 s
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
	forEachBackend(t, func(t *testing.T, db *sqldb.DB, m mode) {
		for _, expired := range []bool{false, true} {
			c := newClock()
			s := m.New(db, c.opt())
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
	forEachBackend(t, func(t *testing.T, db *sqldb.DB, m mode) {
		c := newClock()
		s := m.New(db, c.opt(), idempotency.WithRetention(time.Hour))
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
		pending := 0 // the running request's claim, as a row
		if m.durable {
			pending = 1
		}
		require.Equal(t, 2+pending, rowCount(t, db))

		// Purge deletes rows claimed strictly before the bound.
		n, err := s.Purge(ctx, t0)
		require.NoError(t, err)
		require.Zero(t, n)
		n, err = s.Purge(ctx, t0.Add(time.Microsecond))
		require.NoError(t, err)
		require.EqualValues(t, 1+pending, n)
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
		c.Advance(time.Hour) // the rows claimed at t0+40m are exactly the retention old
		n, err = s.PurgeExpired(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
		c.Advance(time.Microsecond)
		n, err = s.PurgeExpired(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 1+pending, n, "new-done, and old-done's new claim as a pending row")
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
	forEachBackend(t, func(t *testing.T, db *sqldb.DB, m mode) {
		s := m.New(db)
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
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) { testInvalidInput(t, m) })
	}
}

func testInvalidInput(t *testing.T, m mode) {
	ctx := context.Background()
	db := open(t, sqltest.SQLiteMemory(t))
	s := m.New(db)

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
	if m.durable {
		require.ErrorIs(t, err, idempotency.ErrInProgress, "a refused Finish leaves the claim pending")
	} else {
		require.NoError(t, err, "a refused Finish lets the in-process claim go: nothing stays in memory")
	}

	require.Panics(t, func() { idempotency.WithLease(0) })
	require.Panics(t, func() { idempotency.WithRetention(-time.Second) })
	require.Panics(t, func() { idempotency.WithClock(nil) })
}

func TestInsideATransaction(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, db *sqldb.DB, m mode) {
		err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			s := m.New(tx)
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
	forEachBackend(t, func(t *testing.T, db *sqldb.DB, m mode) {
		hook := &keyQueries{}
		hooked := db.DB.WithQueryHook(hook) // the same pool, its bun queries counted
		runs := 0
		run := func(t *testing.T, idb bun.IDB, key string) {
			runs++
			s := m.New(idb)
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
// (WAL) through the pool the engine writes them through (Unsynced), with
// the claims as pending rows and in the Store's memory. cpu-us/op is the
// process's CPU time per key.
func BenchmarkBeginFinish(b *testing.B) {
	for _, m := range modes {
		b.Run("claims="+m.name, func(b *testing.B) { benchmarkBeginFinish(b, m) })
	}
}

func benchmarkBeginFinish(b *testing.B, m mode) {
	ctx := context.Background()
	db := sqltest.Open(b, "sqlite:"+b.TempDir()+"/keys.db")
	pg, lite := idempotency.Migrations()
	require.NoError(b, sqldb.Migrate(ctx, db, idempotency.Component, pg, lite))
	unsynced, err := db.Unsynced(ctx)
	require.NoError(b, err)
	s := m.New(unsynced)
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

// TestClaimsInProcess: a Store WithClaimsInProcess writes a key once, at
// Finish; what another Store on the database sees of it, and of a request
// cut off by a crash.
func TestClaimsInProcess(t *testing.T) {
	ctx := context.Background()
	ok := idempotency.Response{Status: 201, ContentType: "application/json", Body: []byte("{}\n")}
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := open(t, b.URL(t))
			c := newClock()
			a := idempotency.New(db, c.opt(), idempotency.WithClaimsInProcess())

			// The claim is no row; the answer is one.
			r, err := a.Begin(ctx, "w", "k", "fp")
			require.NoError(t, err)
			require.Nil(t, r)
			require.Zero(t, rowCount(t, db))
			require.NoError(t, a.Finish(ctx, "w", "k", ok))
			require.Equal(t, 1, rowCount(t, db))
			require.ErrorIs(t, a.Finish(ctx, "w", "k", ok), idempotency.ErrNotClaimed)

			// Another Store replays the answer and refuses another request.
			other := idempotency.New(db, c.opt(), idempotency.WithClaimsInProcess())
			r, err = other.Begin(ctx, "w", "k", "fp")
			require.NoError(t, err)
			require.Equal(t, &ok, r)
			_, err = other.Begin(ctx, "w", "k", "fp-2")
			require.ErrorIs(t, err, idempotency.ErrKeyReused)

			// A running request's claim is the Store's own: another Store
			// claims the key too, and the first answer written stays.
			_, err = a.Begin(ctx, "w", "k2", "fp")
			require.NoError(t, err)
			r, err = other.Begin(ctx, "w", "k2", "fp")
			require.NoError(t, err)
			require.Nil(t, r)
			require.NoError(t, other.Finish(ctx, "w", "k2", ok))
			require.ErrorIs(t, a.Finish(ctx, "w", "k2", idempotency.Response{Status: 409}), idempotency.ErrNotClaimed)
			r, err = a.Begin(ctx, "w", "k2", "fp")
			require.NoError(t, err)
			require.Equal(t, &ok, r)

			// A request cut off by a crash leaves nothing: the retry, on a
			// new Store, runs at once.
			_, err = a.Begin(ctx, "w", "k3", "fp")
			require.NoError(t, err)
			restarted := idempotency.New(db, c.opt(), idempotency.WithClaimsInProcess())
			r, err = restarted.Begin(ctx, "w", "k3", "fp")
			require.NoError(t, err)
			require.Nil(t, r)

			// A durable Store's pending row holds for its lease, and is
			// replaced by the same request after it.
			durable := idempotency.New(db, c.opt())
			_, err = durable.Begin(ctx, "w", "k4", "fp")
			require.NoError(t, err)
			_, err = a.Begin(ctx, "w", "k4", "fp")
			require.ErrorIs(t, err, idempotency.ErrInProgress)
			_, err = a.Begin(ctx, "w", "k4", "fp-2")
			require.ErrorIs(t, err, idempotency.ErrKeyReused)
			c.Advance(idempotency.DefaultLease)
			r, err = a.Begin(ctx, "w", "k4", "fp")
			require.NoError(t, err)
			require.Nil(t, r)
			require.NoError(t, a.Finish(ctx, "w", "k4", ok))
			require.ErrorIs(t, durable.Finish(ctx, "w", "k4", ok), idempotency.ErrNotClaimed, "the dead process's answer comes too late")
			r, err = durable.Begin(ctx, "w", "k4", "fp")
			require.NoError(t, err)
			require.Equal(t, &ok, r)

			// An answer past the retention is replaced by the next request.
			c.Advance(idempotency.DefaultRetention)
			r, err = a.Begin(ctx, "w", "k", "fp-new")
			require.NoError(t, err)
			require.Nil(t, r)
			require.NoError(t, a.Finish(ctx, "w", "k", idempotency.Response{Status: 204}))
			r, err = a.Begin(ctx, "w", "k", "fp-new")
			require.NoError(t, err)
			require.Equal(t, &idempotency.Response{Status: 204}, r)

			// A failed write lets the claim go: the retry runs again.
			_, err = a.Begin(ctx, "w", "k5", "fp")
			require.NoError(t, err)
			cancelled, cancel := context.WithCancel(ctx)
			cancel()
			require.Error(t, a.Finish(cancelled, "w", "k5", ok))
			r, err = a.Begin(ctx, "w", "k5", "fp")
			require.NoError(t, err)
			require.Nil(t, r)
		})
	}
}

// TestClaimsInProcessBeginRacesFinish: while one request finishes, retries
// of it never claim the key a second time: each is told to wait or gets
// the answer (Begin registers its claim before it reads the row, Finish
// writes the row before it lets the claim go).
func TestClaimsInProcessBeginRacesFinish(t *testing.T) {
	ctx := context.Background()
	db := open(t, "sqlite:"+t.TempDir()+"/keys.db")
	s := idempotency.New(db, idempotency.WithClaimsInProcess())
	ok := idempotency.Response{Status: 200, Body: []byte("ok")}
	for round := range 20 {
		key := "k-" + strconv.Itoa(round)
		r, err := s.Begin(ctx, "w", key, "fp")
		require.NoError(t, err)
		require.Nil(t, r)
		var claimed, replayed atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 4 {
			wg.Go(func() {
				for {
					r, err := s.Begin(ctx, "w", key, "fp")
					switch {
					case errors.Is(err, idempotency.ErrInProgress):
						continue
					case err != nil:
						errs <- err
						return
					case r == nil:
						claimed.Add(1)
						return
					default:
						replayed.Add(1)
						return
					}
				}
			})
		}
		require.NoError(t, s.Finish(ctx, "w", key, ok))
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.Zero(t, claimed.Load(), "round %d: a retry claimed a key whose request was finishing", round)
		require.EqualValues(t, 4, replayed.Load())
	}
}
