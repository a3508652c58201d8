package sqldb

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// # Checkpoints of an SQLite file's WAL, in the background
//
// In WAL mode SQLite copies the WAL's pages back into the database file
// (a checkpoint) when a commit leaves the WAL longer than
// wal_autocheckpoint pages (1,000 by default): the connection that made
// that commit runs the checkpoint, with its fsyncs, before its commit
// returns. Under a steady write load that connection is often a
// command's append, so one command in a few hundred waited for a whole
// checkpoint: the county bench's grants over HTTP had p99 15 ms against
// p50 1.7 ms; without any checkpoint their p99 was 7–9 ms, and their p50
// rose instead, as a long WAL slows every read
// (docs/performance.md, "WAL checkpoints in the background").
//
// So an SQLite file's connections run with wal_autocheckpoint=0 (sqliteDSN)
// and each file DB runs a checkpointer: every CheckpointInterval it runs
// PRAGMA wal_checkpoint(PASSIVE) on a connection of its own pool. A
// passive checkpoint takes no lock that a writer or a reader waits for (it
// copies the frames no reader still needs and leaves the rest to the next
// one), so no command waits for it; the next writer after a complete
// checkpoint starts the WAL over from its beginning, so the WAL stays
// about as long as a CheckpointInterval's writes. The WAL is also
// checkpointed when the last connection to the file closes (SQLite's own
// behaviour), and a connection that sets its own wal_autocheckpoint (the
// event store's bulk appends) checkpoints as it says.

// CheckpointInterval is how often a file DB's checkpointer checkpoints the
// WAL.
const CheckpointInterval = 200 * time.Millisecond

// checkpointer runs PASSIVE checkpoints on db every interval until stop.
type checkpointer struct {
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func startCheckpointer(db *DB, interval time.Duration) *checkpointer {
	c := &checkpointer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			<-c.stop
			cancel()
		}()
		failing := false
		for {
			select {
			case <-c.stop:
				return
			case <-t.C:
			}
			_, err := db.Checkpoint(ctx)
			switch {
			case err != nil && ctx.Err() == nil && !failing:
				// Logged once per run of failures: the WAL then grows until a
				// checkpoint succeeds (or the last connection closes).
				slog.Default().WarnContext(ctx, "sqldb: cannot checkpoint the WAL", "db", db.name, "error", err)
				failing = true
			case err == nil && failing:
				slog.Default().InfoContext(ctx, "sqldb: the WAL's checkpoints work again", "db", db.name)
				failing = false
			}
		}
	}()
	return c
}

// close stops the checkpointer and waits for it.
func (c *checkpointer) close() {
	c.once.Do(func() { close(c.stop) })
	<-c.done
}

// CheckpointResult is what a checkpoint reports: the WAL's length in
// frames (pages) and how many of them are now in the database file. Busy
// reports a checkpoint that could not run at all (another one was running).
type CheckpointResult struct {
	Busy         bool
	Frames       int
	Checkpointed int
}

// Checkpoint runs a PASSIVE checkpoint of the WAL of an SQLite file now
// (what the checkpointer does every CheckpointInterval). On PostgreSQL and
// in memory it does nothing.
func (db *DB) Checkpoint(ctx context.Context) (CheckpointResult, error) {
	var r CheckpointResult
	if !db.IsSQLite() || db.anchor != nil {
		return r, nil
	}
	var busy int
	if err := db.DB.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &r.Frames, &r.Checkpointed); err != nil {
		return r, err
	}
	r.Busy = busy != 0
	return r, nil
}
