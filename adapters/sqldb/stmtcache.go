package sqldb

import (
	"container/list"
	"context"
	"database/sql/driver"
	"reflect"
)

// The statement cache: SQLite compiles every statement it is given, and
// database/sql hands the driver each query's text afresh, so a query run
// a thousand times is parsed and planned a thousand times (a quarter of
// the engine's CPU under the grants load, docs/performance.md). A gated
// connection keeps the last stmtCacheSize statements run with arguments
// (a query whose values are bound, the same text each time; bun's queries
// carry their values in their text and are not kept) prepared, and runs
// them again from there. A statement whose rows are still open when the
// same text comes again (a query nested in the reading of another) runs
// uncached. SQLite re-prepares a kept statement itself when the schema
// changed under it.

// stmtCacheSize bounds the statements kept per connection.
const stmtCacheSize = 64

// cachedStmt is a kept statement; busy while its rows are open.
type cachedStmt struct {
	query string
	stmt  driver.Stmt
	busy  bool
}

// stmtCache is the kept statements of one connection, most recent first.
// database/sql uses a connection from one goroutine at a time, so it needs
// no lock.
type stmtCache struct {
	byQuery map[string]*list.Element
	order   list.List
}

// get returns the kept statement of query, preparing and keeping it when it
// is not kept yet, or nil when it cannot be used (busy, or the driver
// cannot prepare it or run prepared statements with a context).
func (c *gatedConn) cached(ctx context.Context, query string) *cachedStmt {
	sc := &c.stmts
	if e, ok := sc.byQuery[query]; ok {
		cs := e.Value.(*cachedStmt)
		if cs.busy {
			return nil
		}
		sc.order.MoveToFront(e)
		return cs
	}
	p, ok := c.Conn.(driver.ConnPrepareContext)
	if !ok {
		return nil
	}
	st, err := p.PrepareContext(ctx, query)
	if err != nil {
		return nil // the uncached path reports the error
	}
	if _, ok := st.(driver.StmtQueryContext); !ok {
		_ = st.Close()
		return nil
	}
	if _, ok := st.(driver.StmtExecContext); !ok {
		_ = st.Close()
		return nil
	}
	if sc.byQuery == nil {
		sc.byQuery = map[string]*list.Element{}
	}
	for sc.order.Len() >= stmtCacheSize {
		if !sc.evictIdle() {
			_ = st.Close()
			return nil // every kept statement is in use: run uncached
		}
	}
	cs := &cachedStmt{query: query, stmt: st}
	sc.byQuery[query] = sc.order.PushFront(cs)
	return cs
}

// evictIdle closes the least recently used statement not in use and
// reports whether there was one.
func (sc *stmtCache) evictIdle() bool {
	for e := sc.order.Back(); e != nil; e = e.Prev() {
		cs := e.Value.(*cachedStmt)
		if cs.busy {
			continue
		}
		sc.order.Remove(e)
		delete(sc.byQuery, cs.query)
		_ = cs.stmt.Close()
		return true
	}
	return false
}

// closeAll closes every kept statement (before the connection closes).
func (sc *stmtCache) closeAll() {
	for e := sc.order.Front(); e != nil; e = e.Next() {
		_ = e.Value.(*cachedStmt).stmt.Close()
	}
	sc.order.Init()
	sc.byQuery = nil
}

// drop forgets a statement that failed, so that the next use prepares it
// again.
func (sc *stmtCache) drop(cs *cachedStmt) {
	if e, ok := sc.byQuery[cs.query]; ok {
		sc.order.Remove(e)
		delete(sc.byQuery, cs.query)
	}
	_ = cs.stmt.Close()
}

// cachedRows are the rows of a kept statement (cs), or of a write that
// holds the gate until they are closed (release), or both: closing them
// frees the statement for the next query and the gate for the next
// writer. They pass on the column facts of the driver's rows.
type cachedRows struct {
	driver.Rows
	cs      *cachedStmt // nil: not a kept statement
	release func()      // nil: the rows hold no gate
}

func (r *cachedRows) Close() error {
	err := r.Rows.Close()
	if r.cs != nil {
		r.cs.busy = false
	}
	if r.release != nil {
		r.release()
		r.release = nil
	}
	return err
}

func (r *cachedRows) ColumnTypeDatabaseTypeName(index int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(index)
	}
	return ""
}

func (r *cachedRows) ColumnTypeLength(index int) (int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(index)
	}
	return 0, false
}

func (r *cachedRows) ColumnTypeNullable(index int) (bool, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(index)
	}
	return false, false
}

func (r *cachedRows) ColumnTypePrecisionScale(index int) (int64, int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(index)
	}
	return 0, 0, false
}

var anyType = reflect.TypeFor[any]()

func (r *cachedRows) ColumnTypeScanType(index int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(index)
	}
	return anyType
}
