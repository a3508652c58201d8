package projections

import (
	"context"
	"crypto/rand"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/retry"
	"github.com/accessledger/accessledger/internal/sqllease"
)

// ErrRebuildLeaseLost is returned (wrapped) by Rebuild when another
// rebuild took the projection's rebuild lease (it expired while this one
// could not renew it); the rebuild changed nothing visible, and wrote
// nothing after the lease was taken.
var ErrRebuildLeaseLost = errors.New("projections: rebuild lease lost")

// Rebuild rebuilds projection p from the start of the log into new tables
// and swaps them in, while queries and runners keep using the current ones.
//
//  1. It makes sure p has its checkpoint row and current tables (as a Runner
//     does at start), then takes p's rebuild lease: one rebuild of a
//     projection runs at a time, across processes; a second one waits for
//     the first to finish (or for its lease to expire, 30 s after its
//     process died) and then rebuilds again.
//  2. It drops the tables a rebuild left behind when it was interrupted, and
//     creates the tables of generation N+1 (N is the live generation),
//     without the indexes of the tables that defer them (Table.DeferIndexes).
//  3. It calls p.Load on them at eventlog.Start and passes the whole log
//     through p.Apply in batches (WithRebuildBatchSize), each batch in its
//     own transaction. This progress is not recorded: an interrupted
//     rebuild starts over. Then it creates the deferred indexes.
//  4. When a read returns less than a full batch, it applies that tail (its
//     last WithBatchSize events; those before in a transaction of their
//     own, as in step 3) in ONE transaction that locks p's checkpoint row,
//     points the views at generation N+1 and sets the row's generation,
//     version (p.Version()) and position (the last event applied). If a
//     runner has applied events beyond the tail to generation N meanwhile,
//     it reads on instead, so the new tables never show less than the old
//     ones did.
//  5. It drops the tables of generation N.
//
// Queries through the views see generation N until step 4 commits and
// generation N+1 after. A Runner following p, in this process or another,
// finds the generation changed when it next locks the row, loads p afresh
// from the new tables and carries on from the new position (at or after
// the one it had reached). A runner that is idle notices at its next batch.
//
// p must be an instance no Runner is using: Rebuild calls its methods, and a
// projection is not safe for concurrent use. progress, when not nil, is
// called from Rebuild's goroutine with the number of events applied so far
// and the total: the head's commit position when the rebuild started (the
// number of events on the SQL store, whose positions are dense; a best
// effort on others), raised to done when more events arrive meanwhile.
//
// Of the options, Rebuild uses WithRebuildBatchSize (or WithBatchSize),
// WithLogger and WithClock.
func Rebuild(ctx context.Context, db *bun.DB, log Log, p Projection, progress func(done, total uint64), opts ...Option) error {
	cfg, err := newConfig(opts)
	if err != nil {
		return err
	}
	if err := validate(db, log, []Projection{p}); err != nil {
		return err
	}
	_, err = rebuild(ctx, db, log, p, progress, cfg, true)
	return err
}

// errBehindLive: the live checkpoint is ahead of the rebuild's tail
// (internal to rebuild).
var errBehindLive = errors.New("rebuild behind the live checkpoint")

// rebuilt is what rebuild did: when done, p's tables are now generation gen
// and p's state is at pos (p may go on without Load).
type rebuilt struct {
	done bool
	gen  int64
	pos  eventlog.Position
}

// rebuild implements Rebuild. Unless force, it rebuilds only when the stored
// tables are stale (another version, or missing), as checked once it holds
// the lease: a rebuild another runner finished meanwhile is not repeated.
func rebuild(ctx context.Context, db *bun.DB, log Log, p Projection, progress func(done, total uint64), cfg config, force bool) (rebuilt, error) {
	name := p.Name()
	fail := func(err error) (rebuilt, error) {
		return rebuilt{}, fmt.Errorf("projections: rebuild %s: %w", name, err)
	}
	if progress == nil {
		progress = func(uint64, uint64) {}
	}
	if _, _, err := ensure(ctx, db, p, cfg.clock()); err != nil {
		return fail(err)
	}

	lease, err := acquireLease(ctx, db, name, cfg)
	if err != nil {
		return fail(err)
	}
	defer lease.release()
	ctx = lease.ctx

	cp, stale, err := ensure(ctx, db, p, cfg.clock())
	if err != nil {
		return fail(lease.cause(err))
	}
	if !force && !stale {
		return rebuilt{}, nil
	}
	live, target := cp.Generation, cp.Generation+1
	started := cfg.clock()
	cfg.logger.InfoContext(ctx, "projections: rebuild started", slog.String("projection", name),
		slog.Int64("from_generation", live), slog.Int64("to_generation", target),
		slog.Int64("stored_version", cp.Version), slog.Int("version", p.Version()))

	err = lease.inTx(ctx, db, cfg, true, func(tx bun.Tx) error {
		if err := dropGenerations(ctx, tx, p, func(g int64) bool { return g != live }); err != nil {
			return err
		}
		return createTables(ctx, tx, p, target, true)
	})
	if err != nil {
		return fail(lease.cause(err))
	}
	swapped := false
	defer func() {
		if swapped {
			return
		}
		// Best effort: the next rebuild drops these tables anyway. Only
		// while the lease is still this rebuild's: the tables of the
		// target generation are another rebuild's once it took the lease.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = lease.inTx(dctx, db, cfg, true, func(tx bun.Tx) error {
			return dropGenerations(dctx, tx, p, func(g int64) bool { return g == target })
		})
	}()

	head, err := log.Head(ctx)
	if err != nil {
		return fail(lease.cause(fmt.Errorf("read head: %w", err)))
	}
	total := head.Commit
	tables := tablesFor(p, target)
	if _, err := p.Load(ctx, db, tables, eventlog.Start); err != nil {
		return fail(lease.cause(fmt.Errorf("load: %w", err)))
	}
	progress(0, total)

	pos := eventlog.Start
	indexed := false
	// The bulk of the log, up to the head read above, is read ahead in a
	// goroutine and, when p is a Stager, staged one batch ahead in another
	// (a batch is computed while the one before is written); what follows,
	// by ReadAll and Apply.
	pages := stagePages(ctx, readPages(ctx, log, pos, head, cfg.rebuildBatch), p, cfg.rebuildBatch, cfg.batch)
	defer func() {
		if pages != nil {
			pages.stop()
		}
	}()
	// The bulk transactions' connection: on an SQLite file one of the
	// pool's, its page cache large until the bulk is written (bulkConn).
	bulkTx, err := holdBulkConn(ctx, db)
	if err != nil {
		return fail(lease.cause(err))
	}
	defer bulkTx.release()
	read := func() (stagedPage, error) {
		if pages != nil {
			sp, ok := pages.next()
			if ok && (sp.err != nil || len(sp.recs) < cfg.rebuildBatch) {
				// The staging's last page: it stops after it, before Apply
				// runs on p in this goroutine.
				pages.stop()
				pages = nil
			}
			if ok {
				return sp, sp.err
			}
			pages.stop()
			pages = nil // read out: ReadAll reads on
		}
		recs, err := log.ReadAll(ctx, pos, cfg.rebuildBatch)
		return stagedPage{recs: recs, bulk: bulkOf(len(recs), cfg.rebuildBatch, cfg.batch)}, err
	}
	for {
		sp, err := read()
		if err != nil {
			return fail(lease.cause(fmt.Errorf("read log after %s: %w", pos, err)))
		}
		// A full page goes in a transaction of its own; so does all of a
		// short one but its last batch (WithBatchSize), so that the swap's
		// transaction, which locks the checkpoint row and the views (and,
		// on SQLite, the database), stays as short as a runner's.
		recs := sp.recs
		if bulk := recs[:sp.bulk]; len(bulk) > 0 {
			held := bulkTx.held()
			err := lease.inTx(ctx, bulkTx.db(), cfg, true, func(tx bun.Tx) error {
				write := func() error {
					if sp.staged != nil {
						return sp.staged.Write(ctx, tx, tables)
					}
					return p.Apply(ctx, tx, tables, bulk)
				}
				if held {
					return write() // the connection's cache is large already
				}
				return withBulkCache(ctx, tx, write)
			})
			if err != nil {
				return fail(lease.cause(fmt.Errorf("apply events %s..%s: %w", bulk[0].Position, bulk[len(bulk)-1].Position, err)))
			}
			pos = bulk[len(bulk)-1].Position
			total = max(total, pos.Commit)
			progress(pos.Commit, total)
			if len(bulk) == len(recs) {
				continue
			}
			recs = recs[len(bulk):]
		}
		// Before the tail: the indexes the bulk of the log went without.
		if !indexed {
			bulkTx.release()
			// One index a transaction: on SQLite each holds the file's write
			// lock while it sorts the whole table.
			stmts, physical := deferredIndexes(db.Dialect().Name(), p, target)
			for i, stmt := range stmts {
				err := lease.inTx(ctx, db, cfg, true, func(tx bun.Tx) error {
					if _, err := tx.ExecContext(ctx, stmt); err != nil {
						return fmt.Errorf("create index of %s: %w", physical[i], err)
					}
					return nil
				})
				if err != nil {
					return fail(lease.cause(err))
				}
			}
			// PostgreSQL plans the queries on the new tables from their
			// statistics: gather them now, as autovacuum would later (or,
			// where it is off, never). A failure is only logged.
			if db.Dialect().Name() == dialect.PG {
				analyzeTables(ctx, db, p, target, cfg.logger)
			}
			indexed = true
		}
		// The tail: apply it and swap in one transaction, unless a runner has
		// applied more than that to the live tables meanwhile: then read on,
		// so that the new tables never show less than the old ones did.
		behind, swapLocked := false, false
		err = lease.inTx(ctx, db, cfg, false, func(tx bun.Tx) error {
			cur, _, err := readCheckpoint(ctx, tx, name, true)
			if err != nil {
				return err
			}
			if cur.RebuildOwner != lease.owner {
				return ErrRebuildLeaseLost
			}
			if cur.Generation != live {
				return fmt.Errorf("generation changed from %d to %d under the rebuild lease", live, cur.Generation)
			}
			last := pos
			if len(recs) > 0 {
				last = recs[len(recs)-1].Position
			}
			if last.Before(cur.Position) {
				behind = true
				return errBehindLive
			}
			// Point the views first: on PostgreSQL that waits for queries
			// running on them, for at most swapLockTimeout (queries arriving
			// meanwhile queue behind the swap); if they run longer, try again
			// later rather than stall every query. The projection's state is
			// untouched until the views are ours.
			if isPG(tx) {
				if _, err := tx.ExecContext(ctx, "SET LOCAL lock_timeout = ?", fmt.Sprintf("%dms", cfg.swapLockTimeout.Milliseconds())); err != nil {
					return err
				}
			}
			if err := pointViews(ctx, tx, p, target); err != nil {
				if sqlState(err) == "55P03" { // lock_not_available
					swapLocked = true
				}
				return err
			}
			if len(recs) > 0 {
				if err := p.Apply(ctx, tx, tables, recs); err != nil {
					return fmt.Errorf("apply events %s..%s: %w", recs[0].Position, last, err)
				}
			}
			c, pr, err := positionArgs(last)
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, "UPDATE projection_checkpoints SET generation = ?, version = ?, "+
				"position_commit = ?, position_prepare = ?, updated_at = ?, rebuild_owner = '', rebuild_expires_at = 0 "+
				"WHERE name = ?", target, p.Version(), c, pr, cfg.clock().UnixMicro(), name)
			if err != nil {
				return fmt.Errorf("update checkpoint: %w", err)
			}
			pos = last
			return nil
		})
		if behind {
			continue
		}
		if swapLocked {
			cfg.logger.WarnContext(ctx, "projections: rebuild: queries hold the views, retrying the swap",
				slog.String("projection", name), slog.Any("error", err))
			continue
		}
		if err != nil {
			return fail(lease.cause(err))
		}
		swapped = true
		break
	}
	total = max(total, pos.Commit)
	progress(pos.Commit, total)

	// The old generation is unreachable now; drop it (or leave it to the
	// next start or rebuild if queries still read it).
	dropOld(ctx, db, p, target, cfg.swapLockTimeout, cfg.logger)
	cfg.logger.InfoContext(ctx, "projections: rebuild finished", slog.String("projection", name),
		slog.Int64("generation", target), slog.String("position", pos.String()), slog.Uint64("events", pos.Commit),
		slog.Duration("took", cfg.clock().Sub(started)))
	return rebuilt{done: true, gen: target, pos: pos}, nil
}

// lease is a held rebuild lease. Every transaction of the rebuild that
// writes renews it as its last statement (inTx, fence), so it commits
// only while the lease is this rebuild's: a rebuild whose lease was taken (it expired while the
// rebuild could not renew it) writes nothing more. Between transactions a
// goroutine renews it every third of its duration; its ctx is canceled,
// with cause ErrRebuildLeaseLost, when a renewal finds the lease taken.
// A renewal that fails (the database busy, for instance with the
// rebuild's own long statement: an index's creation on SQLite holds the
// writer) does not end the rebuild: the next transaction's fence decides.
type lease struct {
	owner   string
	ctx     context.Context
	cancel  context.CancelCauseFunc
	stopped chan struct{}
	db      *bun.DB
	name    string
}

// inTx runs f in a transaction of the rebuild; with fence, the
// transaction renews the lease as its last statement (lease.fence), so it
// commits only while the lease is this rebuild's, and the lease then runs
// from the commit (a batch or an index may take longer than the lease on
// a loaded machine, and on SQLite the renewing goroutine waits for the
// rebuild's own transaction). Last, not first: on PostgreSQL the renewal
// locks the checkpoint row until the commit, which the live runner's
// batches lock too. The swap's transaction checks the lease itself.
func (l *lease) inTx(ctx context.Context, db bun.IDB, cfg config, fence bool, f func(tx bun.Tx) error) error {
	return inTx(ctx, db, func(tx bun.Tx) error {
		if err := f(tx); err != nil || !fence {
			return err
		}
		return l.fence(ctx, tx, cfg)
	})
}

// cause returns ErrRebuildLeaseLost (wrapping err) when err comes from
// losing the lease, else err.
func (l *lease) cause(err error) error {
	if c := context.Cause(l.ctx); errors.Is(c, ErrRebuildLeaseLost) && !errors.Is(err, ErrRebuildLeaseLost) {
		return fmt.Errorf("%w: %w", c, err)
	}
	return err
}

// fence renews the lease inside tx: tx then commits only while this
// rebuild holds the lease (on PostgreSQL the checkpoint row stays locked
// until the commit; on SQLite the writer is tx's). A lease
// taken by another rebuild fails tx with ErrRebuildLeaseLost and cancels
// l.ctx.
func (l *lease) fence(ctx context.Context, tx bun.Tx, cfg config) error {
	err := rebuildLease.Renew(ctx, tx, l.name, l.owner, cfg.clock().Add(cfg.lease))
	if errors.Is(err, sqllease.ErrNotHeld) {
		l.cancel(ErrRebuildLeaseLost)
		return fmt.Errorf("%w: %w", ErrRebuildLeaseLost, err)
	}
	if err != nil {
		return fmt.Errorf("renew the rebuild lease: %w", err)
	}
	return nil
}

// release stops renewing and gives the lease up if the swap did not.
func (l *lease) release() {
	l.cancel(nil)
	<-l.stopped
	ctx, cancel := context.WithTimeout(context.WithoutCancel(l.ctx), 10*time.Second)
	defer cancel()
	_ = rebuildLease.Release(ctx, l.db, l.name, l.owner)
}

// rebuildLease is the rebuild lease of a projection: its checkpoint row.
var rebuildLease = sqllease.Table{Name: "projection_checkpoints", Key: "name", Owner: "rebuild_owner", Until: "rebuild_expires_at"}

// acquireLease takes the rebuild lease of projection name, waiting while
// another process holds a lease that has not expired, and keeps renewing it
// until released.
func acquireLease(ctx context.Context, db *bun.DB, name string, cfg config) (*lease, error) {
	owner, err := leaseOwner()
	if err != nil {
		return nil, err
	}
	waiting := false
	for {
		now := cfg.clock()
		ok, err := rebuildLease.Acquire(ctx, db, name, owner, now, now.Add(cfg.lease))
		if err != nil {
			return nil, fmt.Errorf("take rebuild lease: %w", err)
		}
		if ok {
			break
		}
		h, found, err := rebuildLease.Holder(ctx, db, name)
		switch {
		case err != nil:
			return nil, fmt.Errorf("take rebuild lease: %w", err)
		case !found:
			return nil, fmt.Errorf("take rebuild lease: checkpoint of %s vanished", name)
		case h.Owner == "":
			continue // released since: take it now
		}
		holder := h.Owner
		if !waiting {
			cfg.logger.InfoContext(ctx, "projections: waiting for another rebuild to finish",
				slog.String("projection", name), slog.String("holder", holder))
			waiting = true
		}
		if err := retry.Sleep(ctx, cfg.leasePoll); err != nil {
			return nil, fmt.Errorf("wait for the rebuild of %s by %s: %w", name, holder, err)
		}
	}

	lctx, cancel := context.WithCancelCause(ctx)
	l := &lease{owner: owner, ctx: lctx, cancel: cancel, stopped: make(chan struct{}), db: db, name: name}
	go l.renew(cfg)
	return l, nil
}

// renew extends the lease every third of its duration until l.ctx ends,
// and cancels l.ctx when it finds the lease taken.
func (l *lease) renew(cfg config) {
	defer close(l.stopped)
	t := time.NewTicker(cfg.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		err := rebuildLease.Renew(l.ctx, l.db, l.name, l.owner, cfg.clock().Add(cfg.lease))
		if errors.Is(err, sqllease.ErrNotHeld) {
			l.cancel(ErrRebuildLeaseLost)
			return
		}
		if err == nil || l.ctx.Err() != nil {
			continue
		}
		cfg.logger.WarnContext(l.ctx, "projections: could not renew the rebuild lease; the next write will check it",
			slog.String("projection", l.name), slog.Any("error", err))
	}
}

// leaseOwner names this rebuild for operators: host, process and a random
// part.
func leaseOwner() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("lease owner: %w", err)
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:])), nil
}

// bulkCacheKiB is SQLite's page cache (KiB) on the connection of a
// rebuild's bulk transaction: the pages a batch of 10,000 events dirties
// (7 MB of audit entries) stay in memory until the commit writes them to
// the WAL once, instead of spilling to the WAL mid-transaction (pwrite
// and the b-tree's rightmost pages written again) with the default 2 MiB.
const bulkCacheKiB = 64 << 10

// bulkConn is what a rebuild's bulk transactions begin on (db): on an
// SQLite file, from holdBulkConn to release, one connection of the pool,
// its page cache at bulkCacheKiB from the first batch to the last, so
// that the pages the batches read and write (the table's right edge, the
// rows a batch supersedes, the b-trees' upper levels) stay cached from
// one batch to the next. Setting the cache for each transaction and
// putting it back after it (withBulkCache) dropped them all at every
// commit: SQLite freed every page of the cache (in the pure-Go SQLite,
// one munmap a page) and the next batch read them again (pread), 8 to
// 11 % of the CPU of the access history's rebuild on the county. (SQLite
// still clears a connection's cache at a transaction's start when
// another connection wrote since its last one.) Elsewhere
// (PostgreSQL; an SQLite pool of one connection, which the rebuild's
// other transactions need) and once released, it is the pool, and the
// bulk transactions use withBulkCache.
type bulkConn struct {
	pool *bun.DB
	conn *bun.Conn // nil: not held
	was  int64     // the connection's cache_size before
}

// holdBulkConn takes the connection of the bulk transactions (bulkConn).
func holdBulkConn(ctx context.Context, db *bun.DB) (*bulkConn, error) {
	b := &bulkConn{pool: db}
	if isPG(db) || db.Stats().MaxOpenConnections == 1 {
		return b, nil
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("bulk connection: %w", err)
	}
	err = conn.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&b.was)
	if err == nil {
		_, err = conn.ExecContext(ctx, fmt.Sprintf("PRAGMA cache_size = -%d", bulkCacheKiB))
	}
	if err != nil {
		discardConn(&conn)
		return nil, fmt.Errorf("bulk connection: set cache_size: %w", err)
	}
	b.conn = &conn
	return b, nil
}

// held reports whether b holds a connection of its own.
func (b *bulkConn) held() bool { return b.conn != nil }

// db is what the next bulk transaction begins on.
func (b *bulkConn) db() bun.IDB {
	if b.conn != nil {
		return b.conn
	}
	return b.pool
}

// release puts the held connection's cache_size back and the connection
// in the pool (it closes a connection whose setting cannot be put back);
// the bulk transactions after it use the pool. It does nothing when no
// connection is held.
func (b *bulkConn) release() {
	conn := b.conn
	if conn == nil {
		return
	}
	b.conn = nil
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA cache_size = %d", b.was)); err != nil {
		discardConn(conn)
		return
	}
	_ = conn.Close()
}

// discardConn closes conn and the connection under it, so that the pool
// does not hand it out again.
func discardConn(conn *bun.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// withBulkCache runs f in tx with SQLite's page cache at bulkCacheKiB for
// tx's connection, and puts the connection's setting back before tx ends
// (shrinking the cache keeps the dirty pages: the commit writes them). On
// PostgreSQL it only runs f.
func withBulkCache(ctx context.Context, tx bun.Tx, f func() error) error {
	if isPG(tx) {
		return f()
	}
	var was int64
	if err := tx.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&was); err != nil {
		return fmt.Errorf("read cache_size: %w", err)
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA cache_size = -%d", bulkCacheKiB)); err != nil {
		return fmt.Errorf("set cache_size: %w", err)
	}
	ferr := f()
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA cache_size = %d", was)); err != nil && ferr == nil {
		return fmt.Errorf("restore cache_size: %w", err)
	}
	return ferr
}
