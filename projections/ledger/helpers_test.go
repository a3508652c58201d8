package ledger_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/ledger"
)

// forEachBackend runs f on a fresh database of every SQL backend (an
// SQLite file, in-memory SQLite, and a PostgreSQL schema when
// ACCESSLEDGER_TEST_POSTGRES_DSN is set).
func forEachBackend(t *testing.T, f func(t *testing.T, db *sqldb.DB)) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) { f(t, sqltest.Open(t, b.URL(t))) })
	}
}

// env is a log on a SQL store with the ledger's tables and a signing key.
type env struct {
	db    *sqldb.DB
	store *sqlstore.Store
	key   *ledger.Key
	dir   string
	recs  []eventlog.Record
}

func newEnv(t *testing.T, db *sqldb.DB) *env {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, sqlstore.Migrate(ctx, db))
	pg, lite := projections.Migrations()
	require.NoError(t, sqldb.Migrate(ctx, db, projections.Component, pg, lite))
	pg, lite = ledger.Migrations()
	require.NoError(t, sqldb.Migrate(ctx, db, ledger.Component, pg, lite))
	s, err := sqlstore.New(ctx, db, sqlstore.WithRecheckInterval(time.Hour))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	dir := t.TempDir()
	key, created, err := ledger.LoadOrCreateKey(filepath.Join(dir, ledger.KeyFileName))
	require.NoError(t, err)
	require.True(t, created)
	return &env{db: db, store: s, key: key, dir: filepath.Join(dir, "checkpoints")}
}

// appendEvents appends n events over a few streams and returns them as
// stored.
func (e *env) appendEvents(t *testing.T, n int) {
	t.Helper()
	ctx := context.Background()
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		stream := fmt.Sprintf("child-%d", i%3)
		ev := eventlog.EventData{ID: uuid.New(), Type: "test.happened.v1",
			Data: []byte(fmt.Sprintf(`{"n":%d,"permissions":["view"]}`, len(e.recs)+i)),
			Meta: eventlog.Meta{ActorID: "worker-ann", ActorRole: "worker", Reason: "because",
				EffectiveAt: t0.Add(time.Duration(i) * time.Hour), CorrelationID: uuid.New(), CausationID: uuid.New()}}
		_, err := e.store.Append(ctx, stream, eventlog.Any, []eventlog.EventData{ev})
		require.NoError(t, err)
	}
	all, err := e.store.ReadAll(ctx, eventlog.Start, 0)
	require.NoError(t, err)
	e.recs = all
}

// project runs the ledger projection until it has caught up with the log.
func (e *env) project(t *testing.T, opts ...ledger.Option) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := projections.NewRunner(e.db.DB, e.store, []projections.Projection{ledger.New(opts...)},
		projections.WithRetryBackoff(time.Millisecond, 10*time.Millisecond))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	require.NoError(t, r.WaitCaughtUp(ctx))
	cancel()
	require.NoError(t, <-done)
}

// ledger returns a Ledger publishing into e's checkpoint directory.
func (e *env) ledger(t *testing.T) *ledger.Ledger {
	t.Helper()
	l, err := ledger.NewLedger(ledger.Config{DB: e.db, Key: e.key, Dir: e.dir, Every: 1, Instance: "test"})
	require.NoError(t, err)
	return l
}

// exec runs a statement that tampers with the stored log.
func (e *env) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	_, err := e.db.ExecContext(context.Background(), query, args...)
	require.NoError(t, err, query)
}

// verify runs Verify with every published checkpoint.
func (e *env) verify(t *testing.T) *ledger.Report {
	t.Helper()
	ctx := context.Background()
	cps, problems, err := ledger.LoadPublished(ctx, e.db, e.dir, e.key.Verifier, 0)
	require.NoError(t, err)
	require.Empty(t, problems)
	rep, err := ledger.Verify(ctx, e.store, ledger.NewTree(e.db), ledger.VerifyOptions{Checkpoints: cps, PageSize: 7})
	require.NoError(t, err)
	return rep
}

func openMemory(t *testing.T) *sqldb.DB {
	t.Helper()
	for _, b := range sqltest.Backends() {
		if b.Name == "sqlite-memory" {
			return sqltest.Open(t, b.URL(t))
		}
	}
	t.Fatal("no in-memory SQLite backend")
	return nil
}
