package domain

import (
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Time marks: the record that a time a placement was given has come. A
// placement planned ahead starts, and a placement ended ahead ends, by
// time alone; the policy compares the times itself (R3, R4), so access
// changes at them whether or not anything is recorded. The process manager
// records the moment as an event, as it records a grace period's expiry,
// so that everyone who follows the log (the watch stream, the
// access.changed topic, a portal's cache) learns of the change when it
// takes effect, exactly once.

// PlacementStartReached: the start of a placement recorded ahead of it came
// at ReachedAt (its started_at).
type PlacementStartReached struct {
	ChildID        uuid.UUID `json:"child_id"`
	PlacementID    uuid.UUID `json:"placement_id"`
	CarerAccountID uuid.UUID `json:"carer_account_id"`
	ReachedAt      time.Time `json:"reached_at"`
}

func (*PlacementStartReached) EventType() string        { return TypePlacementStartReached }
func (e *PlacementStartReached) EffectiveAt() time.Time { return e.ReachedAt }
func (e *PlacementStartReached) validate() error {
	return firstErr(needID("child_id", e.ChildID), needID("placement_id", e.PlacementID),
		needID("carer_account_id", e.CarerAccountID), checkEventTime("reached_at", e.ReachedAt))
}

// PlacementEndReached: the end of a placement recorded ahead of it came at
// ReachedAt (its ended_at): the carer's grace period begins.
type PlacementEndReached struct {
	ChildID        uuid.UUID `json:"child_id"`
	PlacementID    uuid.UUID `json:"placement_id"`
	CarerAccountID uuid.UUID `json:"carer_account_id"`
	ReachedAt      time.Time `json:"reached_at"`
}

func (*PlacementEndReached) EventType() string        { return TypePlacementEndReached }
func (e *PlacementEndReached) EffectiveAt() time.Time { return e.ReachedAt }
func (e *PlacementEndReached) validate() error {
	return firstErr(needID("child_id", e.ChildID), needID("placement_id", e.PlacementID),
		needID("carer_account_id", e.CarerAccountID), checkEventTime("reached_at", e.ReachedAt))
}

// MarkStartReached records that placement's start has come (the process
// manager, at the deadline). Like ExpireCarerAccess it may be sent any
// number of times: no events when the mark is recorded already or the
// placement was cancelled; ErrNotDue before the start.
func (c *Child) MarkStartReached(placementID uuid.UUID, now time.Time) ([]Event, error) {
	const what = "mark placement start"
	p, err := c.markable(what, placementID)
	if err != nil || p == nil {
		return nil, err
	}
	switch {
	case p.startMarked:
		return nil, nil
	case normTime(now).Before(p.startedAt):
		return nil, fmt.Errorf("%s of %s: due at %s: %w", what, placementID, p.startedAt.Format(time.RFC3339), ErrNotDue)
	}
	return []Event{&PlacementStartReached{ChildID: c.id, PlacementID: p.id, CarerAccountID: p.carer, ReachedAt: p.startedAt}}, nil
}

// MarkEndReached records that placement's end has come (the process
// manager, at the deadline): as MarkStartReached, for the end.
func (c *Child) MarkEndReached(placementID uuid.UUID, now time.Time) ([]Event, error) {
	const what = "mark placement end"
	p, err := c.markable(what, placementID)
	if err != nil || p == nil {
		return nil, err
	}
	switch {
	case !p.ended:
		return nil, fmt.Errorf("%s of %s: %w", what, placementID, ErrPlacementNotEnded)
	case p.endMarked:
		return nil, nil
	case normTime(now).Before(p.endedAt):
		return nil, fmt.Errorf("%s of %s: due at %s: %w", what, placementID, p.endedAt.Format(time.RFC3339), ErrNotDue)
	}
	return []Event{&PlacementEndReached{ChildID: c.id, PlacementID: p.id, CarerAccountID: p.carer, ReachedAt: p.endedAt}}, nil
}

// markable returns the placement a time mark is about, nil (and no error)
// when it was cancelled: a cancelled placement's times change nothing.
func (c *Child) markable(what string, placementID uuid.UUID) (*placement, error) {
	if !c.registered {
		return nil, fmt.Errorf("%s: child %s: %w", what, c.id, ErrChildNotFound)
	}
	p := c.placement(placementID)
	if p == nil {
		return nil, fmt.Errorf("%s of %s: %w", what, placementID, ErrPlacementNotFound)
	}
	if p.cancelled() {
		return nil, nil
	}
	return p, nil
}
