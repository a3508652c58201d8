package commands

import (
	"context"
)

// Reasons of the time marks.
const (
	reasonStartReached = "the placement's start came"
	reasonEndReached   = "the placement's end came: the grace period begins"
)

// MarkPlacementStart records that a placement recorded ahead of its start
// has started (the system actor, the process manager, only). It is refused
// with domain.ErrNotDue before the start; at or after it, it appends one
// PlacementStartReached; when the mark is recorded already or the placement
// was cancelled it succeeds and appends nothing.
func (s *Service) MarkPlacementStart(ctx context.Context, meta Meta, cmd MarkPlacementStart) (Result, error) {
	pos, err := s.childCommand(ctx, meta, CommandMarkPlacementStart, cmd.ChildID, placementTarget(cmd.ChildID, cmd.PlacementID), reasonStartReached,
		markPlacementStart(meta, cmd))
	if err != nil {
		return Result{}, err
	}
	return Result{Position: pos}, nil
}

// MarkPlacementEnd records that a placement whose end was recorded ahead
// of it has ended, as MarkPlacementStart does for a start.
func (s *Service) MarkPlacementEnd(ctx context.Context, meta Meta, cmd MarkPlacementEnd) (Result, error) {
	pos, err := s.childCommand(ctx, meta, CommandMarkPlacementEnd, cmd.ChildID, placementTarget(cmd.ChildID, cmd.PlacementID), reasonEndReached,
		markPlacementEnd(meta, cmd))
	if err != nil {
		return Result{}, err
	}
	return Result{Position: pos}, nil
}
