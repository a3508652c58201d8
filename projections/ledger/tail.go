package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// VerifyTail checks the log's tail, the records after position after, in
// time bounded by the tail (issue 18; ADR 0014):
//
//  1. the stored tree's root at the newest checkpoint's size must be that
//     checkpoint's root (as Verify);
//  2. from the stored tree's hashes of the leaves up to after's leaf (the
//     roots of its complete subtrees: at most one per level), it re-hashes
//     every record of the tail, compares each with its stored leaf, and
//     the tree at each checkpoint's size past after with that checkpoint's
//     root: the tail's records are then those the checkpoints signed
//     (where they cover them) and those the tree recorded;
//  3. the log must not end before the stored tree or the newest checkpoint.
//
// The records up to after are not read: a change to them is found by a
// whole Verify, which the engine runs in the background once its tail has
// passed (see docs/ledger.md). VerifyTail does a whole Verify instead when
// after is the start of the log, when there is no stored tree, when the
// stored tree disagrees with the newest checkpoint or has no leaf at
// after: it never reports less than Verify would about the tail. The
// report's FromLeaf is the tail's first leaf (0 for a whole check).
func VerifyTail(ctx context.Context, log Log, tree *Tree, after eventlog.Position, opts VerifyOptions) (*Report, error) {
	if opts.PageSize <= 0 {
		opts.PageSize = 1000
	}
	if after.IsZero() || tree == nil {
		return Verify(ctx, log, tree, opts)
	}
	v := &verifier{ctx: ctx, log: log, tree: tree, opts: opts, rep: &Report{}, front: newFrontier()}
	cps := opts.Checkpoints
	v.rep.Checkpoints = len(cps)
	if len(cps) > 0 {
		latest := cps[len(cps)-1].Checkpoint
		v.rep.Latest = &latest
	}
	v.anchored = v.checkTree(cps)
	if !v.anchored || len(v.rep.Problems) > 0 {
		return Verify(ctx, log, tree, opts) // the whole check names what is wrong
	}
	leaf, err := tree.LeafAt(ctx, after)
	switch {
	case errors.Is(err, ErrNotFound):
		return Verify(ctx, log, tree, opts)
	case err != nil:
		v.problem(Problem{Kind: KindUnreadable, LeafIndex: -1, Detail: fmt.Sprintf("the stored tree could not be read at position %s: %v", after, err)})
		return v.done()
	}
	from := leaf.Index + 1
	if from > v.rep.TreeSize {
		return Verify(ctx, log, tree, opts)
	}
	idx := frontierIndexes(from)
	hs, err := tree.ReadHashesContext(ctx, idx)
	if err != nil {
		v.problem(Problem{Kind: KindUnreadable, LeafIndex: from, Detail: fmt.Sprintf("the stored tree's hashes before leaf %d could not be read: %v", from, err)})
		return v.done()
	}
	v.front.n = from
	for i, x := range idx {
		v.front.hashes[x] = hs[i]
	}
	v.rep.FromLeaf = from
	next := 0
	for next < len(cps) && cps[next].Size <= from {
		next++
	}
	if !v.scan(cps, after, next) {
		v.checkEnd(cps)
	}
	return v.done()
}

// done ends a check: its report, or ctx's error.
func (v *verifier) done() (*Report, error) {
	if err := v.ctx.Err(); err != nil {
		return nil, err
	}
	v.rep.OK = len(v.rep.Problems) == 0
	return v.rep, nil
}
