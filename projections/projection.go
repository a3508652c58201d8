// Package projections runs the SQL read models of the engine: it feeds each
// projection the event log in global order from its checkpoint, and writes
// the projection's changes and its checkpoint in one transaction.
//
// # Projections and their tables
//
// A Projection owns a few tables. Queries read them through a view named as
// the table's logical name (Table.Name); the rows live in a physical table
// of the current generation, "<name>_g<generation>". A rebuild fills the
// tables of the next generation from the start of the log while queries keep
// reading the current one, then, in one transaction, catches up the last
// events, points the views at the new tables and moves the checkpoint. So
// queries never stop and never see a half-built read model.
//
// # Checkpoints
//
// The table projection_checkpoints holds, per projection, its generation,
// its version and the position of the last event applied. Every batch is
// applied in a transaction that first reads that row (locking it on
// PostgreSQL; SQLite transactions take the write lock at BEGIN), checks that
// it is still what the runner expects, writes the projection's changes and
// then the new checkpoint. A crash at any point leaves the tables and the
// checkpoint consistent, and several runners on one database (engine
// replicas) never apply an event twice: the one that finds the checkpoint
// moved replays the events in memory instead of writing them (or, when it
// had staged the batch before its transaction, on SQLite, loads its state
// again from the tables). The same row
// holds the lease that lets one rebuild of a projection run at a time.
//
// # Running
//
// Apply Migrations (component Component) once per database, then:
//
//	r, err := projections.NewRunner(db, store, []projections.Projection{...}, projections.WithLogger(log))
//	go r.Run(ctx)               // until ctx ends
//	<-r.Ready()                 // every projection caught up with the head it saw at start
//	r.Status()                  // per projection: position, head, lag, last error
//
// and, for accessd rebuild, Rebuild(ctx, db, store, p, progress) with a
// fresh instance of the projection.
package projections

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// Table is one table a projection owns.
type Table struct {
	// Name is the logical name: queries read the view of this name. It must
	// be a lower-case SQL identifier of letters, digits and underscores.
	Name string
	// Create returns the statements that create the physical table named
	// physical, and its indexes, in the given dialect (dialect.PG or
	// dialect.SQLite). Index names must start with physical so that two
	// generations never clash.
	Create func(d dialect.Name, physical string) []string
	// DeferIndexes lets a rebuild create the table's indexes (the CREATE
	// [UNIQUE] INDEX statements of Create) after it has applied the log
	// up to its last transaction, rather than keep them up to date row by
	// row: building an index from a full table is much faster. Set it only
	// when the projection's Apply and Load read the table through its
	// primary key alone (or not at all): until the swap they run without
	// the other indexes. A violation of a unique index then fails the
	// rebuild when the index is built instead of at the insert.
	DeferIndexes bool
}

// Tables maps each logical table name of a projection to the physical table
// it must write in the current run.
type Tables map[string]string

// Name returns the physical table for logical name; it panics when the
// projection did not declare the table, a programming error.
func (t Tables) Name(logical string) string {
	p, ok := t[logical]
	if !ok {
		panic(fmt.Sprintf("projections: table %q not declared", logical))
	}
	return p
}

// Ident returns the physical table for logical as a bun identifier, for
// ModelTableExpr("?", ...) and raw queries.
func (t Tables) Ident(logical string) bun.Ident { return bun.Ident(t.Name(logical)) }

// physicalName is the table of logical name in generation gen.
func physicalName(logical string, gen int64) string {
	return logical + "_g" + strconv.FormatInt(gen, 10)
}

// tablesFor returns the physical tables of p in generation gen.
func tablesFor(p Projection, gen int64) Tables {
	t := Tables{}
	for _, tb := range p.Tables() {
		t[tb.Name] = physicalName(tb.Name, gen)
	}
	return t
}

// Projection is a read model kept in SQL tables and fed by the event log.
//
// The runner calls its methods from one goroutine at a time. After Load,
// every record reaches the projection exactly once, in global order, either
// through Replay (state only), Apply (state and writes), or, for a Stager,
// Stage (state) and its Staged's Write (writes).
type Projection interface {
	// Name identifies the projection: its checkpoint and the NAME of
	// accessd rebuild --projection. It never changes.
	Name() string
	// Version is the version of the projection's tables and logic. When it
	// differs from the version its tables were built with, the runner
	// rebuilds the projection at start.
	Version() int
	// Tables lists the tables the projection owns.
	Tables() []Table
	// Load resets the projection's in-memory state to continue after
	// position at, reading what it needs from its own tables t through db.
	// It reports whether the records up to and including at must first be
	// passed through Replay (a projection whose state lives only in memory,
	// such as a fold of the aggregates, needs this warm-up; one that keeps
	// everything in its tables does not).
	Load(ctx context.Context, db bun.IDB, t Tables, at eventlog.Position) (warmup bool, err error)
	// Replay advances the in-memory state by recs without writing: the
	// warm-up, or records another runner has already written.
	Replay(recs []eventlog.Record) error
	// Apply advances the in-memory state by recs and writes their changes
	// into tables t through tx. When Apply fails or the transaction does not
	// commit, the runner discards the state and calls Load again.
	Apply(ctx context.Context, tx bun.Tx, t Tables, recs []eventlog.Record) error
}

// Stager is a Projection whose Apply splits into a computation that needs
// no transaction and the writes it produces. Rebuild uses it for the bulk
// of the log: it stages the next batch in one goroutine while the batch
// before is written in another (on two cores, the fold or the hashing
// beside SQLite's inserts), instead of doing both in turn. The live runner
// uses it on SQLite: it stages a batch before the transaction that writes
// it, so that the file's one write lock is held for the writes only; when
// that transaction does not start, finds the checkpoint moved or does not
// commit, the state (already past the batch) is loaded again.
//
// Stage(recs) advances the in-memory state by recs exactly as Apply(recs)
// does and returns their writes without writing anything; the Staged's
// Write then writes them into tables t through tx. Apply(recs) must be
// equivalent to Stage(recs) followed by Write. Write must read only what
// Stage handed it (never the projection's state, which a later Stage is
// changing meanwhile, and nothing a later Stage changes), so that it may run
// while the next Stage runs in another goroutine: Stage is never called
// concurrently with another method of the projection, Write at most with
// one Stage. When a Write fails or its transaction does not commit, the
// state (already past it) is discarded: the caller calls Load again.
type Stager interface {
	Projection
	Stage(recs []eventlog.Record) (Staged, error)
}

// Staged is the writes of a batch Stager.Stage computed.
type Staged interface {
	Write(ctx context.Context, tx bun.Tx, t Tables) error
}

// Committer is a Projection told which of its state its tables hold: after
// each of the live runner's transactions that commits a batch, Committed
// gets the batch's last position (and, after the runner has loaded or
// rebuilt the projection, its checkpoint). Between Stage or Apply and that
// call the state may be ahead of the tables: the batch is waiting for the
// write lock, or its transaction fails and the state is loaded again. A
// projection that saves its state beside its tables (the access history's
// snapshots) saves only state its tables have committed. Records passed
// to Replay are committed already (up to the checkpoint, or by another
// runner).
type Committer interface {
	Projection
	Committed(pos eventlog.Position)
}

// WarmStarter is a Projection whose Load may restore its in-memory state
// at a position before the checkpoint (a snapshot of it, issue 18): after
// a Load that asks for a warm-up, the runner passes through Replay only the
// records after WarmStart, up to the checkpoint, instead of every record
// from the start of the log. WarmStart is eventlog.Start when Load
// restored nothing; a WarmStart after the checkpoint fails the session.
type WarmStarter interface {
	Projection
	WarmStart() eventlog.Position
}

// validIdent reports whether s is a lower-case identifier the runner may
// build table names from.
func validIdent(s string) bool {
	if s == "" || len(s) > 40 || !(s[0] >= 'a' && s[0] <= 'z') {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == ""
}

// Log is what the runner needs of the event log (eventlog.Store provides it).
type Log interface {
	ReadAll(ctx context.Context, after eventlog.Position, limit int) ([]eventlog.Record, error)
	Head(ctx context.Context) (eventlog.Position, error)
	Subscribe(ctx context.Context, after eventlog.Position, handle func(context.Context, eventlog.Record) error) error
}
