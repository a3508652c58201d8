// Package commands carries out the workers', managers', portals team's and
// service's commands: one handler per command. Each handler loads the
// aggregate from its stream, lets it decide at the current time, and appends
// the decided events with the stream's version as the expected version,
// retrying a bounded number of times when another writer got there first.
//
// Contracts every handler keeps:
//
//   - Meta is checked first: an invalid actor (domain.Actor.Validate) or
//     idempotency key is refused as domain.ErrInvalid before anything is
//     read.
//   - Caller authorization (R8) is decided by the domain aggregates from the
//     actor (its role comes from the token). ExpireCarerAccess and
//     ExpireInvitation, whose domain methods take no actor, are refused
//     (domain.ErrRoleNotAllowed) for every actor but the engine's own
//     (domain.System, role system), which no token can claim.
//   - Every error the domain returns (domain.KindOf(err) != KindInternal) is
//     a refusal: the command appends nothing and is written to the security
//     log (Refusals) with its command name (the Command* constants), its
//     target ("child/<id>", "child/<id>/placement/<id>",
//     "child/<id>/grant/<account id>", "account/<id>") and its code (Code);
//     the error returned is the domain's, wrapping its sentinel. A failure
//     to record is logged and does not change the answer. Errors that are
//     not the domain's (the store failing, a stored stream that does not
//     load) are not refusals: Code gives "internal".
//   - Concurrency conflicts (eventlog.ErrConflict) are retried up to
//     Config.MaxRetries times (default 5), after a short random backoff,
//     reloading the aggregates and deciding again each time, then returned
//     wrapping ErrConflictRetries (and eventlog.ErrConflict).
//   - Idempotency: with Meta.IdempotencyKey set, the ids of new events and
//     of new aggregates (child id, placement id) are derived from (actor
//     id, key, command, target), so a retried request decides the same ids;
//     a handler that finds its first event id already in the stream returns
//     the first result (ids, grace_until, expires_at and the position of
//     that request's last event) without deciding again and appends
//     nothing. The same key with another command, target or actor is
//     another request.
//   - Every result carries the position of the last event appended (or,
//     when the command changed nothing, the latest position of the streams
//     it read): the consistency token of the API.
//   - A command that decides no events (activating an already active
//     account with the same subject; an expiry already recorded or made
//     moot by R5/R6) succeeds and appends nothing.
//
// A Service is safe for concurrent use.
package commands

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// Store is what the handlers need of the event log.
type Store interface {
	ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventlog.Record, error)
	Append(ctx context.Context, stream string, expected eventlog.ExpectedVersion, events []eventlog.EventData) (eventlog.AppendResult, error)
}

// Refusal is one refused command, for the security log (R8).
type Refusal struct {
	At            time.Time
	Actor         domain.Actor
	Command       string // e.g. "grant"
	Target        string // e.g. "child/<id>"
	Code          string // the problem code: forbidden, invalid, not_found, conflict, already_registered
	Detail        string // the refusal's message
	RequestID     string
	CorrelationID uuid.UUID
}

// Refusals records refused commands. A failure to record is logged and
// does not change the command's answer.
type Refusals interface {
	RecordRefusal(ctx context.Context, r Refusal) error
}

// ErrConflictRetries is returned (wrapped, together with
// eventlog.ErrConflict) when a command still conflicted after the last
// retry.
var ErrConflictRetries = errors.New("commands: the record kept changing; try again")

// Meta is what every command carries besides its own fields.
type Meta struct {
	Actor         domain.Actor
	RequestID     string
	CorrelationID uuid.UUID // new one (Config.NewID) when zero
	// CausationID is the event or command that caused this command
	// (optional): the process manager passes the event whose deadline
	// fired. It is written to every decided event's metadata.
	CausationID    uuid.UUID
	IdempotencyKey string // optional, at most MaxIdempotencyKey bytes of printable text; see the package doc
}

// Result is the answer of a command that only reports its position.
type Result struct {
	Position eventlog.Position
}

// RegisterChild is POST /v1/children.
type RegisterChild struct {
	Reference string
	// RetainUntil is when the child's record may be erased (R22); zero:
	// none yet (SetRetention sets one later).
	RetainUntil time.Time
}

// ChildRegistered answers RegisterChild.
type ChildRegistered struct {
	ChildID  uuid.UUID
	Position eventlog.Position
}

// AllocateWorker is POST /v1/children/{child_id}/allocation.
type AllocateWorker struct {
	ChildID  uuid.UUID
	WorkerID string
}

// Invite is POST /v1/invitations.
type Invite struct {
	Email string
	Kind  string
}

// Invited answers Invite.
type Invited struct {
	AccountID uuid.UUID
	ExpiresAt time.Time
	Position  eventlog.Position
}

// Activate is POST /v1/accounts/{account_id}/activation (the service
// reports a sign-in with an identity).
type Activate struct {
	AccountID       uuid.UUID
	IdentitySubject string
	Email           string
}

// CloseAccount is POST /v1/accounts/{account_id}/close.
type CloseAccount struct {
	AccountID uuid.UUID
	Reason    string
}

// EraseAccount is POST /v1/accounts/{account_id}/erasure.
type EraseAccount struct {
	AccountID uuid.UUID
	Reason    string
}

// CancelInvitation is POST /v1/accounts/{account_id}/invitation/cancel
// (R18).
type CancelInvitation struct {
	AccountID uuid.UUID
	Reason    string
}

// SetRetention is PUT /v1/children/{child_id}/retention (R22).
type SetRetention struct {
	ChildID     uuid.UUID
	RetainUntil time.Time
	Reason      string
}

// EraseAccountAtRetention is sent by the process manager when a closed
// account's retention ends (R22).
type EraseAccountAtRetention struct{ AccountID uuid.UUID }

// EraseChildAtRetention is sent by the process manager at a child's
// retention date Due (R22).
type EraseChildAtRetention struct {
	ChildID uuid.UUID
	Due     time.Time
}

// EraseChild is POST /v1/children/{child_id}/erasure.
type EraseChild struct {
	ChildID uuid.UUID
	Reason  string
}

// StartPlacement is POST /v1/children/{child_id}/placements.
type StartPlacement struct {
	ChildID        uuid.UUID
	CarerAccountID uuid.UUID
	StartedAt      time.Time
}

// PlacementStarted answers StartPlacement.
type PlacementStarted struct {
	PlacementID uuid.UUID
	Position    eventlog.Position
}

// EndPlacement is POST /v1/children/{child_id}/placements/{placement_id}/end.
type EndPlacement struct {
	ChildID     uuid.UUID
	PlacementID uuid.UUID
	EndedAt     time.Time
	Reason      string
}

// PlacementEnded answers EndPlacement.
type PlacementEnded struct {
	GraceUntil time.Time
	Position   eventlog.Position
}

// EndGrace is POST /v1/children/{child_id}/placements/{placement_id}/end-grace.
type EndGrace struct {
	ChildID     uuid.UUID
	PlacementID uuid.UUID
	Reason      string
}

// Grant is POST /v1/children/{child_id}/grants. ExpiresAt, when set, makes
// the grant time-limited (R19).
type Grant struct {
	ChildID      uuid.UUID
	AccountID    uuid.UUID
	Relationship string
	Permissions  []string
	Reason       string
	ExpiresAt    time.Time
}

// GrantMade answers Grant: the grant's end (time-limited) or review date
// (open-ended), the other one zero (R19).
type GrantMade struct {
	ExpiresAt time.Time
	ReviewBy  time.Time
	Position  eventlog.Position
}

// ReviewGrant is POST /v1/children/{child_id}/grants/{account_id}/review
// (R19).
type ReviewGrant struct {
	ChildID   uuid.UUID
	AccountID uuid.UUID
	Reason    string
}

// GrantReviewed answers ReviewGrant: the grant's new review date.
type GrantReviewed struct {
	ReviewBy time.Time
	Position eventlog.Position
}

// ExpireGrant is sent by the process manager at a time-limited grant's
// expires_at (R19): the grant to AccountID made at GrantedAt.
type ExpireGrant struct {
	ChildID   uuid.UUID
	AccountID uuid.UUID
	GrantedAt time.Time
}

// Revoke is POST /v1/children/{child_id}/grants/{account_id}/revoke.
type Revoke struct {
	ChildID   uuid.UUID
	AccountID uuid.UUID
	Reason    string
}

// RequestPhoneReset is POST /v1/accounts/{account_id}/phone-reset-requests.
type RequestPhoneReset struct {
	AccountID uuid.UUID
	Reason    string
}

// ClearPhone is POST /v1/accounts/{account_id}/phone/clear.
type ClearPhone struct{ AccountID uuid.UUID }

// EnrolPhone is PUT /v1/accounts/{account_id}/phone.
type EnrolPhone struct {
	AccountID uuid.UUID
	Phone     string
}

// ExpireCarerAccess is sent by the process manager at a grace deadline.
type ExpireCarerAccess struct {
	ChildID     uuid.UUID
	PlacementID uuid.UUID
}

// ExpireInvitation is sent by the process manager at an invitation's
// deadline.
type ExpireInvitation struct{ AccountID uuid.UUID }

// CancelPlacement is POST
// /v1/children/{child_id}/placements/{placement_id}/cancel (R18).
type CancelPlacement struct {
	ChildID     uuid.UUID
	PlacementID uuid.UUID
	Reason      string
}

// ReopenAccount is POST /v1/accounts/{account_id}/reopen (R18).
type ReopenAccount struct {
	AccountID uuid.UUID
	Reason    string
}

// RequestEmailChange is POST /v1/accounts/{account_id}/email-change-requests
// (R18).
type RequestEmailChange struct {
	AccountID uuid.UUID
	Email     string
	Reason    string
}

// ChangeEmail is PUT /v1/accounts/{account_id}/email (R18).
type ChangeEmail struct {
	AccountID uuid.UUID
	Email     string
}

// MarkPlacementStart is sent by the process manager when a placement
// recorded ahead of its start starts.
type MarkPlacementStart struct {
	ChildID     uuid.UUID
	PlacementID uuid.UUID
}

// MarkPlacementEnd is sent by the process manager when a placement whose
// end was recorded ahead of it ends.
type MarkPlacementEnd struct {
	ChildID     uuid.UUID
	PlacementID uuid.UUID
}
