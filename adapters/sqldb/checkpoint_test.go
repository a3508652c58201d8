package sqldb_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
)

// TestCheckpointsInTheBackground: a commit runs no checkpoint (the WAL
// keeps a large transaction's frames, none copied back), and the file
// DB's checkpointer copies them into the database within a few
// intervals. Without the checkpointer none would be copied; with SQLite's
// own checkpoint at a commit the first assertions fail.
func TestCheckpointsInTheBackground(t *testing.T) {
	url := sqltest.SQLiteFile(t)
	db := sqltest.Open(t, url)
	ctx := t.Context()
	_, err := db.ExecContext(ctx, "CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
	require.NoError(t, err)

	_, err = db.ExecContext(ctx, "INSERT INTO blobs (id, body) VALUES (-1, x'00'), (-2, x'00')")
	require.NoError(t, err)
	// Hold a read open (a statement with rows left to read) so that the
	// checkpointer cannot copy the frames yet: what the WAL holds after the
	// commit is what the commit left there.
	reader, err := db.DB.DB.Conn(ctx)
	require.NoError(t, err)
	rows, err := reader.QueryContext(ctx, "SELECT id FROM blobs ORDER BY id")
	require.NoError(t, err)
	require.True(t, rows.Next())

	body := []byte(strings.Repeat("x", 3000))
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	for i := range 2000 {
		_, err := tx.ExecContext(ctx, "INSERT INTO blobs (id, body) VALUES (?, ?)", i, body)
		require.NoError(t, err)
	}
	require.NoError(t, tx.Commit())

	var busy, frames, done int
	require.NoError(t, db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(NOOP)").Scan(&busy, &frames, &done))
	require.Greater(t, frames, 1500, "the commit left its frames in the WAL")
	require.NoError(t, rows.Close())
	require.NoError(t, reader.Close())

	require.Less(t, done, frames, "no checkpoint at the commit")

	// The checkpointer copies them into the database file (NOOP only
	// reads the WAL's counters; nothing else here checkpoints).
	require.Eventually(t, func() bool {
		var busy, log, done int
		require.NoError(t, db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(NOOP)").Scan(&busy, &log, &done))
		return log >= frames && done == log
	}, 10*sqldb.CheckpointInterval+5*time.Second, sqldb.CheckpointInterval/2, "the WAL was checkpointed in the background")
}

// TestCheckpointOnOtherDatabases: Checkpoint does nothing in memory.
func TestCheckpointOnOtherDatabases(t *testing.T) {
	db := sqltest.Open(t, sqltest.SQLiteMemory(t))
	res, err := db.Checkpoint(t.Context())
	require.NoError(t, err)
	require.Equal(t, sqldb.CheckpointResult{}, res)
}
