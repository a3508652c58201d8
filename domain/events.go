package domain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/google/uuid"
)

// Event is one fact in the catalogue. Every event type has a stable,
// versioned name (EventType), is encoded as JSON by the registry, and can
// check its own payload (validate). Event names never change; a change of
// schema is a new version with a new name.
type Event interface {
	// EventType is the stable catalogue name, e.g. "placement.ended.v1".
	EventType() string
	// EffectiveAt is when the fact happened in the world (R4, R14).
	EffectiveAt() time.Time
	validate() error
}

// Event type names. They are part of the stored data: never rename one.
const (
	TypeChildRegistered     = "child.registered.v1"
	TypeWorkerAllocated     = "child.worker_allocated.v1"
	TypePlacementStarted    = "placement.started.v1"
	TypePlacementEnded      = "placement.ended.v1"
	TypeGraceEndedEarly     = "placement.grace_ended_early.v1"
	TypeGraceExpired        = "placement.grace_expired.v1"
	TypeAccessGranted       = "grant.made.v1"
	TypeAccessRevoked       = "grant.revoked.v1"
	TypeAccountInvited      = "account.invited.v1"
	TypeInvitationExpired   = "account.invitation_expired.v1"
	TypeAccountActivated    = "account.activated.v1"
	TypeAccountClosed       = "account.closed.v1"
	TypePhoneResetRequested = "phone.reset_requested.v1"
	TypePhoneCleared        = "phone.cleared.v1"
	TypePhoneEnrolled       = "phone.enrolled.v1"
	TypeIdentityLinked      = "identity.linked.v1"
	TypeAccountErased       = "account.erased.v1"
	TypeChildErased         = "child.erased.v1"
	TypeChildRetentionSet   = "child.retention_set.v1"

	TypePlacementCancelled   = "placement.cancelled.v1"
	TypeAccountReopened      = "account.reopened.v1"
	TypeEmailChangeRequested = "account.email_change_requested.v1"
	TypeEmailChanged         = "account.email_changed.v1"
	TypeEmailClaimed         = "email.claimed.v1"
	TypeEmailReleased        = "email.released.v1"
	TypePolicySet            = "policy.set.v1"

	TypePlacementStartReached = "placement.start_reached.v1"
	TypePlacementEndReached   = "placement.end_reached.v1"
	TypeGrantReviewed         = "grant.reviewed.v1"
	TypeGrantExpired          = "grant.expired.v1"
)

// catalogue maps every event name to a constructor of its zero value.
var catalogue = map[string]func() Event{
	TypeChildRegistered:     func() Event { return &ChildRegistered{} },
	TypeWorkerAllocated:     func() Event { return &WorkerAllocated{} },
	TypePlacementStarted:    func() Event { return &PlacementStarted{} },
	TypePlacementEnded:      func() Event { return &PlacementEnded{} },
	TypeGraceEndedEarly:     func() Event { return &GraceEndedEarly{} },
	TypeGraceExpired:        func() Event { return &GraceExpired{} },
	TypeAccessGranted:       func() Event { return &AccessGranted{} },
	TypeAccessRevoked:       func() Event { return &AccessRevoked{} },
	TypeAccountInvited:      func() Event { return &AccountInvited{} },
	TypeInvitationExpired:   func() Event { return &InvitationExpired{} },
	TypeAccountActivated:    func() Event { return &AccountActivated{} },
	TypeAccountClosed:       func() Event { return &AccountClosed{} },
	TypePhoneResetRequested: func() Event { return &PhoneResetRequested{} },
	TypePhoneCleared:        func() Event { return &PhoneCleared{} },
	TypePhoneEnrolled:       func() Event { return &PhoneEnrolled{} },
	TypeIdentityLinked:      func() Event { return &IdentityLinked{} },
	TypeAccountErased:       func() Event { return &AccountErased{} },
	TypeChildErased:         func() Event { return &ChildErased{} },
	TypeChildRetentionSet:   func() Event { return &ChildRetentionSet{} },

	TypePlacementCancelled:   func() Event { return &PlacementCancelled{} },
	TypeAccountReopened:      func() Event { return &AccountReopened{} },
	TypeEmailChangeRequested: func() Event { return &EmailChangeRequested{} },
	TypeEmailChanged:         func() Event { return &EmailChanged{} },
	TypeEmailClaimed:         func() Event { return &EmailClaimed{} },
	TypeEmailReleased:        func() Event { return &EmailReleased{} },
	TypePolicySet:            func() Event { return &PolicySet{} },

	TypePlacementStartReached: func() Event { return &PlacementStartReached{} },
	TypePlacementEndReached:   func() Event { return &PlacementEndReached{} },
	TypeGrantReviewed:         func() Event { return &GrantReviewed{} },
	TypeGrantExpired:          func() Event { return &GrantExpired{} },
}

// EventTypes lists every event name of the catalogue, sorted.
func EventTypes() []string {
	names := make([]string, 0, len(catalogue))
	for n := range catalogue {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Encode validates e and returns its JSON payload.
func Encode(e Event) ([]byte, error) {
	if e == nil {
		return nil, fmt.Errorf("encode: nil event: %w", ErrMalformedEvent)
	}
	if _, ok := catalogue[e.EventType()]; !ok {
		return nil, fmt.Errorf("encode %q: %w", e.EventType(), ErrUnknownEventType)
	}
	if err := firstErr(e.validate(), refuseErased(e)); err != nil {
		return nil, fmt.Errorf("encode %s: %w: %w", e.EventType(), ErrMalformedEvent, err)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w: %w", e.EventType(), ErrMalformedEvent, err)
	}
	return b, nil
}

// Decode parses the payload of an event named typ. It refuses unknown names
// (ErrUnknownEventType) and payloads that are not exactly one JSON object of
// the event's schema, have unknown fields, or break the event's own checks
// (ErrMalformedEvent).
func Decode(typ string, data []byte) (Event, error) {
	newEvent, ok := catalogue[typ]
	if !ok {
		return nil, fmt.Errorf("decode %q: %w", truncateForError(typ), ErrUnknownEventType)
	}
	e := newEvent()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(e); err != nil {
		return nil, fmt.Errorf("decode %s: %w: %w", typ, ErrMalformedEvent, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("decode %s: %w: trailing data", typ, ErrMalformedEvent)
	}
	if err := e.validate(); err != nil {
		return nil, fmt.Errorf("decode %s: %w: %w", typ, ErrMalformedEvent, err)
	}
	return e, nil
}

func truncateForError(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// ---- validation helpers for payloads ----

func needID(field string, id uuid.UUID) error {
	if id == uuid.Nil {
		return invalid(field, "required")
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
