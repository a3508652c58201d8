package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// The handlers of the account and identity streams' commands.

func accountTarget(id uuid.UUID) string { return "account/" + id.String() }

// accountCommand runs a command that decides on one account's stream alone.
func (s *Service) accountCommand(ctx context.Context, meta Meta, command string, accountID uuid.UUID, reason string,
	decide func(a *domain.Account, now time.Time) ([]domain.Event, error)) (Result, error) {
	target := accountTarget(accountID)
	d := s.ids(meta, command, target)
	var pos eventlog.Position
	err := s.execute(ctx, &meta, command, target, func(ctx context.Context, now time.Time) error {
		acct, l, err := s.loadAccount(ctx, accountID, d)
		if err != nil {
			return err
		}
		if envs, ok := l.replay(d, mainEvents); ok {
			pos = lastPosition(envs)
			return nil
		}
		events, err := decide(acct, now)
		if err != nil {
			return err
		}
		pos, err = s.decided(ctx, l, cause(meta, reason, now), d, events)
		return err
	})
	if err != nil {
		return Result{}, err
	}
	return Result{Position: pos}, nil
}

// Invite invites an email address to hold a portal account of a kind
// (worker only, R9). One email, one account (R10): the account is the one
// that holds the email (emailOwner), else a new one, whose id is derived
// from the email (accountIDFor) unless that id's account has changed its
// email since (R18), and then new. The email is claimed for the account on
// its claim stream before the invitation is appended, so of two racing
// invitations of one email exactly one gets it. An email with an active
// account is refused with domain.ErrAlreadyRegistered, one with an open
// invitation with domain.ErrAlreadyInvited; an expired invitation is
// renewed. The answer carries the invitation's deadline.
func (s *Service) Invite(ctx context.Context, meta Meta, cmd Invite) (Invited, error) {
	derived, err := s.accountIDFor(ctx, cmd.Email)
	if err != nil {
		return Invited{}, err
	}
	target := accountTarget(derived)
	d := s.ids(meta, CommandInvite, target)
	var out Invited
	err = s.execute(ctx, &meta, CommandInvite, target, func(ctx context.Context, now time.Time) error {
		o, err := s.emailOwner(ctx, cmd.Email)
		if err != nil {
			return err
		}
		accountID := o.holder
		switch {
		case accountID != uuid.Nil:
		case !o.derivedExists:
			accountID = o.derived
		default: // the derived account's email changed: a new account
			accountID = d.id("account_id")
		}
		acct, l, err := s.loadAccount(ctx, accountID, d)
		if err != nil {
			return err
		}
		var events []domain.Event
		var answer eventlog.Position
		if envs, ok := l.replay(d, mainEvents); ok {
			events, answer = eventsOf(envs), lastPosition(envs)
		} else {
			// The invitation lifetime in force now (R25).
			pol, perr := s.PolicyAt(ctx, now)
			if perr != nil {
				return perr
			}
			events, err = acct.Invite(meta.Actor, cmd.Email, cmd.Kind, now, pol.Policy)
			if err != nil {
				return err
			}
			claiming, err := o.claim.Claim(accountID, false, now)
			if err != nil {
				return err
			}
			c := cause(meta, "", now)
			if _, _, err := s.appendTo(ctx, o.loaded, c, d, claimEvents, claiming); err != nil {
				return err
			}
			if answer, err = s.decided(ctx, l, c, d, events); err != nil {
				return err
			}
		}
		var inv *domain.AccountInvited
		if len(events) > 0 {
			inv, _ = events[0].(*domain.AccountInvited)
		}
		if inv == nil {
			return fmt.Errorf("invite: the first event decided or found is not an invitation")
		}
		out = Invited{AccountID: accountID, ExpiresAt: inv.ExpiresAt, Position: answer}
		return nil
	})
	if err != nil {
		return Invited{}, err
	}
	return out, nil
}

// Activate accepts an invitation when the invitee signs in with an identity
// (service only, R9). It decides both aggregates before it appends
// anything: the account's activation (the identity's email must be the
// invited one) and the link of the identity subject to the account (R10: a
// subject linked to another account is refused with
// domain.ErrAlreadyRegistered). It then appends the link to
// domain.IdentityStream(subject), and the activation to the account's
// stream. Activating again with the same subject appends nothing. If the
// activation's append fails after the link's, a retry finds the link made
// (linking again to the same account changes nothing) and completes.
func (s *Service) Activate(ctx context.Context, meta Meta, cmd Activate) (Result, error) {
	target := accountTarget(cmd.AccountID)
	d := s.ids(meta, CommandActivate, target)
	var pos eventlog.Position
	err := s.execute(ctx, &meta, CommandActivate, target, func(ctx context.Context, now time.Time) error {
		acct, l, err := s.loadAccount(ctx, cmd.AccountID, d)
		if err != nil {
			return err
		}
		if envs, ok := l.replay(d, mainEvents); ok {
			pos = lastPosition(envs)
			return nil
		}
		activation, err := acct.Activate(meta.Actor, cmd.IdentitySubject, cmd.Email, now)
		if err != nil {
			return err
		}
		link := domain.NewIdentityLink(cmd.IdentitySubject)
		stream, err := s.identityStreamFor(ctx, cmd.IdentitySubject)
		if err != nil {
			return err
		}
		ll, err := s.load(ctx, stream, link.Apply, nil)
		if err != nil {
			return err
		}
		linking, err := link.Link(cmd.AccountID, now)
		if err != nil {
			return err
		}
		c := cause(meta, "", now)
		pos = latest(l.last, ll.last)
		res, ok, err := s.appendTo(ctx, ll, c, d, linkEvents, linking)
		if err != nil {
			return err
		}
		if ok {
			pos = latest(pos, res.Position)
		}
		res, ok, err = s.appendTo(ctx, l, c, d, mainEvents, activation)
		if err != nil {
			return err
		}
		if ok {
			pos = latest(pos, res.Position)
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	return Result{Position: pos}, nil
}

// CloseAccount closes an account, ending all its access at once, with a
// reason (portals team only, R13).
func (s *Service) CloseAccount(ctx context.Context, meta Meta, cmd CloseAccount) (Result, error) {
	return s.accountCommand(ctx, meta, CommandCloseAccount, cmd.AccountID, cmd.Reason,
		func(a *domain.Account, now time.Time) ([]domain.Event, error) {
			return a.Close(meta.Actor, cmd.Reason, now)
		})
}

// RequestPhoneReset files a worker's request, with a reason, that the
// portals team clear the account's phone number (worker only, not for
// their own account: R8, R11).
func (s *Service) RequestPhoneReset(ctx context.Context, meta Meta, cmd RequestPhoneReset) (Result, error) {
	return s.accountCommand(ctx, meta, CommandRequestPhoneReset, cmd.AccountID, cmd.Reason,
		func(a *domain.Account, now time.Time) ([]domain.Event, error) {
			return a.RequestPhoneReset(meta.Actor, cmd.Reason, now)
		})
}

// ClearPhone clears the phone number after a worker's request (portals team
// only, R11).
func (s *Service) ClearPhone(ctx context.Context, meta Meta, cmd ClearPhone) (Result, error) {
	return s.accountCommand(ctx, meta, CommandClearPhone, cmd.AccountID, "",
		func(a *domain.Account, now time.Time) ([]domain.Event, error) {
			return a.ClearPhone(meta.Actor, now)
		})
}

// EnrolPhone records the masked number an active account without one
// entered at sign-in (service only, R11). The full number is not stored.
func (s *Service) EnrolPhone(ctx context.Context, meta Meta, cmd EnrolPhone) (Result, error) {
	return s.accountCommand(ctx, meta, CommandEnrolPhone, cmd.AccountID, "",
		func(a *domain.Account, now time.Time) ([]domain.Event, error) {
			return a.EnrolPhone(meta.Actor, cmd.Phone, now)
		})
}

// ExpireInvitation records that an invitation ran out unaccepted (R9). Only
// the system actor (the process manager) sends it. It is refused with
// domain.ErrNotDue before the deadline; at or after it, it appends one
// InvitationExpired; when the expiry is already recorded or the account was
// activated or closed it succeeds and appends nothing.
func (s *Service) ExpireInvitation(ctx context.Context, meta Meta, cmd ExpireInvitation) (Result, error) {
	return s.accountCommand(ctx, meta, CommandExpireInvitation, cmd.AccountID, reasonInvitationRanOut,
		expireInvitation(meta))
}

// CancelInvitation ends an account's open invitation for a mistake (R18):
// a worker, with a reason; the email may be invited again.
func (s *Service) CancelInvitation(ctx context.Context, meta Meta, cmd CancelInvitation) (Result, error) {
	return s.accountCommand(ctx, meta, CommandCancelInvitation, cmd.AccountID, cmd.Reason,
		func(a *domain.Account, now time.Time) ([]domain.Event, error) {
			return a.CancelInvitation(meta.Actor, cmd.Reason, now)
		})
}

// accountIDFor returns the account id of email: the keyed id (Config.IDs),
// unless the email's name-based account exists already (made before ids
// were keyed), which keeps its id; the name-based id without Config.IDs.
func (s *Service) accountIDFor(ctx context.Context, email string) (uuid.UUID, error) {
	legacy := domain.AccountIDForEmail(email)
	if s.cfg.IDs == nil {
		return legacy, nil
	}
	old, err := s.streamExists(ctx, domain.AccountStream(legacy))
	if err != nil || old {
		return legacy, err
	}
	return s.cfg.IDs.AccountID(email), nil
}

// identityStreamFor returns the identity stream of subject, keyed as
// accountIDFor keys account ids.
func (s *Service) identityStreamFor(ctx context.Context, subject string) (string, error) {
	legacy := domain.IdentityStream(subject)
	if s.cfg.IDs == nil {
		return legacy, nil
	}
	old, err := s.streamExists(ctx, legacy)
	if err != nil || old {
		return legacy, err
	}
	return s.cfg.IDs.IdentityStream(subject), nil
}

// streamExists reports whether stream has an event.
func (s *Service) streamExists(ctx context.Context, stream string) (bool, error) {
	recs, err := s.store.ReadStream(ctx, stream, 1, 1)
	if err != nil {
		return false, fmt.Errorf("read stream %s: %w", stream, err)
	}
	return len(recs) > 0, nil
}
