package bus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accessindex"
)

// Message names on TopicAccess (metadata MetaName).
const (
	// MessageAccessChanged: who can see what changed for one (account,
	// child) pair. Payload: AccessChanged.
	MessageAccessChanged = "access.changed"
	// MessageAccessReset: the publisher skipped changes (its checkpoint
	// fell out of the access index's change buffer). A consumer that keeps
	// a copy of who can see what must read the full lists again
	// (GET /v1/accounts/{id}/children, GET /v1/children/{id}/viewers).
	// Payload: AccessReset.
	MessageAccessReset = "access.reset"
)

// AccessChanged is the payload of an access.changed message: the same
// fields as an "access" event of the watch stream (GET /v1/watch). It says
// that a record at Position changed the facts of the pair (AccountID,
// ChildID), and what the account may do on the child's record at At (the
// record's recorded time): Permissions (names, possibly empty), Reason (the
// policy's reason, allowing or denying) and Until (when this answer stops
// holding, null when nothing known ends it).
type AccessChanged struct {
	AccountID   uuid.UUID  `json:"account_id"`
	ChildID     uuid.UUID  `json:"child_id"`
	Permissions []string   `json:"permissions"`
	Reason      string     `json:"reason"`
	Until       *time.Time `json:"until"`
	At          time.Time  `json:"at"`
	Position    string     `json:"position"`
}

// AccessReset is the payload of an access.reset message: the changes
// after After up to Resumed were not published; publishing resumed after
// Resumed.
type AccessReset struct {
	After   string `json:"after"`
	Resumed string `json:"resumed"`
	Detail  string `json:"detail"`
}

// accessNamespace is the UUID namespace of access.changed message ids.
var accessNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("urn:accessledger:access.changed"))

// AccessChangedUUID is the message UUID of the change of the pair
// (account, child) at position: a name-based (SHA-1) UUID, so that a change
// published twice carries the same UUID.
func AccessChangedUUID(pos eventlog.Position, account, child uuid.UUID) uuid.UUID {
	return uuid.NewSHA1(accessNamespace, []byte(pos.String()+"/"+account.String()+"/"+child.String()))
}

// EncodeAccessChanged turns a change of the access index's feed into an
// access.changed message for TopicAccess: UUID AccessChangedUUID, payload
// AccessChanged, metadata MetaName (MessageAccessChanged), MetaPosition,
// MetaAccountID and MetaChildID.
func EncodeAccessChanged(c accessindex.Change) (*message.Message, error) {
	if c.Account == uuid.Nil || c.Child == uuid.Nil || c.Position.IsZero() {
		return nil, fmt.Errorf("%w: change without account, child or position", ErrMalformedMessage)
	}
	var until *time.Time
	if !c.Access.Until.IsZero() {
		u := c.Access.Until.UTC()
		until = &u
	}
	payload, err := marshal(AccessChanged{
		AccountID: c.Account, ChildID: c.Child, Permissions: c.Access.Permissions.Names(),
		Reason: string(c.Access.Reason), Until: until, At: c.At.UTC(), Position: c.Position.String(),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedMessage, err)
	}
	msg := message.NewMessage(AccessChangedUUID(c.Position, c.Account, c.Child).String(), payload)
	msg.Metadata.Set(MetaName, MessageAccessChanged)
	msg.Metadata.Set(MetaPosition, c.Position.String())
	msg.Metadata.Set(MetaAccountID, c.Account.String())
	msg.Metadata.Set(MetaChildID, c.Child.String())
	return msg, nil
}

// DecodeAccessChanged parses an access.changed message back into the
// change it was encoded from (times in UTC). Unknown payload fields are
// ignored. It fails with ErrMalformedMessage.
func DecodeAccessChanged(msg *message.Message) (accessindex.Change, error) {
	if msg == nil {
		return accessindex.Change{}, fmt.Errorf("%w: nil message", ErrMalformedMessage)
	}
	if name := msg.Metadata.Get(MetaName); name != MessageAccessChanged {
		return accessindex.Change{}, fmt.Errorf("%w: message %q is %q, not %s", ErrMalformedMessage, truncate(msg.UUID), truncate(name), MessageAccessChanged)
	}
	var w AccessChanged
	if err := decodeOne(msg.Payload, &w); err != nil {
		return accessindex.Change{}, fmt.Errorf("%w: message %q: %w", ErrMalformedMessage, truncate(msg.UUID), err)
	}
	pos, err := eventlog.ParsePosition(w.Position)
	if err != nil || pos.IsZero() || w.AccountID == uuid.Nil || w.ChildID == uuid.Nil || w.Permissions == nil {
		return accessindex.Change{}, fmt.Errorf("%w: message %q: missing account_id, child_id, permissions or position", ErrMalformedMessage, truncate(msg.UUID))
	}
	perms, err := domain.ParsePermissionSet(w.Permissions)
	if err != nil {
		return accessindex.Change{}, fmt.Errorf("%w: message %q: %w", ErrMalformedMessage, truncate(msg.UUID), err)
	}
	if msg.UUID != AccessChangedUUID(pos, w.AccountID, w.ChildID).String() {
		return accessindex.Change{}, fmt.Errorf("%w: message uuid %q does not match its change", ErrMalformedMessage, truncate(msg.UUID))
	}
	c := accessindex.Change{Account: w.AccountID, Child: w.ChildID, At: w.At.UTC(), Position: pos,
		Access: domain.Access{Permissions: perms, Reason: domain.Reason(w.Reason)}}
	if w.Until != nil {
		c.Access.Until = w.Until.UTC()
	}
	return c, nil
}

// EncodeAccessReset builds the access.reset message that says the changes
// after `after` up to `resumed` were skipped. Its UUID is name-based on the
// two positions.
func EncodeAccessReset(after, resumed eventlog.Position) (*message.Message, error) {
	payload, err := marshal(AccessReset{After: after.String(), Resumed: resumed.String(),
		Detail: "access changes were skipped: read the full lists again, then follow access.changed after this position"})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedMessage, err)
	}
	id := uuid.NewSHA1(accessNamespace, []byte("reset/"+after.String()+"/"+resumed.String()))
	msg := message.NewMessage(id.String(), payload)
	msg.Metadata.Set(MetaName, MessageAccessReset)
	msg.Metadata.Set(MetaPosition, resumed.String())
	return msg, nil
}

// decodeOne decodes exactly one JSON value into v, refusing trailing data.
// Unknown fields are ignored: the wire formats may grow new fields.
func decodeOne(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("trailing data")
	}
	return nil
}
