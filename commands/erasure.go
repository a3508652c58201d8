package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
)

// Eraser destroys a data subject's key, so that what the log holds of them
// reads as erased (R22). adapters/personaldata's Store is one.
type Eraser interface {
	EraseAccount(ctx context.Context, id uuid.UUID) error
	EraseChild(ctx context.Context, id uuid.UUID) error
}

// errNoEraser: the service was built without an Eraser.
var errNoEraser = errors.New("commands: erasure is not configured (no Eraser)")

// EraseAccount erases an account's personal data (dpo, or the engine when
// retention ends; R22): it records AccountErased, with the reason, and
// then destroys the account's key. Erasing an erased account appends
// nothing and succeeds. Access decisions and history do not change.
func (s *Service) EraseAccount(ctx context.Context, meta Meta, cmd EraseAccount) (Result, error) {
	if s.cfg.Eraser == nil {
		return Result{}, errNoEraser
	}
	res, err := s.accountCommand(ctx, meta, CommandEraseAccount, cmd.AccountID, cmd.Reason,
		func(a *domain.Account, now time.Time) ([]domain.Event, error) {
			return a.Erase(meta.Actor, cmd.Reason, now)
		})
	if err != nil {
		return Result{}, err
	}
	// After the event: a stop in between is completed by whoever reads
	// the event next (adapters/personaldata).
	if err := s.cfg.Eraser.EraseAccount(ctx, cmd.AccountID); err != nil {
		return Result{}, fmt.Errorf("erase account %s: destroy its key: %w", cmd.AccountID, err)
	}
	return res, nil
}

// EraseChild erases a child's personal data (dpo, or the engine when the
// child's retention date has passed; R22), as EraseAccount does.
func (s *Service) EraseChild(ctx context.Context, meta Meta, cmd EraseChild) (Result, error) {
	if s.cfg.Eraser == nil {
		return Result{}, errNoEraser
	}
	pos, err := s.childCommand(ctx, meta, CommandEraseChild, cmd.ChildID, childTarget(cmd.ChildID), cmd.Reason,
		func(c *domain.Child, now time.Time) ([]domain.Event, error) {
			return c.Erase(meta.Actor, cmd.Reason, now)
		})
	if err != nil {
		return Result{}, err
	}
	if err := s.cfg.Eraser.EraseChild(ctx, cmd.ChildID); err != nil {
		return Result{}, fmt.Errorf("erase child %s: destroy its key: %w", cmd.ChildID, err)
	}
	return Result{Position: pos}, nil
}
