package queries

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/audit"
)

// Audit is the audit trail read model (R14): *audit.Reader implements it.
// List fails with an error wrapping audit.ErrInvalidFilter, Verify with
// audit.ErrInvalidOptions, for parameters the read model refuses, and
// Verify with audit.ErrVersion while the trail is rebuilt for a new
// version.
type Audit interface {
	List(ctx context.Context, f audit.Filter) ([]audit.Entry, int64, error)
	Verify(ctx context.Context, opts audit.VerifyOptions) (audit.Result, error)
	// KnownBy returns the position of the newest event recorded by t (the
	// history's "as known at" a time); ok is false when none was.
	KnownBy(ctx context.Context, t time.Time) (pos eventlog.Position, ok bool, err error)
}

// cursor is the "next" of a page: null on the last one.
func cursor(n int64) *string {
	if n == 0 {
		return nil
	}
	c := strconv.FormatInt(n, 10)
	return &c
}

// AuditList answers one page of the audit trail's entries that match f.
func (s *Service) AuditList(ctx context.Context, c Caller, f audit.Filter, w Consistency) (api.AuditPage, error) {
	if err := s.Authorize(ctx, QueryAuditList, c); err != nil {
		return api.AuditPage{}, err
	}
	pos, err := s.waitReadModel(ctx, audit.Name, w)
	if err != nil {
		return api.AuditPage{}, err
	}
	entries, next, err := s.cfg.Audit.List(ctx, f)
	if errors.Is(err, audit.ErrInvalidFilter) {
		return api.AuditPage{}, &Invalid{Detail: err.Error()}
	}
	if err != nil {
		return api.AuditPage{}, err
	}
	out := api.AuditPage{Entries: make([]api.AuditEntry, 0, len(entries)), Next: cursor(next), Position: pos.String()}
	for _, e := range entries {
		out.Entries = append(out.Entries, auditEntry(e))
	}
	return out, nil
}

// auditEntry is e as answered.
func auditEntry(e audit.Entry) api.AuditEntry {
	return api.AuditEntry{Seq: int(e.Seq), EventID: e.EventID, Type: e.Type, Stream: e.Stream,
		ChildID: e.ChildID, AccountID: e.AccountID, Actor: e.Actor, ActorRole: e.ActorRole, Reason: e.Reason,
		EffectiveAt: e.EffectiveAt.UTC(), RecordedAt: e.RecordedAt.UTC(), Data: e.Data, LeafIndex: int(e.LeafIndex),
		LeafHash: e.LeafHash, PrevHash: e.PrevHash, Hash: e.Hash, Position: e.Position.String()}
}

// AuditVerify recomputes the audit trail's hash chain (from opts.Anchor,
// when given) and compares it with the ledger.
func (s *Service) AuditVerify(ctx context.Context, c Caller, opts audit.VerifyOptions, w Consistency) (api.VerifyResult, error) {
	if err := s.Authorize(ctx, QueryAuditVerify, c); err != nil {
		return api.VerifyResult{}, err
	}
	pos, err := s.waitReadModel(ctx, audit.Name, w)
	if err != nil {
		return api.VerifyResult{}, err
	}
	res, err := s.cfg.Audit.Verify(ctx, opts)
	switch {
	case errors.Is(err, audit.ErrInvalidOptions):
		return api.VerifyResult{}, &Invalid{Detail: err.Error()}
	case errors.Is(err, audit.ErrVersion):
		return api.VerifyResult{}, ErrNotReady
	case err != nil:
		return api.VerifyResult{}, err
	}
	out := api.VerifyResult{Ok: res.OK, Entries: int(res.Entries), HeadHash: res.HeadHash, Position: pos.String()}
	if b := res.FirstBroken; b != nil {
		out.FirstBroken = &api.BrokenEntry{Seq: int(b.Seq), Position: b.Position, Check: api.BrokenEntryCheck(b.Check), Reason: b.Reason}
	}
	if l := res.Ledger; l != nil {
		out.Ledger = &api.LedgerComparison{Checkpoint: l.Checkpoint, Leaves: int(l.Leaves), Size: int(l.Size), Matched: int(l.Matched)}
	}
	return out, nil
}
