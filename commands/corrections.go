package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// The handlers of the corrections of R18, and the email claims that keep
// one email to one account (R10) once emails can change.

const (
	claimEvents   = "claim"   // the new email's claim stream
	releaseEvents = "release" // the old email's claim stream
)

// CancelPlacement cancels a planned placement before it starts, with a
// reason (the child's worker only, R18).
func (s *Service) CancelPlacement(ctx context.Context, meta Meta, cmd CancelPlacement) (Result, error) {
	pos, err := s.childCommand(ctx, meta, CommandCancelPlacement, cmd.ChildID, placementTarget(cmd.ChildID, cmd.PlacementID), cmd.Reason,
		func(c *domain.Child, now time.Time) ([]domain.Event, error) {
			return c.CancelPlacement(meta.Actor, cmd.PlacementID, cmd.Reason, now)
		})
	if err != nil {
		return Result{}, err
	}
	return Result{Position: pos}, nil
}

// ReopenAccount reopens a closed account, with a reason (portals team only,
// R18). The access it had does not come back by itself.
func (s *Service) ReopenAccount(ctx context.Context, meta Meta, cmd ReopenAccount) (Result, error) {
	return s.accountCommand(ctx, meta, CommandReopenAccount, cmd.AccountID, cmd.Reason,
		func(a *domain.Account, now time.Time) ([]domain.Event, error) {
			return a.Reopen(meta.Actor, cmd.Reason, now)
		})
}

// RequestEmailChange files a worker's request, with a reason, that the
// portals team change the account's email (R18). An email another account
// holds is refused at once with domain.ErrAlreadyRegistered; ChangeEmail
// checks again when it applies the request.
func (s *Service) RequestEmailChange(ctx context.Context, meta Meta, cmd RequestEmailChange) (Result, error) {
	return s.accountCommand(ctx, meta, CommandRequestEmail, cmd.AccountID, cmd.Reason,
		func(a *domain.Account, now time.Time) ([]domain.Event, error) {
			events, err := a.RequestEmailChange(meta.Actor, cmd.Email, cmd.Reason, now)
			if err != nil {
				return nil, err
			}
			owner, err := s.emailOwner(ctx, cmd.Email)
			if err != nil {
				return nil, err
			}
			if owner.holder != uuid.Nil && owner.holder != a.ID() {
				return nil, fmt.Errorf("request email change: the email belongs to account %s: %w", owner.holder, domain.ErrAlreadyRegistered)
			}
			return events, nil
		})
}

// ChangeEmail applies the open email change request (portals team only,
// R18). It gives the new email to the account on the email's claim stream
// (refused with domain.ErrAlreadyRegistered when another account holds it:
// of two racing claims exactly one is appended), records the change on the
// account's stream, and then frees the old email. A retry after a failure
// in between finds the claim made and completes; an old email left claimed
// is free anyway, since its holder's email is no longer it.
func (s *Service) ChangeEmail(ctx context.Context, meta Meta, cmd ChangeEmail) (Result, error) {
	target := accountTarget(cmd.AccountID)
	d := s.ids(meta, CommandChangeEmail, target)
	var pos eventlog.Position
	err := s.execute(ctx, &meta, CommandChangeEmail, target, func(ctx context.Context, now time.Time) error {
		acct, l, err := s.loadAccount(ctx, cmd.AccountID, d)
		if err != nil {
			return err
		}
		if envs, ok := l.replay(d, mainEvents); ok {
			pos = lastPosition(envs)
			return nil
		}
		oldEmail := acct.Email()
		change, err := acct.ChangeEmail(meta.Actor, cmd.Email, now)
		if err != nil {
			return err
		}
		owner, err := s.emailOwner(ctx, cmd.Email)
		if err != nil {
			return err
		}
		if owner.holder != uuid.Nil && owner.holder != acct.ID() {
			return fmt.Errorf("change email: the email belongs to account %s: %w", owner.holder, domain.ErrAlreadyRegistered)
		}
		claiming, err := owner.claim.Claim(acct.ID(), false, now)
		if err != nil {
			return err
		}
		old := domain.NewEmailClaim()
		ol, err := s.load(ctx, s.emailStream(oldEmail), old.Apply, nil)
		if err != nil {
			return err
		}
		c := cause(meta, "", now)
		pos = latest(l.last, owner.loaded.last)
		for _, step := range []struct {
			l      loaded
			group  string
			events []domain.Event
		}{{owner.loaded, claimEvents, claiming}, {l, mainEvents, change}, {ol, releaseEvents, old.Release(acct.ID(), now)}} {
			res, ok, err := s.appendTo(ctx, step.l, c, d, step.group, step.events)
			if err != nil {
				return err
			}
			if ok {
				pos = latest(pos, res.Position)
			}
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	return Result{Position: pos}, nil
}

// emailStream is the claim stream of email: keyed with Config.IDs,
// name-based without.
func (s *Service) emailStream(email string) string {
	if s.cfg.IDs == nil {
		return domain.EmailStream(email)
	}
	return s.cfg.IDs.EmailStream(email)
}

// owner is what emailOwner found: the email's claim stream as loaded, and
// the account that holds the email (uuid.Nil when none does).
type owner struct {
	claim  *domain.EmailClaim
	loaded loaded
	holder uuid.UUID
	// derived is the email's derived account id (accountIDFor), and
	// derivedExists whether that account exists.
	derived       uuid.UUID
	derivedExists bool
}

// emailOwner finds which account holds email (R10, R18). The claim stream
// names the holder, if the holder still holds it: its email is this one, it
// asks to change to it, or it is being created (its invitation is not
// appended yet). Emails of accounts made before claims existed have no
// claim: their account is the one the email's id is derived from, if that
// account's email is still this one (or it was erased: such an account
// keeps its email's id, and refuses what would record more about it).
func (s *Service) emailOwner(ctx context.Context, email string) (owner, error) {
	o := owner{claim: domain.NewEmailClaim()}
	var err error
	if o.loaded, err = s.load(ctx, s.emailStream(email), o.claim.Apply, nil); err != nil {
		return owner{}, err
	}
	norm := domain.NormalizeEmail(email)
	holds := func(a *domain.Account) bool {
		return !a.Exists() || a.Erased() || a.Email() == norm || a.PendingEmail() == norm
	}
	if h := o.claim.Holder(); h != uuid.Nil {
		a, _, err := s.loadAccount(ctx, h, nil)
		if err != nil {
			return owner{}, err
		}
		if holds(a) {
			o.holder = h
		}
	}
	if o.derived, err = s.accountIDFor(ctx, email); err != nil {
		return owner{}, err
	}
	a, _, err := s.loadAccount(ctx, o.derived, nil)
	if err != nil {
		return owner{}, err
	}
	o.derivedExists = a.Exists()
	if o.holder == uuid.Nil && a.Exists() && holds(a) {
		o.holder = o.derived
	}
	return o, nil
}
