package accounts

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/domain"
)

// ErrNotFound is returned (wrapped) by Get, ByEmail and ByIdentity when no
// invited account matches. It wraps domain.ErrAccountNotFound, so
// domain.KindOf classifies it as not found.
var ErrNotFound = fmt.Errorf("accounts: %w", domain.ErrAccountNotFound)

// ErrInvalidQuery is returned (wrapped) for a query the read model cannot
// answer: a zero decision time, an unknown status or kind, a bad limit. It
// wraps domain.ErrInvalid.
var ErrInvalidQuery = fmt.Errorf("accounts: invalid query: %w", domain.ErrInvalid)

// View is one account as the API shows it at a decision time: the fields of
// GET /v1/accounts/{account_id} (AccountID, Kind, Status,
// NeedsPhoneEnrolment, PhoneHint) and the times of the account's life.
// Email, IdentitySubject and PhoneResetRequested are for the portals team's
// lists and the service; the GET answer does not show them.
type View struct {
	AccountID           uuid.UUID
	Kind                domain.AccountKind
	Status              domain.AccountStatus // at the decision time
	NeedsPhoneEnrolment bool
	PhoneHint           string // "***123", or "" when no number is enrolled

	InvitedAt   time.Time // of the current invitation
	ExpiresAt   time.Time // the current invitation's deadline
	ActivatedAt time.Time // zero until activated
	ClosedAt    time.Time // zero unless closed

	Email               string // normalized; "" once erased
	IdentitySubject     string // "" until an identity is linked
	PhoneResetRequested bool   // a worker's reset request is open (R11)
	// ErasedAt is when the account's personal data was erased (R22): Email,
	// IdentitySubject and PhoneHint are then "". Zero while not erased.
	ErasedAt time.Time

	// UpdatedPosition is the Commit of the position of the last event that
	// changed the account: once a command's position is at most this, the
	// view shows its effect.
	UpdatedPosition uint64
}

// Get returns account id as it stands at decision time at, or ErrNotFound
// when the account was never invited. Status and NeedsPhoneEnrolment are
// the domain's answers (domain.Account.StatusAt(at),
// NeedsPhoneEnrolment) for the facts the table holds.
func Get(ctx context.Context, db bun.IDB, id uuid.UUID, at time.Time) (View, error) {
	if at.IsZero() {
		return View{}, fmt.Errorf("get account %s: decision time required: %w", id, ErrInvalidQuery)
	}
	return one(ctx, db, at, "get account "+id.String(), "accounts.account_id = ?", id.String())
}

// ByEmail returns the account of email (normalized as the domain does) at
// decision time at, or ErrNotFound.
func ByEmail(ctx context.Context, db bun.IDB, email string, at time.Time) (View, error) {
	if at.IsZero() {
		return View{}, fmt.Errorf("account by email: decision time required: %w", ErrInvalidQuery)
	}
	email = domain.NormalizeEmail(email)
	if email == "" {
		return View{}, fmt.Errorf("account by email: %w", ErrNotFound)
	}
	return one(ctx, db, at, "account by email", "accounts.email = ?", email)
}

// ByIdentity returns the account an identity-provider subject is linked to
// (identity.linked.v1 or the activation) at decision time at, or
// ErrNotFound.
func ByIdentity(ctx context.Context, db bun.IDB, subject string, at time.Time) (View, error) {
	if at.IsZero() {
		return View{}, fmt.Errorf("account by identity: decision time required: %w", ErrInvalidQuery)
	}
	if subject == "" {
		return View{}, fmt.Errorf("account by identity: %w", ErrNotFound)
	}
	return one(ctx, db, at, "account by identity", "accounts.identity_subject = ?", subject)
}

// one reads the single invited account matching where.
func one(ctx context.Context, db bun.IDB, at time.Time, what, where string, arg any) (View, error) {
	var rows []row
	if err := db.NewSelect().Model(&rows).Where(where, arg).
		Where("accounts.invited_at IS NOT NULL").Limit(2).Scan(ctx); err != nil {
		return View{}, fmt.Errorf("%s: %w", what, err)
	}
	switch len(rows) {
	case 0:
		return View{}, fmt.Errorf("%s: %w", what, ErrNotFound)
	case 1:
		return view(&rows[0], at)
	}
	// R10 makes this impossible; never pick one at random.
	return View{}, fmt.Errorf("%s: several accounts match (%s, %s)", what, rows[0].AccountID, rows[1].AccountID)
}

// Filter selects accounts for List. Zero fields select everything.
type Filter struct {
	// At is the decision time of the statuses (required).
	At time.Time
	// Status keeps the accounts with this status at At.
	Status domain.AccountStatus
	// Kind keeps the accounts of this kind.
	Kind domain.AccountKind
	// NeedsPhoneEnrolment, when set, keeps the accounts that need (true)
	// or do not need (false) phone enrolment.
	NeedsPhoneEnrolment *bool
	// PhoneResetRequested, when set, keeps the accounts with (true) or
	// without (false) an open phone reset request.
	PhoneResetRequested *bool
	// After is the cursor: List returns accounts whose id sorts after it
	// (uuid.Nil: from the first).
	After uuid.UUID
	// Limit is the page size: 0 means DefaultLimit; at most MaxLimit.
	Limit int
}

// Page sizes of List.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// List returns one page of the invited accounts that match f, in account
// id order (the canonical string's order), and the cursor of the next page:
// the id of the page's last account when more may follow, uuid.Nil when
// this is the last page. The status filter follows the same rules as Get.
func List(ctx context.Context, db bun.IDB, f Filter) ([]View, uuid.UUID, error) {
	limit, err := f.check()
	if err != nil {
		return nil, uuid.Nil, err
	}
	var rows []row
	q := db.NewSelect().Model(&rows).Where("accounts.invited_at IS NOT NULL")
	if f.Status != "" {
		cond, args := statusCondition(f.Status, f.At)
		q = q.Where(cond, args...)
	}
	if f.Kind != "" {
		q = q.Where("accounts.kind = ?", string(f.Kind))
	}
	if f.NeedsPhoneEnrolment != nil {
		const needs = "(accounts.activated_at IS NOT NULL AND accounts.closed_at IS NULL AND accounts.phone_hint = '')"
		if *f.NeedsPhoneEnrolment {
			q = q.Where(needs)
		} else {
			q = q.Where("NOT " + needs)
		}
	}
	if f.PhoneResetRequested != nil {
		q = q.Where("accounts.phone_reset_requested = ?", *f.PhoneResetRequested)
	}
	if f.After != uuid.Nil {
		q = q.Where("accounts.account_id > ?", f.After.String())
	}
	if err := q.Order("accounts.account_id").Limit(int64(limit + 1)).Scan(ctx); err != nil {
		return nil, uuid.Nil, fmt.Errorf("list accounts: %w", err)
	}
	next := uuid.Nil
	if len(rows) > limit {
		rows = rows[:limit]
		id, err := uuid.Parse(rows[limit-1].AccountID)
		if err != nil {
			return nil, uuid.Nil, fmt.Errorf("list accounts: row %q: %w", rows[limit-1].AccountID, err)
		}
		next = id
	}
	views := make([]View, len(rows))
	for i := range rows {
		if views[i], err = view(&rows[i], f.At); err != nil {
			return nil, uuid.Nil, fmt.Errorf("list accounts: %w", err)
		}
	}
	return views, next, nil
}

func (f *Filter) check() (int, error) {
	if f.At.IsZero() {
		return 0, fmt.Errorf("list accounts: decision time required: %w", ErrInvalidQuery)
	}
	switch f.Status {
	case "", domain.StatusInvited, domain.StatusActive, domain.StatusExpired, domain.StatusClosed:
	default:
		return 0, fmt.Errorf("list accounts: unknown status %q: %w", f.Status, ErrInvalidQuery)
	}
	if f.Kind != "" {
		if _, err := domain.ParseAccountKind(string(f.Kind)); err != nil {
			return 0, fmt.Errorf("list accounts: %w: %w", ErrInvalidQuery, err)
		}
	}
	switch {
	case f.Limit < 0 || f.Limit > MaxLimit:
		return 0, fmt.Errorf("list accounts: limit %d not in 0..%d: %w", f.Limit, MaxLimit, ErrInvalidQuery)
	case f.Limit == 0:
		return DefaultLimit, nil
	}
	return f.Limit, nil
}

// statusCondition is the SQL form of domain.Account.StatusAt(at) for an
// invited account: closed wins, then active, then expired (recorded, or the
// deadline reached), else invited.
func statusCondition(s domain.AccountStatus, at time.Time) (string, []any) {
	t := at.UnixMicro() // floor to the microsecond: t >= expires_at iff !at.Before(expiresAt)
	switch s {
	case domain.StatusClosed:
		return "accounts.closed_at IS NOT NULL", nil
	case domain.StatusActive:
		return "accounts.closed_at IS NULL AND accounts.activated_at IS NOT NULL", nil
	case domain.StatusExpired:
		return "accounts.closed_at IS NULL AND accounts.activated_at IS NULL AND " +
			"(accounts.invitation_expired = ? OR accounts.expires_at <= ?)", []any{true, t}
	}
	return "accounts.closed_at IS NULL AND accounts.activated_at IS NULL AND " +
		"accounts.invitation_expired = ? AND accounts.expires_at > ?", []any{false, t}
}

// view answers for r at decision time at by rebuilding the domain aggregate
// from the stored facts and asking it.
func view(r *row, at time.Time) (View, error) {
	id, err := uuid.Parse(r.AccountID)
	if err != nil {
		return View{}, fmt.Errorf("accounts: row %q: %w", r.AccountID, err)
	}
	a, err := aggregate(id, r)
	if err != nil {
		return View{}, err
	}
	return View{
		AccountID:           id,
		Kind:                a.Kind(),
		Status:              a.StatusAt(at),
		NeedsPhoneEnrolment: a.NeedsPhoneEnrolment(),
		PhoneHint:           a.PhoneHint(),
		InvitedAt:           fromMicros(r.InvitedAt),
		ExpiresAt:           a.InvitationExpiresAt(),
		ActivatedAt:         a.Facts().ActivatedAt,
		ClosedAt:            a.Facts().ClosedAt,
		Email:               a.Email(),
		IdentitySubject:     r.IdentitySubject,
		PhoneResetRequested: a.PhoneResetRequested(),
		UpdatedPosition:     uint64(r.UpdatedPosition),
		ErasedAt:            fromMicros(r.ErasedAt),
	}, nil
}

// aggregate rebuilds the domain.Account whose facts r holds, by applying
// the events that set exactly those facts.
func aggregate(id uuid.UUID, r *row) (*domain.Account, error) {
	a := domain.NewAccount(id)
	events := make([]domain.Event, 0, 6)
	if r.InvitedAt.Valid {
		events = append(events, &domain.AccountInvited{AccountID: id, Email: r.Email, Kind: domain.AccountKind(r.Kind),
			InvitedAt: fromMicros(r.InvitedAt), ExpiresAt: fromMicros(r.ExpiresAt)})
	}
	if r.InvitationExpired {
		events = append(events, &domain.InvitationExpired{AccountID: id, ExpiredAt: fromMicros(r.ExpiresAt)})
	}
	if r.ActivatedAt.Valid {
		events = append(events, &domain.AccountActivated{AccountID: id, IdentitySubject: r.IdentitySubject, ActivatedAt: fromMicros(r.ActivatedAt)})
	}
	if r.PhoneHint != "" {
		events = append(events, &domain.PhoneEnrolled{AccountID: id, PhoneHint: r.PhoneHint})
	}
	if r.PhoneResetRequested {
		events = append(events, &domain.PhoneResetRequested{AccountID: id})
	}
	if r.ClosedAt.Valid {
		events = append(events, &domain.AccountClosed{AccountID: id, ClosedAt: fromMicros(r.ClosedAt)})
	}
	for _, e := range events {
		if err := a.Apply(e); err != nil {
			return nil, fmt.Errorf("accounts: rebuild %s: %w", id, err)
		}
	}
	return a, nil
}
