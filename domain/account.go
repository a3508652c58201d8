package domain

import (
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
)

// AccountStatus is an account's status at a point in time.
type AccountStatus string

// The statuses of the API.
const (
	StatusInvited AccountStatus = "invited"
	StatusActive  AccountStatus = "active"
	StatusExpired AccountStatus = "expired"
	StatusClosed  AccountStatus = "closed"
)

// Account is the aggregate of one portal account: its invitation (R9),
// activation with an identity subject (R9, R10), the 2FA phone workflow (R11)
// and closure (R13). Its id is derived from the invited address (KeyedIDs;
// AccountIDForEmail before ids were keyed). State
// is unexported and changes only through Apply. Not safe for concurrent use.
type Account struct {
	id      uuid.UUID
	version uint64
	exists  bool

	email     string
	kind      AccountKind
	invitedAt time.Time
	expiresAt time.Time
	expiryRec bool // an InvitationExpired event was recorded for the current invitation

	identity    string
	activatedAt time.Time
	closedAt    time.Time
	// lapses are the closures the account was reopened from (R18), in
	// order.
	lapses []Lapse

	// pendingEmail is the email of the open change request (R18), or "".
	pendingEmail string

	phoneHint      string
	resetRequested bool

	erasedAt time.Time
}

// NewAccount returns the empty aggregate of account id.
func NewAccount(id uuid.UUID) *Account { return &Account{id: id} }

// Clone returns a copy of the aggregate that shares nothing it changes
// with a (the command side keeps an account's state between commands and
// decides on copies).
func (a *Account) Clone() *Account {
	out := *a
	out.lapses = slices.Clone(a.lapses)
	return &out
}

// ID returns the account's id.
func (a *Account) ID() uuid.UUID { return a.id }

// Version is the number of events applied.
func (a *Account) Version() uint64 { return a.version }

// Exists reports whether the account was ever invited.
func (a *Account) Exists() bool { return a.exists }

// Email returns the invited address (normalized).
func (a *Account) Email() string { return a.email }

// Kind returns the account's kind.
func (a *Account) Kind() AccountKind { return a.kind }

// IdentitySubject returns the linked identity's subject, or "".
func (a *Account) IdentitySubject() string { return a.identity }

// InvitationExpiresAt returns when the current invitation expires.
func (a *Account) InvitationExpiresAt() time.Time { return a.expiresAt }

// Closed reports whether the account is closed.
func (a *Account) Closed() bool { return !a.closedAt.IsZero() }

// ReopenedAt is when the account was last reopened after a closure (R18),
// zero if never: placements and grants that started before it give no
// access since.
func (a *Account) ReopenedAt() time.Time {
	if n := len(a.lapses); n > 0 {
		return a.lapses[n-1].ReopenedAt
	}
	return time.Time{}
}

// PendingEmail is the email an open change request asks for (R18), or "".
func (a *Account) PendingEmail() string { return a.pendingEmail }

// ClosedAt is when the account was closed (zero while it is not).
func (a *Account) ClosedAt() time.Time { return a.closedAt }

// PhoneHint returns the masked phone number ("***123"), or "" when none is
// enrolled.
func (a *Account) PhoneHint() string { return a.phoneHint }

// PhoneResetRequested reports whether a worker's phone reset request is open.
func (a *Account) PhoneResetRequested() bool { return a.resetRequested }

// NeedsPhoneEnrolment reports whether the account is active and has no
// phone number: it will be asked for one at its next sign-in (R11).
func (a *Account) NeedsPhoneEnrolment() bool {
	return a.exists && !a.activatedAt.IsZero() && a.closedAt.IsZero() && a.phoneHint == ""
}

// StatusAt returns the account's status at t ("" when it does not exist). An
// unaccepted invitation is expired from its deadline on, whether or not the
// expiry event has been written.
func (a *Account) StatusAt(t time.Time) AccountStatus {
	switch {
	case !a.exists:
		return ""
	case !a.closedAt.IsZero():
		return StatusClosed
	case !a.activatedAt.IsZero():
		return StatusActive
	case a.expiryRec || !t.Before(a.expiresAt):
		return StatusExpired
	}
	return StatusInvited
}

// Facts returns the policy's view of the account.
func (a *Account) Facts() AccountFacts {
	return AccountFacts{Kind: a.kind, ActivatedAt: a.activatedAt, ClosedAt: a.closedAt, Lapses: a.lapses}
}

// isSelf reports whether by is this account's own holder (R8).
func (a *Account) isSelf(by Actor) bool {
	return by.ID == a.id.String() || (a.identity != "" && by.ID == a.identity)
}

// Apply changes the state by one event of the account's stream.
func (a *Account) Apply(e Event) error {
	var id uuid.UUID
	switch e := e.(type) {
	case *AccountInvited:
		id = e.AccountID
		a.exists, a.email, a.kind, a.invitedAt, a.expiresAt, a.expiryRec = true, e.Email, e.Kind, e.InvitedAt, e.ExpiresAt, false
	case *InvitationExpired:
		id = e.AccountID
		a.expiryRec = true
	case *AccountActivated:
		id = e.AccountID
		a.identity, a.activatedAt = e.IdentitySubject, e.ActivatedAt
	case *AccountClosed:
		id = e.AccountID
		a.closedAt = e.ClosedAt
	case *AccountReopened:
		id = e.AccountID
		// A copy, so that Facts handed out before stay as they were.
		a.lapses = append(slices.Clip(a.lapses), Lapse{ClosedAt: e.ClosedAt, ReopenedAt: e.ReopenedAt})
		a.closedAt = time.Time{}
	case *EmailChangeRequested:
		id = e.AccountID
		a.pendingEmail = e.Email
	case *EmailChanged:
		id = e.AccountID
		a.email, a.pendingEmail = e.Email, ""
	case *PhoneResetRequested:
		id = e.AccountID
		a.resetRequested = true
	case *PhoneCleared:
		id = e.AccountID
		a.resetRequested, a.phoneHint = false, ""
	case *PhoneEnrolled:
		id = e.AccountID
		a.phoneHint = e.PhoneHint
	case *AccountErased:
		id = e.AccountID
		a.erasedAt = e.ErasedAt
	default:
		return fmt.Errorf("account %s: cannot apply %T: %w", a.id, e, ErrMalformedEvent)
	}
	if id != a.id {
		return fmt.Errorf("account %s: event of account %s: %w", a.id, id, ErrMalformedEvent)
	}
	a.version++
	return nil
}

// ---- decisions ----

// Invite opens an invitation for email to hold an account of kind (R9). The
// aggregate must be the email's account (the command layer derives its id:
// KeyedIDs, or AccountIDForEmail for accounts made before ids were keyed):
// one email, one account (R10). An email whose account is active is refused with
// ErrAlreadyRegistered, one with an open invitation with ErrAlreadyInvited,
// one whose account is closed with ErrAccountClosed; an expired invitation is
// renewed.
func (a *Account) Invite(by Actor, email, kind string, now time.Time, policy Policy) ([]Event, error) {
	if err := allowRoles(by, RoleWorker); err != nil {
		return nil, fmt.Errorf("invite: %w", err)
	}
	if err := checkEmail(email); err != nil {
		return nil, err
	}
	k, err := ParseAccountKind(kind)
	if err != nil {
		return nil, err
	}
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	if a.Erased() {
		return nil, fmt.Errorf("invite: account %s: %w", a.id, ErrErased)
	}
	now = normTime(now)
	switch a.StatusAt(now) {
	case StatusActive:
		return nil, fmt.Errorf("invite: %w", ErrAlreadyRegistered)
	case StatusInvited:
		return nil, fmt.Errorf("invite: account %s, open until %s (a worker may cancel it): %w",
			a.id, a.expiresAt.UTC().Format(time.RFC3339Nano), ErrAlreadyInvited)
	case StatusClosed:
		return nil, fmt.Errorf("invite: account %s: %w", a.id, ErrAccountClosed)
	}
	expires := normTime(now.Add(policy.InvitationTTL))
	if err := checkDerivedTime("invitation_ttl", expires, "the invitation's expiry"); err != nil {
		return nil, err
	}
	return []Event{&AccountInvited{AccountID: a.id, Email: NormalizeEmail(email), Kind: k,
		InvitedAt: now, ExpiresAt: expires}}, nil
}

// ExpireInvitation records that the invitation ran out unaccepted (R9). Like
// ExpireCarerAccess it may be sent any number of times: no events when the
// expiry is already recorded or the account was activated or closed;
// ErrNotDue before the deadline.
func (a *Account) ExpireInvitation(now time.Time) ([]Event, error) {
	switch {
	case !a.exists:
		return nil, fmt.Errorf("expire invitation: %w", ErrAccountNotFound)
	case a.expiryRec || !a.activatedAt.IsZero() || !a.closedAt.IsZero():
		return nil, nil
	case normTime(now).Before(a.expiresAt):
		return nil, fmt.Errorf("expire invitation of %s: due at %s: %w", a.id, a.expiresAt.Format(time.RFC3339), ErrNotDue)
	}
	return []Event{&InvitationExpired{AccountID: a.id, ExpiredAt: a.expiresAt}}, nil
}

// CancelInvitation ends the account's open invitation now, for a mistake
// (R18): by a worker, with a reason. It records the invitation's end as
// InvitationExpired at now; the email may then be invited again (the same
// account, renewed). An invitation that is not open (accepted, expired,
// cancelled, closed) is ErrNoOpenInvitation.
func (a *Account) CancelInvitation(by Actor, reason string, now time.Time) ([]Event, error) {
	const what = "cancel invitation"
	if err := allowRoles(by, RoleWorker); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := checkReason(reason); err != nil {
		return nil, err
	}
	if !a.exists {
		return nil, fmt.Errorf("%s: %w", what, ErrAccountNotFound)
	}
	if a.Erased() {
		return nil, fmt.Errorf("%s: account %s: %w", what, a.id, ErrErased)
	}
	now = normTime(now)
	if st := a.StatusAt(now); st != StatusInvited {
		return nil, fmt.Errorf("%s of %s (the account is %s): %w", what, a.id, st, ErrNoOpenInvitation)
	}
	return []Event{&InvitationExpired{AccountID: a.id, ExpiredAt: now}}, nil
}

// Activate accepts the invitation when the invitee signs in with an
// identity-provider account (R9), reported by the service. The identity's
// email must be the invited one. Activating again with the same subject
// changes nothing; with another subject it is ErrAlreadyRegistered. Whether
// the subject is linked to another account is IdentityLink's decision.
func (a *Account) Activate(by Actor, subject, email string, now time.Time) ([]Event, error) {
	if err := allowRoles(by, RoleService); err != nil {
		return nil, fmt.Errorf("activate: %w", err)
	}
	if err := checkIdentifier("identity_subject", subject, 255); err != nil {
		return nil, err
	}
	if err := checkEmail(email); err != nil {
		return nil, err
	}
	now = normTime(now)
	switch a.StatusAt(now) {
	case "":
		return nil, fmt.Errorf("activate: %w", ErrAccountNotFound)
	case StatusClosed:
		return nil, fmt.Errorf("activate %s: %w", a.id, ErrAccountClosed)
	case StatusActive:
		if a.identity == subject {
			return nil, nil
		}
		return nil, fmt.Errorf("activate %s: %w", a.id, ErrAlreadyRegistered)
	case StatusExpired:
		return nil, fmt.Errorf("activate %s: %w", a.id, ErrInvitationExpired)
	}
	if NormalizeEmail(email) != a.email {
		return nil, fmt.Errorf("activate %s: %w", a.id, ErrEmailMismatch)
	}
	return []Event{&AccountActivated{AccountID: a.id, IdentitySubject: subject, ActivatedAt: now}}, nil
}

// Close ends the account and with it all its access, at once (R13). Only the
// portals team closes accounts, with a reason.
func (a *Account) Close(by Actor, reason string, now time.Time) ([]Event, error) {
	if err := allowRoles(by, RolePortalsTeam); err != nil {
		return nil, fmt.Errorf("close account: %w", err)
	}
	if err := checkReason(reason); err != nil {
		return nil, err
	}
	if err := a.open("close account"); err != nil {
		return nil, err
	}
	return []Event{&AccountClosed{AccountID: a.id, ClosedAt: normTime(now)}}, nil
}

// RequestPhoneReset files a worker's request, with a reason, that the portals
// team clear the account's phone number (R11).
func (a *Account) RequestPhoneReset(by Actor, reason string, now time.Time) ([]Event, error) {
	const what = "request phone reset"
	if err := allowRoles(by, RoleWorker); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := checkReason(reason); err != nil {
		return nil, err
	}
	if err := a.open(what); err != nil {
		return nil, err
	}
	if a.isSelf(by) {
		return nil, fmt.Errorf("%s: %w", what, ErrSelfAccess)
	}
	switch {
	case a.activatedAt.IsZero():
		return nil, fmt.Errorf("%s for %s: %w", what, a.id, ErrAccountNotActive)
	case a.phoneHint == "":
		return nil, fmt.Errorf("%s for %s: %w", what, a.id, ErrNoPhone)
	case a.resetRequested:
		return nil, fmt.Errorf("%s for %s: %w", what, a.id, ErrPhoneResetPending)
	}
	return []Event{&PhoneResetRequested{AccountID: a.id, RequestedAt: normTime(now)}}, nil
}

// ClearPhone lets the portals team clear the phone number, only after a
// worker's request (R11).
func (a *Account) ClearPhone(by Actor, now time.Time) ([]Event, error) {
	const what = "clear phone"
	if err := allowRoles(by, RolePortalsTeam); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := a.open(what); err != nil {
		return nil, err
	}
	if !a.resetRequested {
		return nil, fmt.Errorf("%s of %s: %w", what, a.id, ErrNoPhoneResetRequest)
	}
	return []Event{&PhoneCleared{AccountID: a.id, ClearedAt: normTime(now)}}, nil
}

// EnrolPhone records the number an active account without one entered at
// sign-in, reported by the service (R11). Only its masked hint is kept. An
// account that has a number cannot change it this way.
func (a *Account) EnrolPhone(by Actor, phone string, now time.Time) ([]Event, error) {
	const what = "enrol phone"
	if err := allowRoles(by, RoleService); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	hint, err := MaskPhone(phone)
	if err != nil {
		return nil, err
	}
	if err := a.open(what); err != nil {
		return nil, err
	}
	switch {
	case a.activatedAt.IsZero():
		return nil, fmt.Errorf("%s for %s: %w", what, a.id, ErrAccountNotActive)
	case a.phoneHint != "":
		return nil, fmt.Errorf("%s for %s: %w", what, a.id, ErrPhoneAlreadyEnrolled)
	}
	return []Event{&PhoneEnrolled{AccountID: a.id, PhoneHint: hint, EnrolledAt: normTime(now)}}, nil
}

// open checks that the account exists and is not closed.
func (a *Account) open(what string) error {
	switch {
	case !a.exists:
		return fmt.Errorf("%s: %w", what, ErrAccountNotFound)
	case !a.erasedAt.IsZero():
		return fmt.Errorf("%s %s: %w", what, a.id, ErrErased)
	case !a.closedAt.IsZero():
		return fmt.Errorf("%s %s: %w", what, a.id, ErrAccountClosed)
	}
	return nil
}

// IdentityLink is the aggregate that keeps one identity-provider subject to
// one portal account (R10). Its stream is IdentityStream(subject).
type IdentityLink struct {
	subject string
	version uint64
	account uuid.UUID
}

// NewIdentityLink returns the empty aggregate of subject.
func NewIdentityLink(subject string) *IdentityLink { return &IdentityLink{subject: subject} }

// Version is the number of events applied.
func (l *IdentityLink) Version() uint64 { return l.version }

// Account returns the linked account, or uuid.Nil.
func (l *IdentityLink) Account() uuid.UUID { return l.account }

// Apply changes the state by one event of the identity's stream.
func (l *IdentityLink) Apply(e Event) error {
	ev, ok := e.(*IdentityLinked)
	// The stream is the subject's: once its account is erased, the subject
	// it holds reads as erased (R22).
	if !ok || (ev.Subject != l.subject && !IsErased(ev.Subject)) {
		return fmt.Errorf("identity link: cannot apply %T: %w", e, ErrMalformedEvent)
	}
	l.account = ev.AccountID
	l.version++
	return nil
}

// Link links the subject to account. Linking again to the same account
// changes nothing; to another account it is ErrAlreadyRegistered.
func (l *IdentityLink) Link(account uuid.UUID, now time.Time) ([]Event, error) {
	if err := checkIdentifier("identity_subject", l.subject, 255); err != nil {
		return nil, err
	}
	if account == uuid.Nil {
		return nil, invalid("account_id", "required")
	}
	switch l.account {
	case account:
		return nil, nil
	case uuid.Nil:
		return []Event{&IdentityLinked{Subject: l.subject, AccountID: account, LinkedAt: normTime(now)}}, nil
	}
	return nil, fmt.Errorf("link identity: %w", ErrAlreadyRegistered)
}
