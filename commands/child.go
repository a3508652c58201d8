package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// The handlers of the child stream's commands.

// Reasons written to the events the engine decides on its own.
const (
	reasonGraceRanOut      = "grace period ran out"
	reasonInvitationRanOut = "invitation ran out unaccepted"
	reasonGrantRanOut      = "time-limited grant ran out"
)

// The id groups of the streams a command appends to.
const (
	mainEvents = "event" // the command's own stream
	linkEvents = "link"  // Activate's identity stream
)

func childTarget(id uuid.UUID) string { return "child/" + id.String() }

func placementTarget(child, placement uuid.UUID) string {
	return childTarget(child) + "/placement/" + placement.String()
}

func grantTarget(child, account uuid.UUID) string {
	return childTarget(child) + "/grant/" + account.String()
}

// loadChild loads the child's stream, keeping the events of the command's
// idempotency key.
func (s *Service) loadChild(ctx context.Context, id uuid.UUID, d *ids) (*domain.Child, loaded, error) {
	watch := d.watch(mainEvents)
	c, l, ok := s.children.get(id, watch)
	if !ok {
		c, l = domain.NewChild(id), loaded{stream: domain.ChildStream(id), collect: true}
	}
	// Only the events after the kept state (all of them without one).
	l, err := s.loadAfter(ctx, l, c.Apply, watch)
	if err != nil {
		return c, l, err
	}
	s.children.put(id, c, l)
	l.ids, l.collect = nil, false
	return c, l, nil
}

// loadAccount loads an account's stream; d may be nil for an account the
// command only reads.
//
// The state is kept between commands as a child's is (loadChild).
func (s *Service) loadAccount(ctx context.Context, id uuid.UUID, d *ids) (*domain.Account, loaded, error) {
	var watch map[uuid.UUID]bool
	if d != nil {
		watch = d.watch(mainEvents)
	}
	a, l, ok := s.accounts.get(id, watch)
	if !ok {
		a, l = domain.NewAccount(id), loaded{stream: domain.AccountStream(id), collect: true}
	}
	// Only the events after the kept state (all of them without one).
	l, err := s.loadAfter(ctx, l, a.Apply, watch)
	if err != nil {
		return a, l, err
	}
	s.accounts.put(id, a, l)
	l.ids, l.collect = nil, false
	return a, l, nil
}

// decided appends the events decided on the loaded stream and returns the
// command's position: the append's, or the latest of the streams read when
// nothing was decided.
func (s *Service) decided(ctx context.Context, l loaded, c domain.Cause, d *ids, events []domain.Event, read ...loaded) (eventlog.Position, error) {
	res, ok, err := s.appendTo(ctx, l, c, d, mainEvents, events)
	if err != nil {
		return eventlog.Start, err
	}
	if ok {
		return res.Position, nil
	}
	pos := l.last
	for _, r := range read {
		pos = latest(pos, r.last)
	}
	return pos, nil
}

// RegisterChild creates a child's record (worker, who becomes the allocated
// worker, or manager). The child id is derived from the reference
// (childIDFor): a reference in use is refused with a
// *domain.AlreadyRegistered naming its child (R17), also when two
// registrations race (the second finds the first's stream).
func (s *Service) RegisterChild(ctx context.Context, meta Meta, cmd RegisterChild) (ChildRegistered, error) {
	childID := s.childIDFor(cmd.Reference)
	target := childTarget(childID)
	d := s.ids(meta, CommandRegisterChild, target)
	var out ChildRegistered
	err := s.execute(ctx, &meta, CommandRegisterChild, target, func(ctx context.Context, now time.Time) error {
		child, l, err := s.loadChild(ctx, childID, d)
		if err != nil {
			return err
		}
		if envs, ok := l.replay(d, mainEvents); ok {
			out = ChildRegistered{ChildID: childID, Position: lastPosition(envs)}
			return nil
		}
		events, err := child.Register(meta.Actor, cmd.Reference, cmd.RetainUntil, now)
		if err != nil {
			return err
		}
		pos, err := s.decided(ctx, l, cause(meta, "", now), d, events)
		out = ChildRegistered{ChildID: childID, Position: pos}
		return err
	})
	if err != nil {
		return ChildRegistered{}, err
	}
	return out, nil
}

// childIDFor is the id of the child with reference: keyed (Config.IDs),
// else name-based.
func (s *Service) childIDFor(reference string) uuid.UUID {
	if s.cfg.IDs == nil {
		return domain.ChildIDForReference(reference)
	}
	return s.cfg.IDs.ChildID(reference)
}

// ChildIDFor is the id a child registered with reference has: the lookup
// by reference (R17) for children registered since ids were derived from
// references.
func (s *Service) ChildIDFor(reference string) uuid.UUID { return s.childIDFor(reference) }

// childCommand runs a command that decides on one child's stream alone.
func (s *Service) childCommand(ctx context.Context, meta Meta, command string, childID uuid.UUID, target, reason string,
	decide func(c *domain.Child, now time.Time) ([]domain.Event, error)) (eventlog.Position, error) {
	d := s.ids(meta, command, target)
	var pos eventlog.Position
	err := s.execute(ctx, &meta, command, target, func(ctx context.Context, now time.Time) error {
		child, l, err := s.loadChild(ctx, childID, d)
		if err != nil {
			return err
		}
		if envs, ok := l.replay(d, mainEvents); ok {
			pos = lastPosition(envs)
			return nil
		}
		events, err := decide(child, now)
		if err != nil {
			return err
		}
		pos, err = s.decided(ctx, l, cause(meta, reason, now), d, events)
		return err
	})
	return pos, err
}

// AllocateWorker allocates the child to a worker (manager only, R8).
func (s *Service) AllocateWorker(ctx context.Context, meta Meta, cmd AllocateWorker) (Result, error) {
	pos, err := s.childCommand(ctx, meta, CommandAllocateWorker, cmd.ChildID, childTarget(cmd.ChildID), "",
		func(c *domain.Child, now time.Time) ([]domain.Event, error) {
			return c.AllocateWorker(meta.Actor, cmd.WorkerID, now)
		})
	if err != nil {
		return Result{}, err
	}
	return Result{Position: pos}, nil
}

// StartPlacement places the child with a foster carer (the child's worker
// only, R2, R8). It reads the carer's account to decide. The placement id is
// new, or derived from the idempotency key.
func (s *Service) StartPlacement(ctx context.Context, meta Meta, cmd StartPlacement) (PlacementStarted, error) {
	target := childTarget(cmd.ChildID)
	d := s.ids(meta, CommandStartPlacement, target)
	placementID := d.id("placement_id")
	var out PlacementStarted
	err := s.execute(ctx, &meta, CommandStartPlacement, target, func(ctx context.Context, now time.Time) error {
		child, l, err := s.loadChild(ctx, cmd.ChildID, d)
		if err != nil {
			return err
		}
		if envs, ok := l.replay(d, mainEvents); ok {
			e, ok := envs[0].Event.(*domain.PlacementStarted)
			if !ok {
				return fmt.Errorf("idempotency key's first event is a %s, not a placement start", envs[0].Type)
			}
			out = PlacementStarted{PlacementID: e.PlacementID, Position: lastPosition(envs)}
			return nil
		}
		carer, cl, err := s.loadCarerOrGrantee(ctx, cmd.CarerAccountID)
		if err != nil {
			return err
		}
		events, err := child.StartPlacement(meta.Actor, placementID, carer, cmd.StartedAt, now)
		if err != nil {
			return err
		}
		pos, err := s.decided(ctx, l, cause(meta, "", now), d, events, cl)
		out = PlacementStarted{PlacementID: placementID, Position: pos}
		return err
	})
	if err != nil {
		return PlacementStarted{}, err
	}
	return out, nil
}

// loadCarerOrGrantee loads the account a child command decides about. A nil
// id loads as an account that does not exist (the domain refuses it).
func (s *Service) loadCarerOrGrantee(ctx context.Context, id uuid.UUID) (*domain.Account, loaded, error) {
	if id == uuid.Nil {
		return domain.NewAccount(id), loaded{}, nil
	}
	return s.loadAccount(ctx, id, nil)
}

// EndPlacement ends a placement at cmd.EndedAt (the child's worker only,
// R3, R4). When the grace period is already over at the decision time, the
// expiry is appended with it. The answer's GraceUntil is the deadline.
func (s *Service) EndPlacement(ctx context.Context, meta Meta, cmd EndPlacement) (PlacementEnded, error) {
	target := placementTarget(cmd.ChildID, cmd.PlacementID)
	d := s.ids(meta, CommandEndPlacement, target)
	var out PlacementEnded
	err := s.execute(ctx, &meta, CommandEndPlacement, target, func(ctx context.Context, now time.Time) error {
		child, l, err := s.loadChild(ctx, cmd.ChildID, d)
		if err != nil {
			return err
		}
		var events []domain.Event
		var answer eventlog.Position
		if envs, ok := l.replay(d, mainEvents); ok {
			events, answer = eventsOf(envs), lastPosition(envs)
		} else {
			// The grace period in force at the placement's end (R25).
			pol, perr := s.PolicyAt(ctx, cmd.EndedAt)
			if perr != nil {
				return perr
			}
			events, err = child.EndPlacement(meta.Actor, cmd.PlacementID, cmd.EndedAt, now, pol.Policy)
			if err != nil {
				return err
			}
			if answer, err = s.decided(ctx, l, cause(meta, cmd.Reason, now), d, events); err != nil {
				return err
			}
		}
		var ended *domain.PlacementEnded
		if len(events) > 0 {
			ended, _ = events[0].(*domain.PlacementEnded)
		}
		if ended == nil {
			return fmt.Errorf("end placement: the first event decided or found is not a placement end")
		}
		out = PlacementEnded{GraceUntil: ended.GraceUntil, Position: answer}
		return nil
	})
	if err != nil {
		return PlacementEnded{}, err
	}
	return out, nil
}

func eventsOf(envs []domain.Envelope) []domain.Event {
	out := make([]domain.Event, len(envs))
	for i, e := range envs {
		out[i] = e.Event
	}
	return out
}

// EndGrace ends a running grace period early, with a reason (the child's
// worker only, R6).
func (s *Service) EndGrace(ctx context.Context, meta Meta, cmd EndGrace) (Result, error) {
	pos, err := s.childCommand(ctx, meta, CommandEndGrace, cmd.ChildID, placementTarget(cmd.ChildID, cmd.PlacementID), cmd.Reason,
		func(c *domain.Child, now time.Time) ([]domain.Event, error) {
			return c.EndGraceEarly(meta.Actor, cmd.PlacementID, cmd.Reason, now)
		})
	if err != nil {
		return Result{}, err
	}
	return Result{Position: pos}, nil
}

// Grant lets a network member's account see the child's record (the child's
// worker only, never to themselves: R7, R8), until cmd.ExpiresAt or, when
// it is zero, open-ended with a review date the review period in force
// after now (R19, R25). It reads the grantee's account to decide.
func (s *Service) Grant(ctx context.Context, meta Meta, cmd Grant) (GrantMade, error) {
	target := grantTarget(cmd.ChildID, cmd.AccountID)
	d := s.ids(meta, CommandGrant, target)
	var out GrantMade
	err := s.execute(ctx, &meta, CommandGrant, target, func(ctx context.Context, now time.Time) error {
		child, l, err := s.loadChild(ctx, cmd.ChildID, d)
		if err != nil {
			return err
		}
		if envs, ok := l.replay(d, mainEvents); ok {
			out = GrantMade{Position: lastPosition(envs)}
			if e, ok := envs[0].Event.(*domain.AccessGranted); ok {
				out.ExpiresAt, out.ReviewBy = e.ExpiresAt, e.ReviewBy
			}
			return nil
		}
		grantee, gl, err := s.loadCarerOrGrantee(ctx, cmd.AccountID)
		if err != nil {
			return err
		}
		pol, err := s.PolicyAt(ctx, now)
		if err != nil {
			return err
		}
		events, err := child.GrantWith(meta.Actor, grantee, domain.GrantTerms{Relationship: cmd.Relationship,
			Permissions: cmd.Permissions, Reason: cmd.Reason, ExpiresAt: cmd.ExpiresAt}, now, pol.Policy)
		if err != nil {
			return err
		}
		pos, err := s.decided(ctx, l, cause(meta, cmd.Reason, now), d, events, gl)
		out = GrantMade{Position: pos}
		if e, ok := events[0].(*domain.AccessGranted); ok {
			out.ExpiresAt, out.ReviewBy = e.ExpiresAt, e.ReviewBy
		}
		return err
	})
	if err != nil {
		return GrantMade{}, err
	}
	return out, nil
}

// ReviewGrant confirms an active, open-ended grant after its review, with a
// reason (the child's worker only, R19): the grant is next due for review
// the review period in force after now.
func (s *Service) ReviewGrant(ctx context.Context, meta Meta, cmd ReviewGrant) (GrantReviewed, error) {
	target := grantTarget(cmd.ChildID, cmd.AccountID)
	d := s.ids(meta, CommandReviewGrant, target)
	var out GrantReviewed
	err := s.execute(ctx, &meta, CommandReviewGrant, target, func(ctx context.Context, now time.Time) error {
		child, l, err := s.loadChild(ctx, cmd.ChildID, d)
		if err != nil {
			return err
		}
		var events []domain.Event
		if envs, ok := l.replay(d, mainEvents); ok {
			events, out.Position = eventsOf(envs), lastPosition(envs)
		} else {
			pol, err := s.PolicyAt(ctx, now)
			if err != nil {
				return err
			}
			if events, err = child.ReviewGrant(meta.Actor, cmd.AccountID, cmd.Reason, now, pol.Policy); err != nil {
				return err
			}
			if out.Position, err = s.decided(ctx, l, cause(meta, cmd.Reason, now), d, events); err != nil {
				return err
			}
		}
		e, ok := events[0].(*domain.GrantReviewed)
		if !ok {
			return fmt.Errorf("review grant: the event decided or found is a %s, not a review", events[0].EventType())
		}
		out.ReviewBy = e.ReviewBy
		return nil
	})
	if err != nil {
		return GrantReviewed{}, err
	}
	return out, nil
}

// Revoke ends a network member's grant, with a reason (the child's worker
// only, R7).
func (s *Service) Revoke(ctx context.Context, meta Meta, cmd Revoke) (Result, error) {
	pos, err := s.childCommand(ctx, meta, CommandRevoke, cmd.ChildID, grantTarget(cmd.ChildID, cmd.AccountID), cmd.Reason,
		func(c *domain.Child, now time.Time) ([]domain.Event, error) {
			return c.Revoke(meta.Actor, cmd.AccountID, cmd.Reason, now)
		})
	if err != nil {
		return Result{}, err
	}
	return Result{Position: pos}, nil
}

// ExpireCarerAccess records that a placement's grace period ran out (R3).
// Only the system actor (the process manager) sends it. It is refused with
// domain.ErrNotDue before the deadline; at or after it, it appends one
// GraceExpired; when the expiry is already recorded, the grace was ended
// early (R6) or the carer was placed again in time (R5) it succeeds and
// appends nothing, answering the stream's last position.
func (s *Service) ExpireCarerAccess(ctx context.Context, meta Meta, cmd ExpireCarerAccess) (Result, error) {
	pos, err := s.childCommand(ctx, meta, CommandExpireCarerAccess, cmd.ChildID, placementTarget(cmd.ChildID, cmd.PlacementID), reasonGraceRanOut,
		expireCarerAccess(meta, cmd))
	if err != nil {
		return Result{}, err
	}
	return Result{Position: pos}, nil
}

// ExpireGrant records that a time-limited grant ran out (R19). Only the
// system actor (the process manager) sends it. It is refused with
// domain.ErrNotDue before the grant's expires_at; at or after it, it
// appends one GrantExpired; when the expiry is already recorded or the
// grant was revoked or replaced before it ran out it succeeds and appends
// nothing, answering the stream's last position.
func (s *Service) ExpireGrant(ctx context.Context, meta Meta, cmd ExpireGrant) (Result, error) {
	pos, err := s.childCommand(ctx, meta, CommandExpireGrant, cmd.ChildID, grantTarget(cmd.ChildID, cmd.AccountID), reasonGrantRanOut,
		expireGrant(meta, cmd))
	if err != nil {
		return Result{}, err
	}
	return Result{Position: pos}, nil
}

// systemOnly refuses every actor but the engine's own (R8): deadlines are
// the process manager's.
func systemOnly(by domain.Actor, what string) error {
	if by.Role != domain.RoleSystem {
		return fmt.Errorf("%s: role %q: %w", what, by.Role, domain.ErrRoleNotAllowed)
	}
	return nil
}
