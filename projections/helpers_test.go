package projections_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/syncbuf"
	"github.com/accessledger/accessledger/projections"
)

const waitFor = 60 * time.Second

// all is an upto for expected that takes every record.
const all = math.MaxUint64

// forBackends runs f on SQLite file, SQLite memory and PostgreSQL (which
// skips when sqltest.PostgresEnv is unset).
func forBackends(t *testing.T, f func(t *testing.T, url string)) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) { f(t, b.URL(t)) })
	}
}

// forBackendsParallel is forBackends with the backends' runs in parallel
// (each has its own database).
func forBackendsParallel(t *testing.T, f func(t *testing.T, url string)) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			f(t, b.URL(t))
		})
	}
}

// env is a migrated database with an event store on it.
type env struct {
	url   string
	db    *sqldb.DB
	store *sqlstore.Store
}

func newEnv(t testing.TB, url string) *env {
	t.Helper()
	db := sqltest.Open(t, url)
	return envOn(t, url, db)
}

func envOn(t testing.TB, url string, db *sqldb.DB) *env {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, sqlstore.Migrate(ctx, db))
	pg, lite := projections.Migrations()
	require.NoError(t, sqldb.Migrate(ctx, db, projections.Component, pg, lite))
	st, err := sqlstore.New(ctx, db, sqlstore.WithRecheckInterval(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	return &env{url: url, db: db, store: st}
}

// second returns another handle on the same database, as another process
// would have: its own pool and store (an in-memory database can only be
// shared, so there it gets only its own store).
func (e *env) second(t testing.TB) *env {
	t.Helper()
	if strings.HasPrefix(e.db.Path(), "memdb:") {
		return envOn(t, e.url, e.db)
	}
	return newEnv(t, e.url)
}

var testTypes = []string{"test.opened.v1", "test.changed.v1", "test.closed.v1"}

// appendN appends n events to random streams among streams, one to twenty
// events per append.
func (e *env) appendN(t testing.TB, n, streams int) {
	t.Helper()
	require.NoError(t, appendEvents(context.Background(), e.store, n, streams))
}

func appendEvents(ctx context.Context, st eventlog.Store, n, streams int) error {
	for n > 0 {
		k := min(n, 1+rand.IntN(20))
		stream := fmt.Sprintf("s-%03d", rand.IntN(streams))
		evs := make([]eventlog.EventData, k)
		for i := range evs {
			evs[i] = eventlog.EventData{
				ID:   uuid.New(),
				Type: testTypes[rand.IntN(len(testTypes))],
				Data: []byte(`{"n":1}`),
				Meta: eventlog.Meta{ActorID: "tester", ActorRole: "test", EffectiveAt: time.Now()},
			}
		}
		if _, err := st.Append(ctx, stream, eventlog.Any, evs); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

func (e *env) records(t testing.TB) []eventlog.Record {
	t.Helper()
	recs, err := e.store.ReadAll(context.Background(), eventlog.Start, 0)
	require.NoError(t, err)
	return recs
}

func (e *env) head(t testing.TB) eventlog.Position {
	t.Helper()
	h, err := e.store.Head(context.Background())
	require.NoError(t, err)
	return h
}

// readSnapshot reads both projections through their views.
func readSnapshot(t testing.TB, db bun.IDB) snapshot {
	t.Helper()
	s := readCounts(t, db)
	require.NoError(t, db.NewRaw("SELECT position, stream, nth_in_stream, nth FROM warm_events ORDER BY position").
		Scan(context.Background(), &s.Warm))
	return s
}

// readCounts reads the counts projection through its views.
func readCounts(t testing.TB, db bun.IDB) snapshot {
	t.Helper()
	ctx := context.Background()
	var s snapshot
	require.NoError(t, db.NewRaw("SELECT stream, events, last_version, checksum FROM counts ORDER BY stream").Scan(ctx, &s.Counts))
	require.NoError(t, db.NewRaw("SELECT type, events FROM count_types ORDER BY type").Scan(ctx, &s.Types))
	sort.Slice(s.Counts, func(i, j int) bool { return s.Counts[i].Stream < s.Counts[j].Stream })
	sort.Slice(s.Types, func(i, j int) bool { return s.Types[i].Type < s.Types[j].Type })
	return s
}

// countsPart keeps the counts projection's part of s.
func countsPart(s snapshot) snapshot { return snapshot{Counts: s.Counts, Types: s.Types} }

// stored is a row of projection_checkpoints.
type stored struct {
	Generation int64
	Version    int64
	Position   uint64
}

func checkpointOf(t testing.TB, db bun.IDB, name string) stored {
	t.Helper()
	var s stored
	require.NoError(t, db.QueryRowContext(context.Background(),
		"SELECT generation, version, position_commit FROM projection_checkpoints WHERE name = ?", name).
		Scan(&s.Generation, &s.Version, &s.Position))
	return s
}

// tablesLike lists the tables (not views) whose names start with prefix.
func tablesLike(t testing.TB, db *sqldb.DB, prefix string) []string {
	t.Helper()
	q := "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ? ORDER BY name"
	if db.IsPostgres() {
		q = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() " +
			"AND table_type = 'BASE TABLE' AND table_name LIKE ? ORDER BY table_name"
	}
	var names []string
	require.NoError(t, db.NewRaw(q, prefix+"%").Scan(context.Background(), &names))
	return names
}

// testLogger logs into a buffer that is printed when the test fails.
func testLogger(t testing.TB) *slog.Logger {
	buf := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("runner log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lockedBuffer is a bytes.Buffer safe for concurrent writes.
type lockedBuffer = syncbuf.Buffer

// startRunner runs a Runner until the returned stop is called or the test
// ends.
func startRunner(t testing.TB, db *bun.DB, log projections.Log, ps []projections.Projection, opts ...projections.Option) (*projections.Runner, func()) {
	t.Helper()
	opts = append([]projections.Option{
		projections.WithLogger(testLogger(t)),
		projections.WithRetryBackoff(5*time.Millisecond, 50*time.Millisecond),
	}, opts...)
	r, err := projections.NewRunner(db, log, ps, opts...)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return r, stop
}

// waitAt waits until every projection of r is caught up at head or later.
func waitAt(t testing.TB, r *projections.Runner, head eventlog.Position) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, s := range r.Status() {
			if !s.CaughtUp || s.Position.Before(head) {
				return false
			}
		}
		return true
	}, waitFor, 5*time.Millisecond, "runner did not reach %s: %+v", head, r.Status())
}

// statusOf returns the status of projection name.
func statusOf(t testing.TB, r *projections.Runner, name string) projections.Status {
	t.Helper()
	for _, s := range r.Status() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no status for %s", name)
	return projections.Status{}
}

// rebuildAll rebuilds both projections from scratch with fresh instances.
func rebuildAll(t testing.TB, db *bun.DB, log projections.Log) {
	t.Helper()
	ctx := context.Background()
	opts := []projections.Option{projections.WithLogger(testLogger(t)), projections.WithBatchSize(97)}
	require.NoError(t, projections.Rebuild(ctx, db, log, newCounts(1), nil, opts...))
	require.NoError(t, projections.Rebuild(ctx, db, log, newWarm(), nil, opts...))
}
