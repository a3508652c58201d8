package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// Kind names what a Problem found.
type Kind string

// Kinds of problems, in the words Verify's report uses.
const (
	// KindEdited: a stored event's fields were changed (same event id,
	// another leaf hash).
	KindEdited Kind = "edited"
	// KindMissing: the event the ledger has at this place is not there
	// (deleted, or moved later in the log).
	KindMissing Kind = "missing"
	// KindInserted: an event the ledger never saw stands in the log.
	KindInserted Kind = "inserted"
	// KindMoved: an event stands at another place of the global order than
	// when it was recorded (earlier, or renumbered).
	KindMoved Kind = "moved"
	// KindTruncated: the log ends before a signed checkpoint or the stored
	// tree says it should.
	KindTruncated Kind = "truncated"
	// KindCheckpoint: the log's first N events hash to another root than
	// the checkpoint signed for size N (the stored tree agrees with the log,
	// so both were rewritten).
	KindCheckpoint Kind = "checkpoint"
	// KindTree: the stored tree (the ledger's tables) disagrees with a
	// signed checkpoint.
	KindTree Kind = "tree"
	// KindSignature: a checkpoint does not open with the ledger's key.
	KindSignature Kind = "signature"
	// KindFork: two checkpoints of one size with different roots.
	KindFork Kind = "fork"
	// KindUnreadable: the store could not be read (damaged pages, a lost
	// connection); Verify's verdict is a failure, never a retry (the
	// engine's start-up check tries again later: it is no verdict on
	// tampering).
	KindUnreadable Kind = "unreadable"
)

// Problem is one thing Verify found wrong.
type Problem struct {
	Kind Kind
	// LeafIndex is the first bad leaf, or -1 when the problem has none.
	LeafIndex int64
	// Position is the first bad position of the log, when HasPosition.
	Position    eventlog.Position
	HasPosition bool
	// EventID is the event concerned, when known.
	EventID uuid.UUID
	Detail  string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(string(p.Kind))
	if p.HasPosition {
		fmt.Fprintf(&b, " at position %s", p.Position)
	}
	if p.LeafIndex >= 0 {
		fmt.Fprintf(&b, " (leaf %d)", p.LeafIndex)
	}
	b.WriteString(": ")
	b.WriteString(p.Detail)
	return b.String()
}

// Report is Verify's verdict.
type Report struct {
	// OK is true when no problem was found.
	OK bool
	// Events is how many events of the log were read and hashed; Head the
	// position of the last.
	Events int64
	Head   eventlog.Position
	// Root is the root hash of the tree of those Events events, when the
	// whole log was read.
	Root tlog.Hash
	// FromLeaf is the first leaf read and hashed: 0 for a check of the
	// whole log, the tail's first leaf for VerifyTail (Events then counts
	// the tail only, and Root is the root of the whole tree).
	FromLeaf int64
	// TreeSize is how many leaves the stored tree holds.
	TreeSize int64
	// Checkpoints is how many signed checkpoints were checked; Latest the
	// largest of them.
	Checkpoints int
	Latest      *Checkpoint
	// Problems lists what is wrong, the first bad position first.
	Problems []Problem
}

// FirstBad returns the problem that names the first bad position of the
// log; else the first problem of the log itself (a checkpoint it
// disagrees with, a missing tail, a read error); else the first problem.
// ok is false when there is none.
func (r *Report) FirstBad() (Problem, bool) {
	if len(r.Problems) == 0 {
		return Problem{}, false
	}
	rank := func(p Problem) int {
		switch {
		case p.HasPosition:
			return 0
		case p.Kind == KindCheckpoint || p.Kind == KindTruncated || p.Kind == KindUnreadable:
			return 1
		}
		return 2
	}
	best := 0
	for i, p := range r.Problems {
		b := r.Problems[best]
		if rank(p) < rank(b) || (rank(p) == 0 && rank(b) == 0 && p.Position.Before(b.Position)) {
			best = i
		}
	}
	return r.Problems[best], true
}

// Summary is the report in a few lines, ending in the verdict line: "OK: …"
// or "FAILED: …".
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "log: %d events read, head %s\n", r.Events, r.Head)
	fmt.Fprintf(&b, "stored tree: %d leaves\n", r.TreeSize)
	if r.Latest != nil {
		fmt.Fprintf(&b, "checkpoints: %d checked, latest of size %d, root %s\n", r.Checkpoints, r.Latest.Size, r.Latest.Root)
	} else {
		fmt.Fprintf(&b, "checkpoints: none to check against\n")
	}
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "problem: %s\n", p)
	}
	if r.OK {
		fmt.Fprintf(&b, "OK: the log's %d events hash to root %s", r.Events, r.Root)
		if r.Latest != nil {
			fmt.Fprintf(&b, "; consistent with %d signed checkpoint(s)", r.Checkpoints)
			if d := r.Events - r.Latest.Size; d > 0 {
				fmt.Fprintf(&b, " (the newest %d events are not yet in a checkpoint)", d)
			}
		}
		return b.String()
	}
	first, _ := r.FirstBad()
	fmt.Fprintf(&b, "FAILED: %s", first)
	return b.String()
}

// Log is what Verify reads of the event log (eventlog.Store provides it).
type Log interface {
	ReadAll(ctx context.Context, after eventlog.Position, limit int) ([]eventlog.Record, error)
}

// VerifyOptions tunes Verify.
type VerifyOptions struct {
	// Checkpoints are signed checkpoints already opened with the ledger's
	// key (OpenAll), sorted by size.
	Checkpoints []Signed
	// PageSize is how many events and leaves are read at a time (default
	// 1000).
	PageSize int
	// Progress, when set, is called with the number of events hashed so
	// far, after each page.
	Progress func(events int64)
}

// Verify re-reads the stored log from its start, recomputes every leaf
// and the tree, and compares them with the stored tree (tree; nil when
// there is none) and with the signed checkpoints. It never trusts the
// database: the stored tree is used to name the first bad position only
// where it agrees with the signed checkpoints, and the checkpoints alone
// catch a log and tree rewritten together.
//
// Verify never retries: a store that cannot be read ends with a report
// whose problem is KindUnreadable. It returns an error only when ctx ends.
func Verify(ctx context.Context, log Log, tree *Tree, opts VerifyOptions) (*Report, error) {
	if opts.PageSize <= 0 {
		opts.PageSize = 1000
	}
	v := &verifier{ctx: ctx, log: log, tree: tree, opts: opts, rep: &Report{}, front: newFrontier()}
	v.run()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v.rep.OK = len(v.rep.Problems) == 0
	return v.rep, nil
}

type verifier struct {
	ctx      context.Context
	log      Log
	tree     *Tree
	opts     VerifyOptions
	rep      *Report
	front    *frontier
	anchored bool // the stored tree agrees with every checkpoint
	buf      []byte
}

func (v *verifier) problem(p Problem) { v.rep.Problems = append(v.rep.Problems, p) }

func (v *verifier) run() {
	cps := v.opts.Checkpoints
	v.rep.Checkpoints = len(cps)
	if len(cps) > 0 {
		latest := cps[len(cps)-1].Checkpoint
		v.rep.Latest = &latest
	}
	v.anchored = v.checkTree(cps)
	stop := v.scan(cps, eventlog.Start, 0)
	if stop {
		return
	}
	v.checkEnd(cps)
}

// checkTree compares the stored tree with every checkpoint and reports
// whether it agrees with all of them.
func (v *verifier) checkTree(cps []Signed) bool {
	if v.tree == nil {
		return false
	}
	size, err := v.tree.Size(v.ctx)
	if err != nil {
		v.problem(Problem{Kind: KindUnreadable, LeafIndex: -1, Detail: fmt.Sprintf("the stored tree could not be read: %v", err)})
		return false
	}
	v.rep.TreeSize = size
	if len(cps) == 0 {
		return true
	}
	// The newest checkpoint's root commits to every leaf before it; older
	// ones are covered by its consistency with them, which scan checks
	// against the log.
	cp := cps[len(cps)-1]
	if cp.Size > size {
		v.problem(Problem{Kind: KindTree, LeafIndex: size, Detail: fmt.Sprintf(
			"the stored tree has %d leaves, but checkpoint %s signed %d: leaves were deleted from the ledger's tables", size, cp.Source, cp.Size)})
		return false
	}
	root, err := v.tree.Root(v.ctx, cp.Size)
	if err != nil {
		v.problem(Problem{Kind: KindTree, LeafIndex: -1, Detail: fmt.Sprintf("the stored tree cannot give the root of size %d: %v", cp.Size, err)})
		return false
	}
	if root != cp.Root {
		v.problem(Problem{Kind: KindTree, LeafIndex: -1, Detail: fmt.Sprintf(
			"the stored tree's root of size %d is %s, but checkpoint %s signed %s: the ledger's tables were rewritten", cp.Size, root, cp.Source, cp.Root)})
		return false
	}
	return true
}

// leafPage is a page of stored leaves being compared.
type leafPage struct {
	from  int64
	items []LeafInfo
}

// scan reads the log and compares; it reports whether it stopped at a
// problem.
//
// It reads the log after position after, whose first record is leaf
// v.front.n (the frontier holds the tree of the leaves before it); next is
// the first checkpoint larger than that.
func (v *verifier) scan(cps []Signed, after eventlog.Position, next int) bool {
	type page struct {
		recs []eventlog.Record
		err  error
	}
	ctx, cancel := context.WithCancel(v.ctx)
	defer cancel()
	pages := make(chan page, 1)
	go func() {
		defer close(pages)
		for {
			recs, err := v.log.ReadAll(ctx, after, v.opts.PageSize)
			select {
			case pages <- page{recs, err}:
			case <-ctx.Done():
				return
			}
			if err != nil || len(recs) < v.opts.PageSize {
				return
			}
			after = recs[len(recs)-1].Position
		}
	}()
	var stored leafPage
	var lastGood int64 // the largest checkpoint size the log agreed with
	var lastGoodPos eventlog.Position
	for p := range pages {
		if p.err != nil {
			if v.ctx.Err() != nil {
				return true
			}
			v.problem(Problem{Kind: KindUnreadable, LeafIndex: v.front.n, Detail: fmt.Sprintf(
				"the log could not be read after position %s (%d events read): %v", v.rep.Head, v.rep.Events, p.err)})
			return true
		}
		for _, rec := range p.recs {
			i := v.front.n
			v.buf = AppendLeafData(v.buf[:0], rec)
			h := tlog.RecordHash(v.buf)
			if _, err := v.front.add(h); err != nil {
				v.problem(Problem{Kind: KindUnreadable, LeafIndex: i, Detail: err.Error()})
				return true
			}
			if v.tree != nil && i < v.rep.TreeSize {
				if stop := v.compareLeaf(&stored, i, rec, h); stop {
					return true
				}
			}
			v.rep.Events++
			v.rep.Head = rec.Position
			for next < len(cps) && cps[next].Size == v.front.n {
				cp := cps[next]
				root, _ := v.front.root()
				if root != cp.Root {
					d := fmt.Sprintf("the first %d events hash to root %s, but checkpoint %s signed %s: the log was changed after it was signed",
						cp.Size, root, cp.Source, cp.Root)
					p := Problem{Kind: KindCheckpoint, LeafIndex: lastGood, Detail: d}
					if lastGood > 0 {
						p.Detail += fmt.Sprintf("; the first %d events (to position %s) agree with an earlier checkpoint, so the first changed event lies after position %s and at or before position %s",
							lastGood, lastGoodPos, lastGoodPos, rec.Position)
					} else {
						p.Detail += fmt.Sprintf("; the first changed event is at or before position %s", rec.Position)
					}
					v.problem(p)
					return true
				}
				lastGood, lastGoodPos = cp.Size, rec.Position
				next++
			}
		}
		if v.opts.Progress != nil {
			v.opts.Progress(v.rep.Events)
		}
	}
	if v.ctx.Err() != nil {
		return true
	}
	v.rep.Root, _ = v.front.root()
	return false
}

// compareLeaf compares the log's event i with the stored leaf i; it reports
// whether it found a problem.
func (v *verifier) compareLeaf(stored *leafPage, i int64, rec eventlog.Record, h tlog.Hash) bool {
	if i < stored.from || i >= stored.from+int64(len(stored.items)) {
		items, err := v.tree.Leaves(v.ctx, i, v.opts.PageSize)
		if err != nil {
			v.problem(Problem{Kind: KindUnreadable, LeafIndex: i, Detail: fmt.Sprintf("the stored tree could not be read at leaf %d: %v", i, err)})
			return true
		}
		*stored = leafPage{from: i, items: items}
		if len(items) == 0 || items[0].Index != i {
			v.problem(Problem{Kind: KindTree, LeafIndex: i, Detail: fmt.Sprintf("the stored tree has no leaf %d", i)})
			return true
		}
	}
	s := stored.items[i-stored.from]
	if s.Index != i {
		v.problem(Problem{Kind: KindTree, LeafIndex: i, Detail: fmt.Sprintf("the stored tree has no leaf %d", i)})
		return true
	}
	if s.Hash == h && s.EventID == rec.ID && s.Position == rec.Position {
		return false
	}
	if !v.anchored {
		// The stored tree disagrees with a checkpoint (reported): only the
		// checkpoints can tell where the log was changed.
		return false
	}
	if s.Hash != h && v.leafRowDamaged(i, s, h) {
		return false // reported; the log is right here, go on
	}
	v.problem(v.classify(i, s, rec, h))
	return true
}

// leafRowDamaged tells, for a leaf a checkpoint covers, which side of a
// difference is right: the inclusion proof from the stored tree's interior
// hashes (which agree with the checkpoint) accepts the log's leaf hash h
// and not the stored one when only the ledger's row was changed. It then
// reports a problem of the tree and returns true.
func (v *verifier) leafRowDamaged(i int64, s LeafInfo, h tlog.Hash) bool {
	cps := v.opts.Checkpoints
	if len(cps) == 0 || cps[len(cps)-1].Size <= i {
		return false // no signed root covers this leaf: the tree's row is the only record
	}
	cp := cps[len(cps)-1]
	proof, err := v.tree.ProveInclusion(v.ctx, i, cp.Size)
	if err != nil {
		return false
	}
	if tlog.CheckRecord(proof, cp.Size, cp.Root, i, h) != nil {
		return false
	}
	v.problem(Problem{Kind: KindTree, LeafIndex: i, Detail: fmt.Sprintf(
		"the ledger's row of leaf %d (position %s) was changed: the log's event hashes to the leaf that checkpoint %s covers, the stored row does not",
		i, s.Position, cp.Source)})
	return true
}

// classify says how the log's event i differs from the stored leaf s.
func (v *verifier) classify(i int64, s LeafInfo, rec eventlog.Record, h tlog.Hash) Problem {
	switch {
	case s.EventID == rec.ID && s.Hash != h:
		return Problem{Kind: KindEdited, LeafIndex: i, Position: s.Position, HasPosition: true, EventID: rec.ID, Detail: fmt.Sprintf(
			"event %s (%s in %s, version %d) was changed after it was recorded: its leaf hash is %s, the ledger recorded %s",
			rec.ID, rec.Type, rec.Stream, rec.Version, h, s.Hash)}
	case s.EventID == rec.ID:
		return Problem{Kind: KindMoved, LeafIndex: i, Position: s.Position, HasPosition: true, EventID: rec.ID, Detail: fmt.Sprintf(
			"event %s was recorded at position %s and now stands at position %s (the log's positions were renumbered, or the ledger's row was edited)",
			rec.ID, s.Position, rec.Position)}
	}
	where, err := v.tree.LeafOfEvent(v.ctx, rec.ID)
	switch {
	case errors.Is(err, ErrNotFound):
		return Problem{Kind: KindInserted, LeafIndex: i, Position: rec.Position, HasPosition: true, EventID: rec.ID, Detail: fmt.Sprintf(
			"event %s (%s in %s) at position %s was never recorded by the ledger; leaf %d is event %s at position %s",
			rec.ID, rec.Type, rec.Stream, rec.Position, i, s.EventID, s.Position)}
	case err != nil:
		return Problem{Kind: KindUnreadable, LeafIndex: i, Detail: fmt.Sprintf("the stored tree could not be read: %v", err)}
	case where.Index > i:
		return Problem{Kind: KindMissing, LeafIndex: i, Position: s.Position, HasPosition: true, EventID: s.EventID, Detail: fmt.Sprintf(
			"event %s, recorded at position %s, is not there (deleted, or moved later): the log has event %s of leaf %d there",
			s.EventID, s.Position, rec.ID, where.Index)}
	default:
		return Problem{Kind: KindMoved, LeafIndex: i, Position: s.Position, HasPosition: true, EventID: rec.ID, Detail: fmt.Sprintf(
			"event %s of leaf %d (recorded at position %s) stands at position %s, in the place of event %s",
			rec.ID, where.Index, where.Position, rec.Position, s.EventID)}
	}
}

// checkEnd reports a log that ends before the stored tree or a checkpoint.
func (v *verifier) checkEnd(cps []Signed) {
	n := v.front.n
	var want int64
	var source string
	if len(cps) > 0 && cps[len(cps)-1].Size > n {
		want, source = cps[len(cps)-1].Size, "checkpoint "+cps[len(cps)-1].Source
	}
	if v.anchored && v.rep.TreeSize > n && v.rep.TreeSize > want {
		want, source = v.rep.TreeSize, "the stored tree"
	}
	if want <= n {
		return
	}
	p := Problem{Kind: KindTruncated, LeafIndex: n, Detail: fmt.Sprintf(
		"the log ends after %d events (head %s), but %s holds %d: the newest %d events were deleted", n, v.rep.Head, source, want, want-n)}
	if v.tree != nil && n < v.rep.TreeSize {
		if l, err := v.tree.Leaf(v.ctx, n); err == nil {
			p.Position, p.HasPosition, p.EventID = l.Position, true, l.EventID
			p.Detail += fmt.Sprintf(" from position %s (event %s) on", l.Position, l.EventID)
		}
	}
	v.problem(p)
}
