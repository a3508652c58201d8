package domain

import (
	"errors"
	"fmt"
)

// Kind classifies a domain error for the layers that answer callers: the HTTP
// API turns each kind into one status and problem code, in one place.
type Kind uint8

// The kinds of domain error.
const (
	KindInternal          Kind = iota // not a domain error
	KindInvalid                       // the request is malformed or breaks a rule about its own content
	KindNotFound                      // the aggregate or entity does not exist
	KindConflict                      // the request conflicts with the current state
	KindForbidden                     // the caller may not do this (R8)
	KindAlreadyRegistered             // R10: the email or identity already has an account
)

func (k Kind) String() string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindNotFound:
		return "not_found"
	case KindConflict:
		return "conflict"
	case KindForbidden:
		return "forbidden"
	case KindAlreadyRegistered:
		return "already_registered"
	}
	return "internal"
}

// Error is the type of every sentinel error of the package. Compare with
// errors.Is against the sentinels; read the kind with KindOf.
type Error struct {
	kind Kind
	msg  string
}

func (e *Error) Error() string { return e.msg }

// Kind returns the error's classification.
func (e *Error) Kind() Kind { return e.kind }

func sentinel(k Kind, msg string) *Error { return &Error{kind: k, msg: msg} }

// Sentinel errors. Decision methods wrap them with context (%w); callers test
// with errors.Is.
var (
	// ErrInvalid: a field of the request is missing or malformed. Field
	// problems come as *FieldError, which wraps ErrInvalid.
	ErrInvalid = sentinel(KindInvalid, "invalid request")

	ErrChildNotFound     = sentinel(KindNotFound, "child not found")
	ErrAccountNotFound   = sentinel(KindNotFound, "account not found")
	ErrPlacementNotFound = sentinel(KindNotFound, "placement not found")
	ErrGrantNotFound     = sentinel(KindNotFound, "no active grant for this account")

	// ErrNotAllocated (R8): the worker is not the child's allocated worker.
	ErrNotAllocated = sentinel(KindForbidden, "not the child's allocated worker")
	// ErrSelfAccess (R8): nobody can grant, request or widen access for
	// themselves.
	ErrSelfAccess = sentinel(KindForbidden, "nobody can give access to themselves")
	// ErrRoleNotAllowed (R8): the caller's role may not issue this command.
	ErrRoleNotAllowed = sentinel(KindForbidden, "role not allowed to do this")

	// ErrAlreadyRegistered (R10).
	ErrAlreadyRegistered = sentinel(KindAlreadyRegistered, "already registered: sign in with your existing account")

	// ErrChildReferenceInUse: the reference names a child already (R17).
	ErrChildReferenceInUse  = sentinel(KindAlreadyRegistered, "a child with this reference is registered already")
	ErrAlreadyInvited       = sentinel(KindConflict, "an invitation for this email is still open")
	ErrNoOpenInvitation     = sentinel(KindConflict, "the account has no open invitation")
	ErrInvitationExpired    = sentinel(KindConflict, "invitation expired")
	ErrEmailMismatch        = sentinel(KindConflict, "identity email does not match the invitation")
	ErrAccountClosed        = sentinel(KindConflict, "account closed")
	ErrErased               = sentinel(KindConflict, "the data subject was erased: nothing more can be recorded of them")
	ErrAccountNotActive     = sentinel(KindConflict, "account not active")
	ErrNotFosterCarer       = sentinel(KindConflict, "account is not a foster carer")
	ErrPlacementOverlap     = sentinel(KindConflict, "the carer already has a placement of this child at that time")
	ErrPlacementEnded       = sentinel(KindConflict, "placement already ended")
	ErrPlacementNotEnded    = sentinel(KindConflict, "placement has not ended")
	ErrPlacementStarted     = sentinel(KindConflict, "the placement has started: end it instead of cancelling it")
	ErrPlacementCancelled   = sentinel(KindConflict, "placement cancelled")
	ErrAccountNotClosed     = sentinel(KindConflict, "account not closed")
	ErrEmailChangePending   = sentinel(KindConflict, "a request to change the email to this address is already open")
	ErrNoEmailChangeRequest = sentinel(KindConflict, "no email change request: a worker must file one first")
	ErrEmailChangeMismatch  = sentinel(KindConflict, "the email is not the one the open request asks for")
	ErrEndBeforeStart       = sentinel(KindInvalid, "a placement cannot end before it starts")
	ErrGraceExpired         = sentinel(KindConflict, "grace period already over")
	ErrNotDue               = sentinel(KindConflict, "deadline not reached yet")
	ErrAlreadyGranted       = sentinel(KindConflict, "the account already has this grant")
	ErrGrantExpired         = sentinel(KindConflict, "the grant already ran out (its expires_at passed)")
	ErrGrantTimeLimited     = sentinel(KindConflict, "the grant is time-limited: it ends at its expires_at and has no review date; make a new grant to extend it")
	ErrAlreadyAllocated     = sentinel(KindConflict, "the worker is already allocated")
	ErrNoPhone              = sentinel(KindConflict, "the account has no phone number")
	ErrPhoneResetPending    = sentinel(KindConflict, "a phone reset request is already open")
	ErrNoPhoneResetRequest  = sentinel(KindConflict, "no phone reset request: a worker must file one first")
	ErrPhoneAlreadyEnrolled = sentinel(KindConflict, "the account already has a phone number; it cannot be changed by its user")
	// ErrImportConflict: an imported record (R24) is in the store already
	// with other data (another worker, other dates, another identity).
	ErrImportConflict = sentinel(KindConflict, "the store holds this record with other data")

	// ErrUnknownEventType: the registry has no event of that name.
	ErrUnknownEventType = sentinel(KindInvalid, "unknown event type")
	// ErrMalformedEvent: an event payload does not decode or breaks its
	// schema.
	ErrMalformedEvent = sentinel(KindInvalid, "malformed event")
)

// FieldError reports one bad field of a request. It wraps ErrInvalid.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return fmt.Sprintf("invalid %s: %s", e.Field, e.Problem) }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// KindOf returns the kind of the first domain error in err's chain, or
// KindInternal when there is none.
func KindOf(err error) Kind {
	var de *Error
	if errors.As(err, &de) {
		return de.kind
	}
	return KindInternal
}
