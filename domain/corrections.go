package domain

import (
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Corrections (R18): a planned placement cancelled before it starts, a
// closed account reopened, and an account's email changed by a worker's
// request that the portals team applies. Every correction is an event with
// its actor and reason; nothing earlier is edited.

// PlacementCancelled: the child's worker cancelled a placement that had not
// started (R18). It never gave access, and now never will.
type PlacementCancelled struct {
	ChildID        uuid.UUID `json:"child_id"`
	PlacementID    uuid.UUID `json:"placement_id"`
	CarerAccountID uuid.UUID `json:"carer_account_id"`
	CancelledAt    time.Time `json:"cancelled_at"`
}

func (*PlacementCancelled) EventType() string        { return TypePlacementCancelled }
func (e *PlacementCancelled) EffectiveAt() time.Time { return e.CancelledAt }
func (e *PlacementCancelled) validate() error {
	return firstErr(needID("child_id", e.ChildID), needID("placement_id", e.PlacementID),
		needID("carer_account_id", e.CarerAccountID), checkEventTime("cancelled_at", e.CancelledAt))
}

// AccountReopened: the portals team reopened a closed account (R18). Its
// identity link and history stay; the access it had before the closure
// does not come back: only placements and grants that start at or after
// ReopenedAt count (see AccountFacts). ClosedAt is when the closure it
// ends began.
type AccountReopened struct {
	AccountID  uuid.UUID `json:"account_id"`
	ClosedAt   time.Time `json:"closed_at"`
	ReopenedAt time.Time `json:"reopened_at"`
}

func (*AccountReopened) EventType() string        { return TypeAccountReopened }
func (e *AccountReopened) EffectiveAt() time.Time { return e.ReopenedAt }
func (e *AccountReopened) validate() error {
	if err := firstErr(needID("account_id", e.AccountID), checkEventTime("closed_at", e.ClosedAt),
		checkEventTime("reopened_at", e.ReopenedAt)); err != nil {
		return err
	}
	if !e.ReopenedAt.After(e.ClosedAt) {
		return invalid("reopened_at", "not after closed_at")
	}
	return nil
}

// EmailChangeRequested: a worker asked, with a reason, that the portals
// team change the account's email to Email (R18). A later request
// replaces an open one.
type EmailChangeRequested struct {
	AccountID   uuid.UUID `json:"account_id"`
	Email       string    `json:"email"`
	RequestedAt time.Time `json:"requested_at"`
}

func (*EmailChangeRequested) EventType() string        { return TypeEmailChangeRequested }
func (e *EmailChangeRequested) EffectiveAt() time.Time { return e.RequestedAt }
func (e *EmailChangeRequested) validate() error {
	return firstErr(needID("account_id", e.AccountID), erasedOr(e.Email, checkEmail),
		checkEventTime("requested_at", e.RequestedAt))
}

// EmailChanged: the portals team applied the open request: the account's
// email is Email from ChangedAt; its id stays (R18).
type EmailChanged struct {
	AccountID uuid.UUID `json:"account_id"`
	Email     string    `json:"email"`
	ChangedAt time.Time `json:"changed_at"`
}

func (*EmailChanged) EventType() string        { return TypeEmailChanged }
func (e *EmailChanged) EffectiveAt() time.Time { return e.ChangedAt }
func (e *EmailChanged) validate() error {
	return firstErr(needID("account_id", e.AccountID), erasedOr(e.Email, checkEmail),
		checkEventTime("changed_at", e.ChangedAt))
}

func (e *EmailChangeRequested) personalFields() map[string]*string {
	return map[string]*string{"email": &e.Email}
}

func (e *EmailChanged) personalFields() map[string]*string {
	return map[string]*string{"email": &e.Email}
}

// EmailClaimed: the email whose stream this is (EmailStream; the name is
// keyed, the payload holds no personal data) belongs to AccountID from
// ClaimedAt: one email, one account (R10), also after emails change (R18).
type EmailClaimed struct {
	AccountID uuid.UUID `json:"account_id"`
	ClaimedAt time.Time `json:"claimed_at"`
}

func (*EmailClaimed) EventType() string        { return TypeEmailClaimed }
func (e *EmailClaimed) EffectiveAt() time.Time { return e.ClaimedAt }
func (e *EmailClaimed) validate() error {
	return firstErr(needID("account_id", e.AccountID), checkEventTime("claimed_at", e.ClaimedAt))
}

// EmailReleased: AccountID's email changed away from the stream's email,
// which is free again (R18).
type EmailReleased struct {
	AccountID  uuid.UUID `json:"account_id"`
	ReleasedAt time.Time `json:"released_at"`
}

func (*EmailReleased) EventType() string        { return TypeEmailReleased }
func (e *EmailReleased) EffectiveAt() time.Time { return e.ReleasedAt }
func (e *EmailReleased) validate() error {
	return firstErr(needID("account_id", e.AccountID), checkEventTime("released_at", e.ReleasedAt))
}

// EmailStreamPrefix starts the name of an email's claim stream.
const EmailStreamPrefix = "email-"

var emailNamespace = uuid.MustParse("3d2b6e0f-8a47-4c19-b5e2-71f0c9a4d863")

// EmailStream is the name-based claim stream of email, for services built
// without KeyedIDs (tests): anyone can compute it.
func EmailStream(email string) string {
	return EmailStreamPrefix + uuid.NewHash(sha256.New(), emailNamespace, []byte(NormalizeEmail(email)), 8).String()
}

// EmailStream is the claim stream of email (normalized) in this deployment.
func (k *KeyedIDs) EmailStream(email string) string {
	return EmailStreamPrefix + k.derive("email", NormalizeEmail(email)).String()
}

// EmailClaim is the aggregate of one email's claim stream: which account
// holds the email (R10, R18). Not safe for concurrent use.
type EmailClaim struct {
	version  uint64
	holder   uuid.UUID
	released bool
}

// NewEmailClaim returns the empty aggregate of an email's claim stream.
func NewEmailClaim() *EmailClaim { return &EmailClaim{} }

// Version is the number of events applied.
func (c *EmailClaim) Version() uint64 { return c.version }

// Holder returns the account that claimed the email last and has not
// released it, or uuid.Nil.
func (c *EmailClaim) Holder() uuid.UUID {
	if c.released {
		return uuid.Nil
	}
	return c.holder
}

// Apply changes the state by one event of the claim stream.
func (c *EmailClaim) Apply(e Event) error {
	switch e := e.(type) {
	case *EmailClaimed:
		c.holder, c.released = e.AccountID, false
	case *EmailReleased:
		if e.AccountID == c.holder {
			c.released = true
		}
	default:
		return fmt.Errorf("email claim: cannot apply %T: %w", e, ErrMalformedEvent)
	}
	c.version++
	return nil
}

// Claim gives the email to account. holderHolds says whether the current
// holder (if another account) still holds it: its email is this one, or it
// is applying a change to it, or it is being created. Claiming what
// account holds already records nothing; what another account holds is
// ErrAlreadyRegistered.
func (c *EmailClaim) Claim(account uuid.UUID, holderHolds bool, now time.Time) ([]Event, error) {
	if account == uuid.Nil {
		return nil, invalid("account_id", "required")
	}
	switch h := c.Holder(); {
	case h == account:
		return nil, nil
	case h != uuid.Nil && holderHolds:
		return nil, fmt.Errorf("claim email: held by account %s: %w", h, ErrAlreadyRegistered)
	}
	return []Event{&EmailClaimed{AccountID: account, ClaimedAt: normTime(now)}}, nil
}

// Release frees the email when account holds it; otherwise it records
// nothing.
func (c *EmailClaim) Release(account uuid.UUID, now time.Time) []Event {
	if c.Holder() != account || account == uuid.Nil {
		return nil
	}
	return []Event{&EmailReleased{AccountID: account, ReleasedAt: normTime(now)}}
}

// ---- decisions ----

// CancelPlacement cancels a planned placement before it starts, with a
// reason (R18): only the child's worker. A placement that has started is
// ended instead (ErrPlacementStarted); one cancelled already is
// ErrPlacementCancelled.
func (c *Child) CancelPlacement(by Actor, placementID uuid.UUID, reason string, now time.Time) ([]Event, error) {
	const what = "cancel placement"
	if err := c.requireWorker(by, what); err != nil {
		return nil, err
	}
	if err := checkReason(reason); err != nil {
		return nil, err
	}
	p := c.placement(placementID)
	if p == nil {
		return nil, fmt.Errorf("%s %s: %w", what, placementID, ErrPlacementNotFound)
	}
	now = normTime(now)
	switch {
	case p.cancelled():
		return nil, fmt.Errorf("%s %s: %w", what, placementID, ErrPlacementCancelled)
	case !now.Before(p.startedAt):
		return nil, fmt.Errorf("%s %s: started at %s: %w", what, placementID,
			p.startedAt.UTC().Format(time.RFC3339), ErrPlacementStarted)
	}
	return []Event{&PlacementCancelled{ChildID: c.id, PlacementID: p.id, CarerAccountID: p.carer, CancelledAt: now}}, nil
}

// Reopen reopens a closed account, with a reason (R18): only the portals
// team. Its identity link, phone and history stay; the access it had before
// its closure does not come back by itself: a worker places or grants
// again. An account that is not closed is ErrAccountNotClosed.
func (a *Account) Reopen(by Actor, reason string, now time.Time) ([]Event, error) {
	const what = "reopen account"
	if err := allowRoles(by, RolePortalsTeam); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := checkReason(reason); err != nil {
		return nil, err
	}
	switch {
	case !a.exists:
		return nil, fmt.Errorf("%s: %w", what, ErrAccountNotFound)
	case a.Erased():
		return nil, fmt.Errorf("%s %s: %w", what, a.id, ErrErased)
	case a.closedAt.IsZero():
		return nil, fmt.Errorf("%s %s: %w", what, a.id, ErrAccountNotClosed)
	}
	now = normTime(now)
	if !now.After(a.closedAt) {
		return nil, fmt.Errorf("%s %s: closed at %s, after now: %w", what, a.id,
			a.closedAt.Format(time.RFC3339Nano), ErrAccountNotClosed)
	}
	return []Event{&AccountReopened{AccountID: a.id, ClosedAt: a.closedAt, ReopenedAt: now}}, nil
}

// RequestEmailChange files a worker's request, with a reason, that the
// portals team change the account's email to email (R18), as a phone reset
// is requested (R11). Not for the worker's own account (R8). Whether
// another account holds the new email is checked again when the change is
// applied.
func (a *Account) RequestEmailChange(by Actor, email, reason string, now time.Time) ([]Event, error) {
	const what = "request email change"
	if err := allowRoles(by, RoleWorker); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := firstErr(checkEmail(email), checkReason(reason)); err != nil {
		return nil, err
	}
	if err := a.open(what); err != nil {
		return nil, err
	}
	if a.isSelf(by) {
		return nil, fmt.Errorf("%s: %w", what, ErrSelfAccess)
	}
	email = NormalizeEmail(email)
	switch email {
	case a.email:
		return nil, invalid("email", "the account's email already")
	case a.pendingEmail:
		return nil, fmt.Errorf("%s for %s: %w", what, a.id, ErrEmailChangePending)
	}
	return []Event{&EmailChangeRequested{AccountID: a.id, Email: email, RequestedAt: normTime(now)}}, nil
}

// ChangeEmail applies the open email change request (R18): only the
// portals team, and only with the requested email. The account id stays.
func (a *Account) ChangeEmail(by Actor, email string, now time.Time) ([]Event, error) {
	const what = "change email"
	if err := allowRoles(by, RolePortalsTeam); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := checkEmail(email); err != nil {
		return nil, err
	}
	if err := a.open(what); err != nil {
		return nil, err
	}
	switch {
	case a.pendingEmail == "":
		return nil, fmt.Errorf("%s of %s: %w", what, a.id, ErrNoEmailChangeRequest)
	case NormalizeEmail(email) != a.pendingEmail:
		return nil, fmt.Errorf("%s of %s: %w", what, a.id, ErrEmailChangeMismatch)
	}
	return []Event{&EmailChanged{AccountID: a.id, Email: a.pendingEmail, ChangedAt: normTime(now)}}, nil
}
