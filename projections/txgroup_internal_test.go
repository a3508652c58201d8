package projections

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
)

// groupDB returns a txGroup on a new SQLite database (file or memory)
// with a table kv, and a function listing kv's keys.
func groupDB(t *testing.T, url string) (*txGroup, func() []string) {
	t.Helper()
	db := sqltest.Open(t, url)
	_, err := db.ExecContext(t.Context(), "CREATE TABLE kv (k TEXT PRIMARY KEY)")
	require.NoError(t, err)
	keys := func() []string {
		var out []string
		require.NoError(t, db.NewRaw("SELECT k FROM kv ORDER BY k").Scan(t.Context(), &out))
		return out
	}
	return &txGroup{db: db.Bun(), ctx: t.Context()}, keys
}

func insert(k string) func(context.Context, bun.Tx) error {
	return func(ctx context.Context, tx bun.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO kv (k) VALUES (?)", k)
		return err
	}
}

var errBatch = errors.New("the batch's own failure")

// TestSharedTransactionGroupsWhatWaits: batches that arrive while a group
// is being written are written together in the next one, each with its own
// outcome; a failed batch is rolled back alone; a panic is that batch's
// error; a batch whose worker stopped before its turn is not run.
func TestSharedTransactionGroupsWhatWaits(t *testing.T) {
	for _, url := range []func(testing.TB) string{sqltest.SQLiteFile, sqltest.SQLiteMemory} {
		g, keys := groupDB(t, url(t))
		release := make(chan struct{})
		started := make(chan struct{})
		firstDone := make(chan error, 1)
		go func() {
			firstDone <- g.do(t.Context(), func(ctx context.Context, tx bun.Tx) error {
				close(started)
				<-release // the group in progress: the others queue meanwhile
				return insert("first")(ctx, tx)
			})
		}()
		<-started

		stopped, stop := context.WithCancel(t.Context())
		stop()
		batches := []struct {
			name string
			ctx  context.Context
			f    func(context.Context, bun.Tx) error
		}{
			{"a", t.Context(), insert("a")},
			{"fails after a write", t.Context(), func(ctx context.Context, tx bun.Tx) error {
				if err := insert("failed")(ctx, tx); err != nil {
					return err
				}
				return errBatch
			}},
			{"b", t.Context(), insert("b")},
			{"a constraint error", t.Context(), insert("first")}, // checked below
			{"panics after a write", t.Context(), func(ctx context.Context, tx bun.Tx) error {
				if err := insert("panicked")(ctx, tx); err != nil {
					return err
				}
				panic("a bug")
			}},
			{"worker stopped", stopped, insert("never")},
			{"c", t.Context(), insert("c")},
		}
		errs := make([]error, len(batches))
		var wg sync.WaitGroup
		for i, b := range batches {
			wg.Go(func() { errs[i] = g.doQueued(b.ctx, b.f) })
		}
		require.Eventually(t, func() bool {
			g.mu.Lock()
			defer g.mu.Unlock()
			return len(g.waiting) == len(batches)
		}, 5*time.Second, time.Millisecond)
		close(release)
		wg.Wait()
		require.NoError(t, <-firstDone)

		require.NoError(t, errs[0])
		require.ErrorIs(t, errs[1], errBatch)
		require.NoError(t, errs[2])
		require.ErrorContains(t, errs[3], "UNIQUE", "a duplicate key")
		require.ErrorContains(t, errs[4], "panicked: a bug")
		require.ErrorIs(t, errs[5], context.Canceled)
		require.NoError(t, errs[6])
		got := keys()
		sort.Strings(got)
		require.Equal(t, []string{"a", "b", "c", "first"}, got)
		require.Equal(t, 2, g.groups, "the first batch alone, then the rest together")
	}
}

// doQueued is do, for the test: it queues even a batch whose context has
// ended, so that the writer finds it stopped when its turn comes.
func (g *txGroup) doQueued(ctx context.Context, f func(context.Context, bun.Tx) error) error {
	if ctx.Err() != nil {
		b := &groupBatch{ctx: ctx, f: f, done: make(chan error, 1)}
		// Queue it behind the others, as a worker stopping while it
		// waited would be.
		time.Sleep(50 * time.Millisecond)
		g.mu.Lock()
		g.waiting = append(g.waiting, b)
		g.mu.Unlock()
		return <-b.done
	}
	return g.do(ctx, f)
}

// TestSharedTransactionLostFailsEveryBatch: when the transaction itself is
// gone (SQLite rolls it back after some errors: a full disk, an
// interrupt), every batch of the group gets an error and nothing of the
// group is committed, not even the batches that had succeeded.
func TestSharedTransactionLostFailsEveryBatch(t *testing.T) {
	g, keys := groupDB(t, sqltest.SQLiteFile(t))
	release := make(chan struct{})
	started := make(chan struct{})
	go func() {
		_ = g.do(t.Context(), func(context.Context, bun.Tx) error {
			close(started)
			<-release
			return nil
		})
	}()
	<-started
	fs := []func(context.Context, bun.Tx) error{
		insert("before"),
		func(ctx context.Context, tx bun.Tx) error {
			if err := insert("lost")(ctx, tx); err != nil {
				return err
			}
			// What SQLite does to the transaction after such an error.
			if _, err := tx.ExecContext(ctx, "ROLLBACK"); err != nil {
				return err
			}
			return errMoved
		},
		insert("after"),
	}
	errs := make([]error, len(fs))
	var wg sync.WaitGroup
	for i, f := range fs {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 20 * time.Millisecond) // in this order
			errs[i] = g.do(t.Context(), f)
		})
	}
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.waiting) == len(fs)
	}, 5*time.Second, time.Millisecond)
	close(release)
	wg.Wait()
	require.ErrorIs(t, errs[0], errGroupRolledBack)
	require.ErrorIs(t, errs[1], errMoved, "its own error")
	require.ErrorIs(t, errs[2], errGroupRolledBack)
	require.NotErrorIs(t, errs[0], errMoved, "another batch's error is not this one's")
	require.NotErrorIs(t, errs[2], errMoved)
	require.Empty(t, keys())
}
