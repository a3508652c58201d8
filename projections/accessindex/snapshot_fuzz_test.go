package accessindex_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/accessledger/accessledger/projections/accessindex"
)

// FuzzDecodeSnapshot: DecodeSnapshot never panics and fails only with
// ErrSnapshotCorrupt or ErrSnapshotVersion, on the bytes as given and on
// them with a valid checksum (so that the payload's decoder is reached).
// The seed is a real snapshot.
func FuzzDecodeSnapshot(f *testing.F) {
	w := newWorld(f, 906)
	generate(w, 5)
	ix := accessindex.New(quiet)
	if err := ix.Apply(w.take()...); err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	if _, err := ix.WriteSnapshot(f.Context(), dir); err != nil {
		f.Fatal(err)
	}
	good, err := readSnapshot(dir)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(accessindex.SnapshotMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(data []byte) {
			_, err := accessindex.DecodeSnapshot(data)
			if err != nil && !errors.Is(err, accessindex.ErrSnapshotCorrupt) && !errors.Is(err, accessindex.ErrSnapshotVersion) {
				t.Fatalf("unexpected error: %v", err)
			}
		}
		check(data)
		if len(data) > sha256.Size {
			body := bytes.Clone(data[:len(data)-sha256.Size])
			sum := sha256.Sum256(body)
			check(append(body, sum[:]...))
		}
	})
}
