package projections

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/uptrace/bun"
)

// The projections' batches on SQLite share transactions. Each projection
// used to write its batch in a transaction of its own, so under load six
// read models took SQLite's single write lock (and the write gate, where
// the commands' appends queue) six times a linger, each time writing the
// checkpoint table's page again and paying the gate's hand-off. Now the
// batches that wait at the same time are written in one transaction by
// one goroutine, each inside a savepoint of its own:
//
//   - a batch that fails (its checkpoint moved, a projection's error) is
//     rolled back to its savepoint and reported to its worker alone; the
//     others commit;
//   - when SQLite has rolled the whole transaction back after an error
//     (which it does for some, such as a full disk or an interrupt), the
//     savepoint is gone, and every batch of the group gets an error;
//   - a commit that fails is reported to every batch that had succeeded.
//
// A worker waits for its batch's outcome, whatever its context says: the
// batch's function changes the worker's state. The group's statements run
// under the runner's context, so a shutdown ends the group in progress
// with errors, which end the workers' sessions as a failed transaction of
// their own did. On PostgreSQL each batch keeps its own transaction: there
// is no file-wide lock to share, and the checkpoint rows' locks would make
// one projection's batch wait for another's.

// maxGroupBatches bounds the batches of one shared transaction.
const maxGroupBatches = 16

// txGroup is the queue of batches waiting for a shared transaction.
type txGroup struct {
	db  *bun.DB
	ctx context.Context // the runner's

	mu      sync.Mutex
	waiting []*groupBatch
	writing bool
	// groups counts the transactions begun (tests read it).
	groups int
}

type groupBatch struct {
	ctx  context.Context // the worker's: a batch whose worker stopped before its turn is not written
	f    func(ctx context.Context, tx bun.Tx) error
	done chan error
}

// do runs f inside a savepoint of a transaction shared with the batches
// that wait meanwhile, and returns f's error, or the error that kept f's
// writes from being committed. f gets the context its statements must
// use (the runner's).
func (g *txGroup) do(ctx context.Context, f func(ctx context.Context, tx bun.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b := &groupBatch{ctx: ctx, f: f, done: make(chan error, 1)}
	g.mu.Lock()
	g.waiting = append(g.waiting, b)
	start := !g.writing
	g.writing = true
	g.mu.Unlock()
	if start {
		go g.write()
	}
	return <-b.done
}

// write commits the waiting batches, a group at a time, until none waits.
func (g *txGroup) write() {
	for {
		g.mu.Lock()
		n := min(len(g.waiting), maxGroupBatches)
		if n == 0 {
			g.writing = false
			g.waiting = nil
			g.mu.Unlock()
			return
		}
		group := g.waiting[:n:n]
		g.waiting = g.waiting[n:]
		g.groups++
		g.mu.Unlock()
		g.commit(group)
	}
}

// errGroupRolledBack: another batch's failure took the shared transaction
// with it.
var errGroupRolledBack = errors.New("the shared transaction was rolled back")

// commit writes group in one transaction and answers every batch of it.
func (g *txGroup) commit(group []*groupBatch) {
	errs := make([]error, len(group))
	answered := false
	answer := func() {
		answered = true
		for i, b := range group {
			b.done <- errs[i]
		}
	}
	failAll := func(err error) {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		answer()
	}
	defer func() {
		if r := recover(); r != nil && !answered {
			failAll(fmt.Errorf("projections: batch panicked: %v", r))
		}
	}()
	ctx := g.ctx
	tx, err := g.db.BeginTx(ctx, txOptions(g.db))
	if err != nil {
		failAll(fmt.Errorf("begin: %w", err))
		return
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback()
		}
	}()
	for i, b := range group {
		if err := b.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT projection_batch"); err != nil {
			failAll(fmt.Errorf("savepoint: %w", err))
			return
		}
		err := g.run(ctx, tx, b)
		if err != nil {
			errs[i] = err
			if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO projection_batch"); rerr != nil {
				// The batch's own error is named, not wrapped, in the
				// others': errMoved or errReload means something to its
				// worker only.
				failAll(fmt.Errorf("%w after a batch failed (%v): %w", errGroupRolledBack, err, rerr))
				return
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE projection_batch"); err != nil {
			failAll(fmt.Errorf("release savepoint: %w", err))
			return
		}
	}
	if err := tx.Commit(); err != nil {
		failAll(fmt.Errorf("commit: %w", err))
		return
	}
	committed = true
	answer()
}

// run runs b's function, turning a panic into its error.
func (g *txGroup) run(ctx context.Context, tx bun.Tx, b *groupBatch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("projections: batch panicked: %v", r)
		}
	}()
	return b.f(ctx, tx)
}
