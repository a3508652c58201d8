package domain

import (
	"time"

	"github.com/google/uuid"
)

// AccountKind is the kind of a portal account (R9).
type AccountKind string

// The account kinds.
const (
	KindFosterCarer   AccountKind = "foster_carer"
	KindParent        AccountKind = "parent"
	KindGuardian      AccountKind = "guardian"
	KindNetworkMember AccountKind = "network_member"
)

// ParseAccountKind parses an account kind.
func ParseAccountKind(s string) (AccountKind, error) {
	switch k := AccountKind(s); k {
	case KindFosterCarer, KindParent, KindGuardian, KindNetworkMember:
		return k, nil
	}
	return "", invalid("kind", "unknown account kind %q", s)
}

// Relationship is how a network member relates to a child in a grant (R7).
type Relationship string

// The relationships a grant can name.
const (
	RelParent        Relationship = "parent"
	RelGuardian      Relationship = "guardian"
	RelNetworkMember Relationship = "network_member"
)

// ParseRelationship parses a grant's relationship.
func ParseRelationship(s string) (Relationship, error) {
	switch r := Relationship(s); r {
	case RelParent, RelGuardian, RelNetworkMember:
		return r, nil
	}
	return "", invalid("relationship", "unknown relationship %q", s)
}

// ---- child stream ----

// ChildRegistered: a child's record exists in the engine. WorkerID is the
// allocated worker when a worker registered the child, empty when a manager
// did (a worker is then allocated with WorkerAllocated).
type ChildRegistered struct {
	ChildID      uuid.UUID `json:"child_id"`
	Reference    string    `json:"reference"`
	WorkerID     string    `json:"worker_id,omitempty"`
	RegisteredAt time.Time `json:"registered_at"`
	// RetainUntil is when the child's record may be erased (R22); zero
	// when none was given at registration.
	RetainUntil time.Time `json:"retain_until,omitzero"`
}

func (*ChildRegistered) EventType() string        { return TypeChildRegistered }
func (e *ChildRegistered) EffectiveAt() time.Time { return e.RegisteredAt }
func (e *ChildRegistered) validate() error {
	return firstErr(needID("child_id", e.ChildID), erasedOr(e.Reference, func(v string) error { return checkText("reference", v, 200) }),
		optionalText("worker_id", e.WorkerID, 200), checkEventTime("registered_at", e.RegisteredAt), optionalEventTime("retain_until", e.RetainUntil))
}

// WorkerAllocated: a manager allocated the child to a worker (R8).
type WorkerAllocated struct {
	ChildID          uuid.UUID `json:"child_id"`
	WorkerID         string    `json:"worker_id"`
	PreviousWorkerID string    `json:"previous_worker_id,omitempty"`
	AllocatedAt      time.Time `json:"allocated_at"`
}

func (*WorkerAllocated) EventType() string        { return TypeWorkerAllocated }
func (e *WorkerAllocated) EffectiveAt() time.Time { return e.AllocatedAt }
func (e *WorkerAllocated) validate() error {
	return firstErr(needID("child_id", e.ChildID), checkText("worker_id", e.WorkerID, 200),
		optionalText("previous_worker_id", e.PreviousWorkerID, 200), checkEventTime("allocated_at", e.AllocatedAt))
}

// PlacementStarted: the child lives with a foster carer from StartedAt (R2).
// StartedAt may lie before the event was recorded, even before the child was
// registered (R4).
type PlacementStarted struct {
	ChildID        uuid.UUID `json:"child_id"`
	PlacementID    uuid.UUID `json:"placement_id"`
	CarerAccountID uuid.UUID `json:"carer_account_id"`
	StartedAt      time.Time `json:"started_at"`
	// AccountSince is the carer account's last reopening when the
	// placement was recorded (R18; zero: never reopened): the placement
	// counts in that life of the account only.
	AccountSince time.Time `json:"account_since,omitzero"`
}

func (*PlacementStarted) EventType() string        { return TypePlacementStarted }
func (e *PlacementStarted) EffectiveAt() time.Time { return e.StartedAt }
func (e *PlacementStarted) validate() error {
	return firstErr(needID("child_id", e.ChildID), needID("placement_id", e.PlacementID),
		needID("carer_account_id", e.CarerAccountID), checkEventTime("started_at", e.StartedAt),
		optionalEventTime("account_since", e.AccountSince))
}

// PlacementEnded: the placement ends at EndedAt (backdated or planned, R4);
// the carer keeps limited access until GraceUntil = EndedAt + grace period
// (R3).
type PlacementEnded struct {
	ChildID        uuid.UUID `json:"child_id"`
	PlacementID    uuid.UUID `json:"placement_id"`
	CarerAccountID uuid.UUID `json:"carer_account_id"`
	EndedAt        time.Time `json:"ended_at"`
	GraceUntil     time.Time `json:"grace_until"`
}

func (*PlacementEnded) EventType() string        { return TypePlacementEnded }
func (e *PlacementEnded) EffectiveAt() time.Time { return e.EndedAt }
func (e *PlacementEnded) validate() error {
	if err := firstErr(needID("child_id", e.ChildID), needID("placement_id", e.PlacementID),
		needID("carer_account_id", e.CarerAccountID), checkEventTime("ended_at", e.EndedAt),
		checkEventTime("grace_until", e.GraceUntil)); err != nil {
		return err
	}
	if e.GraceUntil.Before(e.EndedAt) {
		return invalid("grace_until", "before ended_at")
	}
	return nil
}

// GraceEndedEarly: the child's worker ended a grace period before its
// deadline, with a reason in the event's metadata (R6).
type GraceEndedEarly struct {
	ChildID        uuid.UUID `json:"child_id"`
	PlacementID    uuid.UUID `json:"placement_id"`
	CarerAccountID uuid.UUID `json:"carer_account_id"`
	EndedAt        time.Time `json:"ended_at"`
}

func (*GraceEndedEarly) EventType() string        { return TypeGraceEndedEarly }
func (e *GraceEndedEarly) EffectiveAt() time.Time { return e.EndedAt }
func (e *GraceEndedEarly) validate() error {
	return firstErr(needID("child_id", e.ChildID), needID("placement_id", e.PlacementID),
		needID("carer_account_id", e.CarerAccountID), checkEventTime("ended_at", e.EndedAt))
}

// GraceExpired: the grace period of a placement ran out at ExpiredAt, its
// deadline (R3, R4). It is the record of the expiry, not its gate: access
// already ended at the deadline whenever this event is written.
type GraceExpired struct {
	ChildID        uuid.UUID `json:"child_id"`
	PlacementID    uuid.UUID `json:"placement_id"`
	CarerAccountID uuid.UUID `json:"carer_account_id"`
	ExpiredAt      time.Time `json:"expired_at"`
}

func (*GraceExpired) EventType() string        { return TypeGraceExpired }
func (e *GraceExpired) EffectiveAt() time.Time { return e.ExpiredAt }
func (e *GraceExpired) validate() error {
	return firstErr(needID("child_id", e.ChildID), needID("placement_id", e.PlacementID),
		needID("carer_account_id", e.CarerAccountID), checkEventTime("expired_at", e.ExpiredAt))
}

// AccessGranted: the child's worker let a network member see the child's
// record (R7). A grant to an account that already holds one replaces it from
// GrantedAt on. A time-limited grant has ExpiresAt, when it ends by itself
// (R19); an open-ended one has ReviewBy, when it is due for review. Grants
// recorded before R19 have neither: they are due for review
// DefaultReviewPeriod after GrantedAt.
type AccessGranted struct {
	ChildID      uuid.UUID    `json:"child_id"`
	AccountID    uuid.UUID    `json:"account_id"`
	Relationship Relationship `json:"relationship"`
	Permissions  []string     `json:"permissions"`
	GrantedAt    time.Time    `json:"granted_at"`
	ExpiresAt    time.Time    `json:"expires_at,omitzero"`
	ReviewBy     time.Time    `json:"review_by,omitzero"`
	// AccountSince is the account's last reopening when the grant was
	// made (R18; zero: never reopened): the grant counts in that life of
	// the account only.
	AccountSince time.Time `json:"account_since,omitzero"`
}

func (*AccessGranted) EventType() string        { return TypeAccessGranted }
func (e *AccessGranted) EffectiveAt() time.Time { return e.GrantedAt }
func (e *AccessGranted) validate() error {
	if err := firstErr(needID("child_id", e.ChildID), needID("account_id", e.AccountID),
		checkEventTime("granted_at", e.GrantedAt), optionalEventTime("account_since", e.AccountSince)); err != nil {
		return err
	}
	if err := firstErr(laterTime("expires_at", e.ExpiresAt, e.GrantedAt), laterTime("review_by", e.ReviewBy, e.GrantedAt)); err != nil {
		return err
	}
	if !e.ExpiresAt.IsZero() && !e.ReviewBy.IsZero() {
		return invalid("review_by", "a time-limited grant has no review date")
	}
	if _, err := ParseRelationship(string(e.Relationship)); err != nil {
		return err
	}
	_, err := grantPermissions(e.Permissions)
	return err
}

// laterTime checks an optional event time: absent (zero), or a valid
// event time after after.
func laterTime(field string, t, after time.Time) error {
	if t.IsZero() {
		return nil
	}
	if err := checkEventTime(field, t); err != nil {
		return err
	}
	if !t.After(after) {
		return invalid(field, "must be after %s", after.Format(time.RFC3339Nano))
	}
	return nil
}

// PermissionSet returns the grant's permissions. It assumes the event is
// valid (decoded or built by the aggregate).
func (e *AccessGranted) PermissionSet() PermissionSet {
	s, _ := grantPermissions(e.Permissions)
	return s
}

// grantPermissions parses a grant's permissions: view, optionally record.
func grantPermissions(names []string) (PermissionSet, error) {
	s, err := ParsePermissionSet(names)
	if err != nil {
		return 0, err
	}
	switch {
	case !s.Has(View):
		return 0, invalid("permissions", "a grant must include %q", PermView)
	case s.Has(CompleteOutstanding):
		return 0, invalid("permissions", "%q is only for carers in a grace period", PermCompleteOutstanding)
	}
	return s, nil
}

// AccessRevoked: the child's worker revoked a grant, with a reason (R7).
// GrantedAt names the grant revoked (its granted_at), so that the process
// manager settles that grant's expiry deadline (R19); revocations recorded
// before R19 lack it (their grants had no end).
type AccessRevoked struct {
	ChildID   uuid.UUID `json:"child_id"`
	AccountID uuid.UUID `json:"account_id"`
	RevokedAt time.Time `json:"revoked_at"`
	GrantedAt time.Time `json:"granted_at,omitzero"`
}

func (*AccessRevoked) EventType() string        { return TypeAccessRevoked }
func (e *AccessRevoked) EffectiveAt() time.Time { return e.RevokedAt }
func (e *AccessRevoked) validate() error {
	if err := firstErr(needID("child_id", e.ChildID), needID("account_id", e.AccountID), checkEventTime("revoked_at", e.RevokedAt)); err != nil {
		return err
	}
	if !e.GrantedAt.IsZero() {
		if err := checkEventTime("granted_at", e.GrantedAt); err != nil {
			return err
		}
		if e.GrantedAt.After(e.RevokedAt) {
			return invalid("granted_at", "after revoked_at")
		}
	}
	return nil
}

// ---- account stream ----

// AccountInvited: a worker invited an email address to hold a portal account
// of a kind (R9). Also written when an expired invitation is renewed.
type AccountInvited struct {
	AccountID uuid.UUID   `json:"account_id"`
	Email     string      `json:"email"`
	Kind      AccountKind `json:"kind"`
	InvitedAt time.Time   `json:"invited_at"`
	ExpiresAt time.Time   `json:"expires_at"`
}

func (*AccountInvited) EventType() string        { return TypeAccountInvited }
func (e *AccountInvited) EffectiveAt() time.Time { return e.InvitedAt }
func (e *AccountInvited) validate() error {
	if err := firstErr(needID("account_id", e.AccountID), erasedOr(e.Email, checkEmail),
		checkEventTime("invited_at", e.InvitedAt), checkEventTime("expires_at", e.ExpiresAt)); err != nil {
		return err
	}
	if !e.ExpiresAt.After(e.InvitedAt) {
		return invalid("expires_at", "not after invited_at")
	}
	_, err := ParseAccountKind(string(e.Kind))
	return err
}

// InvitationExpired: an invitation ran out unaccepted at ExpiredAt (R9).
type InvitationExpired struct {
	AccountID uuid.UUID `json:"account_id"`
	ExpiredAt time.Time `json:"expired_at"`
}

func (*InvitationExpired) EventType() string        { return TypeInvitationExpired }
func (e *InvitationExpired) EffectiveAt() time.Time { return e.ExpiredAt }
func (e *InvitationExpired) validate() error {
	return firstErr(needID("account_id", e.AccountID), checkEventTime("expired_at", e.ExpiredAt))
}

// AccountActivated: the invitee signed in with an identity-provider account,
// whose subject id is now linked (R9, R12: no password ever reaches the
// engine).
type AccountActivated struct {
	AccountID       uuid.UUID `json:"account_id"`
	IdentitySubject string    `json:"identity_subject"`
	ActivatedAt     time.Time `json:"activated_at"`
}

func (*AccountActivated) EventType() string        { return TypeAccountActivated }
func (e *AccountActivated) EffectiveAt() time.Time { return e.ActivatedAt }
func (e *AccountActivated) validate() error {
	return firstErr(needID("account_id", e.AccountID), erasedOr(e.IdentitySubject, func(v string) error { return checkText("identity_subject", v, 255) }),
		checkEventTime("activated_at", e.ActivatedAt))
}

// AccountClosed: the portals team closed the account; all its access ends at
// ClosedAt (R13).
type AccountClosed struct {
	AccountID uuid.UUID `json:"account_id"`
	ClosedAt  time.Time `json:"closed_at"`
}

func (*AccountClosed) EventType() string        { return TypeAccountClosed }
func (e *AccountClosed) EffectiveAt() time.Time { return e.ClosedAt }
func (e *AccountClosed) validate() error {
	return firstErr(needID("account_id", e.AccountID), checkEventTime("closed_at", e.ClosedAt))
}

// PhoneResetRequested: a worker asked the portals team to clear the
// account's 2FA phone number, with a reason (R11).
type PhoneResetRequested struct {
	AccountID   uuid.UUID `json:"account_id"`
	RequestedAt time.Time `json:"requested_at"`
}

func (*PhoneResetRequested) EventType() string        { return TypePhoneResetRequested }
func (e *PhoneResetRequested) EffectiveAt() time.Time { return e.RequestedAt }
func (e *PhoneResetRequested) validate() error {
	return firstErr(needID("account_id", e.AccountID), checkEventTime("requested_at", e.RequestedAt))
}

// PhoneCleared: the portals team cleared the number; the account needs phone
// enrolment at its next sign-in (R11).
type PhoneCleared struct {
	AccountID uuid.UUID `json:"account_id"`
	ClearedAt time.Time `json:"cleared_at"`
}

func (*PhoneCleared) EventType() string        { return TypePhoneCleared }
func (e *PhoneCleared) EffectiveAt() time.Time { return e.ClearedAt }
func (e *PhoneCleared) validate() error {
	return firstErr(needID("account_id", e.AccountID), checkEventTime("cleared_at", e.ClearedAt))
}

// PhoneEnrolled: an account with no number enrolled one at sign-in, as
// reported by the service. Only the masked hint is kept (R11): "***" and the
// last three digits. The decoder refuses anything else, so no full number can
// enter the log through this event.
type PhoneEnrolled struct {
	AccountID  uuid.UUID `json:"account_id"`
	PhoneHint  string    `json:"phone_hint"`
	EnrolledAt time.Time `json:"enrolled_at"`
}

func (*PhoneEnrolled) EventType() string        { return TypePhoneEnrolled }
func (e *PhoneEnrolled) EffectiveAt() time.Time { return e.EnrolledAt }
func (e *PhoneEnrolled) validate() error {
	if err := firstErr(needID("account_id", e.AccountID), checkEventTime("enrolled_at", e.EnrolledAt)); err != nil {
		return err
	}
	if !isPhoneHint(e.PhoneHint) && !IsErased(e.PhoneHint) && !IsSealed(e.PhoneHint) {
		return invalid("phone_hint", "must be \"***\" and three digits")
	}
	return nil
}

// ---- identity stream ----

// IdentityLinked: an identity-provider subject is linked to one account, for
// good (R10: one identity, one portal account).
type IdentityLinked struct {
	Subject   string    `json:"subject"`
	AccountID uuid.UUID `json:"account_id"`
	LinkedAt  time.Time `json:"linked_at"`
}

func (*IdentityLinked) EventType() string        { return TypeIdentityLinked }
func (e *IdentityLinked) EffectiveAt() time.Time { return e.LinkedAt }
func (e *IdentityLinked) validate() error {
	return firstErr(erasedOr(e.Subject, func(v string) error { return checkText("subject", v, 255) }), needID("account_id", e.AccountID), checkEventTime("linked_at", e.LinkedAt))
}

// optionalEventTime is checkEventTime for a time that may be zero.
func optionalEventTime(field string, t time.Time) error {
	if t.IsZero() {
		return nil
	}
	return checkEventTime(field, t)
}

func optionalText(field, s string, max int) error {
	if s == "" {
		return nil
	}
	return checkText(field, s, max)
}
