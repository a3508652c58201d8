package queries

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/ledger"
)

var _ Ledger = (*ledger.Ledger)(nil)

// Ledger is the ledger of signed checkpoints over the event log (R23):
// *ledger.Ledger implements it. The queries serve its checkpoints, its
// public key and proofs from its stored tree; LedgerHealth tells the
// transports when it has found the stored log tampered with.
type Ledger interface {
	// Current returns a signed checkpoint of the tree as it is now (at most
	// a few seconds old); it fails while Err is not nil.
	Current(ctx context.Context) (ledger.Signed, error)
	// Latest returns the newest checkpoint published or found, if any.
	Latest() (ledger.Signed, bool)
	// Key returns the signing key; its VerifierKey is the public key.
	Key() *ledger.Key
	// Tree returns the stored Merkle tree.
	Tree() *ledger.Tree
	// Err is nil once the log has been verified against the published
	// checkpoints; it wraps ledger.ErrNotVerified before that check has
	// finished and ledger.ErrMismatch once the log was found tampered with.
	Err() error
	// Fault returns the failed verification's report, or nil.
	Fault() (*ledger.Report, error)
}

// LedgerLog reads the event log for the ledger's inclusion proofs (the
// stored event a leaf covers): every eventlog.Store implements it.
type LedgerLog interface {
	ReadAll(ctx context.Context, after eventlog.Position, limit int) ([]eventlog.Record, error)
}

// The ledger's errors; match them with errors.Is.
var (
	// ErrLedgerOff: the engine runs without the ledger.
	ErrLedgerOff = errors.New("queries: this engine runs without the ledger: it has no signed checkpoints or proofs to give")
	// ErrLedgerNotVerified: the ledger has not finished verifying the log
	// against its published checkpoints (ledger.ErrNotVerified).
	ErrLedgerNotVerified = ledger.ErrNotVerified
	// ErrLedgerMismatch: the ledger found the stored log tampered with
	// (ledger.ErrMismatch).
	ErrLedgerMismatch = ledger.ErrMismatch
)

// maxTreeSize bounds the tree sizes a proof may name.
const maxTreeSize = 1 << 62

// Mismatch is the error of a log the ledger found tampered with; it wraps
// ErrLedgerMismatch. Its text names the first bad position and what was
// wrong there, never the event's contents, so it is safe to show without a
// token.
type Mismatch struct {
	First ledger.Problem
	Known bool // First is known
	Err   error
}

func (e *Mismatch) Error() string {
	where := "the ledger's report names no position"
	switch {
	case e.Known && e.First.HasPosition:
		where = fmt.Sprintf("first bad position %s (%s", e.First.Position, e.First.Kind)
		if e.First.LeafIndex >= 0 {
			where += fmt.Sprintf(", leaf %d", e.First.LeafIndex)
		}
		where += ")"
	case e.Known:
		where = fmt.Sprintf("%s, at no single position", e.First.Kind)
	}
	return "the stored event log disagrees with the ledger: " + where +
		"; this server answers no decisions until the log is investigated (accessd ledger verify)"
}

func (e *Mismatch) Unwrap() error {
	if e.Err == nil {
		return ErrLedgerMismatch
	}
	return e.Err
}

// NotFound is the error of a ledger query about a leaf or a tree size the
// stored tree does not have; its text is safe to show the caller.
type NotFound struct{ Detail string }

func (e *NotFound) Error() string { return e.Detail }

// Pending is the error of a proof the current checkpoint cannot give yet;
// it wraps ErrStale (retry shortly).
type Pending struct{ Detail string }

func (e *Pending) Error() string { return e.Detail }

func (e *Pending) Unwrap() error { return ErrStale }

// LedgerHealth is nil without a ledger and once the ledger has verified
// the log; before, an error wrapping ErrLedgerNotVerified; once it has
// found the stored log tampered with, a *Mismatch naming the first bad
// position. Transports answer no decision while it is not nil. It never
// waits for I/O.
func (s *Service) LedgerHealth() error {
	if s.cfg.Ledger == nil {
		return nil
	}
	return s.ledgerError(s.cfg.Ledger.Err())
}

// LedgerCheckpointSize returns the size of the newest checkpoint published
// or found (0 when none) and whether the engine runs with a ledger.
func (s *Service) LedgerCheckpointSize() (int64, bool) {
	if s.cfg.Ledger == nil {
		return 0, false
	}
	if cp, ok := s.cfg.Ledger.Latest(); ok {
		return cp.Size, true
	}
	return 0, true
}

// ledgerError turns the ledger's state errors into the queries' errors: a
// mismatch becomes a *Mismatch with the ledger's report; others pass.
func (s *Service) ledgerError(err error) error {
	if err == nil || !errors.Is(err, ErrLedgerMismatch) {
		return err
	}
	rep, cause := s.cfg.Ledger.Fault()
	if cause == nil {
		cause = err
	}
	m := &Mismatch{Err: cause}
	if rep != nil {
		m.First, m.Known = rep.FirstBad()
	}
	return m
}

// ledgerFor authorizes c for q and returns the ledger, or ErrLedgerOff.
func (s *Service) ledgerFor(ctx context.Context, q Name, c Caller) (Ledger, error) {
	if err := s.Authorize(ctx, q, c); err != nil {
		return nil, err
	}
	if s.cfg.Ledger == nil {
		return nil, ErrLedgerOff
	}
	return s.cfg.Ledger, nil
}

// LedgerCheckpoint answers a signed checkpoint of the tree as it is now
// (at most a few seconds old), as a signed note.
func (s *Service) LedgerCheckpoint(ctx context.Context, c Caller) ([]byte, error) {
	l, err := s.ledgerFor(ctx, QueryLedgerCheckpoint, c)
	if err != nil {
		return nil, err
	}
	cp, err := l.Current(ctx)
	if err != nil {
		return nil, s.ledgerError(err)
	}
	return cp.Note, nil
}

// LedgerPublicKey answers the verifier key of the checkpoints' signatures.
func (s *Service) LedgerPublicKey(ctx context.Context, c Caller) (string, error) {
	l, err := s.ledgerFor(ctx, QueryLedgerPublicKey, c)
	if err != nil {
		return "", err
	}
	return l.Key().VerifierKey, nil
}

// InclusionParams are the parameters of InclusionProof: the event at
// Position (ByPosition) or of EventID, in the tree of TreeSize leaves
// (when SizeGiven; else the current checkpoint's).
type InclusionParams struct {
	Position   eventlog.Position
	ByPosition bool
	EventID    uuid.UUID
	TreeSize   int64
	SizeGiven  bool
}

// InclusionProof answers the proof that the leaf of an event is in the
// tree, with the leaf's bytes so that the caller can recompute its hash and
// read the event. A stored event that no longer matches its leaf fails
// with a *Mismatch.
func (s *Service) InclusionProof(ctx context.Context, c Caller, p InclusionParams) (api.InclusionProof, error) {
	l, err := s.ledgerFor(ctx, QueryLedgerInclusionProof, c)
	if err != nil {
		return api.InclusionProof{}, err
	}
	tree := l.Tree()
	var leaf ledger.LeafInfo
	if p.ByPosition {
		leaf, err = tree.LeafAt(ctx, p.Position)
	} else {
		leaf, err = tree.LeafOfEvent(ctx, p.EventID)
	}
	if errors.Is(err, ledger.ErrNotFound) {
		what := "event " + p.EventID.String()
		if p.ByPosition {
			what = "position " + p.Position.String()
		}
		return api.InclusionProof{}, &NotFound{Detail: fmt.Sprintf("the ledger has no leaf for %s (no such event, or one recorded too recently: retry)", what)}
	}
	if err != nil {
		return api.InclusionProof{}, err
	}
	size := p.TreeSize
	if p.SizeGiven {
		if err := checkStoredSize(ctx, tree, "tree_size", size); err != nil {
			return api.InclusionProof{}, err
		}
		if size <= leaf.Index {
			return api.InclusionProof{}, &Invalid{Detail: fmt.Sprintf("tree_size %d does not include leaf %d (the event's index): give a tree_size above %d", size, leaf.Index, leaf.Index)}
		}
	} else {
		cp, err := l.Current(ctx)
		if err != nil {
			return api.InclusionProof{}, s.ledgerError(err)
		}
		if size = cp.Size; size <= leaf.Index {
			return api.InclusionProof{}, &Pending{Detail: fmt.Sprintf("the current checkpoint (size %d) does not include leaf %d yet: retry in a few seconds, or give tree_size", size, leaf.Index)}
		}
	}
	proof, err := tree.ProveInclusion(ctx, leaf.Index, size)
	if err != nil {
		return api.InclusionProof{}, err
	}
	rec, err := s.leafRecord(ctx, tree, leaf)
	if err != nil {
		return api.InclusionProof{}, err
	}
	return api.InclusionProof{LeafIndex: int(leaf.Index), TreeSize: int(size), LeafHash: leaf.Hash.String(),
		Hashes: hashStrings(proof), Position: leaf.Position.String(), EventID: leaf.EventID, LeafData: ledger.LeafData(rec)}, nil
}

// leafRecord reads the stored event leaf covers: the one event after the
// previous leaf's position. An event that is not the leaf's (moved,
// deleted, another inserted before it) or no longer hashes to it (edited)
// is a log changed after the ledger recorded it: a *Mismatch.
func (s *Service) leafRecord(ctx context.Context, tree *ledger.Tree, leaf ledger.LeafInfo) (eventlog.Record, error) {
	after := eventlog.Start
	if leaf.Index > 0 {
		prev, err := tree.Leaf(ctx, leaf.Index-1)
		if err != nil {
			return eventlog.Record{}, fmt.Errorf("read leaf %d: %w", leaf.Index-1, err)
		}
		after = prev.Position
	}
	recs, err := s.cfg.LedgerLog.ReadAll(ctx, after, 1)
	if err != nil {
		return eventlog.Record{}, err
	}
	bad := func(kind ledger.Kind, what string) error {
		p := ledger.Problem{Kind: kind, LeafIndex: leaf.Index, Position: leaf.Position, HasPosition: true, EventID: leaf.EventID}
		cause := fmt.Errorf("%w: leaf %d (event %s at position %s): %s", ledger.ErrMismatch, leaf.Index, leaf.EventID, leaf.Position, what)
		s.cfg.Logger.ErrorContext(ctx, "ledger: a stored event no longer matches its leaf", "error", cause)
		return &Mismatch{First: p, Known: true, Err: cause}
	}
	switch {
	case len(recs) == 0:
		return eventlog.Record{}, bad(ledger.KindTruncated, "the log ends before it")
	case recs[0].ID != leaf.EventID || recs[0].Position != leaf.Position:
		return eventlog.Record{}, bad(ledger.KindMissing, fmt.Sprintf("the log has event %s at position %s there", recs[0].ID, recs[0].Position))
	case ledger.LeafHash(recs[0]) != leaf.Hash:
		return eventlog.Record{}, bad(ledger.KindEdited, "the stored event was changed after it was recorded")
	}
	return recs[0], nil
}

// ConsistencyParams are the parameters of ConsistencyProof: the tree of
// From leaves, and of To leaves when ToGiven (else the current
// checkpoint's size).
type ConsistencyParams struct {
	From, To int64
	ToGiven  bool
}

// ConsistencyProof answers the proof that the tree of p.From leaves is a
// prefix of the tree of p.To leaves.
func (s *Service) ConsistencyProof(ctx context.Context, c Caller, p ConsistencyParams) (api.ConsistencyProof, error) {
	l, err := s.ledgerFor(ctx, QueryLedgerConsistencyProof, c)
	if err != nil {
		return api.ConsistencyProof{}, err
	}
	tree := l.Tree()
	to := p.To
	if p.ToGiven {
		if p.From > to {
			return api.ConsistencyProof{}, &Invalid{Detail: fmt.Sprintf("from_size %d is above to_size %d", p.From, to)}
		}
		if err := checkStoredSize(ctx, tree, "to_size", to); err != nil {
			return api.ConsistencyProof{}, err
		}
	} else {
		cp, err := l.Current(ctx)
		if err != nil {
			return api.ConsistencyProof{}, s.ledgerError(err)
		}
		if to = cp.Size; p.From > to {
			return api.ConsistencyProof{}, &Invalid{Detail: fmt.Sprintf("from_size %d is above the current checkpoint's size %d", p.From, to)}
		}
	}
	proof, err := tree.ProveConsistency(ctx, p.From, to)
	if err != nil {
		return api.ConsistencyProof{}, err
	}
	return api.ConsistencyProof{FromSize: int(p.From), ToSize: int(to), Hashes: hashStrings(proof)}, nil
}

// MaxTreeSize is the largest tree size a proof may name.
const MaxTreeSize = maxTreeSize

// checkStoredSize fails with a *NotFound for a tree size beyond the
// stored tree.
func checkStoredSize(ctx context.Context, tree *ledger.Tree, name string, size int64) error {
	stored, err := tree.Size(ctx)
	if err != nil {
		return err
	}
	if size > stored {
		return &NotFound{Detail: fmt.Sprintf("%s %d is beyond the stored tree (%d leaves)", name, size, stored)}
	}
	return nil
}

// hashStrings writes proof hashes in standard base64.
func hashStrings(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.String()
	}
	return out
}
