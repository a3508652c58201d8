package queries

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accessindex"
)

// ChildRecords reads a child's record as it stands in the event log: the
// child aggregate folded from its stream, and the position of its last
// event. A child never registered fails with an error wrapping
// domain.ErrChildNotFound.
type ChildRecords interface {
	Child(ctx context.Context, id uuid.UUID) (*domain.Child, eventlog.Position, error)
	// Reasons returns the reason of every event of the streams, by event
	// id (opened: the worker's free text as given, or domain.ErasedText).
	Reasons(ctx context.Context, streams []string) (map[uuid.UUID]string, error)
}

// StreamReader reads one stream of the event log: every eventlog.Store
// implements it.
type StreamReader interface {
	ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventlog.Record, error)
}

// childPage is how many events a child's stream is read by at a time.
const childPage = 500

// streamChildren is ChildRecords on the event log itself: always current,
// so a consistency token never waits.
type streamChildren struct{ log StreamReader }

// ChildrenFromLog returns ChildRecords that fold each child's stream of
// log on every call (a child's stream holds a few dozen events).
func ChildrenFromLog(log StreamReader) ChildRecords { return streamChildren{log: log} }

func (s streamChildren) Child(ctx context.Context, id uuid.UUID) (*domain.Child, eventlog.Position, error) {
	c := domain.NewChild(id)
	stream := domain.ChildStream(id)
	var last eventlog.Position
	for from := uint64(1); ; {
		recs, err := s.log.ReadStream(ctx, stream, from, childPage)
		if err != nil {
			return nil, last, fmt.Errorf("read stream %q: %w", stream, err)
		}
		for _, r := range recs {
			env, err := domain.DecodeRecord(r)
			if err != nil {
				return nil, last, fmt.Errorf("stream %q, version %d: %w", stream, r.Version, err)
			}
			if err := c.Apply(env.Event); err != nil {
				return nil, last, fmt.Errorf("stream %q, version %d: %w", stream, r.Version, err)
			}
			last, from = r.Position, r.Version+1
		}
		if len(recs) < childPage {
			break
		}
	}
	if !c.Registered() {
		return nil, last, fmt.Errorf("child %s: %w", id, domain.ErrChildNotFound)
	}
	return c, last, nil
}

func (s streamChildren) Reasons(ctx context.Context, streams []string) (map[uuid.UUID]string, error) {
	out := map[uuid.UUID]string{}
	for _, stream := range streams {
		for from := uint64(1); ; {
			recs, err := s.log.ReadStream(ctx, stream, from, childPage)
			if err != nil {
				return nil, fmt.Errorf("read stream %q: %w", stream, err)
			}
			for _, r := range recs {
				out[r.ID], from = r.Meta.Reason, r.Version+1
			}
			if len(recs) < childPage {
				break
			}
		}
	}
	return out, nil
}

// The statuses of a placement (api.md).
const (
	placementPlanned = "planned"
	placementOpen    = "open"
	placementInGrace = "in_grace"
	placementEnded   = "ended"
	// placementCancelled: cancelled before it started (R18).
	placementCancelled = "cancelled"
)

// The statuses of a grant.
const (
	grantActive  = "active"
	grantRevoked = "revoked"
	grantExpired = "expired" // a time-limited grant past its expires_at (R19)
)

// placementStatus is p's status at decision time at, by its times alone
// (a recorded grace expiry changes nothing: the grace period ended then).
func placementStatus(p domain.PlacementView, at time.Time) string {
	switch {
	case !p.CancelledAt.IsZero():
		return placementCancelled
	case at.Before(p.StartedAt):
		return placementPlanned
	case !p.Ended || at.Before(p.EndedAt):
		return placementOpen
	case at.Before(graceEnd(p)):
		return placementInGrace
	}
	return placementEnded
}

// graceEnd is when p's grace period ends: its grace_until, or earlier when
// the worker ended it early (R6).
func graceEnd(p domain.PlacementView) time.Time {
	if !p.GraceEndedEarly.IsZero() && p.GraceEndedEarly.Before(p.GraceUntil) {
		return p.GraceEndedEarly
	}
	return p.GraceUntil
}

// GetChild answers child id's record: its reference, allocated worker,
// placements with their status at decision time at (zero for now), and
// grants (the current or last interval of each). A child never registered
// fails with an error wrapping domain.ErrChildNotFound. The record is read
// from the event log itself, so it reflects every consistency token the
// log has reached; its "position" is that of the child's last event.
func (s *Service) GetChild(ctx context.Context, c Caller, id uuid.UUID, at time.Time) (api.ChildRecord, error) {
	if err := s.Authorize(ctx, QueryGetChild, c); err != nil {
		return api.ChildRecord{}, err
	}
	at = s.at(at)
	ch, pos, err := s.cfg.ChildRecords.Child(ctx, id)
	if err != nil {
		return api.ChildRecord{}, err
	}
	return childRecord(id, ch, at, pos), nil
}

// childRecord is the answer of GetChild for ch, folded up to pos, with
// statuses at decision time at.
func childRecord(id uuid.UUID, ch *domain.Child, at time.Time, pos eventlog.Position) api.ChildRecord {
	// An erased child's reference reads as erased (R22): null.
	out := api.ChildRecord{ChildID: id, Reference: optText(ch.Reference()), Erased: ch.Erased(), At: at, Position: pos.String(),
		Placements: []api.PlacementRecord{}, Grants: []api.GrantRecord{}}
	if w := ch.Worker(); w != "" {
		out.AllocatedWorkerID = &w
	}
	out.RetainUntil = optTime(ch.RetainUntil())
	for _, p := range ch.Placements() {
		r := api.PlacementRecord{PlacementID: p.ID, CarerAccountID: p.CarerAccountID, StartedAt: p.StartedAt.UTC(),
			Status: api.PlacementRecordFieldsStatus(placementStatus(p, at))}
		if p.Ended {
			r.EndedAt, r.GraceUntil = optTime(p.EndedAt), optTime(graceEnd(p))
		}
		r.CancelledAt = optTime(p.CancelledAt)
		out.Placements = append(out.Placements, r)
	}
	for _, g := range ch.Grants() {
		if len(g.Intervals) == 0 {
			continue
		}
		last := g.Intervals[len(g.Intervals)-1]
		r := api.GrantRecord{AccountID: g.AccountID, Relationship: api.GrantRecordFieldsRelationship(g.Relationship),
			Permissions: permissions(last.Permissions), GrantedAt: last.From.UTC(), Status: grantActive,
			ExpiresAt: optTime(last.ExpiresAt)}
		if review, ok := ch.ReviewOf(g.AccountID, last.From); ok {
			r.ReviewBy = optTime(review)
		}
		switch end, why := last.End(); {
		case why == domain.ReasonGrantExpired && !at.Before(end):
			r.Status = grantExpired
		case why == domain.ReasonRevoked && !end.IsZero():
			r.Status, r.RevokedAt = grantRevoked, optTime(last.To)
		}
		out.Grants = append(out.Grants, r)
	}
	return out
}

// ListChildrenParams are the parameters of ListChildren: Reference, or
// AllocatedTo with a page (After, Limit: 0 means DefaultChildrenLimit, at
// most MaxChildrenLimit).
type ListChildrenParams struct {
	Reference   string
	AllocatedTo string
	After       uuid.UUID
	Limit       int
	Consistency
}

// Page sizes of ListChildren by worker.
const (
	DefaultChildrenLimit = 100
	MaxChildrenLimit     = 1000
)

// ListChildren answers the child registered with a reference (R17: a list
// of one, or none), or a page of the children allocated to a worker in id
// order. A reference is looked up by the id derived from it
// (Config.ChildIDFor), read from the child's stream so that the answer is
// always current, and else in the index, which also knows the children
// registered before ids were derived from references.
func (s *Service) ListChildren(ctx context.Context, c Caller, p ListChildrenParams) (api.ChildList, error) {
	if err := s.Authorize(ctx, QueryListChildren, c); err != nil {
		return api.ChildList{}, err
	}
	byRef, byWorker := strings.TrimSpace(p.Reference) != "", p.AllocatedTo != ""
	switch {
	case byRef == byWorker:
		return api.ChildList{}, &Invalid{Detail: "give one of reference and allocated_to"}
	case p.Limit < 0 || p.Limit > MaxChildrenLimit:
		return api.ChildList{}, &Invalid{Detail: fmt.Sprintf("limit: %d not in 0..%d", p.Limit, MaxChildrenLimit)}
	}
	if byWorker {
		if err := domain.CheckActorID(p.AllocatedTo); err != nil {
			return api.ChildList{}, &Invalid{Detail: "allocated_to: not a worker id: " + err.Error()}
		}
	}
	if err := s.waitIndex(ctx, p.Consistency); err != nil {
		return api.ChildList{}, err
	}
	item := func(info accessindex.ChildInfo) api.ChildListItem {
		it := api.ChildListItem{ChildID: info.ID, Reference: optText(info.Reference), Erased: info.Erased()}
		if info.Worker != "" {
			w := info.Worker
			it.AllocatedWorkerID = &w
		}
		return it
	}
	if byWorker {
		limit := p.Limit
		if limit == 0 {
			limit = DefaultChildrenLimit
		}
		infos, more, pos := s.cfg.Index.ChildrenAllocatedTo(p.AllocatedTo, p.After, limit)
		out := api.ChildList{Children: make([]api.ChildListItem, 0, len(infos)), Position: pos.String()}
		for _, info := range infos {
			out.Children = append(out.Children, item(info))
		}
		if more {
			next := infos[len(infos)-1].ID
			out.Next = &next
		}
		return out, nil
	}
	out := api.ChildList{Children: []api.ChildListItem{}, Position: s.cfg.Index.Position().String()}
	id := s.cfg.ChildIDFor(p.Reference)
	ch, _, err := s.cfg.ChildRecords.Child(ctx, id)
	switch {
	case errors.Is(err, domain.ErrChildNotFound):
		if info, ok, pos := s.cfg.Index.ChildByReference(p.Reference); ok {
			out.Children, out.Position = append(out.Children, item(info)), pos.String()
		}
		return out, nil
	case err != nil:
		return api.ChildList{}, err
	}
	it := api.ChildListItem{ChildID: id, Reference: optText(ch.Reference()), Erased: ch.Erased()}
	if w := ch.Worker(); w != "" {
		it.AllocatedWorkerID = &w
	}
	out.Children = append(out.Children, it)
	return out, nil
}
