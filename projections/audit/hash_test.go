package audit

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/ledger"
)

// exampleHash and exampleLeafHash are the entry hash and the leaf hash of
// the worked example in the package documentation.
const (
	exampleHash     = "694ca57a830ebeb3ed5822b6a9bc2bf1f1bc8b472e1aabdaae331916c67edcdb"
	exampleLeafHash = "f9a211e057e84e2b344d5152f5cea576c8e5fdfcfc7ce793c2148af395577314"
)

// exampleRecord is the event of the worked example.
func exampleRecord() eventlog.Record {
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	return eventlog.Record{
		ID: uuid.MustParse("00000000-0000-4000-8000-000000000001"), Stream: "child-1", Version: 1,
		Position: eventlog.At(1), Type: "child.registered.v1", Data: []byte(`{"k":"v"}`),
		Meta: eventlog.Meta{ActorID: "worker-ann", ActorRole: "worker", EffectiveAt: at, RecordedAt: at},
	}
}

func exampleRow() entryRow {
	return entryRow{
		Seq: 1, PrevHash: Genesis, EventID: "00000000-0000-4000-8000-000000000001",
		PositionCommit: 1, PositionPrepare: 1, Type: "child.registered.v1", Stream: "child-1",
		ChildID: sql.NullString{String: "00000000-0000-4000-8000-000000000002", Valid: true},
		Actor:   "worker-ann", ActorRole: "worker", Reason: "",
		EffectiveAt: 1772442000000000, RecordedAt: 1772442000000000, Data: `{"k":"v"}`,
		LeafIndex: 0, LeafHash: exampleLeafHash,
	}
}

// TestExampleHash spells out the canonical encoding of the documented
// example byte by byte, as an auditor reimplementing it would, and pins
// its hash and the leaf hash of its event.
func TestExampleHash(t *testing.T) {
	rec := exampleRecord()
	require.Equal(t, exampleLeafHash, leafHash(rec))
	leaf := ledger.LeafHash(rec)
	require.Equal(t, exampleLeafHash, hex.EncodeToString(leaf[:]))
	require.Equal(t, rec.Meta.RecordedAt.UnixMicro(), exampleRow().RecordedAt)

	var want bytes.Buffer
	text := func(s string) {
		// 8-byte big-endian length, then the bytes.
		require.NoError(t, binary.Write(&want, binary.BigEndian, uint64(len(s))))
		want.WriteString(s)
	}
	integer := func(v int64) { require.NoError(t, binary.Write(&want, binary.BigEndian, v)) }
	text("accessledger.audit.v2")
	integer(1)                                   // seq
	text(Genesis)                                // prev_hash
	text("00000000-0000-4000-8000-000000000001") // event_id
	integer(1)                                   // position_commit
	integer(1)                                   // position_prepare
	text("child.registered.v1")                  // type
	text("child-1")                              // stream
	want.WriteByte(1)                            // child_id present
	text("00000000-0000-4000-8000-000000000002") // child_id
	want.WriteByte(0)                            // account_id NULL
	text("worker-ann")                           // actor
	text("worker")                               // actor_role
	text("")                                     // reason
	integer(1772442000000000)                    // effective_at
	integer(1772442000000000)                    // recorded_at
	text(`{"k":"v"}`)                            // data
	integer(0)                                   // leaf_index
	text(exampleLeafHash)                        // leaf_hash
	text("end")                                  // terminator

	r := exampleRow()
	require.Equal(t, want.Bytes(), r.canonical(nil))
	sum := sha256.Sum256(want.Bytes())
	got, _ := r.computeHash(nil)
	require.Equal(t, hex.EncodeToString(sum[:]), got)
	require.Equal(t, exampleHash, got)
}

// decodeCanonical parses a canonical encoding back into a row (without
// hash). That a decoder exists, and gets back every row it is given, is
// what makes the encoding injective.
func decodeCanonical(b []byte) (entryRow, error) {
	var r entryRow
	fail := errors.New("malformed encoding")
	integer := func() int64 {
		if len(b) < 8 {
			panic(fail)
		}
		v := int64(binary.BigEndian.Uint64(b))
		b = b[8:]
		return v
	}
	text := func() string {
		n := integer()
		if n < 0 || int64(len(b)) < n {
			panic(fail)
		}
		s := string(b[:n])
		b = b[n:]
		return s
	}
	optional := func() sql.NullString {
		if len(b) < 1 {
			panic(fail)
		}
		flag := b[0]
		b = b[1:]
		switch flag {
		case 0:
			return sql.NullString{}
		case 1:
			return sql.NullString{String: text(), Valid: true}
		}
		panic(fail)
	}
	decode := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fail
			}
		}()
		if text() != encodingTag {
			return fail
		}
		r.Seq = integer()
		r.PrevHash = text()
		r.EventID = text()
		r.PositionCommit = integer()
		r.PositionPrepare = integer()
		r.Type = text()
		r.Stream = text()
		r.ChildID = optional()
		r.AccountID = optional()
		r.Actor = text()
		r.ActorRole = text()
		r.Reason = text()
		r.EffectiveAt = integer()
		r.RecordedAt = integer()
		r.Data = text()
		r.LeafIndex = integer()
		r.LeafHash = text()
		if text() != encodingEnd || len(b) != 0 {
			return fail
		}
		return nil
	}
	return r, decode()
}

func genOptional(t *rapid.T, label string) sql.NullString {
	if rapid.Bool().Draw(t, label+" present") {
		return sql.NullString{String: genText(t, label), Valid: true}
	}
	return sql.NullString{}
}

// genText draws short strings over a small alphabet that includes the
// bytes the encoding itself uses, so that collisions would be likely if the
// encoding were ambiguous.
func genText(t *rapid.T, label string) string {
	return rapid.StringOfN(rapid.SampledFrom([]rune{'a', 'b', '"', ',', '{', '}', 0, 1, 8, 'é'}), 0, 6, -1).Draw(t, label)
}

func genRow(t *rapid.T) entryRow {
	small := rapid.Int64Range(-2, 2)
	return entryRow{
		Seq: small.Draw(t, "seq"), PrevHash: genText(t, "prev"), EventID: genText(t, "event"),
		PositionCommit: small.Draw(t, "commit"), PositionPrepare: small.Draw(t, "prepare"),
		Type: genText(t, "type"), Stream: genText(t, "stream"),
		ChildID: genOptional(t, "child"), AccountID: genOptional(t, "account"),
		Actor: genText(t, "actor"), ActorRole: genText(t, "role"), Reason: genText(t, "reason"),
		EffectiveAt: small.Draw(t, "effective"), RecordedAt: small.Draw(t, "recorded"), Data: genText(t, "data"),
		LeafIndex: small.Draw(t, "leaf index"), LeafHash: genText(t, "leaf hash"),
	}
}

// TestCanonicalIsInjective: every row decodes back from its encoding, and
// two different rows never share an encoding (nor, therefore, a hash
// except by a SHA-256 collision).
func TestCanonicalIsInjective(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := genRow(t), genRow(t)
		got, err := decodeCanonical(a.canonical(nil))
		if err != nil || got != a {
			t.Fatalf("round trip: %v\n got %+v\nwant %+v", err, got, a)
		}
		if (a == b) != bytes.Equal(a.canonical(nil), b.canonical(nil)) {
			t.Fatalf("rows %+v and %+v: equal %v, same encoding %v", a, b, a == b, !(a == b))
		}
	})
	// Moving a boundary between two neighbouring fields changes the
	// encoding.
	a, b := exampleRow(), exampleRow()
	a.Type, a.Stream = "child.registered.v1child-", "1"
	require.NotEqual(t, a.canonical(nil), b.canonical(nil))
	a, b = exampleRow(), exampleRow()
	a.ChildID, a.AccountID = sql.NullString{}, b.ChildID
	require.NotEqual(t, a.canonical(nil), b.canonical(nil))
}

// FuzzCanonicalRoundTrip feeds arbitrary texts through the encoding.
func FuzzCanonicalRoundTrip(f *testing.F) {
	f.Add("child.registered.v1", "child-1", "worker-ann", "", `{"k":"v"}`, true, int64(1))
	f.Add("", "", "", "\x00\x01", "", false, int64(-1))
	f.Fuzz(func(t *testing.T, typ, stream, actor, reason, data string, child bool, n int64) {
		r := exampleRow()
		r.Type, r.Stream, r.Actor, r.Reason, r.Data, r.Seq, r.RecordedAt = typ, stream, actor, reason, data, n, -n
		r.ChildID.Valid = child
		got, err := decodeCanonical(r.canonical(nil))
		if !child {
			r.ChildID.String = ""
		}
		require.NoError(t, err)
		require.Equal(t, r, got)
	})
}
