package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/ledger"
)

var _ Ledger = (*ledger.Ledger)(nil)

// maxTreeSize bounds the tree sizes a proof may name.
const maxTreeSize = 1 << 62

// ledgerGate is the ledger's state (Err, and the newest checkpoint's size)
// as the request path, the probes and the metrics read it. The ledger's
// Err and Latest never wait for I/O (publishing holds a lock of its own),
// so every request reads them afresh. Safe for concurrent use.
type ledgerGate struct {
	l Ledger
}

func newLedgerGate(l Ledger) *ledgerGate { return &ledgerGate{l: l} }

// state returns the newest checkpoint's size and the ledger's Err.
func (g *ledgerGate) state() (int64, error) {
	var size int64
	if s, ok := g.l.Latest(); ok {
		size = s.Size
	}
	return size, g.l.Err()
}

// ledgerErr is the ledger's Err as the gate last read it; nil without a
// ledger.
func (s *server) ledgerErr() error {
	if s.gate == nil {
		return nil
	}
	_, err := s.gate.state()
	return err
}

// ledgerOrOff returns the configured ledger, or the 503 of a server that
// runs without one.
func (s *server) ledgerOrOff() (Ledger, error) {
	if s.cfg.Ledger == nil {
		return nil, errLedgerOff
	}
	return s.cfg.Ledger, nil
}

// ledgerFault returns the 503 "ledger_mismatch" problem once the ledger
// has found the stored log tampered with, and 503 "stale" before it has
// verified the log at start: no decision is answered from a log that has
// not been checked against what was signed. Nil once verified.
func (s *server) ledgerFault() error {
	if err := s.ledgerErr(); err != nil {
		return s.ledgerError(err)
	}
	return nil
}

// ledgerError turns the ledger's state errors into their problems: a
// mismatch names the first bad position of the ledger's report (Fault); a
// log not verified yet is 503 "stale". Other errors pass unchanged.
func (s *server) ledgerError(err error) error {
	switch {
	case errors.Is(err, ledger.ErrMismatch):
		rep, cause := s.cfg.Ledger.Fault()
		if cause == nil {
			cause = err
		}
		var first ledger.Problem
		known := false
		if rep != nil {
			first, known = rep.FirstBad()
		}
		return errLedgerMismatch(first, known, cause)
	case errors.Is(err, ledger.ErrNotVerified):
		return errLedgerNotVerified
	}
	return err
}

// writeText answers body as text/plain.
func writeText(w http.ResponseWriter, status int, body []byte) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return nil
}

// ledgerCheckpoint is GET /v1/ledger/checkpoint: a signed checkpoint of the
// tree as it is now (at most a few seconds old), as a signed note.
func (s *server) ledgerCheckpoint(w http.ResponseWriter, r *http.Request, c call) error {
	l, err := s.ledgerOrOff()
	if err != nil {
		return err
	}
	cp, err := l.Current(r.Context())
	if err != nil {
		return s.ledgerError(err)
	}
	return writeText(w, http.StatusOK, cp.Note)
}

// ledgerPublicKey is GET /v1/ledger/public-key: the verifier key of the
// checkpoints' signatures, one line.
func (s *server) ledgerPublicKey(w http.ResponseWriter, r *http.Request, c call) error {
	l, err := s.ledgerOrOff()
	if err != nil {
		return err
	}
	return writeText(w, http.StatusOK, []byte(l.Key().VerifierKey+"\n"))
}

// inclusionAnswer is the answer of GET /v1/ledger/proof/inclusion.
type inclusionAnswer struct {
	LeafIndex int64     `json:"leaf_index"`
	TreeSize  int64     `json:"tree_size"`
	LeafHash  string    `json:"leaf_hash"`
	Hashes    []string  `json:"hashes"`
	Position  string    `json:"position"`
	EventID   uuid.UUID `json:"event_id"`
	LeafData  []byte    `json:"leaf_data"` // standard base64 in JSON
}

// ledgerInclusionProof is GET /v1/ledger/proof/inclusion: the proof that
// the leaf of the event at position= (or of event_id=) is in the tree of
// tree_size leaves (default: the current checkpoint's), with the leaf's
// bytes so that the caller can recompute its hash and read the event.
func (s *server) ledgerInclusionProof(w http.ResponseWriter, r *http.Request, c call) error {
	l, err := s.ledgerOrOff()
	if err != nil {
		return err
	}
	q := c.q
	pos, byPos, err := q.position("position")
	if err != nil {
		return err
	}
	id, byID, err := q.uuid("event_id", false)
	if err != nil {
		return err
	}
	if byPos == byID {
		return errInvalid("give exactly one of position and event_id")
	}
	size, sizeGiven, err := treeSizeParam(q, "tree_size")
	if err != nil {
		return err
	}
	ctx := r.Context()
	tree := l.Tree()
	var leaf ledger.LeafInfo
	if byPos {
		leaf, err = tree.LeafAt(ctx, pos)
	} else {
		leaf, err = tree.LeafOfEvent(ctx, id)
	}
	if errors.Is(err, ledger.ErrNotFound) {
		if byPos {
			return &httpError{status: http.StatusNotFound, code: codeNotFound,
				detail: fmt.Sprintf("the ledger has no leaf for position %s (no such event, or one recorded too recently: retry)", pos)}
		}
		return &httpError{status: http.StatusNotFound, code: codeNotFound,
			detail: fmt.Sprintf("the ledger has no leaf for event %s (no such event, or one recorded too recently: retry)", id)}
	}
	if err != nil {
		return err
	}
	if sizeGiven {
		if err := s.checkStoredSize(ctx, tree, "tree_size", size); err != nil {
			return err
		}
		if size <= leaf.Index {
			return errInvalid("tree_size %d does not include leaf %d (the event's index): give a tree_size above %d", size, leaf.Index, leaf.Index)
		}
	} else {
		cp, err := l.Current(ctx)
		if err != nil {
			return s.ledgerError(err)
		}
		if size = cp.Size; size <= leaf.Index {
			return &httpError{status: http.StatusServiceUnavailable, code: codeStale,
				detail: fmt.Sprintf("the current checkpoint (size %d) does not include leaf %d yet: retry in a few seconds, or give tree_size", size, leaf.Index)}
		}
	}
	proof, err := tree.ProveInclusion(ctx, leaf.Index, size)
	if err != nil {
		return err
	}
	rec, err := s.leafRecord(ctx, tree, leaf)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, inclusionAnswer{LeafIndex: leaf.Index, TreeSize: size, LeafHash: leaf.Hash.String(),
		Hashes: hashStrings(proof), Position: leaf.Position.String(), EventID: leaf.EventID, LeafData: ledger.LeafData(rec)})
}

// leafRecord reads the stored event leaf covers: the one event after the
// previous leaf's position. An event that is not the leaf's (moved,
// deleted, another inserted before it) or no longer hashes to it (edited)
// is a log changed after the ledger recorded it: 503 "ledger_mismatch".
func (s *server) leafRecord(ctx context.Context, tree *ledger.Tree, leaf ledger.LeafInfo) (eventlog.Record, error) {
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
		logger(ctx, s.log).ErrorContext(ctx, "ledger: a stored event no longer matches its leaf", "error", cause)
		return errLedgerMismatch(p, true, cause)
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

// consistencyAnswer is the answer of GET /v1/ledger/proof/consistency.
type consistencyAnswer struct {
	FromSize int64    `json:"from_size"`
	ToSize   int64    `json:"to_size"`
	Hashes   []string `json:"hashes"`
}

// ledgerConsistencyProof is GET /v1/ledger/proof/consistency: the proof
// that the tree of from_size leaves is a prefix of the tree of to_size
// leaves (default: the current checkpoint's size).
func (s *server) ledgerConsistencyProof(w http.ResponseWriter, r *http.Request, c call) error {
	l, err := s.ledgerOrOff()
	if err != nil {
		return err
	}
	q := c.q
	if !q.has("from_size") {
		return errInvalid("from_size: required (the size of the checkpoint you hold)")
	}
	from, _, err := treeSizeParam(q, "from_size")
	if err != nil {
		return err
	}
	to, toGiven, err := treeSizeParam(q, "to_size")
	if err != nil {
		return err
	}
	ctx := r.Context()
	tree := l.Tree()
	if toGiven {
		if from > to {
			return errInvalid("from_size %d is above to_size %d", from, to)
		}
		if err := s.checkStoredSize(ctx, tree, "to_size", to); err != nil {
			return err
		}
	} else {
		cp, err := l.Current(ctx)
		if err != nil {
			return s.ledgerError(err)
		}
		if to = cp.Size; from > to {
			return errInvalid("from_size %d is above the current checkpoint's size %d", from, to)
		}
	}
	proof, err := tree.ProveConsistency(ctx, from, to)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, consistencyAnswer{FromSize: from, ToSize: to, Hashes: hashStrings(proof)})
}

// treeSizeParam reads a tree size parameter: an integer from 1 on.
func treeSizeParam(q query, name string) (int64, bool, error) {
	if !q.has(name) {
		return 0, false, nil
	}
	n, err := q.int64In(name, 0, 1, maxTreeSize)
	return n, err == nil, err
}

// checkStoredSize answers 404 for a tree size beyond the stored tree.
func (s *server) checkStoredSize(ctx context.Context, tree *ledger.Tree, name string, size int64) error {
	stored, err := tree.Size(ctx)
	if err != nil {
		return err
	}
	if size > stored {
		return &httpError{status: http.StatusNotFound, code: codeNotFound,
			detail: fmt.Sprintf("%s %d is beyond the stored tree (%d leaves)", name, size, stored)}
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
