package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// Topics. Their names are part of the wire contract: never rename one; a
// new format is a new topic with a new version suffix.
const (
	// TopicEvents carries every event of the log, one message per event,
	// published by the outbox relay in log order (see EncodeEvent).
	TopicEvents = "accessledger.events.v1"
	// TopicAccess carries the integration events access.changed and
	// access.reset (see EncodeAccessChanged, EncodeAccessReset).
	TopicAccess = "accessledger.access.v1"
	// TopicLedger carries the ledger's signed checkpoints
	// (ledger.checkpoint, see EncodeCheckpoint), so that copies live
	// outside the database.
	TopicLedger = "accessledger.ledger.v1"
)

// Metadata keys of the messages this package writes. On NATS they travel
// as message headers, on PostgreSQL in the metadata JSON column.
const (
	// MetaName is the message's type for watermill's cqrs marshalers: the
	// event type on TopicEvents, MessageAccessChanged or MessageAccessReset
	// on TopicAccess.
	MetaName = "name"
	// MetaEventType is the event type (TopicEvents).
	MetaEventType = "event_type"
	// MetaStream is the event's stream (TopicEvents).
	MetaStream = "stream"
	// MetaPosition is the event's (or the change's) position token, as
	// eventlog.Position.String writes it.
	MetaPosition = "position"
	// MetaCorrelationID and MetaCausationID are the event's correlation and
	// causation ids (TopicEvents).
	MetaCorrelationID = "correlation_id"
	MetaCausationID   = "causation_id"
	// MetaAccountID and MetaChildID name the pair of an access.changed
	// message (TopicAccess).
	MetaAccountID = "account_id"
	MetaChildID   = "child_id"
)

// ErrMalformedMessage is returned (wrapped) by the decoders when a message
// is not in this package's wire format. An event whose type the domain does
// not know decodes with domain.ErrUnknownEventType instead (DecodeEvent),
// or not at all: DecodeRecord accepts it.
var ErrMalformedMessage = errors.New("bus: malformed message")

// wireEvent is the payload of a TopicEvents message.
type wireEvent struct {
	EventID       uuid.UUID       `json:"event_id"`
	Type          string          `json:"type"`
	Stream        string          `json:"stream"`
	StreamVersion uint64          `json:"stream_version"`
	Position      string          `json:"position"`
	ActorID       string          `json:"actor_id"`
	ActorRole     string          `json:"actor_role"`
	Reason        string          `json:"reason"`
	EffectiveAt   time.Time       `json:"effective_at"`
	RecordedAt    time.Time       `json:"recorded_at"`
	CorrelationID uuid.UUID       `json:"correlation_id"`
	CausationID   uuid.UUID       `json:"causation_id"`
	Data          json.RawMessage `json:"data"`
}

// EncodeEvent turns a record of the log into the message the outbox relay
// publishes on TopicEvents:
//
//   - UUID: the event id (canonical lower-case string), so consumers can
//     deduplicate and NATS JetStream deduplicates republished events;
//   - payload: a JSON object with event_id, type, stream, stream_version,
//     position (the token of eventlog.Position.String), actor_id,
//     actor_role, reason, effective_at and recorded_at (RFC 3339 with
//     nanoseconds, UTC), correlation_id, causation_id, and data: the
//     event's own JSON as stored (compacted, not re-escaped; docs/events.md);
//   - metadata: MetaName and MetaEventType (the event type), MetaStream,
//     MetaPosition, MetaCorrelationID and MetaCausationID.
//
// It does not decode the event: a type this build does not know is
// published like any other. It fails with ErrMalformedMessage when the
// record has no id or type, its data is not JSON, or a value that goes
// into metadata (type, stream) holds a control character.
func EncodeEvent(rec eventlog.Record) (*message.Message, error) {
	if rec.ID == uuid.Nil {
		return nil, fmt.Errorf("%w: record at %s has no event id", ErrMalformedMessage, rec.Position)
	}
	if rec.Type == "" || hasControl(rec.Type) {
		return nil, fmt.Errorf("%w: event %s: type %q", ErrMalformedMessage, rec.ID, rec.Type)
	}
	if rec.Stream == "" || hasControl(rec.Stream) {
		return nil, fmt.Errorf("%w: event %s: stream %q", ErrMalformedMessage, rec.ID, rec.Stream)
	}
	if !json.Valid(rec.Data) || bytes.TrimLeft(rec.Data, " \t\r\n")[0] != '{' {
		return nil, fmt.Errorf("%w: event %s: data is not a JSON object", ErrMalformedMessage, rec.ID)
	}
	payload, err := marshal(wireEvent{
		EventID: rec.ID, Type: rec.Type, Stream: rec.Stream, StreamVersion: rec.Version,
		Position: rec.Position.String(), ActorID: rec.Meta.ActorID, ActorRole: rec.Meta.ActorRole,
		Reason: rec.Meta.Reason, EffectiveAt: rec.Meta.EffectiveAt.UTC(), RecordedAt: rec.Meta.RecordedAt.UTC(),
		CorrelationID: rec.Meta.CorrelationID, CausationID: rec.Meta.CausationID, Data: rec.Data,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: event %s: %w", ErrMalformedMessage, rec.ID, err)
	}
	msg := message.NewMessage(rec.ID.String(), payload)
	msg.Metadata.Set(MetaName, rec.Type)
	msg.Metadata.Set(MetaEventType, rec.Type)
	msg.Metadata.Set(MetaStream, rec.Stream)
	msg.Metadata.Set(MetaPosition, rec.Position.String())
	msg.Metadata.Set(MetaCorrelationID, rec.Meta.CorrelationID.String())
	msg.Metadata.Set(MetaCausationID, rec.Meta.CausationID.String())
	return msg, nil
}

// DecodeRecord parses a TopicEvents message back into the record it was
// encoded from (times in UTC, Data as carried). It checks the wire format
// only, not the event: a type the domain does not know decodes. The
// message's UUID must be the event id; type and stream must be free of
// control characters, as EncodeEvent requires. Unknown top-level payload fields are
// ignored, so the format can grow. It fails with ErrMalformedMessage.
func DecodeRecord(msg *message.Message) (eventlog.Record, error) {
	if msg == nil {
		return eventlog.Record{}, fmt.Errorf("%w: nil message", ErrMalformedMessage)
	}
	var w wireEvent
	if err := decodeOne(msg.Payload, &w); err != nil {
		return eventlog.Record{}, fmt.Errorf("%w: message %q: %w", ErrMalformedMessage, truncate(msg.UUID), err)
	}
	pos, err := eventlog.ParsePosition(w.Position)
	switch {
	case w.EventID == uuid.Nil:
		return eventlog.Record{}, fmt.Errorf("%w: message %q: no event_id", ErrMalformedMessage, truncate(msg.UUID))
	case msg.UUID != w.EventID.String():
		return eventlog.Record{}, fmt.Errorf("%w: message uuid %q is not its event_id %s", ErrMalformedMessage, truncate(msg.UUID), w.EventID)
	case w.Type == "" || hasControl(w.Type):
		return eventlog.Record{}, fmt.Errorf("%w: event %s: type %q", ErrMalformedMessage, w.EventID, truncate(w.Type))
	case w.Stream == "" || hasControl(w.Stream):
		return eventlog.Record{}, fmt.Errorf("%w: event %s: stream %q", ErrMalformedMessage, w.EventID, truncate(w.Stream))
	case w.StreamVersion == 0:
		return eventlog.Record{}, fmt.Errorf("%w: event %s: no stream_version", ErrMalformedMessage, w.EventID)
	case err != nil || pos.IsZero():
		return eventlog.Record{}, fmt.Errorf("%w: event %s: position %q", ErrMalformedMessage, w.EventID, truncate(w.Position))
	case len(w.Data) == 0 || w.Data[0] != '{':
		return eventlog.Record{}, fmt.Errorf("%w: event %s: data is not a JSON object", ErrMalformedMessage, w.EventID)
	}
	return eventlog.Record{
		ID: w.EventID, Stream: w.Stream, Version: w.StreamVersion, Position: pos, Type: w.Type,
		Data: []byte(w.Data),
		Meta: eventlog.Meta{
			ActorID: w.ActorID, ActorRole: w.ActorRole, Reason: w.Reason,
			EffectiveAt: w.EffectiveAt.UTC(), RecordedAt: w.RecordedAt.UTC(),
			CorrelationID: w.CorrelationID, CausationID: w.CausationID,
		},
	}, nil
}

// DecodeEvent parses a TopicEvents message into the domain event with its
// metadata. It fails with ErrMalformedMessage (DecodeRecord), or with
// domain.ErrUnknownEventType or domain.ErrMalformedEvent when the event
// itself does not decode (domain.DecodeRecord): a consumer that meets an
// event type newer than its build should skip it, not stop.
func DecodeEvent(msg *message.Message) (domain.Envelope, error) {
	rec, err := DecodeRecord(msg)
	if err != nil {
		return domain.Envelope{}, err
	}
	return domain.DecodeRecord(rec)
}

// marshal encodes v as compact JSON without HTML escaping, so that strings
// (and the event data) travel as they are stored.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
