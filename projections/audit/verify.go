package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// DefaultPageSize is how many entries Verify reads per query unless
// VerifyOptions.PageSize says otherwise.
const DefaultPageSize = 1000

// ErrInvalidOptions: VerifyOptions that Verify cannot use.
var ErrInvalidOptions = errors.New("audit: invalid verify options")

// VerifyOptions tunes Verify. The zero value is ready to use.
type VerifyOptions struct {
	// PageSize is how many entries each query reads (default
	// DefaultPageSize). Verify holds one page in memory at a time.
	PageSize int
	// Anchor, when set, is an entry the caller recorded earlier (a head
	// hash a previous Verify reported, kept somewhere else). The chain
	// alone cannot reveal that its last entries were removed, or that the
	// whole history was rewritten with every hash recomputed; the anchor
	// can: the trail is broken when the entry at Anchor.Seq is missing or
	// has another hash.
	Anchor *Anchor
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
	// FirstBroken names the first entry that is not what the chain says it
	// should be, or nil.
	FirstBroken *Broken `json:"first_broken"`
}

// Broken is the first broken entry of a trail and why it is broken.
type Broken struct {
	// Seq is the entry's number: the first seq missing when entries were
	// deleted, else the seq of the first entry that fails a check.
	Seq int64 `json:"seq"`
	// Reason says which check failed, for people, e.g. "hash mismatch
	// (entry edited)".
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
// It stops at the first failure and reports it in Result.FirstBroken; a
// broken trail is a result, not an error. The error is for a database that
// cannot be read or invalid options (ErrInvalidOptions). Entries appended
// while Verify runs are verified too when they land in a page not yet read.
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

	res := Result{HeadHash: Genesis}
	broken := func(seq int64, format string, args ...any) (Result, error) {
		res.FirstBroken = &Broken{Seq: seq, Reason: fmt.Sprintf(format, args...)}
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
		for i := range page {
			r := &page[i]
			want := res.Entries + 1
			var hash string
			hash, buf = r.computeHash(buf)
			pos := eventlog.Position{Commit: uint64(r.PositionCommit), Prepare: uint64(r.PositionPrepare)}
			switch {
			case r.Seq > want:
				return broken(want, "entry missing (deleted): the next entry is %d", r.Seq)
			case r.Seq < want:
				return broken(r.Seq, "unexpected seq %d where entry %d was due (entry inserted)", r.Seq, want)
			case hash != r.Hash:
				return broken(r.Seq, "hash mismatch (entry edited)")
			case r.PrevHash != res.HeadHash && want == 1:
				return broken(r.Seq, "prev_hash is not the genesis value (entries before it deleted, or it was inserted)")
			case r.PrevHash != res.HeadHash:
				return broken(r.Seq, "prev_hash does not match the hash of entry %d (entry %d replaced, or entries deleted, inserted or moved)", want-1, want-1)
			case want > 1 && (r.PositionCommit < 0 || r.PositionPrepare < 0 || !prevPos.Before(pos)):
				return broken(r.Seq, "position %s is not after the position %s of entry %d (entries reordered)", pos, prevPos, want-1)
			case opts.Anchor != nil && r.Seq == opts.Anchor.Seq && r.Hash != opts.Anchor.Hash:
				return broken(r.Seq, "hash differs from the anchor %s (history rewritten)", opts.Anchor.Hash)
			}
			res.Entries, res.HeadHash, prevPos = r.Seq, r.Hash, pos
		}
		if len(page) < pageSize {
			break
		}
		last = page[len(page)-1].Seq
	}
	if a := opts.Anchor; a != nil && res.Entries < a.Seq {
		return broken(res.Entries+1, "entry missing: the trail ends at entry %d, before the anchor at entry %d (entries deleted)", res.Entries, a.Seq)
	}
	res.OK = true
	return res, nil
}

// VerifyReport renders r as one line for people, e.g. "audit trail OK:
// 1234 entries, head <hash>" or "audit trail BROKEN at entry 57: hash
// mismatch (entry edited)".
func VerifyReport(r Result) string {
	if r.FirstBroken != nil {
		return fmt.Sprintf("audit trail BROKEN at entry %d: %s", r.FirstBroken.Seq, r.FirstBroken.Reason)
	}
	noun := "entries"
	if r.Entries == 1 {
		noun = "entry"
	}
	return fmt.Sprintf("audit trail OK: %d %s, head %s", r.Entries, noun, r.HeadHash)
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
