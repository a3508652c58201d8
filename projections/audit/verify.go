package audit

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/ledger"
)

// DefaultPageSize is how many entries Verify reads per query unless
// VerifyOptions.PageSize says otherwise.
const DefaultPageSize = 1000

// Errors of Verify.
var (
	// ErrInvalidOptions: VerifyOptions that Verify cannot use.
	ErrInvalidOptions = errors.New("audit: invalid verify options")
	// ErrVersion: the trail's tables were built by another version of the
	// projection (the runner rebuilds them at the engine's start, and the
	// views show the old ones until the rebuild is done): Verify cannot
	// read them, and says so rather than giving a verdict.
	ErrVersion = errors.New("audit: the trail was built by another version of the projection")
)

// Checks of Verify, as Broken.Check names them.
const (
	// CheckChain: the entry's seq, hash, prev_hash or position.
	CheckChain = "chain"
	// CheckAnchor: the anchor of VerifyOptions.Anchor.
	CheckAnchor = "anchor"
	// CheckLedger: the comparison with the ledger's leaves.
	CheckLedger = "ledger"
	// CheckCheckpoint: the entry lies after the audit projection's own
	// checkpoint, where the runner never writes.
	CheckCheckpoint = "checkpoint"
)

// VerifyOptions tunes Verify. The zero value is ready to use.
type VerifyOptions struct {
	// PageSize is how many entries (and ledger leaves) each query reads
	// (default DefaultPageSize). Verify holds one page in memory at a
	// time.
	PageSize int
	// Anchor, when set, is an entry the caller recorded earlier (a head
	// hash a previous Verify reported, kept somewhere else). The chain
	// alone cannot reveal that its last entries were removed, or that the
	// whole history was rewritten with every hash recomputed; the anchor
	// can: the trail is broken when the entry at Anchor.Seq is missing or
	// has another hash.
	Anchor *Anchor
	// Ledger is the ledger's Merkle tree to compare the trail with (see
	// Verify). When nil, Verify compares with the tree stored in the same
	// database (ledger.NewTree(db)) if it has the ledger's view
	// ledger_leaves, and with none if it has not.
	Ledger *ledger.Tree
}

// Anchor is an entry's seq and the hash it must have.
type Anchor struct {
	Seq  int64
	Hash string
}

// Result is the outcome of Verify; its JSON form is the answer of GET
// /v1/audit/verify.
type Result struct {
	// OK is true when every entry and link checked out (FirstBroken is nil).
	OK bool `json:"ok"`
	// Entries is how many entries were found intact: all of them when OK,
	// those before FirstBroken otherwise.
	Entries int64 `json:"entries"`
	// HeadHash is the hash of the last intact entry (Genesis when there is
	// none): when OK, the head of the trail, worth keeping as an Anchor.
	HeadHash string `json:"head_hash"`
	// FirstBroken names the first entry that is not what the chain, the
	// anchor or the ledger says it should be, or nil.
	FirstBroken *Broken `json:"first_broken"`
	// Ledger says how the trail compared with the ledger; nil when there
	// was no ledger to compare it with.
	Ledger *LedgerComparison `json:"ledger"`
}

// LedgerComparison is what Verify compared with the ledger.
type LedgerComparison struct {
	// Checkpoint is the audit projection's checkpoint when Verify started
	// (the position of the last event the trail has taken in, as
	// eventlog.Position.String writes it), or "" when the database has
	// none (a trail not kept by a projections runner): then the trail's
	// length is not compared with the ledger.
	Checkpoint string `json:"checkpoint"`
	// Leaves is how many leaves the ledger held, when Verify started, for
	// the events up to Checkpoint: the trail must have an entry for each
	// of them (0 without a Checkpoint).
	Leaves int64 `json:"leaves"`
	// Size is how many leaves the ledger held when Verify started.
	Size int64 `json:"size"`
	// Matched is how many entries were found equal to their leaf (same
	// leaf_hash, event id and position): with OK, every entry the ledger
	// has a leaf for.
	Matched int64 `json:"matched"`
}

// Broken is the first broken entry of a trail and why it is broken.
type Broken struct {
	// Seq is the entry's number: the first seq missing when entries were
	// deleted, else the seq of the first entry that fails a check.
	Seq int64 `json:"seq"`
	// Position is the position in the log of the event whose entry Seq is
	// (eventlog.Position.String): the ledger's, when it has the leaf
	// Seq-1, else the entry's own; "" when neither is known (a missing
	// entry and no ledger).
	Position string `json:"position,omitempty"`
	// Check is the check that failed: CheckChain, CheckAnchor,
	// CheckLedger or CheckCheckpoint.
	Check string `json:"check"`
	// Reason says what is wrong, for people, e.g. "hash mismatch (entry
	// edited)".
	Reason string `json:"reason"`
}

// Verify reads the whole trail through the view audit_entries in seq
// order, a page at a time (so its memory does not grow with the trail), and
// checks every entry in turn:
//
//   - its seq is the previous one plus 1, starting at 1 (a gap means
//     deleted entries; a repeated or out-of-range seq, an inserted one);
//   - its hash is the hash of its own columns (any edited cell, or an entry
//     whose contents were moved to another seq, fails here);
//   - its prev_hash is the previous entry's hash, Genesis for entry 1 (an
//     entry removed, inserted or moved with its hash recomputed fails here,
//     at the entry after it);
//   - its position comes after the previous entry's;
//   - and, with opts.Anchor, the anchored entry exists and has the anchored
//     hash.
//
// When there is a ledger (opts.Ledger, or the ledger's view in db), Verify
// also compares the trail with the ledger's leaves, which stand for the
// events of the log, one per event in global order:
//
//   - every entry's leaf_index is seq-1, and where the ledger has that leaf,
//     the leaf is of the entry's event (event_id), at its position, with its
//     leaf_hash (an entry's leaf_hash rewritten, or an entry replaced by
//     another event, removed or inserted, with every later hash
//     recomputed, fails here);
//   - the trail has an entry for every leaf of an event up to the audit
//     projection's own checkpoint (read from projection_checkpoints), and no
//     more entries for those events: deleting the newest entries fails here,
//     with the seq and position of the first one missing.
//
// Whatever the ledger, the trail must not hold an entry after the audit
// projection's checkpoint (the runner writes entries and checkpoint in one
// transaction).
//
// The leaf hash covers fields the entry does not keep (the event's version,
// correlation and causation ids, times to the nanosecond), so Verify cannot
// recompute it from the entry: an edit of an entry's copy of the event
// (data, actor, reason, times) with every later hash recomputed keeps the
// chain whole and the leaves matched. opts.Anchor reveals it, as does a
// rebuild of the trail from the log (whose own integrity the ledger's
// Verify checks).
//
// It stops at the first failure and reports it in Result.FirstBroken; a
// broken trail is a result, not an error. The error is for a database that
// cannot be read, invalid options (ErrInvalidOptions) or tables of another
// version of the projection (ErrVersion). Entries appended while Verify runs
// are verified too when they land in a page not yet read; the ledger is
// compared up to the audit checkpoint of Verify's start, and beyond it as
// far as the ledger goes.
func Verify(ctx context.Context, db bun.IDB, opts VerifyOptions) (Result, error) {
	pageSize := opts.PageSize
	if pageSize == 0 {
		pageSize = DefaultPageSize
	}
	if pageSize < 0 {
		return Result{}, fmt.Errorf("%w: page size %d", ErrInvalidOptions, pageSize)
	}
	if a := opts.Anchor; a != nil && (a.Seq < 1 || !isHash(a.Hash)) {
		return Result{}, fmt.Errorf("%w: anchor must have a seq of at least 1 and a hash of 64 lower-case hex digits", ErrInvalidOptions)
	}

	cp, haveCp, err := readAuditCheckpoint(ctx, db)
	if err != nil {
		return Result{}, err
	}
	tree := opts.Ledger
	if tree == nil {
		found, err := relationExists(ctx, db, ledger.LeavesTable)
		if err != nil {
			return Result{}, err
		}
		if found {
			tree = ledger.NewTree(db)
		}
	}
	res := Result{HeadHash: Genesis}
	var lc ledgerCheck
	if tree != nil {
		if lc, err = newLedgerCheck(ctx, tree, cp, haveCp); err != nil {
			return Result{}, err
		}
		res.Ledger = &lc.cmp
	}

	// broken reports entry seq as the first broken one; stored is its
	// position as the entry holds it, when it exists.
	broken := func(seq int64, stored *eventlog.Position, check, format string, args ...any) (Result, error) {
		b := &Broken{Seq: seq, Check: check, Reason: fmt.Sprintf(format, args...)}
		if pos, ok, err := lc.positionOf(ctx, seq); err != nil {
			return Result{}, err
		} else if ok {
			b.Position = pos.String()
		} else if stored != nil {
			b.Position = stored.String()
		}
		res.FirstBroken = b
		return res, nil
	}
	var (
		page    []entryRow
		buf     []byte
		prevPos eventlog.Position
		last    int64 // the seq of the last entry read; the next page starts after it
		started bool  // whether a page has been read: the first one has no lower bound
	)
	for {
		page = page[:0]
		q := db.NewSelect().Model(&page).OrderExpr("seq ASC").Limit(int64(pageSize))
		if started {
			q = q.Where("seq > ?", last)
		}
		if err := q.Scan(ctx); err != nil {
			return Result{}, fmt.Errorf("audit: verify: read entries after %d: %w", last, err)
		}
		started = true
		if err := lc.readPage(ctx, page, pageSize); err != nil {
			return Result{}, err
		}
		for i := range page {
			r := &page[i]
			want := res.Entries + 1
			var hash string
			hash, buf = r.computeHash(buf)
			pos := eventlog.Position{Commit: uint64(r.PositionCommit), Prepare: uint64(r.PositionPrepare)}
			switch {
			case r.Seq > want:
				return broken(want, nil, CheckChain, "entry missing (deleted): the next entry is %d", r.Seq)
			case r.Seq < want:
				return broken(r.Seq, &pos, CheckChain, "unexpected seq %d where entry %d was due (entry inserted)", r.Seq, want)
			case hash != r.Hash:
				return broken(r.Seq, &pos, CheckChain, "hash mismatch (entry edited)")
			case r.PrevHash != res.HeadHash && want == 1:
				return broken(r.Seq, &pos, CheckChain, "prev_hash is not the genesis value (entries before it deleted, or it was inserted)")
			case r.PrevHash != res.HeadHash:
				return broken(r.Seq, &pos, CheckChain, "prev_hash does not match the hash of entry %d (entry %d replaced, or entries deleted, inserted or moved)", want-1, want-1)
			case want > 1 && (r.PositionCommit < 0 || r.PositionPrepare < 0 || !prevPos.Before(pos)):
				return broken(r.Seq, &pos, CheckChain, "position %s is not after the position %s of entry %d (entries reordered)", pos, prevPos, want-1)
			case opts.Anchor != nil && r.Seq == opts.Anchor.Seq && r.Hash != opts.Anchor.Hash:
				return broken(r.Seq, &pos, CheckAnchor, "hash differs from the anchor %s (history rewritten)", opts.Anchor.Hash)
			}
			if reason := lc.check(r, pos); reason != "" {
				return broken(r.Seq, &pos, CheckLedger, "%s", reason)
			}
			res.Entries, res.HeadHash, prevPos = r.Seq, r.Hash, pos
		}
		if len(page) < pageSize {
			break
		}
		last = page[len(page)-1].Seq
	}
	if a := opts.Anchor; a != nil && res.Entries < a.Seq {
		return broken(res.Entries+1, nil, CheckAnchor, "entry missing: the trail ends at entry %d, before the anchor at entry %d (entries deleted)", res.Entries, a.Seq)
	}
	if lc.tree != nil && lc.haveCp && res.Entries < lc.cmp.Leaves {
		return broken(res.Entries+1, nil, CheckLedger,
			"entry missing (deleted): the ledger holds %d events up to the audit checkpoint %s, the trail ends at entry %d",
			lc.cmp.Leaves, lc.cp, res.Entries)
	}
	if haveCp && res.Entries > 0 {
		// The checkpoint again: entries appended while Verify ran moved it
		// past them.
		end, _, err := readAuditCheckpoint(ctx, db)
		if err != nil {
			return Result{}, err
		}
		if end.Before(prevPos) {
			first, err := firstAfter(ctx, db, end)
			if err != nil {
				return Result{}, err
			}
			// The chain checked out, so the entry before it has the hash
			// its prev_hash holds.
			res.Entries, res.HeadHash = first.Seq-1, first.PrevHash
			if res.Ledger != nil {
				res.Ledger.Matched = min(res.Ledger.Matched, res.Entries)
			}
			pos := eventlog.Position{Commit: uint64(first.PositionCommit), Prepare: uint64(first.PositionPrepare)}
			return broken(first.Seq, &pos, CheckCheckpoint,
				"entry after the audit checkpoint %s, where the trail ends (entry inserted)", end)
		}
	}
	res.OK = true
	return res, nil
}

// firstAfter returns the first entry after position end.
func firstAfter(ctx context.Context, db bun.IDB, end eventlog.Position) (entryRow, error) {
	var first entryRow
	err := db.NewSelect().Model(&first).
		Where("position_commit > ? OR (position_commit = ? AND position_prepare > ?)", int64(end.Commit), int64(end.Commit), int64(end.Prepare)).
		OrderExpr("seq ASC").Limit(1).Scan(ctx)
	if err != nil {
		return entryRow{}, fmt.Errorf("audit: verify: read the first entry after %s: %w", end, err)
	}
	return first, nil
}

// ledgerCheck compares entries with the ledger's leaves; its zero value
// (no tree) compares nothing.
type ledgerCheck struct {
	tree   *ledger.Tree
	cp     eventlog.Position // the audit checkpoint at the start
	haveCp bool
	// covers: the ledger had reached cp at the start, so Leaves counts
	// every event up to cp.
	covers bool
	leaves map[int64]ledger.LeafInfo // the leaves of the current page
	cmp    LedgerComparison
}

func newLedgerCheck(ctx context.Context, tree *ledger.Tree, cp eventlog.Position, haveCp bool) (ledgerCheck, error) {
	lc := ledgerCheck{tree: tree, cp: cp, haveCp: haveCp}
	size, err := tree.Size(ctx)
	if err != nil {
		return ledgerCheck{}, fmt.Errorf("audit: verify: %w", err)
	}
	lc.cmp.Size = size
	if !haveCp {
		return lc, nil
	}
	lc.cmp.Checkpoint = cp.String()
	lc.cmp.Leaves, lc.covers, err = leavesUpTo(ctx, tree, size, cp)
	if err != nil {
		return ledgerCheck{}, fmt.Errorf("audit: verify: %w", err)
	}
	return lc, nil
}

// leavesUpTo returns how many of the first size leaves of tree are of
// events at or before cp (leaves are in the log's order), and whether the
// ledger reaches cp.
func leavesUpTo(ctx context.Context, tree *ledger.Tree, size int64, cp eventlog.Position) (int64, bool, error) {
	if cp.IsZero() {
		return 0, true, nil
	}
	if size == 0 {
		return 0, false, nil
	}
	// The checkpoint is the position of the last event the trail took in:
	// usually the ledger has its leaf.
	if l, err := tree.LeafAt(ctx, cp); err == nil && l.Index < size {
		return l.Index + 1, true, nil
	} else if err != nil && !errors.Is(err, ledger.ErrNotFound) {
		return 0, false, err
	}
	lastLeaf, err := tree.Leaf(ctx, size-1)
	if err != nil {
		return 0, false, err
	}
	if lastLeaf.Position.Before(cp) {
		return size, false, nil
	}
	// The first leaf after cp, by bisection.
	lo, hi := int64(0), size-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		l, err := tree.Leaf(ctx, mid)
		if err != nil {
			return 0, false, err
		}
		if cp.Before(l.Position) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, true, nil
}

// readPage reads the leaves of page's entries.
func (lc *ledgerCheck) readPage(ctx context.Context, page []entryRow, limit int) error {
	if lc.tree == nil || len(page) == 0 {
		return nil
	}
	from := max(page[0].Seq-1, 0)
	leaves, err := lc.tree.Leaves(ctx, from, limit)
	if err != nil {
		return fmt.Errorf("audit: verify: %w", err)
	}
	clear(lc.leaves)
	if lc.leaves == nil {
		lc.leaves = make(map[int64]ledger.LeafInfo, len(leaves))
	}
	for _, l := range leaves {
		lc.leaves[l.Index] = l
	}
	return nil
}

// check compares entry r at pos (whose chain checked out) with its leaf and
// returns what differs, or "".
func (lc *ledgerCheck) check(r *entryRow, pos eventlog.Position) string {
	if lc.tree == nil {
		return ""
	}
	idx := r.Seq - 1
	if r.LeafIndex != idx {
		return fmt.Sprintf("leaf_index %d is not seq-1 = %d (entry forged or moved)", r.LeafIndex, idx)
	}
	leaf, ok := lc.leaves[idx]
	if !ok {
		if lc.haveCp && lc.covers && r.Seq > lc.cmp.Leaves && !lc.cp.Before(pos) {
			return fmt.Sprintf("entry %d for an event at %s, but the ledger holds only %d events up to the audit checkpoint %s (entry inserted)",
				r.Seq, pos, lc.cmp.Leaves, lc.cp)
		}
		return "" // beyond the ledger: not compared
	}
	switch {
	case leaf.EventID.String() != r.EventID:
		return fmt.Sprintf("event_id %s is not the event %s of ledger leaf %d (entry replaced, inserted or moved)", r.EventID, leaf.EventID, idx)
	case leaf.Position != pos:
		return fmt.Sprintf("position %s is not the position %s of ledger leaf %d (entry moved)", pos, leaf.Position, idx)
	case hex.EncodeToString(leaf.Hash[:]) != r.LeafHash:
		return fmt.Sprintf("leaf_hash differs from the hash of ledger leaf %d (entry edited, or not the event the log holds)", idx)
	}
	lc.cmp.Matched++
	return ""
}

// positionOf returns the position of the event of entry seq by the ledger,
// when it has the leaf seq-1.
func (lc *ledgerCheck) positionOf(ctx context.Context, seq int64) (eventlog.Position, bool, error) {
	if lc.tree == nil || seq < 1 {
		return eventlog.Position{}, false, nil
	}
	if l, ok := lc.leaves[seq-1]; ok {
		return l.Position, true, nil
	}
	l, err := lc.tree.Leaf(ctx, seq-1)
	if errors.Is(err, ledger.ErrNotFound) {
		return eventlog.Position{}, false, nil
	}
	if err != nil {
		return eventlog.Position{}, false, fmt.Errorf("audit: verify: %w", err)
	}
	return l.Position, true, nil
}

// readAuditCheckpoint returns the audit projection's checkpoint from the
// runner's table projection_checkpoints; found is false when db has no such
// table or no row for the projection. It fails with ErrVersion when the row
// is of another version of the projection.
func readAuditCheckpoint(ctx context.Context, db bun.IDB) (eventlog.Position, bool, error) {
	exists, err := relationExists(ctx, db, "projection_checkpoints")
	if err != nil || !exists {
		return eventlog.Position{}, false, err
	}
	var version, commit, prepare int64
	err = db.QueryRowContext(ctx, "SELECT version, position_commit, position_prepare FROM projection_checkpoints WHERE name = ?", Name).
		Scan(&version, &commit, &prepare)
	if errors.Is(err, sql.ErrNoRows) {
		return eventlog.Position{}, false, nil
	}
	if err != nil {
		return eventlog.Position{}, false, fmt.Errorf("audit: verify: read the checkpoint of %s: %w", Name, err)
	}
	if version != Version {
		return eventlog.Position{}, false, fmt.Errorf("%w: its tables are of version %d, this engine's of version %d; "+
			"the engine rebuilds them at its start (or accessd rebuild --projection %s): verify once that is done", ErrVersion, version, Version, Name)
	}
	if commit < 0 || prepare < 0 {
		return eventlog.Position{}, false, fmt.Errorf("audit: verify: the checkpoint of %s has a negative position", Name)
	}
	return eventlog.Position{Commit: uint64(commit), Prepare: uint64(prepare)}, true, nil
}

// relationExists reports whether a table or view named name exists in db's
// current schema. It asks the catalogue, so that a missing one does not
// abort the caller's PostgreSQL transaction.
func relationExists(ctx context.Context, db bun.IDB, name string) (bool, error) {
	var n int
	var err error
	if db.Dialect().Name() == dialect.PG {
		err = db.QueryRowContext(ctx, "SELECT count(*) FROM information_schema.tables "+
			"WHERE table_schema = current_schema() AND table_name = ?", name).Scan(&n)
	} else {
		err = db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?", name).Scan(&n)
	}
	if err != nil {
		return false, fmt.Errorf("audit: verify: look up %s: %w", name, err)
	}
	return n > 0, nil
}

// VerifyReport renders r for people: a line on the comparison with the
// ledger, then the verdict, always the last line, e.g. "audit trail OK:
// 1234 entries, head <hash>" or "audit trail BROKEN at entry 57 (position
// 60, chain check): hash mismatch (entry edited)".
func VerifyReport(r Result) string {
	var b strings.Builder
	switch l := r.Ledger; {
	case l == nil:
		b.WriteString("ledger: not compared (no ledger tables)\n")
	case l.Checkpoint == "":
		fmt.Fprintf(&b, "ledger: %d of its %d leaves matched by entries; no audit checkpoint, so the trail's length was not compared\n",
			l.Matched, l.Size)
	default:
		fmt.Fprintf(&b, "ledger: %d of its %d leaves matched by entries; %d leaves up to the audit checkpoint %s\n",
			l.Matched, l.Size, l.Leaves, l.Checkpoint)
	}
	if f := r.FirstBroken; f != nil {
		var where []string
		if f.Position != "" {
			where = append(where, "position "+f.Position)
		}
		if f.Check != "" {
			where = append(where, f.Check+" check")
		}
		fmt.Fprintf(&b, "audit trail BROKEN at entry %d", f.Seq)
		if len(where) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(where, ", "))
		}
		fmt.Fprintf(&b, ": %s", f.Reason)
		return b.String()
	}
	noun := "entries"
	if r.Entries == 1 {
		noun = "entry"
	}
	fmt.Fprintf(&b, "audit trail OK: %d %s, head %s", r.Entries, noun, r.HeadHash)
	return b.String()
}

// isHash reports whether s has the form of a stored hash: 64 lower-case hex
// digits.
func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
