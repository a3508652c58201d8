package snapshotfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/internal/snapshotfile"
)

var (
	errCorrupt = errors.New("corrupt")
	errVersion = errors.New("other version")
	format     = snapshotfile.Format{Magic: "TESTSNAP", Version: 3, Corrupt: errCorrupt, OtherVersion: errVersion}
)

type payload struct {
	Name  string
	Items []int64
}

// TestRoundTripAndRefusals: a file decodes to what was encoded; a damaged
// one fails with the format's errors, never a panic.
func TestRoundTripAndRefusals(t *testing.T) {
	want := payload{Name: "x", Items: []int64{1, 2, 3}}
	data, err := format.EncodeGob(want)
	require.NoError(t, err)
	var got payload
	require.NoError(t, format.DecodeGob(data, &got))
	require.Equal(t, want, got)

	raw := format.Encode([]byte("plain"))
	body, err := format.Decode(raw)
	require.NoError(t, err)
	require.Equal(t, "plain", string(body))

	other := snapshotfile.Format{Magic: "TESTSNAP", Version: 4, Corrupt: errCorrupt, OtherVersion: errVersion}
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)/2] ^= 0xff
	// A valid checksum over a payload that is not gob.
	notGob := format.Encode([]byte{0xff, 0xff, 0xff})
	tests := []struct {
		name string
		data []byte
		f    snapshotfile.Format
		want error
	}{
		{"empty", nil, format, errCorrupt},
		{"another magic", append([]byte("OTHERSNP"), data[8:]...), format, errCorrupt},
		{"another version", data, other, errVersion},
		{"a flipped byte", flipped, format, errCorrupt},
		{"truncated", data[:len(data)-1], format, errCorrupt},
		{"not gob", notGob, format, errCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p payload
			require.ErrorIs(t, tt.f.DecodeGob(tt.data, &p), tt.want)
		})
	}
}

// TestWriteAtomic: the file is written with mode 0600 in a directory made
// 0700, replaces the previous one whole, and leftover temporary files of
// a crash are removed by the next write and by Remove.
func TestWriteAtomic(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "snaps")
	require.NoError(t, snapshotfile.WriteAtomic(dir, "f", []byte("one")))
	di, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), di.Mode().Perm())
	fi, err := os.Stat(filepath.Join(dir, "f"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	leftover := filepath.Join(dir, "f.tmp-123")
	require.NoError(t, os.WriteFile(leftover, []byte("half"), 0o600))
	require.NoError(t, snapshotfile.WriteAtomic(dir, "f", []byte("two")))
	require.NoFileExists(t, leftover)
	got, err := os.ReadFile(filepath.Join(dir, "f"))
	require.NoError(t, err)
	require.Equal(t, "two", string(got))

	require.NoError(t, os.WriteFile(leftover, []byte("half"), 0o600))
	require.NoError(t, snapshotfile.Remove(dir, "f"))
	require.NoFileExists(t, leftover)
	require.NoFileExists(t, filepath.Join(dir, "f"))
	require.NoError(t, snapshotfile.Remove(dir, "f"), "removing no file is fine")
}
