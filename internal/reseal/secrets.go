package reseal

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/adapters/keystore"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/projections/ledger"
)

var (
	// ErrSameStore: the destination names a store, directory or file of
	// the source's: the source would be written to.
	ErrSameStore = errors.New("reseal: the destination must not share a store, a directory or a ledger file with the source")
	// ErrOtherMasterKey: the destination's master key file holds another
	// key than the source's. The master key also keys the account ids and
	// identity streams (domain.KeyedIDs): under another key the same email
	// would get another account.
	ErrOtherMasterKey = errors.New("reseal: the destination's master key is not the source's")
	// ErrSameLedgerKey: the destination's ledger key is the source's. The
	// new log is another log: signed with the source's key, its
	// checkpoints would contradict the source's under the same origin.
	ErrSameLedgerKey = errors.New("reseal: the destination's ledger key is the source's")
)

// CheckDistinct refuses a destination that shares the data directory, an
// event or read store, the checkpoint directory or the ledger key file
// with the source (ErrSameStore). Stores are compared by URL (an SQLite
// store by its file): give PostgreSQL a new database or schema.
func CheckDistinct(src, dst *engine.Config) error {
	var same []string
	if samePath(src.DataDir, dst.DataDir) {
		same = append(same, "data directory "+dst.DataDir)
	}
	se, sr := storeURLs(src)
	de, dr := storeURLs(dst)
	for _, pair := range [][2]string{{se, de}, {se, dr}, {sr, de}, {sr, dr}} {
		if sameStore(pair[0], pair[1]) {
			same = append(same, "store "+redact(pair[1]))
			break
		}
	}
	if samePath(src.CheckpointPath(), dst.CheckpointPath()) {
		same = append(same, "checkpoint directory "+dst.CheckpointPath())
	}
	if samePath(src.LedgerKeyPath(), dst.LedgerKeyPath()) {
		same = append(same, "ledger key "+dst.LedgerKeyPath())
	}
	if len(same) > 0 {
		return fmt.Errorf("%w: %s", ErrSameStore, strings.Join(same, ", "))
	}
	return nil
}

// ErrNoSource: the source's SQLite file does not exist (a mistyped
// --data-dir would otherwise open a new, empty deployment there).
var ErrNoSource = errors.New("reseal: the source has no event store")

// CheckSourceExists refuses a source whose event store is an SQLite file
// that does not exist (ErrNoSource); other stores are checked when opened
// (Run refuses an empty log).
func CheckSourceExists(src *engine.Config) error {
	events, _ := storeURLs(src)
	path, ok := strings.CutPrefix(events, "sqlite:")
	if !ok {
		return nil
	}
	path, _, _ = strings.Cut(strings.TrimPrefix(path, "file:"), "?")
	if path == ":memory:" {
		return fmt.Errorf("%w: an in-memory database", ErrNoSource)
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrNoSource, path, err)
	}
	return nil
}

// storeURLs returns the event store's and the read store's URLs as cfg
// opens them (without creating anything).
func storeURLs(cfg *engine.Config) (events, read string) {
	events = cfg.EventStore
	if events == "" {
		events = "sqlite:" + filepath.Join(cfg.DataDir, engine.DefaultDBName)
	}
	read = cfg.ReadStore
	if read == "" {
		read = events
	}
	return events, read
}

func sameStore(a, b string) bool {
	pa, la := strings.CutPrefix(a, "sqlite:")
	pb, lb := strings.CutPrefix(b, "sqlite:")
	if la && lb {
		pa, _, _ = strings.Cut(strings.TrimPrefix(pa, "file:"), "?")
		pb, _, _ = strings.Cut(strings.TrimPrefix(pb, "file:"), "?")
		return pa != ":memory:" && samePath(pa, pb)
	}
	return a == b
}

// redact drops a URL's credentials and query for an error message.
func redact(u string) string {
	if rest, ok := strings.CutPrefix(u, "sqlite:"); ok {
		p, _, _ := strings.Cut(rest, "?")
		return "sqlite:" + p
	}
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return "(a store URL)"
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = rest[i+1:]
	}
	rest, _, _ = strings.Cut(rest, "?")
	return scheme + "://" + rest
}

// samePath reports whether a and b name the same file or directory.
func samePath(a, b string) bool {
	clean := func(p string) string {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Clean(p)
	}
	return clean(a) == clean(b)
}

// PrepareSecrets gives the destination the secrets it shares with the
// source, before the destination's stores are opened (they pin the master
// key), and returns notes for the operator:
//
//   - the master key: the destination must use the source's (it keys
//     the account ids and identity streams, and erased subjects' keys are
//     not carried over anyway): it is copied to dst.MasterKeyPath()
//     (mode 0600) when that file is missing, else that file must hold the
//     same key (ErrOtherMasterKey);
//   - the JWT secret of the source's data directory, when it has one, is
//     copied into the destination's (mode 0600) so that tokens keep
//     working; a destination with a secret of its own keeps it (a note
//     says so);
//   - the ledger key: the destination's must not be the source's
//     (ErrSameLedgerKey); Run creates it when missing.
//
// The source's files are only read. src's master key file must exist
// (opening the source's stores creates it on a deployment without one).
func PrepareSecrets(src, dst *engine.Config) ([]string, error) {
	var notes []string
	note, err := copyMasterKey(src.MasterKeyPath(), dst.MasterKeyPath())
	if err != nil {
		return nil, err
	}
	notes = append(notes, note)
	if note, err = copyJWTSecret(src.DataDir, dst.DataDir); err != nil {
		return nil, err
	}
	notes = append(notes, note)
	if err := checkLedgerKeys(src.LedgerKeyPath(), dst.LedgerKeyPath()); err != nil {
		return nil, err
	}
	return notes, nil
}

func copyMasterKey(from, to string) (string, error) {
	srcKey, err := keystore.LoadMasterKey(from)
	if err != nil {
		return "", fmt.Errorf("reseal: the source's master key: %w", err)
	}
	if _, err := os.Stat(to); err == nil || !errors.Is(err, fs.ErrNotExist) {
		dstKey, err := keystore.LoadMasterKey(to)
		if err != nil {
			return "", fmt.Errorf("reseal: the destination's master key: %w", err)
		}
		if dstKey.ID() != srcKey.ID() {
			return "", fmt.Errorf("%w: %s holds key %s, the source's %s is key %s; the master key also keys the account ids, "+
				"so the new log needs the source's (leave --to-master-key out, or name a copy of the source's)",
				ErrOtherMasterKey, to, dstKey.ID(), from, srcKey.ID())
		}
		return fmt.Sprintf("master key: %s holds the source's key %s", to, srcKey.ID()), nil
	}
	b, err := os.ReadFile(from)
	if err != nil {
		return "", fmt.Errorf("reseal: the source's master key: %w", err)
	}
	if err := writeSecret(to, b); err != nil {
		return "", fmt.Errorf("reseal: copy the master key: %w", err)
	}
	if k, err := keystore.LoadMasterKey(to); err != nil || k.ID() != srcKey.ID() {
		return "", fmt.Errorf("reseal: the master key copied to %s does not read back as the source's: %v", to, err)
	}
	return fmt.Sprintf("master key: copied the source's key %s to %s (mode 0600)", srcKey.ID(), to), nil
}

func copyJWTSecret(fromDir, toDir string) (string, error) {
	from, to := filepath.Join(fromDir, auth.SecretFileName), filepath.Join(toDir, auth.SecretFileName)
	secret, err := auth.LoadSecretFile(from)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("JWT secret: none in %s; give the engine on the destination the source's --secret-file", fromDir), nil
	}
	if err != nil {
		return "", fmt.Errorf("reseal: the source's JWT secret: %w", err)
	}
	if _, err := os.Stat(to); err == nil || !errors.Is(err, fs.ErrNotExist) {
		mine, err := auth.LoadSecretFile(to)
		if err != nil {
			return "", fmt.Errorf("reseal: the destination's JWT secret: %w", err)
		}
		if !bytes.Equal(mine, secret) {
			return fmt.Sprintf("JWT secret: %s holds a secret of its own, kept: tokens signed with the source's are refused there", to), nil
		}
		return fmt.Sprintf("JWT secret: %s holds the source's", to), nil
	}
	b, err := os.ReadFile(from)
	if err != nil {
		return "", fmt.Errorf("reseal: the source's JWT secret: %w", err)
	}
	if err := writeSecret(to, b); err != nil {
		return "", fmt.Errorf("reseal: copy the JWT secret: %w", err)
	}
	return fmt.Sprintf("JWT secret: copied to %s (mode 0600): tokens keep working", to), nil
}

func checkLedgerKeys(from, to string) error {
	if _, err := os.Stat(from); errors.Is(err, fs.ErrNotExist) {
		return nil // the source never had a ledger
	}
	if _, err := os.Stat(to); errors.Is(err, fs.ErrNotExist) {
		return nil // Run creates a new one
	}
	srcKey, err := ledger.LoadKey(from)
	if err != nil {
		return fmt.Errorf("reseal: the source's ledger key: %w", err)
	}
	dstKey, err := ledger.LoadKey(to)
	if err != nil {
		return fmt.Errorf("reseal: the destination's ledger key: %w", err)
	}
	if srcKey.VerifierKey == dstKey.VerifierKey {
		return fmt.Errorf("%w (%s): the new log needs a key of its own; leave --to-ledger-key out, or name a file that does not exist yet",
			ErrSameLedgerKey, srcKey.Origin())
	}
	return nil
}

// writeSecret writes b to a new file at path, mode 0600 (its directory
// created 0700), synced; it never overwrites a file.
func writeSecret(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}
