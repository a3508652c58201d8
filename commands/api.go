// Package commands carries out the workers', managers', portals team's and
// service's commands: one handler per command. Each handler loads the
// aggregate from its stream, lets it decide at the current time, and appends
// the decided events with the stream's version as the expected version,
// retrying a bounded number of times when another writer got there first.
//
// Contracts every handler keeps:
//
//   - Caller authorization (R8) is decided by the domain aggregates from the
//     actor (its role comes from the token). A refused command appends
//     nothing and is written to the security log (Refusals) with the
//     refusal's code; the error returned wraps the domain's sentinel, so
//     domain.KindOf maps it to a problem code.
//   - Concurrency conflicts (eventlog.ErrConflict) are retried up to
//     Config.MaxRetries times (default 5), reloading the aggregate each
//     time, then returned wrapping ErrConflictRetries (and
//     eventlog.ErrConflict).
//   - Idempotency: with Meta.IdempotencyKey set, the ids of new events and
//     of new aggregates (child id, placement id) are derived from (actor
//     id, key), so a retried request decides the same ids; a handler that
//     finds its first event id already in the stream returns the first
//     result without deciding again and appends nothing.
//   - Every result carries the position of the last event appended (or,
//     when the command changed nothing, of the last event of the stream):
//     the consistency token of the API.
//   - A command that decides no events (activating an already active
//     account with the same subject) succeeds and appends nothing.
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
	Actor          domain.Actor
	RequestID      string
	CorrelationID  uuid.UUID // new random one when zero
	IdempotencyKey string    // optional; see the package doc
}

// Result is the answer of a command that only reports its position.
type Result struct {
	Position eventlog.Position
}

// RegisterChild is POST /v1/children.
type RegisterChild struct{ Reference string }

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

// Grant is POST /v1/children/{child_id}/grants.
type Grant struct {
	ChildID      uuid.UUID
	AccountID    uuid.UUID
	Relationship string
	Permissions  []string
	Reason       string
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
