package snapshotfile_test

import (
	"crypto/sha256"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// partsPayload has what snapshots hold: long slices at the top and inside
// a nested struct, bytes, a value that encodes itself, maps, pointers
// (nil and not), zero values and unexported fields.
type partsPayload struct {
	Count  uint64
	Name   string
	At     time.Time
	Rows   []partsRow
	Nested struct {
		IDs     []byte
		Numbers []uint64
		Names   []string
		Empty   []int
		Tags    map[string]int
	}
	Ptr, NilPtr *partsRow
	Short       []partsRow
	hidden      int
}

type partsRow struct {
	ID    int64
	Items []int32
	When  time.Time
	Note  string
}

func newPartsPayload(rng *rand.Rand, rows int) partsPayload {
	var p partsPayload
	p.Count, p.Name, p.At = 7, "county", time.Date(2026, 12, 7, 6, 0, 0, 123, time.UTC)
	for i := range rows {
		r := partsRow{ID: int64(i), When: p.At.Add(time.Duration(i) * time.Second), Note: "row"}
		for range rng.IntN(4) {
			r.Items = append(r.Items, rng.Int32())
		}
		p.Rows = append(p.Rows, r)
	}
	p.Nested.IDs = make([]byte, 16*rows)
	for i := range p.Nested.IDs {
		p.Nested.IDs[i] = byte(rng.IntN(256))
	}
	for i := range rows {
		p.Nested.Numbers = append(p.Nested.Numbers, rng.Uint64())
		p.Nested.Names = append(p.Nested.Names, string(rune('a'+i%26)))
	}
	p.Nested.Tags = map[string]int{"a": 1}
	p.Ptr = &partsRow{ID: 9}
	p.Short = []partsRow{{ID: 1}}
	p.hidden = 3
	return p
}

// TestPartsRoundTrip: EncodeGobParts then DecodeGobParts gives what gob
// gives for the whole value (slices of every length around the parts'
// size, empty ones as nil, unexported fields left out), and its messages
// stay small.
func TestPartsRoundTrip(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, rows := range []int{0, 1, 2047, 2048, 2049, 10_000} {
		p := newPartsPayload(rng, rows)
		whole, err := format.EncodeGob(&p)
		require.NoError(t, err)
		var want partsPayload
		require.NoError(t, format.DecodeGob(whole, &want))

		data, err := format.EncodeGobParts(&p)
		require.NoError(t, err)
		var got partsPayload
		require.NoError(t, format.DecodeGobParts(data, &got), "rows %d", rows)
		require.Equal(t, want, got, "rows %d", rows)
		require.Zero(t, got.hidden)
		require.Nil(t, got.NilPtr)
		require.Nil(t, got.Nested.Empty)
		if rows >= 2048 {
			require.Len(t, got.Rows, rows)
			require.True(t, got.At.Equal(p.At))
		}
	}
}

// TestPartsRefusals: a payload whose parts do not match its type (cut
// short, parts of another value, a length past the payload), even under a
// valid checksum, is an error wrapping Corrupt, never a panic.
func TestPartsRefusals(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	p := newPartsPayload(rng, 5000)
	data, err := format.EncodeGobParts(&p)
	require.NoError(t, err)
	// resum re-signs a payload, so that only the parts are wrong.
	resum := func(payload []byte) []byte {
		out := append([]byte(nil), data[:12]...)
		out = append(out, payload...)
		sum := sha256.Sum256(out)
		return append(out, sum[:]...)
	}
	payload := data[12 : len(data)-sha256.Size]
	other, err := format.EncodeGobParts(&partsRow{ID: 1, Items: []int32{1, 2}})
	require.NoError(t, err)

	var got partsPayload
	require.ErrorIs(t, format.DecodeGobParts(resum(payload[:len(payload)/2]), &got), errCorrupt, "cut short")
	require.ErrorIs(t, format.DecodeGobParts(other, &got), errCorrupt, "another type's parts")
	require.ErrorIs(t, format.DecodeGobParts(resum(append(append([]byte(nil), payload...), payload[:40]...)), &got), errCorrupt, "bytes after the payload")
	for range 300 {
		b := append([]byte(nil), payload...)
		b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
		err := format.DecodeGobParts(resum(b), &got) // an error or not, never a panic
		if err != nil {
			require.ErrorIs(t, err, errCorrupt)
		}
	}
	require.Error(t, format.DecodeGobParts(data, got), "not a pointer")
}

// FuzzDecodeGobParts: any payload, signed so that only its parts can be
// wrong, decodes or fails with Corrupt, and never panics or allocates
// past its size.
func FuzzDecodeGobParts(f *testing.F) {
	p := newPartsPayload(rand.New(rand.NewPCG(5, 6)), 3000)
	data, err := format.EncodeGobParts(&p)
	require.NoError(f, err)
	f.Add(data[12 : len(data)-sha256.Size])
	small := newPartsPayload(rand.New(rand.NewPCG(7, 8)), 3)
	data, err = format.EncodeGobParts(&small)
	require.NoError(f, err)
	f.Add(data[12 : len(data)-sha256.Size])
	f.Fuzz(func(t *testing.T, payload []byte) {
		file := append([]byte("TESTSNAP\x00\x00\x00\x03"), payload...)
		sum := sha256.Sum256(file)
		var got partsPayload
		if err := format.DecodeGobParts(append(file, sum[:]...), &got); err != nil {
			require.ErrorIs(t, err, errCorrupt)
		}
	})
}
