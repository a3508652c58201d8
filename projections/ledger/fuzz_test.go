package ledger_test

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/ledger"
)

// FuzzDecodeLeaf: DecodeLeaf never panics, and what it accepts encodes back
// to the same bytes (one encoding per leaf: no two byte strings decode to
// the same event).
func FuzzDecodeLeaf(f *testing.F) {
	rec := eventlog.Record{ID: uuid.New(), Stream: "child-1", Version: 3, Type: "grant.made.v1",
		Data: []byte(`{"permissions":["view"]}`), Meta: eventlog.Meta{ActorID: "worker-ann", ActorRole: "worker",
			Reason: "r\u00e9sum\u00e9", EffectiveAt: time.Date(2026, 3, 2, 9, 0, 0, 123000, time.UTC),
			RecordedAt: time.Date(2026, 3, 2, 9, 0, 1, 0, time.UTC), CorrelationID: uuid.New()}}
	f.Add(ledger.LeafData(rec))
	f.Add([]byte{})
	f.Add([]byte("accessledger.leaf.v1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ledger.DecodeLeaf(b)
		if err != nil {
			return
		}
		if again := l.Encode(); !bytes.Equal(again, b) {
			t.Fatalf("decoded leaf encodes to other bytes:\n in  %x\n out %x", b, again)
		}
	})
}

// FuzzParseCheckpointBody: the parser never panics, and a body it accepts
// formats back to its first three lines.
func FuzzParseCheckpointBody(f *testing.F) {
	f.Add("accessledger-0a1b2c3d\n42\nq6ut2/dBtfGFnGnlbN4gwqKcKS8Pz6+tQHJmQ9mwTq8=\n")
	f.Add("o\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nextension\n")
	f.Add("\n\n\n")
	f.Fuzz(func(t *testing.T, text string) {
		cp, err := ledger.ParseCheckpointBody(text)
		if err != nil {
			return
		}
		lines := strings.SplitAfterN(text, "\n", 4)
		if want := strings.Join(lines[:3], ""); cp.Body() != want {
			t.Fatalf("body %q formats back as %q", want, cp.Body())
		}
	})
}

// FuzzOpenCheckpoint: opening never panics, and only notes the key signed
// open.
func FuzzOpenCheckpoint(f *testing.F) {
	key, _, err := ledger.LoadOrCreateKey(filepath.Join(f.TempDir(), ledger.KeyFileName))
	if err != nil {
		f.Fatal(err)
	}
	signed, err := ledger.Checkpoint{Origin: key.Origin(), Size: 7}.Sign(key.Signer)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add([]byte(key.Origin() + "\n7\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u2014 " + key.Origin() + " AAAA\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		cp, err := ledger.OpenCheckpoint(msg, key.Verifier)
		if err != nil {
			return
		}
		if cp.Origin != key.Origin() {
			t.Fatalf("opened a checkpoint of origin %q", cp.Origin)
		}
		again, err := cp.Sign(key.Signer)
		if err != nil || !bytes.HasPrefix(msg, again[:len(cp.Body())]) {
			t.Fatalf("opened a note whose text is not the checkpoint's body")
		}
	})
}
