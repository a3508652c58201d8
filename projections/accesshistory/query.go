package accesshistory

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// EventRef names an event that opened, closed, recorded or superseded an
// interval.
type EventRef struct {
	ID        uuid.UUID
	Type      string
	ActorID   string
	ActorRole string
	Position  eventlog.Position
}

// Interval is one row of the history.
type Interval struct {
	AccountID   uuid.UUID
	ChildID     uuid.UUID
	Permissions domain.PermissionSet
	Reason      domain.Reason
	// From and To bound the interval in effective time; a zero To means
	// open-ended.
	From time.Time
	To   time.Time
	// OpenedBy is the event that set From; ClosedBy the event that set To
	// (nil while open-ended).
	OpenedBy *EventRef
	ClosedBy *EventRef
	// RecordedAt is the position from which the row is known;
	// SupersededAt the position of the event that replaced it (nil while it
	// is current knowledge).
	RecordedAt   eventlog.Position
	SupersededAt *eventlog.Position
	// GracePeriod, for a grace interval (R3), is the grace period its
	// placement end gave (zero otherwise); GracePolicy the policy event
	// that set it (R25), nil when unknown.
	GracePeriod time.Duration
	GracePolicy *EventRef
}

// Known selects which knowledge a query reads: the current one (the zero
// value), or the knowledge as it stood once the event at position AsOf had
// been recorded.
type Known struct {
	AsOf *eventlog.Position
}

// Current is the current knowledge.
var Current = Known{}

// AsOf is the knowledge at position p.
func AsOf(p eventlog.Position) Known { return Known{AsOf: &p} }

func (k Known) apply(q *bun.SelectQuery) *bun.SelectQuery {
	if k.AsOf == nil {
		return q.Where("superseded_commit IS NULL")
	}
	c, p := int64(k.AsOf.Commit), int64(k.AsOf.Prepare)
	return q.
		Where("(recorded_commit < ? OR (recorded_commit = ? AND recorded_prepare <= ?))", c, c, p).
		Where("(superseded_commit IS NULL OR superseded_commit > ? OR (superseded_commit = ? AND superseded_prepare > ?))", c, c, p)
}

// maxRows bounds the rows one query returns: a child or an account has a
// few dozen intervals in a lifetime, not millions.
const maxRows = 100_000

// WhoCouldSee answers R15: every interval in which an account could exercise
// permissions on child's record at effective time at, with the reason and
// the events that opened and closed it, ordered by account. One indexed
// query.
func WhoCouldSee(ctx context.Context, db bun.IDB, child uuid.UUID, at time.Time, k Known) ([]Interval, error) {
	t := at.UnixMicro()
	q := db.NewSelect().Model((*row)(nil)).
		Where("child_id = ?", child.String()).
		Where("valid_from <= ?", t).
		Where("(valid_to IS NULL OR valid_to > ?)", t)
	return scan(ctx, k.apply(q).OrderExpr("account_id, valid_from, id"), "who could see")
}

// WhatCouldSee answers "what could account see at effective time at": the
// intervals of every child whose record it could see then. One indexed
// query.
func WhatCouldSee(ctx context.Context, db bun.IDB, account uuid.UUID, at time.Time, k Known) ([]Interval, error) {
	t := at.UnixMicro()
	q := db.NewSelect().Model((*row)(nil)).
		Where("account_id = ?", account.String()).
		Where("valid_from <= ?", t).
		Where("(valid_to IS NULL OR valid_to > ?)", t)
	return scan(ctx, k.apply(q).OrderExpr("child_id, valid_from, id"), "what could see")
}

// ChildHistory returns every interval in which someone could see child's
// record, in order of effective time.
func ChildHistory(ctx context.Context, db bun.IDB, child uuid.UUID, k Known) ([]Interval, error) {
	q := db.NewSelect().Model((*row)(nil)).Where("child_id = ?", child.String())
	return scan(ctx, k.apply(q).OrderExpr("valid_from, account_id, id"), "child history")
}

// AccountHistory returns every interval in which account could see a
// child's record, in order of effective time.
func AccountHistory(ctx context.Context, db bun.IDB, account uuid.UUID, k Known) ([]Interval, error) {
	q := db.NewSelect().Model((*row)(nil)).Where("account_id = ?", account.String())
	return scan(ctx, k.apply(q).OrderExpr("valid_from, child_id, id"), "account history")
}

func scan(ctx context.Context, q *bun.SelectQuery, what string) ([]Interval, error) {
	var rows []row
	if err := q.Limit(maxRows).Scan(ctx, &rows); err != nil {
		return nil, fmt.Errorf("accesshistory: %s: %w", what, err)
	}
	out := make([]Interval, 0, len(rows))
	for i := range rows {
		iv, err := rows[i].interval()
		if err != nil {
			return nil, fmt.Errorf("accesshistory: %s: %w", what, err)
		}
		out = append(out, iv)
	}
	return out, nil
}

func (r *row) interval() (Interval, error) {
	acct, err := uuid.Parse(r.AccountID)
	if err != nil {
		return Interval{}, fmt.Errorf("row %d: account_id: %w", r.ID, err)
	}
	child, err := uuid.Parse(r.ChildID)
	if err != nil {
		return Interval{}, fmt.Errorf("row %d: child_id: %w", r.ID, err)
	}
	iv := Interval{
		AccountID: acct, ChildID: child,
		Permissions: domain.PermissionSet(r.Permissions), Reason: domain.Reason(r.Reason),
		From:       time.UnixMicro(r.ValidFrom).UTC(),
		RecordedAt: eventlog.Position{Commit: uint64(r.RecordedC), Prepare: uint64(r.RecordedP)},
	}
	if r.ValidTo.Valid {
		iv.To = time.UnixMicro(r.ValidTo.Int64).UTC()
	}
	if iv.OpenedBy, err = ref(r.OpenedID, r.OpenedType, r.OpenedActor, r.OpenedRole, r.OpenedC, r.OpenedP); err != nil {
		return Interval{}, fmt.Errorf("row %d: opened_event_id: %w", r.ID, err)
	}
	if iv.ClosedBy, err = ref(r.ClosedID, r.ClosedType, r.ClosedActor, r.ClosedRole, r.ClosedC, r.ClosedP); err != nil {
		return Interval{}, fmt.Errorf("row %d: closed_event_id: %w", r.ID, err)
	}
	if r.GraceSeconds.Valid {
		iv.GracePeriod = time.Duration(r.GraceSeconds.Int64) * time.Second
	}
	if r.GracePolicyID.Valid {
		id, err := uuid.Parse(r.GracePolicyID.String)
		if err != nil {
			return Interval{}, fmt.Errorf("row %d: grace_policy_event_id: %w", r.ID, err)
		}
		iv.GracePolicy = &EventRef{ID: id, Type: domain.TypePolicySet,
			Position: eventlog.Position{Commit: uint64(r.GracePolicyC.Int64), Prepare: uint64(r.GracePolicyP.Int64)}}
	}
	if r.SupersededC.Valid {
		iv.SupersededAt = &eventlog.Position{Commit: uint64(r.SupersededC.Int64), Prepare: uint64(r.SupersededP.Int64)}
	}
	return iv, nil
}

func ref(id, typ, actor, role sql.NullString, c, p sql.NullInt64) (*EventRef, error) {
	if !id.Valid {
		return nil, nil
	}
	u, err := uuid.Parse(id.String)
	if err != nil {
		return nil, err
	}
	return &EventRef{ID: u, Type: typ.String, ActorID: actor.String, ActorRole: role.String,
		Position: eventlog.Position{Commit: uint64(c.Int64), Prepare: uint64(p.Int64)}}, nil
}
