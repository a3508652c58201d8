package audit

import (
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"

	"github.com/uptrace/bun"
)

// Genesis is the prev_hash of the first entry, and the head hash of an
// empty trail: 64 "0" characters.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// encodingTag opens every canonical encoding; a new encoding gets a new tag.
const encodingTag = "accessledger.audit.v2"

// encodingEnd closes every canonical encoding.
const encodingEnd = "end"

// entryRow is one row of the audit_entries table (and view).
type entryRow struct {
	bun.BaseModel `bun:"table:audit_entries,alias:e"`

	Seq             int64          `bun:"seq"`
	PositionCommit  int64          `bun:"position_commit"`
	PositionPrepare int64          `bun:"position_prepare"`
	EventID         string         `bun:"event_id"`
	Type            string         `bun:"type"`
	Stream          string         `bun:"stream"`
	ChildID         sql.NullString `bun:"child_id"`
	AccountID       sql.NullString `bun:"account_id"`
	Actor           string         `bun:"actor"`
	ActorRole       string         `bun:"actor_role"`
	Reason          string         `bun:"reason"`
	EffectiveAt     int64          `bun:"effective_at"`
	RecordedAt      int64          `bun:"recorded_at"`
	Data            string         `bun:"data"`
	LeafIndex       int64          `bun:"leaf_index"`
	LeafHash        string         `bun:"leaf_hash"`
	PrevHash        string         `bun:"prev_hash"`
	Hash            string         `bun:"hash"`
}

// canonical appends the canonical encoding of r (every column but hash) to
// b, as the package documentation specifies.
func (r *entryRow) canonical(b []byte) []byte {
	b = appendText(b, encodingTag)
	b = appendInt(b, r.Seq)
	b = appendText(b, r.PrevHash)
	b = appendText(b, r.EventID)
	b = appendInt(b, r.PositionCommit)
	b = appendInt(b, r.PositionPrepare)
	b = appendText(b, r.Type)
	b = appendText(b, r.Stream)
	b = appendOptional(b, r.ChildID)
	b = appendOptional(b, r.AccountID)
	b = appendText(b, r.Actor)
	b = appendText(b, r.ActorRole)
	b = appendText(b, r.Reason)
	b = appendInt(b, r.EffectiveAt)
	b = appendInt(b, r.RecordedAt)
	b = appendText(b, r.Data)
	b = appendInt(b, r.LeafIndex)
	b = appendText(b, r.LeafHash)
	return appendText(b, encodingEnd)
}

// computeHash returns the hash r should carry: the lower-case hex SHA-256
// of its canonical encoding. buf is scratch space, returned for reuse.
func (r *entryRow) computeHash(buf []byte) (string, []byte) {
	buf = r.canonical(buf[:0])
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:]), buf
}

func appendInt(b []byte, v int64) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(v))
}

func appendText(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

func appendOptional(b []byte, s sql.NullString) []byte {
	if !s.Valid {
		return append(b, 0)
	}
	return appendText(append(b, 1), s.String)
}
