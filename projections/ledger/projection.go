package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
)

// Name, Version and tables of the projection.
const (
	// Name is the projection's name: its checkpoint and accessd rebuild
	// --projection ledger.
	Name = "ledger"
	// Version is the version of the tables and of the leaf encoding.
	Version = 1
	// LeavesTable is the logical name of the leaves: one row per event.
	LeavesTable = "ledger_leaves"
	// NodesTable is the logical name of the interior hashes: one row per
	// stored hash above the leaves (tlog.StoredHashIndex, levels >= 1).
	NodesTable = "ledger_nodes"
)

// Errors of the projection.
var (
	// ErrInconsistent: the tables and the runner's checkpoint disagree.
	ErrInconsistent = errors.New("ledger: tree inconsistent with its checkpoint")
	// ErrMismatch: the tree built from the log is not the tree of a
	// published checkpoint (see MismatchError).
	ErrMismatch = errors.New("ledger: the log disagrees with a published checkpoint")
)

// MismatchError reports that the tree of the first Checkpoint.Size events
// of the log has root Got, not the checkpoint's root: the log was changed
// after the checkpoint was signed. errors.Is(err, ErrMismatch) is true.
type MismatchError struct {
	Checkpoint Checkpoint
	Got        tlog.Hash
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("ledger: the first %d events of the log hash to root %s, but the checkpoint signed for that size says %s: the stored log was changed after it was signed (run accessd ledger verify)",
		e.Checkpoint.Size, e.Got, e.Checkpoint.Root)
}

// Is makes errors.Is(err, ErrMismatch) true.
func (e *MismatchError) Is(target error) bool { return target == ErrMismatch }

// Projection keeps the Merkle tree over the event log in the read store
// (tables LeavesTable and NodesTable); it implements projections.Projection.
// Its in-memory state is the tree's frontier, which Load reads back from the
// tables, so it needs no warm-up. Like every projection it is used from one
// goroutine at a time.
type Projection struct {
	loaded  bool
	front   *frontier
	trusted *Checkpoint
	buf     []byte
}

var _ projections.Projection = (*Projection)(nil)

// Option configures the projection.
type Option func(*Projection)

// WithCheckpoint makes the projection refuse to build a tree that
// disagrees with cp: when its tree reaches cp.Size leaves with another
// root, Apply and Replay fail with a *MismatchError and write nothing. Give
// it the last published checkpoint, so that a rebuild from a changed log
// never produces a tree that would be signed.
func WithCheckpoint(cp Checkpoint) Option {
	return func(p *Projection) { p.trusted = &cp }
}

// New returns the projection; the runner calls Load before anything else.
func New(opts ...Option) *Projection {
	p := &Projection{}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Name implements projections.Projection.
func (*Projection) Name() string { return Name }

// Version implements projections.Projection.
func (*Projection) Version() int { return Version }

// Tables implements projections.Projection.
func (*Projection) Tables() []projections.Table {
	return []projections.Table{{Name: LeavesTable, Create: createLeaves, DeferIndexes: true}, {Name: NodesTable, Create: createNodes}}
}

func createLeaves(d dialect.Name, physical string) []string {
	q := func(s string) string { return `"` + s + `"` }
	t := q(physical)
	integer, blob, pk, suffix := "BIGINT", "BYTEA", ",\n    CONSTRAINT "+q(physical+"_pkey")+" PRIMARY KEY (leaf_index)", ""
	first := "leaf_index BIGINT NOT NULL"
	if d == dialect.SQLite {
		integer, blob, pk, suffix = "INTEGER", "BLOB", "", " STRICT"
		first = "leaf_index INTEGER NOT NULL PRIMARY KEY"
	}
	cols := []string{
		first,
		"position_commit " + integer + " NOT NULL",
		"position_prepare " + integer + " NOT NULL",
		"event_id TEXT NOT NULL",
		"hash " + blob + " NOT NULL",
	}
	return []string{
		"CREATE TABLE " + t + " (\n    " + strings.Join(cols, ",\n    ") + pk + "\n)" + suffix,
		"CREATE UNIQUE INDEX " + q(physical+"_position") + " ON " + t + " (position_commit, position_prepare)",
		"CREATE INDEX " + q(physical+"_event_id") + " ON " + t + " (event_id)",
	}
}

func createNodes(d dialect.Name, physical string) []string {
	q := func(s string) string { return `"` + s + `"` }
	if d == dialect.SQLite {
		return []string{"CREATE TABLE " + q(physical) + " (\n    idx INTEGER NOT NULL PRIMARY KEY,\n    hash BLOB NOT NULL\n) STRICT"}
	}
	return []string{"CREATE TABLE " + q(physical) + " (\n    idx BIGINT NOT NULL,\n    hash BYTEA NOT NULL,\n    CONSTRAINT " +
		q(physical+"_pkey") + " PRIMARY KEY (idx)\n)"}
}

// leafRow is one row of ledger_leaves.
type leafRow struct {
	bun.BaseModel `bun:"table:ledger_leaves,alias:l"`

	LeafIndex       int64  `bun:"leaf_index"`
	PositionCommit  int64  `bun:"position_commit"`
	PositionPrepare int64  `bun:"position_prepare"`
	EventID         string `bun:"event_id"`
	Hash            []byte `bun:"hash"`
}

func (r *leafRow) position() eventlog.Position {
	return eventlog.Position{Commit: uint64(r.PositionCommit), Prepare: uint64(r.PositionPrepare)}
}

// nodeRow is one row of ledger_nodes.
type nodeRow struct {
	bun.BaseModel `bun:"table:ledger_nodes,alias:n"`

	Idx  int64  `bun:"idx"`
	Hash []byte `bun:"hash"`
}

// Load implements projections.Projection: it reads the frontier of the
// stored tree. It fails with ErrInconsistent when the leaves do not end at
// the checkpoint at.
func (p *Projection) Load(ctx context.Context, db bun.IDB, t projections.Tables, at eventlog.Position) (bool, error) {
	p.loaded = false
	var last leafRow
	err := db.NewSelect().Model(&last).ModelTableExpr("? AS l", t.Ident(LeavesTable)).
		OrderExpr("leaf_index DESC").Limit(1).Scan(ctx)
	var n int64
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if !at.IsZero() {
			return false, fmt.Errorf("%w: table %s is empty but the checkpoint is at %s", ErrInconsistent, t.Name(LeavesTable), at)
		}
	case err != nil:
		return false, fmt.Errorf("ledger: load the last leaf of %s: %w", t.Name(LeavesTable), err)
	default:
		if last.position() != at {
			return false, fmt.Errorf("%w: the last leaf of %s is at %s, the checkpoint at %s",
				ErrInconsistent, t.Name(LeavesTable), last.position(), at)
		}
		n = last.LeafIndex + 1
	}
	f := newFrontier()
	f.n = n
	if n > 0 {
		idx := frontierIndexes(n)
		hs, err := (&Tree{db: db, leaves: t.Ident(LeavesTable), nodes: t.Ident(NodesTable), size: n}).ReadHashesContext(ctx, idx)
		if err != nil {
			return false, err
		}
		for i, x := range idx {
			f.hashes[x] = hs[i]
		}
	}
	p.front, p.loaded = f, true
	return false, nil
}

// Replay implements projections.Projection: it advances the frontier over
// records another runner has written.
func (p *Projection) Replay(recs []eventlog.Record) error {
	_, _, err := p.grow(recs)
	return err
}

// Apply implements projections.Projection: one leaf row per record and its
// interior hashes, in batched inserts.
func (p *Projection) Apply(ctx context.Context, tx bun.Tx, t projections.Tables, recs []eventlog.Record) error {
	leaves, nodes, err := p.grow(recs)
	if err != nil {
		return err
	}
	return growth{leaves, nodes}.Write(ctx, tx, t)
}

// Stage implements projections.Stager: it grows the frontier by recs and
// returns their leaves and interior hashes to be written.
func (p *Projection) Stage(recs []eventlog.Record) (projections.Staged, error) {
	leaves, nodes, err := p.grow(recs)
	if err != nil {
		return nil, err
	}
	return growth{leaves, nodes}, nil
}

var _ projections.Stager = (*Projection)(nil)

// growth is the rows a batch adds to the tree.
type growth struct {
	leaves []leafRow
	nodes  []nodeRow
}

// Write implements projections.Staged: it inserts the leaves and the
// interior hashes into t's tables.
func (g growth) Write(ctx context.Context, tx bun.Tx, t projections.Tables) error {
	leaves, nodes := g.leaves, g.nodes
	err := projections.InsertRows(ctx, tx, t.Name(LeavesTable), leafColumns, len(leaves), func(i int, dst []any) []any {
		l := &leaves[i]
		return append(dst, l.LeafIndex, l.PositionCommit, l.PositionPrepare, l.EventID, l.Hash)
	})
	if err != nil {
		return fmt.Errorf("ledger: insert leaves: %w", err)
	}
	err = projections.InsertRows(ctx, tx, t.Name(NodesTable), nodeColumns, len(nodes), func(i int, dst []any) []any {
		return append(dst, nodes[i].Idx, nodes[i].Hash)
	})
	if err != nil {
		return fmt.Errorf("ledger: insert interior hashes: %w", err)
	}
	return nil
}

// leafColumns and nodeColumns are the columns of leafRow and nodeRow, in
// the order Apply gives their values.
var (
	leafColumns = []projections.Column{
		{Name: "leaf_index", PGType: "bigint"},
		{Name: "position_commit", PGType: "bigint"},
		{Name: "position_prepare", PGType: "bigint"},
		{Name: "event_id", PGType: "text"},
		{Name: "hash", PGType: "bytea"},
	}
	nodeColumns = []projections.Column{{Name: "idx", PGType: "bigint"}, {Name: "hash", PGType: "bytea"}}
)

// grow adds recs to a copy of the frontier and returns their rows; p
// changes only when every record was added and the trusted checkpoint, if
// reached, agrees.
func (p *Projection) grow(recs []eventlog.Record) ([]leafRow, []nodeRow, error) {
	if !p.loaded {
		return nil, nil, errors.New("ledger: projection used before Load")
	}
	f := &frontier{n: p.front.n, hashes: make(map[int64]tlog.Hash, len(p.front.hashes)+8)}
	for k, v := range p.front.hashes {
		f.hashes[k] = v
	}
	leaves := make([]leafRow, 0, len(recs))
	nodes := make([]nodeRow, 0, len(recs))
	for _, rec := range recs {
		p.buf = AppendLeafData(p.buf[:0], rec)
		leaf := tlog.RecordHash(p.buf)
		n := f.n
		hs, err := f.add(leaf)
		if err != nil {
			return nil, nil, err
		}
		leaves = append(leaves, leafRow{LeafIndex: n, PositionCommit: int64(rec.Position.Commit),
			PositionPrepare: int64(rec.Position.Prepare), EventID: rec.ID.String(), Hash: leaf[:]})
		base := tlog.StoredHashIndex(0, n)
		for i := 1; i < len(hs); i++ {
			h := hs[i]
			nodes = append(nodes, nodeRow{Idx: base + int64(i), Hash: h[:]})
		}
		if p.trusted != nil && f.n == p.trusted.Size {
			root, err := f.root()
			if err != nil {
				return nil, nil, err
			}
			if root != p.trusted.Root {
				return nil, nil, &MismatchError{Checkpoint: *p.trusted, Got: root}
			}
		}
	}
	p.front = f
	return leaves, nodes, nil
}
