package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// Page sizes of List.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// ErrInvalidFilter: a Filter that List refuses.
var ErrInvalidFilter = errors.New("audit: invalid filter")

// Entry is one entry of the trail, as GET /v1/audit shows it.
type Entry struct {
	Seq int64 `json:"seq"`
	// Position is the event's place in the log (not part of the API's
	// entry).
	Position  eventlog.Position `json:"-"`
	EventID   uuid.UUID         `json:"event_id"`
	Type      string            `json:"type"`
	Stream    string            `json:"stream"`
	ChildID   *uuid.UUID        `json:"child_id,omitempty"`
	AccountID *uuid.UUID        `json:"account_id,omitempty"`
	Actor     string            `json:"actor"`
	ActorRole string            `json:"actor_role"`
	Reason    string            `json:"reason"`
	// EffectiveAt and RecordedAt are in UTC, with microsecond precision.
	EffectiveAt time.Time `json:"effective_at"`
	RecordedAt  time.Time `json:"recorded_at"`
	// Data is the event's payload exactly as the log holds it.
	Data json.RawMessage `json:"data"`
	// LeafIndex is the index of the event's leaf in the ledger's Merkle
	// tree (projections/ledger): Seq-1, the event's 0-based place in the
	// log's global order.
	LeafIndex int64 `json:"leaf_index"`
	// LeafHash is the lower-case hex of the event's RFC 6962 leaf hash
	// (ledger.LeafHash), as the ledger stores it at LeafIndex: with an
	// inclusion proof of that leaf, a signed checkpoint of the ledger
	// vouches for the event.
	LeafHash string `json:"leaf_hash"`
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

// Filter selects entries for List. Its zero value lists the first
// DefaultLimit entries of the trail. Conditions combine with AND.
type Filter struct {
	// ChildID keeps the entries of events about that child (its
	// registration, allocation, placements and grants).
	ChildID *uuid.UUID
	// AccountID keeps the entries of events about that account: its own
	// stream, placements where it is the carer, grants to it, its
	// identity link.
	AccountID *uuid.UUID
	// Actor keeps the entries of events by that actor id (exact match).
	Actor string
	// From and To bound the RECORDED time (when the engine learned of the
	// event, the auditor's time line): From <= recorded_at < To. A zero
	// time leaves that side open. Effective-time questions belong to the
	// access history.
	From, To time.Time
	// After is the cursor: only entries with seq > After (0 = from the
	// start). Pass the next value List returned.
	After int64
	// Limit is the page size: 0 means DefaultLimit, more than MaxLimit
	// means MaxLimit.
	Limit int
}

// List returns the entries matching f in seq order, at most f.Limit of
// them, reading the view audit_entries, and the cursor of the next page:
// the seq of the last entry returned when more may match, else 0. It fails
// with ErrInvalidFilter for a negative Limit or After, or To before From.
//
// Each filter has an index: (child_id, seq), (account_id, seq), (actor,
// seq) and (recorded_at, seq), with the primary key on seq for the cursor.
func List(ctx context.Context, db bun.IDB, f Filter) ([]Entry, int64, error) {
	limit := f.Limit
	switch {
	case limit < 0:
		return nil, 0, fmt.Errorf("%w: negative limit %d", ErrInvalidFilter, limit)
	case f.After < 0:
		return nil, 0, fmt.Errorf("%w: negative cursor %d", ErrInvalidFilter, f.After)
	case !f.From.IsZero() && !f.To.IsZero() && f.To.Before(f.From):
		return nil, 0, fmt.Errorf("%w: to %s is before from %s", ErrInvalidFilter,
			f.To.UTC().Format(time.RFC3339Nano), f.From.UTC().Format(time.RFC3339Nano))
	case limit == 0:
		limit = DefaultLimit
	case limit > MaxLimit:
		limit = MaxLimit
	}

	var rows []entryRow
	// One more than the page: whether it comes back says whether there is
	// a next page.
	if err := listQuery(db, &rows, f, limit+1).Scan(ctx); err != nil {
		return nil, 0, fmt.Errorf("audit: list entries: %w", err)
	}
	var next int64
	if len(rows) > limit {
		rows = rows[:limit]
		next = rows[limit-1].Seq
	}
	out := make([]Entry, len(rows))
	for i := range rows {
		e, err := rows[i].entry()
		if err != nil {
			return nil, 0, err
		}
		out[i] = e
	}
	return out, next, nil
}

// listQuery selects into rows the first limit entries matching f (already
// validated).
func listQuery(db bun.IDB, rows *[]entryRow, f Filter, limit int) *bun.SelectQuery {
	q := db.NewSelect().Model(rows).Where("seq > ?", f.After)
	if f.ChildID != nil {
		q = q.Where("child_id = ?", f.ChildID.String())
	}
	if f.AccountID != nil {
		q = q.Where("account_id = ?", f.AccountID.String())
	}
	if f.Actor != "" {
		q = q.Where("actor = ?", f.Actor)
	}
	if !f.From.IsZero() {
		q = q.Where("recorded_at >= ?", ceilMicro(f.From))
	}
	if !f.To.IsZero() {
		q = q.Where("recorded_at < ?", ceilMicro(f.To))
	}
	return q.OrderExpr("seq ASC").Limit(int64(limit))
}

// entry converts a stored row; it fails on a row whose ids do not parse
// (which Verify reports as tampering).
func (r *entryRow) entry() (Entry, error) {
	id, err := uuid.Parse(r.EventID)
	if err != nil {
		return Entry{}, fmt.Errorf("audit: entry %d: event_id %q: %w", r.Seq, r.EventID, err)
	}
	child, err := parseOptional(r.ChildID.String, r.ChildID.Valid)
	if err != nil {
		return Entry{}, fmt.Errorf("audit: entry %d: child_id: %w", r.Seq, err)
	}
	account, err := parseOptional(r.AccountID.String, r.AccountID.Valid)
	if err != nil {
		return Entry{}, fmt.Errorf("audit: entry %d: account_id: %w", r.Seq, err)
	}
	return Entry{
		Seq:         r.Seq,
		Position:    eventlog.Position{Commit: uint64(r.PositionCommit), Prepare: uint64(r.PositionPrepare)},
		EventID:     id,
		Type:        r.Type,
		Stream:      r.Stream,
		ChildID:     child,
		AccountID:   account,
		Actor:       r.Actor,
		ActorRole:   r.ActorRole,
		Reason:      r.Reason,
		EffectiveAt: time.UnixMicro(r.EffectiveAt).UTC(),
		RecordedAt:  time.UnixMicro(r.RecordedAt).UTC(),
		Data:        json.RawMessage(r.Data),
		LeafIndex:   r.LeafIndex,
		LeafHash:    r.LeafHash,
		PrevHash:    r.PrevHash,
		Hash:        r.Hash,
	}, nil
}

// ceilMicro returns t in microseconds since the epoch, rounded up, so that
// comparing stored microseconds with it compares them with t exactly.
func ceilMicro(t time.Time) int64 {
	us := t.UnixMicro()
	if t.Nanosecond()%1000 != 0 {
		us++
	}
	return us
}

func parseOptional(s string, valid bool) (*uuid.UUID, error) {
	if !valid {
		return nil, nil
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return nil, err
	}
	return &id, nil
}

// KnownBy returns the position up to which the engine had recorded the
// log by time t (the auditor's "as known at"): just before the first entry,
// in the log's order, recorded after t. Recorded times are stamped when a
// command decides, before it appends, so they do not rise with seq: the
// newest entry recorded by t may follow one recorded after t, and the
// history as of it would show that later event. Cutting at the first entry
// recorded after t never does. ok is false when nothing was known by t.
func KnownBy(ctx context.Context, db bun.IDB, t time.Time) (pos eventlog.Position, ok bool, err error) {
	fail := func(err error) (eventlog.Position, bool, error) {
		return eventlog.Position{}, false, fmt.Errorf("audit: the log as known at %s: %w", t.UTC().Format(time.RFC3339Nano), err)
	}
	var after []entryRow
	if err := db.NewSelect().Model(&after).Column("seq").Where("recorded_at > ?", t.UnixMicro()).
		OrderExpr("seq ASC").Limit(1).Scan(ctx); err != nil {
		return fail(err)
	}
	q := db.NewSelect().Model((*entryRow)(nil)).Column("seq", "position_commit", "position_prepare")
	if len(after) == 1 {
		q = q.Where("seq < ?", after[0].Seq)
	}
	var rows []entryRow
	if err := q.OrderExpr("seq DESC").Limit(1).Scan(ctx, &rows); err != nil {
		return fail(err)
	}
	if len(rows) == 0 {
		return eventlog.Position{}, false, nil
	}
	return eventlog.Position{Commit: uint64(rows[0].PositionCommit), Prepare: uint64(rows[0].PositionPrepare)}, true, nil
}
