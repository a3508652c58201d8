package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Errors of checkpoints and keys.
var (
	// ErrBadCheckpoint: a checkpoint's text is not the format of
	// FormatCheckpoint, or its signed note does not open with the ledger's
	// key (a wrong key, a bad or missing signature).
	ErrBadCheckpoint = errors.New("ledger: bad checkpoint")
	// ErrBadKey: a key file does not hold a key of the note format.
	ErrBadKey = errors.New("ledger: bad key")
)

// Checkpoint is a tree head: the log of Origin had Size events, and the
// Merkle tree over them has root hash Root.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
}

// Tree returns the checkpoint as a tlog.Tree.
func (c Checkpoint) Tree() tlog.Tree { return tlog.Tree{N: c.Size, Hash: c.Root} }

func (c Checkpoint) String() string {
	return fmt.Sprintf("%s size %d root %s", c.Origin, c.Size, c.Root)
}

// Body returns the checkpoint's note text, in the transparency-dev
// checkpoint format: the origin line, the tree size in decimal, the root
// hash in standard base64, each ending in a newline.
func (c Checkpoint) Body() string {
	return c.Origin + "\n" + strconv.FormatInt(c.Size, 10) + "\n" + c.Root.String() + "\n"
}

// ParseCheckpointBody parses the text Body writes. Extension lines after
// the root are allowed and ignored, as in transparency-dev checkpoints.
func ParseCheckpointBody(text string) (Checkpoint, error) {
	lines := strings.SplitAfter(text, "\n")
	if len(lines) < 4 || !strings.HasSuffix(text, "\n") {
		return Checkpoint{}, fmt.Errorf("%w: want origin, size and root lines", ErrBadCheckpoint)
	}
	origin := strings.TrimSuffix(lines[0], "\n")
	sizeText := strings.TrimSuffix(lines[1], "\n")
	rootText := strings.TrimSuffix(lines[2], "\n")
	if origin == "" {
		return Checkpoint{}, fmt.Errorf("%w: empty origin", ErrBadCheckpoint)
	}
	size, err := strconv.ParseInt(sizeText, 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != sizeText {
		return Checkpoint{}, fmt.Errorf("%w: tree size %q", ErrBadCheckpoint, sizeText)
	}
	root, err := tlog.ParseHash(rootText)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: root hash %q", ErrBadCheckpoint, rootText)
	}
	return Checkpoint{Origin: origin, Size: size, Root: root}, nil
}

// Sign returns c as a signed note.
func (c Checkpoint) Sign(s note.Signer) ([]byte, error) {
	return note.Sign(&note.Note{Text: c.Body()}, s)
}

// OpenCheckpoint checks that msg is a note signed by verifier and returns
// the checkpoint it carries. A note whose origin line is not the verifier
// key's name is refused too: the ledger names its log after its key.
func OpenCheckpoint(msg []byte, verifier note.Verifier) (Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %w", ErrBadCheckpoint, err)
	}
	c, err := ParseCheckpointBody(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != verifier.Name() {
		return Checkpoint{}, fmt.Errorf("%w: origin %q is not the key's log %q", ErrBadCheckpoint, c.Origin, verifier.Name())
	}
	return c, nil
}

// Key is the ledger's signing key: an Ed25519 key in the note format.
type Key struct {
	Signer note.Signer
	// VerifierKey is the public key in the note verifier format
	// ("name+hash+base64"), what GET /v1/ledger/public-key answers.
	VerifierKey string
	Verifier    note.Verifier
}

// Origin is the checkpoints' origin line: the key's name.
func (k *Key) Origin() string { return k.Signer.Name() }

// KeyFileName is the signing key's file in the data directory.
const KeyFileName = "ledger-key"

// LoadOrCreateKey reads the signing key at path, or creates one (an Ed25519
// key named "accessledger-" and eight random hex digits, in a new file of
// mode 0600, never overwriting one) when there is none. A key file readable
// by others than its owner is refused.
func LoadOrCreateKey(path string) (*Key, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		k, err := createKey(path)
		return k, err == nil, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("ledger: read key %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, false, fmt.Errorf("ledger: key %s: %w", path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("%w: %s has mode %v: only its owner may read it (chmod 600)", ErrBadKey, path, fi.Mode().Perm())
	}
	k, err := ParseSignerKey(string(bytes.TrimSpace(b)))
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	return k, false, nil
}

// LoadKey reads the signing key at path; it never creates one.
func LoadKey(path string) (*Key, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("ledger: key %s: %w", path, err)
	}
	k, _, err := LoadOrCreateKey(path)
	return k, err
}

func createKey(path string) (*Key, error) {
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return nil, err
	}
	skey, _, err := note.GenerateKey(rand.Reader, "accessledger-"+hex.EncodeToString(suffix[:]))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("ledger: create key directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadKey(path) // created meanwhile by another process
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: create key %s: %w", path, err)
	}
	_, werr := f.WriteString(skey + "\n")
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return nil, fmt.Errorf("ledger: write key %s: %w", path, err)
	}
	return ParseSignerKey(skey)
}

// ParseSignerKey parses a note signer key ("PRIVATE+KEY+name+hash+base64")
// of the Ed25519 algorithm and derives its verifier key.
func ParseSignerKey(skey string) (*Key, error) {
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	// "PRIVATE+KEY+name+hash+keydata": the key data (base64) may hold '+'.
	rest := strings.TrimPrefix(skey, "PRIVATE+KEY+")
	parts := strings.SplitN(rest, "+", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: not a signer key", ErrBadKey)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, fmt.Errorf("%w: not an Ed25519 signer key", ErrBadKey)
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(signer.Name(), pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	if verifier.KeyHash() != signer.KeyHash() {
		return nil, fmt.Errorf("%w: the key's hash does not match its public key", ErrBadKey)
	}
	return &Key{Signer: signer, VerifierKey: vkey, Verifier: verifier}, nil
}

// ParseVerifierKey parses a verifier key ("name+hash+base64"), as
// GET /v1/ledger/public-key answers it; surrounding white space is ignored.
func ParseVerifierKey(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	return v, nil
}
