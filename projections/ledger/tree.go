package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// ErrNotFound: no leaf for that index, position or event id, or a tree size
// beyond the stored tree.
var ErrNotFound = errors.New("ledger: not in the tree")

// ErrBadRequest: a proof asked for sizes or indexes that make no proof
// (an index at or beyond the tree size, a first size above the second).
var ErrBadRequest = errors.New("ledger: no such proof")

// LeafInfo is one stored leaf: its index in the tree, the position and id
// of its event, and its hash.
type LeafInfo struct {
	Index    int64
	Position eventlog.Position
	EventID  uuid.UUID
	Hash     tlog.Hash
}

// Tree reads the stored tree: the projection's tables through their views
// (NewTree), or a generation's physical tables (inside the projection).
// Its methods only read, and are safe for concurrent use.
type Tree struct {
	db     bun.IDB
	leaves bun.Ident
	nodes  bun.Ident
	size   int64 // for errors of Load; 0 elsewhere
}

// NewTree returns the tree stored in db, read through the views the
// projection's runner keeps.
func NewTree(db bun.IDB) *Tree {
	return &Tree{db: db, leaves: bun.Ident(LeavesTable), nodes: bun.Ident(NodesTable)}
}

// Size returns the number of leaves stored.
func (t *Tree) Size(ctx context.Context) (int64, error) {
	var last sql.NullInt64
	err := t.db.NewSelect().TableExpr("? AS l", t.leaves).ColumnExpr("MAX(leaf_index)").Scan(ctx, &last)
	if err != nil {
		return 0, fmt.Errorf("ledger: read the tree size: %w", err)
	}
	if !last.Valid {
		return 0, nil
	}
	return last.Int64 + 1, nil
}

// ReadHashesContext returns the stored hashes at the tlog stored hash
// indexes, in order; a missing one is an error wrapping ErrNotFound.
func (t *Tree) ReadHashesContext(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	var leafIdx, nodeIdx []int64
	for _, x := range indexes {
		if level, n := tlog.SplitStoredHashIndex(x); level == 0 {
			leafIdx = append(leafIdx, n)
		} else {
			nodeIdx = append(nodeIdx, x)
		}
	}
	found := make(map[int64][]byte, len(indexes))
	for start := 0; start < len(leafIdx); start += 500 {
		var rows []leafRow
		err := t.db.NewSelect().Model(&rows).ModelTableExpr("? AS l", t.leaves).Column("leaf_index", "hash").
			Where("leaf_index IN (?)", bun.List(leafIdx[start:min(start+500, len(leafIdx))])).Scan(ctx)
		if err != nil {
			return nil, fmt.Errorf("ledger: read leaf hashes: %w", err)
		}
		for _, r := range rows {
			found[tlog.StoredHashIndex(0, r.LeafIndex)] = r.Hash
		}
	}
	for start := 0; start < len(nodeIdx); start += 500 {
		var rows []nodeRow
		err := t.db.NewSelect().Model(&rows).ModelTableExpr("? AS n", t.nodes).
			Where("idx IN (?)", bun.List(nodeIdx[start:min(start+500, len(nodeIdx))])).Scan(ctx)
		if err != nil {
			return nil, fmt.Errorf("ledger: read interior hashes: %w", err)
		}
		for _, r := range rows {
			found[r.Idx] = r.Hash
		}
	}
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		b, ok := found[x]
		if !ok || len(b) != tlog.HashSize {
			level, n := tlog.SplitStoredHashIndex(x)
			return nil, fmt.Errorf("%w: stored hash at level %d index %d is missing or malformed", ErrNotFound, level, n)
		}
		copy(out[i][:], b)
	}
	return out, nil
}

// reader returns the tree as a tlog.HashReader bound to ctx.
func (t *Tree) reader(ctx context.Context) tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return t.ReadHashesContext(ctx, idx) })
}

// Root returns the root hash of the tree of the first size leaves.
func (t *Tree) Root(ctx context.Context, size int64) (tlog.Hash, error) {
	if size < 0 {
		return tlog.Hash{}, fmt.Errorf("%w: tree size %d", ErrBadRequest, size)
	}
	return tlog.TreeHash(size, t.reader(ctx))
}

// ProveInclusion returns the proof that leaf index is in the tree of the
// first size leaves (tlog.CheckRecord verifies it).
func (t *Tree) ProveInclusion(ctx context.Context, index, size int64) (tlog.RecordProof, error) {
	if index < 0 || size <= index {
		return nil, fmt.Errorf("%w: leaf %d is not in a tree of %d leaves", ErrBadRequest, index, size)
	}
	return tlog.ProveRecord(size, index, t.reader(ctx))
}

// ProveConsistency returns the proof that the tree of the first from
// leaves is a prefix of the tree of the first to leaves (tlog.CheckTree
// verifies it).
func (t *Tree) ProveConsistency(ctx context.Context, from, to int64) (tlog.TreeProof, error) {
	if from < 1 || to < from {
		return nil, fmt.Errorf("%w: from size %d to size %d (want 1 <= from <= to)", ErrBadRequest, from, to)
	}
	return tlog.ProveTree(to, from, t.reader(ctx))
}

// Leaf returns the leaf at index.
func (t *Tree) Leaf(ctx context.Context, index int64) (LeafInfo, error) {
	return t.leafWhere(ctx, "leaf_index = ?", index)
}

// LeafAt returns the leaf of the event at position pos.
func (t *Tree) LeafAt(ctx context.Context, pos eventlog.Position) (LeafInfo, error) {
	return t.leafWhere(ctx, "position_commit = ? AND position_prepare = ?", int64(pos.Commit), int64(pos.Prepare))
}

// LeafOfEvent returns the leaf of the event with id.
func (t *Tree) LeafOfEvent(ctx context.Context, id uuid.UUID) (LeafInfo, error) {
	return t.leafWhere(ctx, "event_id = ?", id.String())
}

func (t *Tree) leafWhere(ctx context.Context, where string, args ...any) (LeafInfo, error) {
	var rows []leafRow
	err := t.db.NewSelect().Model(&rows).ModelTableExpr("? AS l", t.leaves).Where(where, args...).
		OrderExpr("leaf_index").Limit(1).Scan(ctx)
	if err != nil {
		return LeafInfo{}, fmt.Errorf("ledger: read leaf: %w", err)
	}
	if len(rows) == 0 {
		return LeafInfo{}, ErrNotFound
	}
	return rows[0].info()
}

func (r *leafRow) info() (LeafInfo, error) {
	id, err := uuid.Parse(r.EventID)
	if err != nil || len(r.Hash) != tlog.HashSize {
		return LeafInfo{}, fmt.Errorf("ledger: leaf %d is malformed", r.LeafIndex)
	}
	var h tlog.Hash
	copy(h[:], r.Hash)
	return LeafInfo{Index: r.LeafIndex, Position: r.position(), EventID: id, Hash: h}, nil
}

// Leaves returns up to limit leaves from index from on, in order.
func (t *Tree) Leaves(ctx context.Context, from int64, limit int) ([]LeafInfo, error) {
	var rows []leafRow
	err := t.db.NewSelect().Model(&rows).ModelTableExpr("? AS l", t.leaves).
		Where("leaf_index >= ?", from).OrderExpr("leaf_index").Limit(int64(limit)).Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("ledger: read leaves from %d: %w", from, err)
	}
	out := make([]LeafInfo, len(rows))
	for i := range rows {
		if out[i], err = rows[i].info(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
