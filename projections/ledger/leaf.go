package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// leafTag opens every leaf encoding; a new encoding gets a new tag.
const leafTag = "accessledger.leaf.v1"

// ErrBadLeaf: bytes given to DecodeLeaf are not a leaf encoding.
var ErrBadLeaf = errors.New("ledger: not a leaf encoding")

// Leaf is what one leaf of the tree covers: every stored field of one event
// but its position (the leaf's index in the tree is its place in the log's
// one global order). It is what DecodeLeaf returns.
type Leaf struct {
	EventID       uuid.UUID
	Stream        string
	Version       uint64
	Type          string
	Data          []byte
	ActorID       string
	ActorRole     string
	Reason        string
	EffectiveAt   time.Time
	RecordedAt    time.Time
	CorrelationID uuid.UUID
	CausationID   uuid.UUID
}

// LeafOf returns the fields of rec that its leaf covers.
func LeafOf(rec eventlog.Record) Leaf {
	return Leaf{
		EventID: rec.ID, Stream: rec.Stream, Version: rec.Version, Type: rec.Type, Data: rec.Data,
		ActorID: rec.Meta.ActorID, ActorRole: rec.Meta.ActorRole, Reason: rec.Meta.Reason,
		EffectiveAt: rec.Meta.EffectiveAt, RecordedAt: rec.Meta.RecordedAt,
		CorrelationID: rec.Meta.CorrelationID, CausationID: rec.Meta.CausationID,
	}
}

// LeafData returns the canonical encoding of rec that its leaf hashes (see
// the package documentation): the same bytes on every store for the same
// stored event.
func LeafData(rec eventlog.Record) []byte {
	return AppendLeafData(nil, rec)
}

// AppendLeafData appends LeafData(rec) to b.
func AppendLeafData(b []byte, rec eventlog.Record) []byte {
	l := LeafOf(rec)
	return l.append(b)
}

func (l Leaf) append(b []byte) []byte {
	b = appendBytes(b, []byte(leafTag))
	b = appendBytes(b, l.EventID[:])
	b = appendBytes(b, []byte(l.Stream))
	b = binary.BigEndian.AppendUint64(b, l.Version)
	b = appendBytes(b, []byte(l.Type))
	b = appendBytes(b, l.Data)
	b = appendBytes(b, []byte(l.ActorID))
	b = appendBytes(b, []byte(l.ActorRole))
	b = appendBytes(b, []byte(l.Reason))
	b = appendBytes(b, []byte(formatTime(l.EffectiveAt)))
	b = appendBytes(b, []byte(formatTime(l.RecordedAt)))
	b = appendBytes(b, l.CorrelationID[:])
	return appendBytes(b, l.CausationID[:])
}

// Encode returns the canonical encoding of l.
func (l Leaf) Encode() []byte { return l.append(nil) }

// Hash returns the leaf's RFC 6962 leaf hash: SHA-256(0x00 || Encode()).
func (l Leaf) Hash() tlog.Hash { return tlog.RecordHash(l.Encode()) }

// LeafHash returns the RFC 6962 leaf hash of rec: SHA-256(0x00 ||
// LeafData(rec)).
func LeafHash(rec eventlog.Record) tlog.Hash { return tlog.RecordHash(LeafData(rec)) }

// formatTime writes t in UTC with as many fractional digits as it has
// (RFC 3339, nanoseconds at most), so equal instants encode alike whatever
// their location.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func appendBytes(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// DecodeLeaf reverses Leaf.Encode, so that a client holding a leaf's bytes
// can read the event they cover. It fails with ErrBadLeaf on anything that
// Encode did not write.
func DecodeLeaf(b []byte) (Leaf, error) {
	d := decoder{b: b}
	var l Leaf
	if string(d.bytes()) != leafTag {
		return Leaf{}, fmt.Errorf("%w: no %s tag", ErrBadLeaf, leafTag)
	}
	l.EventID = d.uuid()
	l.Stream = string(d.bytes())
	l.Version = d.uint64()
	l.Type = string(d.bytes())
	l.Data = d.bytes()
	l.ActorID = string(d.bytes())
	l.ActorRole = string(d.bytes())
	l.Reason = string(d.bytes())
	l.EffectiveAt = d.time()
	l.RecordedAt = d.time()
	l.CorrelationID = d.uuid()
	l.CausationID = d.uuid()
	if d.err != nil {
		return Leaf{}, d.err
	}
	if len(d.b) != 0 {
		return Leaf{}, fmt.Errorf("%w: %d bytes after the last field", ErrBadLeaf, len(d.b))
	}
	if l.Data == nil {
		l.Data = []byte{}
	}
	return l, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrBadLeaf, what)
	}
	d.b = nil
}

func (d *decoder) bytes() []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < 4 {
		d.fail("truncated length")
		return nil
	}
	n := binary.BigEndian.Uint32(d.b)
	if uint64(n) > uint64(len(d.b)-4) {
		d.fail("field longer than the rest")
		return nil
	}
	v := d.b[4 : 4+n]
	d.b = d.b[4+n:]
	return v
}

func (d *decoder) uint64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail("truncated number")
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) uuid() uuid.UUID {
	v := d.bytes()
	if d.err != nil {
		return uuid.Nil
	}
	id, err := uuid.FromBytes(v)
	if err != nil {
		d.fail("bad id")
		return uuid.Nil
	}
	return id
}

func (d *decoder) time() time.Time {
	v := d.bytes()
	if d.err != nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, string(v))
	if err != nil || formatTime(t) != string(v) {
		d.fail("bad time")
		return time.Time{}
	}
	return t.UTC()
}
