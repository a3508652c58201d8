package bus

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/accessledger/accessledger/domain"
)

// ErrEventNotFromLog is returned by EventMarshaler.Marshal for a domain
// event: events reach the bus only through the outbox relay, from the log,
// with their ids and positions (EncodeEvent). Publishing one through a cqrs
// EventBus would invent an event the log does not hold.
var ErrEventNotFromLog = errors.New("bus: domain events are published by the outbox relay, not marshaled")

// EventMarshaler is the cqrs.CommandEventMarshaler of the engine's bus. It
// lets a cqrs EventProcessor or EventGroupProcessor on TopicEvents hand
// its handlers the domain's own event types (*domain.PlacementEnded, ...),
// and a CommandBus/CommandProcessor carry commands as JSON.
//
//   - Name(v) is the event type for a domain.Event (v.EventType()), else
//     the command's name: v.Name() when v has that method, else its
//     package-qualified struct name (cqrs.FullyQualifiedStructName, e.g.
//     "commands.ExpireCarerAccess"). Renaming a command type renames its
//     messages: in-flight commands of the old name are then unknown.
//   - NameFromMessage(msg) is msg.Metadata["name"] (MetaName).
//   - Unmarshal(msg, v) fills a domain event (a pointer to its struct)
//     from a TopicEvents message with DecodeEvent; the message must carry
//     that event type. Anything else is unmarshaled from the payload as JSON.
//   - Marshal(v) encodes a command as JSON with MetaName set, and a UUID
//     from NewUUID (a random one by default). It refuses domain events
//     (ErrEventNotFromLog).
//
// The zero value is ready to use and it is safe for concurrent use. A
// handler that needs the event's metadata (id, position, causation) reads
// it from the message: DecodeEvent(cqrs.OriginalMessageFromCtx(ctx)).
type EventMarshaler struct {
	// NewUUID, when set, gives the UUID of a marshaled command (for
	// example one derived from the command's idempotency key). Default:
	// watermill.NewUUID.
	NewUUID func(command any) string
}

var _ cqrs.CommandEventMarshaler = EventMarshaler{}

// Marshal encodes a command as JSON; see EventMarshaler.
func (m EventMarshaler) Marshal(v any) (*message.Message, error) {
	if e, ok := v.(domain.Event); ok {
		return nil, fmt.Errorf("%w: %s", ErrEventNotFromLog, e.EventType())
	}
	payload, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("bus: marshal %s: %w", m.Name(v), err)
	}
	id := ""
	if m.NewUUID != nil {
		id = m.NewUUID(v)
	}
	if id == "" {
		id = watermill.NewUUID()
	}
	msg := message.NewMessage(id, payload)
	msg.Metadata.Set(MetaName, m.Name(v))
	return msg, nil
}

// Unmarshal fills v from msg; see EventMarshaler.
func (EventMarshaler) Unmarshal(msg *message.Message, v any) error {
	target, ok := v.(domain.Event)
	if !ok {
		if err := json.Unmarshal(msg.Payload, v); err != nil {
			return fmt.Errorf("%w: message %q: %w", ErrMalformedMessage, truncate(msg.UUID), err)
		}
		return nil
	}
	env, err := DecodeEvent(msg)
	if err != nil {
		return err
	}
	if env.Type != target.EventType() {
		return fmt.Errorf("%w: message %q holds %s, not %s", ErrMalformedMessage, truncate(msg.UUID), env.Type, target.EventType())
	}
	dst, src := reflect.ValueOf(v), reflect.ValueOf(env.Event)
	if dst.Kind() != reflect.Pointer || dst.IsNil() || dst.Type() != src.Type() {
		return fmt.Errorf("bus: unmarshal %s into %T: want %s", env.Type, v, src.Type())
	}
	dst.Elem().Set(src.Elem())
	return nil
}

// Name returns the name of an event or command; see EventMarshaler.
func (EventMarshaler) Name(v any) string {
	if e, ok := v.(domain.Event); ok {
		return e.EventType()
	}
	return cqrs.NamedStruct(cqrs.FullyQualifiedStructName)(v)
}

// NameFromMessage returns the message's MetaName.
func (EventMarshaler) NameFromMessage(msg *message.Message) string {
	return msg.Metadata.Get(MetaName)
}
