package queries

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accounts"
)

// Accounts is the accounts read model: *accounts.Reader implements it.
// Get, ByEmail and ByIdentity fail with an error wrapping
// accounts.ErrNotFound (kind not_found) for an account never seen.
type Accounts interface {
	Get(ctx context.Context, id uuid.UUID, at time.Time) (accounts.View, error)
	ByEmail(ctx context.Context, email string, at time.Time) (accounts.View, error)
	ByIdentity(ctx context.Context, subject string, at time.Time) (accounts.View, error)
	List(ctx context.Context, f accounts.Filter) ([]accounts.View, uuid.UUID, error)
}

func accountFields(v accounts.View, at time.Time, pos eventlog.Position) api.AccountFields {
	a := api.AccountFields{AccountID: v.AccountID, Kind: api.AccountKind(v.Kind), Status: api.AccountStatus(v.Status),
		NeedsPhoneEnrolment: v.NeedsPhoneEnrolment, InvitedAt: v.InvitedAt.UTC(), ExpiresAt: v.ExpiresAt.UTC(),
		ActivatedAt: optTime(v.ActivatedAt), ClosedAt: optTime(v.ClosedAt), Erased: !v.ErasedAt.IsZero(), At: at, Position: pos.String()}
	if v.PhoneHint != "" {
		h := v.PhoneHint
		a.PhoneHint = &h
	}
	return a
}

// GetAccount answers account id as it stands at at (zero for now).
func (s *Service) GetAccount(ctx context.Context, c Caller, id uuid.UUID, at time.Time, w Consistency) (api.Account, error) {
	if err := s.Authorize(ctx, QueryGetAccount, c); err != nil {
		return api.Account{}, err
	}
	at = s.at(at)
	pos, err := s.waitReadModel(ctx, accounts.ProjectionName, w)
	if err != nil {
		return api.Account{}, err
	}
	v, err := s.cfg.Accounts.Get(ctx, id, at)
	if err != nil {
		return api.Account{}, err
	}
	return accountFields(v, at, pos), nil
}

// ListAccountsParams are the parameters of ListAccounts: with Email or
// IdentitySubject set (HasEmail, HasIdentity), the one account of that
// email or identity subject (none when there is none); else a page of
// Filter. Filter.At is the decision time (zero for now).
type ListAccountsParams struct {
	Filter          accounts.Filter
	Email           string
	HasEmail        bool
	IdentitySubject string
	HasIdentity     bool
	Consistency
}

// ListAccounts answers one page of accounts in account id order, or the
// account of one email or identity subject.
func (s *Service) ListAccounts(ctx context.Context, c Caller, p ListAccountsParams) (api.AccountList, error) {
	if err := s.Authorize(ctx, QueryListAccounts, c); err != nil {
		return api.AccountList{}, err
	}
	at := s.at(p.Filter.At)
	p.Filter.At = at
	pos, err := s.waitReadModel(ctx, accounts.ProjectionName, p.Consistency)
	if err != nil {
		return api.AccountList{}, err
	}
	out := api.AccountList{Accounts: []api.AccountListItem{}, At: at, Position: pos.String()}
	var views []accounts.View
	switch {
	case p.HasEmail || p.HasIdentity:
		var v accounts.View
		if p.HasEmail {
			v, err = s.cfg.Accounts.ByEmail(ctx, p.Email, at)
		} else {
			v, err = s.cfg.Accounts.ByIdentity(ctx, p.IdentitySubject, at)
		}
		switch {
		case errors.Is(err, accounts.ErrNotFound):
		case err != nil:
			return api.AccountList{}, err
		default:
			views = append(views, v)
		}
	default:
		var next uuid.UUID
		views, next, err = s.cfg.Accounts.List(ctx, p.Filter)
		if err != nil {
			return api.AccountList{}, err
		}
		if next != uuid.Nil {
			out.Next = &next
		}
	}
	for _, v := range views {
		f := accountFields(v, at, pos)
		out.Accounts = append(out.Accounts, api.AccountListItem{AccountID: f.AccountID, Kind: f.Kind, Status: f.Status,
			NeedsPhoneEnrolment: f.NeedsPhoneEnrolment, PhoneHint: f.PhoneHint, InvitedAt: f.InvitedAt, ExpiresAt: f.ExpiresAt,
			ActivatedAt: f.ActivatedAt, ClosedAt: f.ClosedAt, At: f.At, Position: f.Position,
			Email: optText(v.Email), Erased: f.Erased, PhoneResetRequested: v.PhoneResetRequested})
	}
	return out, nil
}

// optText is a personal value as answered: null when it is "" or erased
// (R22).
func optText(s string) *string {
	if s == "" || domain.IsErased(s) {
		return nil
	}
	return &s
}
