package sqldb

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// The write gate: every transaction on an SQLite file begins with BEGIN
// IMMEDIATE, which takes the file's write lock. When the lock is held,
// SQLite's busy handler sleeps in steps (1, 2, 5, 10, … up to 100 ms) and
// tries again, so a writer that could have had the lock a microsecond
// after it was freed may sleep for tens of milliseconds: the tail of every
// command's latency when the projections, the relay and the process
// manager write beside it (docs/performance.md). The gate queues this
// process's transactions on a file before they ask SQLite, and hands the
// lock on as soon as the holder commits or rolls back, in the order they
// came. Another process writing the same file still meets the busy
// handler, as before.

// writeGate is the queue of one SQLite file's transactions in this
// process: a lock handed on, at each release, to the waiter that came
// first, a foreground writer before a yielding one (Yielding), except
// that a yielding writer waiting behind maxForegroundRun foreground
// hand-offs in a row goes next, so that it waits for a few transactions
// at most, never for the foreground writers to stop.
type writeGate struct {
	timeout time.Duration // SQLiteBusyTimeout

	mu   sync.Mutex
	held bool
	// fg and yielding are the waiters, in arrival order.
	fg, yielding []*gateWaiter
	// fgRun counts the hand-offs to foreground writers while a yielding
	// writer waited, since the last hand-off to a yielding one.
	fgRun int
}

// gateWaiter is a writer waiting at the gate: release closes ready when
// it hands the gate to it (it holds the gate from then on).
type gateWaiter struct{ ready chan struct{} }

// maxForegroundRun bounds how many foreground writers in a row take the
// gate ahead of a waiting yielding one.
const maxForegroundRun = 4

// gates holds the gate of each SQLite file (by absolute path, or memdb
// name) opened by this process: two Opens of one file share it.
var gates sync.Map // string → *writeGate

func gateFor(path string) *writeGate {
	g, _ := gates.LoadOrStore(path, &writeGate{timeout: SQLiteBusyTimeout})
	return g.(*writeGate)
}

// yieldingKey marks a context whose writes yield at the gate.
type yieldingKey struct{}

// Yielding returns a context whose SQLite transactions and writes outside
// a transaction yield at the file's write gate: when the gate is freed, a
// waiting writer without the mark takes it first, up to maxForegroundRun
// of them in a row while this one waits. For background writers that
// catch up with the log (the read models' batches), so that a command's
// writes queue behind at most the transaction in progress and the
// yielding writers' turns, not behind every batch that its own append
// woke up. It changes only the order in which this process's writers of
// a file get the lock, never what they write; PostgreSQL ignores it.
func Yielding(ctx context.Context) context.Context {
	return context.WithValue(ctx, yieldingKey{}, true)
}

func isYielding(ctx context.Context) bool {
	y, _ := ctx.Value(yieldingKey{}).(bool)
	return y
}

// errGateTimeout is returned (wrapped, with "database is locked", which
// isBusy recognizes) when a transaction waited SQLiteBusyTimeout for the
// gate: what SQLite itself would have answered after its busy timeout.
var errGateTimeout = errors.New("sqldb: database is locked: waited for this process's other transactions on the file")

// acquire waits for the gate until ctx ends or the gate's timeout passes;
// a ctx marked Yielding waits in the yielding queue.
func (g *writeGate) acquire(ctx context.Context) error {
	yielding := isYielding(ctx)
	g.mu.Lock()
	if !g.held {
		g.held = true
		g.mu.Unlock()
		return nil
	}
	w := &gateWaiter{ready: make(chan struct{})}
	if yielding {
		g.yielding = append(g.yielding, w)
	} else {
		g.fg = append(g.fg, w)
	}
	g.mu.Unlock()
	t := time.NewTimer(g.timeout)
	defer t.Stop()
	var err error
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-t.C:
		err = fmt.Errorf("%w (%s)", errGateTimeout, g.timeout)
	}
	g.mu.Lock()
	if g.remove(w, yielding) {
		g.mu.Unlock()
		return err
	}
	g.mu.Unlock()
	// The gate was handed to w as it gave up: hand it on.
	g.release()
	return err
}

// remove takes w out of its queue; false when it is in none (the gate was
// handed to it). g.mu is held.
func (g *writeGate) remove(w *gateWaiter, yielding bool) bool {
	q := &g.fg
	if yielding {
		q = &g.yielding
	}
	for i, o := range *q {
		if o == w {
			*q = append((*q)[:i], (*q)[i+1:]...)
			if len(g.yielding) == 0 {
				g.fgRun = 0 // it counts hand-offs while a yielding writer waits
			}
			return true
		}
	}
	return false
}

// release hands the gate to the next waiter (see writeGate), or frees it.
func (g *writeGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	var next *gateWaiter
	switch {
	case len(g.yielding) > 0 && (len(g.fg) == 0 || g.fgRun >= maxForegroundRun):
		next = g.yielding[0]
		g.yielding[0] = nil
		g.yielding = g.yielding[1:]
		g.fgRun = 0
	case len(g.fg) > 0:
		next = g.fg[0]
		g.fg[0] = nil
		g.fg = g.fg[1:]
		if len(g.yielding) > 0 {
			g.fgRun++
		} else {
			g.fgRun = 0
		}
	default:
		g.held = false
		return
	}
	close(next.ready)
}

// WriteGateWaiting reports how many of this process's writers of the
// SQLite file wait at its write gate, in the foreground and yielding
// (Yielding); 0, 0 for a pool without a gate (PostgreSQL). For tests and
// diagnostics: the counts may change as soon as they are read.
func (db *DB) WriteGateWaiting() (foreground, yielding int) {
	if db.gate == nil {
		return 0, 0
	}
	db.gate.mu.Lock()
	defer db.gate.mu.Unlock()
	return len(db.gate.fg), len(db.gate.yielding)
}

// isHeld reports whether a writer holds the gate (for tests).
func (g *writeGate) isHeld() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held
}

// gatedConnector opens connections of the driver whose transactions pass
// the gate.
type gatedConnector struct {
	drv  driver.Driver
	dsn  string
	gate *writeGate
}

func (c *gatedConnector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	return &gatedConn{Conn: conn, gate: c.gate}, nil
}

func (c *gatedConnector) Driver() driver.Driver { return c.drv }

// gatedConn is a driver connection whose transactions hold the gate from
// BEGIN to COMMIT or ROLLBACK. It passes everything else to the driver's
// connection, and says so (driver.ErrSkip) where the driver lacks an
// optional interface, so that database/sql falls back as it would.
type gatedConn struct {
	driver.Conn
	gate *writeGate
	// tx counts the transactions open on the connection (0 or 1; database/sql
	// uses a connection from one goroutine at a time): its statements then
	// run under the transaction's gate, or in a read-only one without it.
	tx int
	// stmts are the statements kept prepared (stmtcache.go).
	stmts stmtCache
}

// Close closes the kept statements, then the connection.
func (c *gatedConn) Close() error {
	c.stmts.closeAll()
	return c.Conn.Close()
}

var (
	_ driver.ConnBeginTx        = (*gatedConn)(nil)
	_ driver.ConnPrepareContext = (*gatedConn)(nil)
	_ driver.ExecerContext      = (*gatedConn)(nil)
	_ driver.QueryerContext     = (*gatedConn)(nil)
	_ driver.Pinger             = (*gatedConn)(nil)
	_ driver.SessionResetter    = (*gatedConn)(nil)
	_ driver.Validator          = (*gatedConn)(nil)
	_ driver.NamedValueChecker  = (*gatedConn)(nil)
	_ driver.Tx                 = (*gatedTx)(nil)
	_ driver.Connector          = (*gatedConnector)(nil)
)

func (c *gatedConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if opts.ReadOnly {
		// A read-only transaction begins with a deferred BEGIN: it takes
		// no write lock, and must not hold the writers' gate.
		var tx driver.Tx
		var err error
		if b, ok := c.Conn.(driver.ConnBeginTx); ok {
			tx, err = b.BeginTx(ctx, opts)
		} else {
			tx, err = c.Conn.Begin() //nolint:staticcheck // the driver has no BeginTx
		}
		if err != nil {
			return nil, err
		}
		c.tx++
		return &gatedTx{tx: tx, conn: c}, nil
	}
	if err := c.gate.acquire(ctx); err != nil {
		return nil, err
	}
	var tx driver.Tx
	var err error
	if b, ok := c.Conn.(driver.ConnBeginTx); ok {
		tx, err = b.BeginTx(ctx, opts)
	} else {
		tx, err = c.Conn.Begin() //nolint:staticcheck // the driver has no BeginTx
	}
	if err != nil {
		c.gate.release()
		return nil, err
	}
	c.tx++
	return &gatedTx{tx: tx, conn: c, gate: c.gate}, nil
}

func (c *gatedConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, query)
	}
	return c.Conn.Prepare(query)
}

func (c *gatedConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := c.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	if c.tx == 0 && isDML(query) {
		// A write outside a transaction (autocommit) takes the write lock
		// as a transaction does: it queues at the gate too, or it would
		// meet SQLite's busy handler whenever a transaction holds the lock.
		if err := c.gate.acquire(ctx); err != nil {
			return nil, err
		}
		defer c.gate.release()
	}
	if len(args) > 0 {
		if cs := c.cached(ctx, query); cs != nil {
			cs.busy = true
			res, err := cs.stmt.(driver.StmtExecContext).ExecContext(ctx, args)
			cs.busy = false
			if err != nil {
				c.stmts.drop(cs)
			}
			return res, err
		}
	}
	return e.ExecContext(ctx, query, args)
}

// isDML reports whether query begins, after white space, with INSERT,
// UPDATE, DELETE or REPLACE: a statement that takes the write lock. Other
// statements outside a transaction (reads, PRAGMAs, DDL) do not queue at
// the gate, as before.
func isDML(query string) bool {
	q := strings.TrimLeft(query, " \t\r\n")
	for _, kw := range [...]string{"INSERT", "UPDATE", "DELETE", "REPLACE"} {
		if len(q) >= len(kw) && strings.EqualFold(q[:len(kw)], kw) {
			return true
		}
	}
	return false
}

// QueryContext runs a query. A write outside a transaction that returns
// rows (INSERT, UPDATE or DELETE with RETURNING, autocommit) queues at the
// gate as ExecContext's writes do, and holds it until its rows are closed:
// SQLite holds the write lock until the statement is reset.
func (c *gatedConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := c.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	var release func()
	if c.tx == 0 && isDML(query) {
		if err := c.gate.acquire(ctx); err != nil {
			return nil, err
		}
		release = c.gate.release
	}
	if len(args) > 0 {
		if cs := c.cached(ctx, query); cs != nil {
			cs.busy = true
			rows, err := cs.stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
			if err != nil {
				cs.busy = false
				c.stmts.drop(cs)
				if release != nil {
					release()
				}
				return nil, err
			}
			return &cachedRows{Rows: rows, cs: cs, release: release}, nil
		}
	}
	rows, err := q.QueryContext(ctx, query, args)
	if err != nil || release == nil {
		if release != nil {
			release()
		}
		return rows, err
	}
	return &cachedRows{Rows: rows, release: release}, nil
}

func (c *gatedConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *gatedConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *gatedConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *gatedConn) CheckNamedValue(nv *driver.NamedValue) error {
	if n, ok := c.Conn.(driver.NamedValueChecker); ok {
		return n.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// gatedTx releases the gate (nil for a read-only transaction) once, when
// the transaction ends either way.
type gatedTx struct {
	tx   driver.Tx
	conn *gatedConn
	gate *writeGate
	once sync.Once
}

func (t *gatedTx) end() {
	t.conn.tx--
	if t.gate != nil {
		t.gate.release()
	}
}

func (t *gatedTx) Commit() error {
	defer t.once.Do(t.end)
	return t.tx.Commit()
}

func (t *gatedTx) Rollback() error {
	defer t.once.Do(t.end)
	return t.tx.Rollback()
}

// plainConnector opens connections of the driver without a gate (the
// benchmarks' comparison).
type plainConnector struct {
	drv driver.Driver
	dsn string
}

func (c plainConnector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c plainConnector) Driver() driver.Driver                        { return c.drv }
