package domain

import (
	"fmt"
	"time"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/google/uuid"
)

// Envelope is a decoded event with all its metadata: what happened (Event),
// where it sits (stream, stream version, global position), and who did it,
// in which role, why, when it happened and when it was recorded, and the ids
// that tie it to a request and to the event that caused it (R14).
type Envelope struct {
	EventID       uuid.UUID
	Stream        string
	StreamVersion uint64
	Position      eventlog.Position
	Type          string
	ActorID       string
	ActorRole     Role
	Reason        string
	EffectiveAt   time.Time
	RecordedAt    time.Time
	CorrelationID uuid.UUID
	CausationID   uuid.UUID
	Event         Event
}

// DecodeRecord decodes a stored record into an Envelope. It fails with
// ErrUnknownEventType or ErrMalformedEvent as Decode does.
func DecodeRecord(r eventlog.Record) (Envelope, error) {
	e, err := Decode(r.Type, r.Data)
	if err != nil {
		return Envelope{}, fmt.Errorf("event %s at %s: %w", r.ID, r.Position, err)
	}
	return Envelope{
		EventID: r.ID, Stream: r.Stream, StreamVersion: r.Version, Position: r.Position, Type: r.Type,
		ActorID: r.Meta.ActorID, ActorRole: Role(r.Meta.ActorRole), Reason: r.Meta.Reason,
		EffectiveAt: r.Meta.EffectiveAt, RecordedAt: r.Meta.RecordedAt,
		CorrelationID: r.Meta.CorrelationID, CausationID: r.Meta.CausationID, Event: e,
	}, nil
}

// Cause is what a command adds to the events it decides: the actor and role,
// the reason, the recording time, and the correlation and causation ids.
type Cause struct {
	Actor         Actor
	Reason        string
	RecordedAt    time.Time
	CorrelationID uuid.UUID
	CausationID   uuid.UUID
}

// EventData encodes a decided event for appending, with id as its event id.
// Its effective time is the event's own (EffectiveAt), so that metadata and
// payload never disagree.
func (c Cause) EventData(id uuid.UUID, e Event) (eventlog.EventData, error) {
	if id == uuid.Nil {
		return eventlog.EventData{}, invalid("event_id", "required")
	}
	if err := c.Actor.Validate(); err != nil {
		return eventlog.EventData{}, err
	}
	if c.RecordedAt.IsZero() {
		return eventlog.EventData{}, invalid("recorded_at", "required")
	}
	if c.Reason != "" {
		if err := checkFreeText("reason", c.Reason, 2000); err != nil {
			return eventlog.EventData{}, err
		}
	}
	if IsErased(c.Reason) || IsSealed(c.Reason) {
		return eventlog.EventData{}, invalid("reason", "%q and values starting %q stand for erased or sealed data and cannot be written",
			ErasedText, SealedPrefix)
	}
	data, err := Encode(e)
	if err != nil {
		return eventlog.EventData{}, err
	}
	return eventlog.EventData{ID: id, Type: e.EventType(), Data: data, Meta: eventlog.Meta{
		ActorID: c.Actor.ID, ActorRole: string(c.Actor.Role), Reason: c.Reason,
		EffectiveAt: normTime(e.EffectiveAt()), RecordedAt: normTime(c.RecordedAt),
		CorrelationID: c.CorrelationID, CausationID: c.CausationID,
	}}, nil
}
