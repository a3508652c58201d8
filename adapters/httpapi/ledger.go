package httpapi

import (
	"net/http"

	"github.com/accessledger/accessledger/queries"
)

// The ledger's routes (R23) and its guard: the query service answers the
// checkpoints, the key and the proofs, and reports the ledger's health
// (queries.Service.LedgerHealth), which stops every decision once the
// ledger has found the stored log tampered with.

// ledgerFault returns the 503 "ledger_mismatch" problem once the ledger
// has found the stored log tampered with, and 503 "stale" before it has
// verified the log at start: no decision is answered from a log that has
// not been checked against what was signed. Nil once verified, and
// without a ledger.
func (s *server) ledgerFault() error { return s.cfg.Queries.LedgerHealth() }

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
	note, err := s.cfg.Queries.LedgerCheckpoint(r.Context(), c.caller)
	if err != nil {
		return err
	}
	return writeText(w, http.StatusOK, note)
}

// ledgerPublicKey is GET /v1/ledger/public-key: the verifier key of the
// checkpoints' signatures, one line.
func (s *server) ledgerPublicKey(w http.ResponseWriter, r *http.Request, c call) error {
	key, err := s.cfg.Queries.LedgerPublicKey(r.Context(), c.caller)
	if err != nil {
		return err
	}
	return writeText(w, http.StatusOK, []byte(key+"\n"))
}

// ledgerInclusionProof is GET /v1/ledger/proof/inclusion: the proof that
// the leaf of the event at position= (or of event_id=) is in the tree of
// tree_size leaves (default: the current checkpoint's), with the leaf's
// bytes so that the caller can recompute its hash and read the event.
func (s *server) ledgerInclusionProof(w http.ResponseWriter, r *http.Request, c call) error {
	q := c.q
	var p queries.InclusionParams
	var err error
	if p.Position, p.ByPosition, err = q.position("position"); err != nil {
		return err
	}
	id, byID, err := q.uuid("event_id", false)
	if err != nil {
		return err
	}
	if p.ByPosition == byID {
		return errInvalid("give exactly one of position and event_id")
	}
	p.EventID = id
	if p.TreeSize, p.SizeGiven, err = treeSizeParam(q, "tree_size"); err != nil {
		return err
	}
	a, err := s.cfg.Queries.InclusionProof(r.Context(), c.caller, p)
	return answerJSON(w, a, err)
}

// ledgerConsistencyProof is GET /v1/ledger/proof/consistency: the proof
// that the tree of from_size leaves is a prefix of the tree of to_size
// leaves (default: the current checkpoint's size).
func (s *server) ledgerConsistencyProof(w http.ResponseWriter, r *http.Request, c call) error {
	q := c.q
	if !q.has("from_size") {
		return errInvalid("from_size: required (the size of the checkpoint you hold)")
	}
	var p queries.ConsistencyParams
	var err error
	if p.From, _, err = treeSizeParam(q, "from_size"); err != nil {
		return err
	}
	if p.To, p.ToGiven, err = treeSizeParam(q, "to_size"); err != nil {
		return err
	}
	a, err := s.cfg.Queries.ConsistencyProof(r.Context(), c.caller, p)
	return answerJSON(w, a, err)
}

// treeSizeParam reads a tree size parameter: an integer from 1 on.
func treeSizeParam(q query, name string) (int64, bool, error) {
	if !q.has(name) {
		return 0, false, nil
	}
	n, err := q.int64In(name, 0, 1, queries.MaxTreeSize)
	return n, err == nil, err
}
