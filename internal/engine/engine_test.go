package engine_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/internal/engine"
)

// TestUnsyncedPoolOfTheReadStore: on SQLite the engine's read models,
// the process manager's deadlines on the in-process bus and (when the read
// store is the log's own file) the idempotency keys get the
// read store's pool without fsync at commit (synchronous=NORMAL) while the read store itself (the log, the security
// log, the ledger's checkpoints) keeps synchronous=FULL; on PostgreSQL the
// unsynced pool is the read store itself.
func TestUnsyncedPoolOfTheReadStore(t *testing.T) {
	ctx := context.Background()
	pragma := func(db *sqldb.DB) string {
		var v string
		require.NoError(t, db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&v))
		return v
	}
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.Chmod(dir, 0o700))
		e, err := engine.Open(ctx, &engine.Config{DataDir: dir}, engine.Options{Instance: "t"}, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		defer func() { require.NoError(t, e.Close()) }()
		require.NotSame(t, e.ReadDB, e.UnsyncedDB)
		require.Equal(t, e.ReadDB.Path(), e.UnsyncedDB.Path())
		require.Equal(t, filepath.Join(dir, engine.DefaultDBName), e.ReadDB.Path())
		require.Equal(t, "2", pragma(e.ReadDB), "FULL")
		require.Equal(t, "1", pragma(e.UnsyncedDB), "NORMAL")
		require.Same(t, e.UnsyncedDB, engine.KeysDB(e), "the keys: an append's fsync covers them")
		require.Same(t, e.UnsyncedDB, engine.DeadlinesDB(bus.KindGoChannel, e), "the deadlines on the in-process bus: the relay's checkpoint after them")
		require.Same(t, e.ReadDB, engine.DeadlinesDB(bus.KindNATS, e), "the deadlines on NATS: acknowledged to the bus")
		require.Same(t, e.ReadDB, engine.DeadlinesDB(bus.KindPostgres, e))
	})
	t.Run("sqlite read store of its own", func(t *testing.T) {
		// No append's fsync covers a key in another file: the keys are
		// written with fsync there; the read models still without.
		dir := t.TempDir()
		require.NoError(t, os.Chmod(dir, 0o700))
		read := filepath.Join(dir, "read.db")
		e, err := engine.Open(ctx, &engine.Config{DataDir: dir, ReadStore: "sqlite:" + read}, engine.Options{Instance: "t"}, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		defer func() { require.NoError(t, e.Close()) }()
		require.Equal(t, read, e.ReadDB.Path())
		require.Same(t, e.ReadDB, engine.KeysDB(e))
		require.Equal(t, "2", pragma(engine.KeysDB(e)), "FULL")
		require.Equal(t, "1", pragma(e.UnsyncedDB), "NORMAL")
		// The deadlines and the relay's checkpoint are both in the read
		// store's file: its WAL's prefix holds them together.
		require.Same(t, e.UnsyncedDB, engine.DeadlinesDB(bus.KindGoChannel, e))
	})
	t.Run("postgres", func(t *testing.T) {
		url := sqltest.Postgres(t)
		e, err := engine.Open(ctx, &engine.Config{DataDir: t.TempDir(), EventStore: url}, engine.Options{Instance: "t"}, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		defer func() { require.NoError(t, e.Close()) }()
		require.Same(t, e.ReadDB, e.UnsyncedDB)
	})
}
