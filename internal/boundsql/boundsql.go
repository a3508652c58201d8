// Package boundsql runs SQL statements with bound parameters on the
// database/sql handle beneath a bun.IDB.
//
// bun writes every value into a statement's text, so SQLite is handed a new
// text at each call and parses and plans it afresh; a statement run often
// (an idempotency key's claim, a process manager's deadline) then costs
// more to compile than to run, and on SQLite it compiles while it holds the
// file's one write lock. The same statement with bound parameters has the
// same text each time, which adapters/sqldb's statement cache keeps
// compiled (docs/performance.md).
//
// Statements are written with ? for their parameters and no other ?
// (in a literal or a comment); on PostgreSQL they are numbered $1, $2, ...
// The texts should be constants: each distinct text is numbered once and
// kept for the life of the process.
package boundsql

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"sync"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// conn is a database/sql handle: *sql.DB, *sql.Tx or *sql.Conn.
type conn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// bunDB is a wrapper of a *bun.DB that hands it out (adapters/sqldb.DB).
type bunDB interface{ Bun() *bun.DB }

// Runner runs statements on the database/sql handle under a bun.IDB, or on
// the bun.IDB itself (with bun's formatting, which gives the same result)
// when it is of a kind this package does not know. The zero Runner is not
// usable; For makes one. A Runner is as safe for concurrent use as its
// bun.IDB.
type Runner struct {
	raw conn // nil: through bun
	pg  bool // number the parameters $1, $2, ...
	db  bun.IDB
}

// For returns the Runner of db: *bun.DB, bun.Tx, bun.Conn (or pointers to
// them) or a wrapper with a Bun method run their statements on the
// database/sql handle beneath.
func For(db bun.IDB) Runner {
	r := Runner{db: db, pg: db.Dialect().Name() == dialect.PG}
	switch d := db.(type) {
	case *bun.DB:
		r.raw = d.DB
	case bun.Tx:
		r.raw = d.Tx
	case *bun.Tx:
		r.raw = d.Tx
	case bun.Conn:
		r.raw = d.Conn
	case *bun.Conn:
		r.raw = d.Conn
	case bunDB:
		r.raw = d.Bun().DB
	}
	return r
}

// Bound reports whether the statements run with bound parameters (false:
// through bun's formatting).
func (r Runner) Bound() bool { return r.raw != nil }

// ExecContext runs query with args bound.
func (r Runner) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if r.raw == nil {
		return r.db.ExecContext(ctx, query, args...)
	}
	return r.raw.ExecContext(ctx, r.text(query), args...)
}

// QueryContext runs query with args bound and returns its rows.
func (r Runner) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if r.raw == nil {
		return r.db.QueryContext(ctx, query, args...)
	}
	return r.raw.QueryContext(ctx, r.text(query), args...)
}

// QueryRowContext runs query with args bound and returns its first row.
func (r Runner) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if r.raw == nil {
		return r.db.QueryRowContext(ctx, query, args...)
	}
	return r.raw.QueryRowContext(ctx, r.text(query), args...)
}

// text is query for the driver: on PostgreSQL with its parameters
// numbered, once per distinct text.
func (r Runner) text(query string) string {
	if !r.pg {
		return query
	}
	if t, ok := pgTexts.Load(query); ok {
		return t.(string)
	}
	t := Numbered(query)
	pgTexts.Store(query, t)
	return t
}

// pgTexts maps each statement run on PostgreSQL to its numbered text.
var pgTexts sync.Map

// Numbered replaces the ? of query by $1, $2, ... in order.
func Numbered(query string) string {
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}
