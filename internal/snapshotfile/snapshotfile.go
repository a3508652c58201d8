// Package snapshotfile is the envelope of the engine's snapshot files (the
// access index's and the access history's, issue 18): a magic string, a
// format version, a payload and a SHA-256 checksum, written atomically with
// mode 0600.
//
// The file: Format.Magic, the format version (4 bytes, big endian), the
// payload, and the SHA-256 of everything before it (32 bytes). WriteAtomic
// writes it to a temporary file in the same directory, syncs it, renames it
// over the file and syncs the directory: a crash at any point leaves the
// previous file or the new one, never a mix, and a leftover temporary file
// is removed by the next write (or Remove).
//
// A payload in encoding/gob (EncodeGob, DecodeGob) has its messages'
// lengths checked before gob decodes it, and a panic of the decoder is
// turned into an error: a damaged file never takes a start down.
package snapshotfile

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Format names one kind of snapshot file and the errors its decoding
// wraps.
type Format struct {
	// Magic starts every file of the kind.
	Magic string
	// Version is the format version written and the only one read.
	Version uint32
	// Corrupt is wrapped by every error of a file that is not a valid one
	// of the kind (not one, truncated, wrong checksum, undecodable payload).
	Corrupt error
	// OtherVersion is wrapped by the error of a valid file of another
	// format version.
	OtherVersion error
}

// header is the length of the magic and the version.
func (f Format) header() int { return len(f.Magic) + 4 }

// Encode returns the bytes of a file holding payload.
func (f Format) Encode(payload []byte) []byte {
	out := make([]byte, 0, f.header()+len(payload)+sha256.Size)
	out = append(out, f.Magic...)
	out = binary.BigEndian.AppendUint32(out, f.Version)
	out = append(out, payload...)
	sum := sha256.Sum256(out)
	return append(out, sum[:]...)
}

// Decode checks data (magic, version, checksum) and returns its payload, a
// slice of data. It fails with an error wrapping f.Corrupt or
// f.OtherVersion.
func (f Format) Decode(data []byte) ([]byte, error) {
	if len(data) < f.header()+sha256.Size || string(data[:len(f.Magic)]) != f.Magic {
		return nil, fmt.Errorf("%w: not a snapshot file (%d bytes)", f.Corrupt, len(data))
	}
	if v := binary.BigEndian.Uint32(data[len(f.Magic):]); v != f.Version {
		return nil, fmt.Errorf("%w: version %d, this build reads %d", f.OtherVersion, v, f.Version)
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, fmt.Errorf("%w: checksum mismatch", f.Corrupt)
	}
	return body[f.header():], nil
}

// EncodeGob returns the bytes of a file whose payload is v in
// encoding/gob.
func (f Format) EncodeGob(v any) ([]byte, error) {
	return f.encodeGob(func(enc *gob.Encoder) error { return enc.Encode(v) })
}

// DecodeGob checks data (Decode) and decodes its gob payload into v, a
// pointer. It never panics: every failure wraps f.Corrupt or
// f.OtherVersion.
func (f Format) DecodeGob(data []byte, v any) error {
	return f.decodeGob(data, func(dec *gob.Decoder, _ *bytes.Reader, _ int) error { return dec.Decode(v) })
}

// encodeGob returns the bytes of a file whose payload encode writes.
func (f Format) encodeGob(encode func(*gob.Encoder) error) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(f.Magic)
	_ = binary.Write(&buf, binary.BigEndian, f.Version)
	if err := encode(gob.NewEncoder(&buf)); err != nil {
		return nil, fmt.Errorf("encode snapshot: %w", err)
	}
	sum := sha256.Sum256(buf.Bytes())
	buf.Write(sum[:])
	return buf.Bytes(), nil
}

// decodeGob checks data (Decode) and the framing of its gob messages,
// then runs decode on its payload (r is what the decoder reads, n the
// payload's length), turning a failure or a panic into an error wrapping
// f.Corrupt.
func (f Format) decodeGob(data []byte, decode func(dec *gob.Decoder, r *bytes.Reader, n int) error) (err error) {
	payload, err := f.Decode(data)
	if err != nil {
		return err
	}
	// gob checks what it decodes, but a payload with a valid checksum and
	// a bug in it must not take the start down.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: decode: %v", f.Corrupt, r)
		}
	}()
	if err := checkGobFraming(payload); err != nil {
		return fmt.Errorf("%w: %w", f.Corrupt, err)
	}
	r := bytes.NewReader(payload)
	if err := decode(gob.NewDecoder(r), r, len(payload)); err != nil {
		return fmt.Errorf("%w: decode: %w", f.Corrupt, err)
	}
	return nil
}

// errFraming: a gob message's length does not fit in the payload.
var errFraming = errors.New("decode: bad message length")

// checkGobFraming checks that every message of the gob stream b fits in
// b, before gob reads it: gob allocates a message's buffer from its length
// prefix, so a corrupt prefix would make it allocate up to a gigabyte.
func checkGobFraming(b []byte) error {
	for len(b) > 0 {
		n, size, ok := gobUint(b)
		if !ok || n == 0 || n > uint64(len(b)-size) {
			return errFraming
		}
		b = b[size+int(n):]
	}
	return nil
}

// gobUint decodes an unsigned integer as gob encodes it: one byte below
// 0x80, else the negated count of the big-endian bytes that follow.
func gobUint(b []byte) (v uint64, size int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	if b[0] < 0x80 {
		return uint64(b[0]), 1, true
	}
	n := -int(int8(b[0]))
	if n > 8 || len(b) < 1+n {
		return 0, 0, false
	}
	for _, c := range b[1 : 1+n] {
		v = v<<8 | uint64(c)
	}
	return v, 1 + n, true
}

// WriteAtomic writes data to dir/name through a temporary file, mode 0600:
// write, sync, rename, sync the directory (see the package's notes). The
// directory is made (mode 0700) if missing; leftover temporary files of
// earlier writes (a crash) are removed first. Two WriteAtomic calls for
// one file must not run at once.
func WriteAtomic(dir, name string, data []byte) (err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("snapshot directory: %w", err)
	}
	removeTemps(dir, name)
	f, err := os.CreateTemp(dir, name+".tmp-*") // mode 0600
	if err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("sync snapshot: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close snapshot: %w", err)
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("rename snapshot: %w", err)
	}
	if d, derr := os.Open(dir); derr == nil {
		err = d.Sync()
		_ = d.Close()
		if err != nil {
			return fmt.Errorf("sync snapshot directory: %w", err)
		}
	}
	return nil
}

// Remove removes dir/name, if it exists, and leftover temporary files of
// it.
func Remove(dir, name string) error {
	removeTemps(dir, name)
	if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove snapshot: %w", err)
	}
	return nil
}

// removeTemps removes dir's temporary files of name left by a crash.
func removeTemps(dir, name string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), name+".tmp-") && e.Type().IsRegular() {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
