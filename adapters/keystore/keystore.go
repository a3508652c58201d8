// Package keystore keeps a data key per data subject (R22): a random
// AES-256 key for each account and each child, wrapped (AES-256-GCM) by a
// master key and stored in the read store, never in the event log.
// adapters/personaldata encrypts the subject's personal fields with it;
// erasing the subject destroys the key, so that what the log holds of it
// can no longer be read (crypto-shredding), while the log itself, and the
// ledger's hashes over it, stay as they are.
//
// # Table
//
// The migrations (Migrations, recorded under Component) create
// subject_keys: subject (primary key), wrapped (nonce and sealed key),
// master_key_id, created_at and erased_at (Unix microseconds; 0 while the
// key lives). Erase overwrites wrapped with zeros and sets erased_at; the
// row stays, so that an erased subject never gets a new key.
//
// Bulk loads (accessd import) get many subjects' keys at once with KeyAll
// and FindAll: one statement per 1,000 subjects, and the missing keys made
// in one transaction per 1,000, instead of a read, a write and a commit
// per subject. Each subject still has a random key of its own.
//
// # Master key
//
// The master key is 32 random bytes, hex, in a file of its own (mode 0600;
// LoadOrCreateMasterKey creates it, LoadMasterKey refuses a file group or
// others can read). Every replica sharing a read store needs the same file.
// Losing it loses every personal field; keep a copy in the council's secret
// store (docs/personal-data.md).
package keystore

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/internal/sqlmigrations"
)

// Component is the name the migrations are recorded under: pass it with
// Migrations to sqldb.Migrate.
const Component = "keystore"

//go:embed migrations
var migrationFiles embed.FS

// Migrations returns the SQL migrations of the key table for PostgreSQL
// and for SQLite.
func Migrations() (postgres, sqlite fs.FS) {
	return sqlmigrations.Split(migrationFiles)
}

// KeySize is the size of a data key and of the master key: AES-256.
const KeySize = 32

// MasterKeyFileName is the master key's file in the data directory.
const MasterKeyFileName = "master-key"

var (
	// ErrErased: the subject was erased; its key is gone.
	ErrErased = errors.New("keystore: the data subject was erased")
	// ErrNoKey: the subject has no key yet (Find creates none).
	ErrNoKey = errors.New("keystore: the data subject has no key")
	// ErrBadMasterKey: the master key file is missing, malformed, readable
	// by others, or not the key that wrapped a stored data key.
	ErrBadMasterKey = errors.New("keystore: bad master key")
	// ErrBadSubject: a subject that is not "account:UUID" or "child:UUID".
	ErrBadSubject = errors.New("keystore: bad data subject")
)

// Subject names a data subject: "account:" or "child:" and its id.
type Subject string

// AccountSubject is the subject of account id.
func AccountSubject(id uuid.UUID) Subject { return Subject("account:" + id.String()) }

// ChildSubject is the subject of child id.
func ChildSubject(id uuid.UUID) Subject { return Subject("child:" + id.String()) }

// Check validates s.
func (s Subject) Check() error {
	kind, id, ok := strings.Cut(string(s), ":")
	if !ok || (kind != "account" && kind != "child") {
		return fmt.Errorf("%w: %q", ErrBadSubject, string(s))
	}
	u, err := uuid.Parse(id)
	if err != nil || u == uuid.Nil || u.String() != id {
		return fmt.Errorf("%w: %q", ErrBadSubject, string(s))
	}
	return nil
}

// MasterKey wraps and unwraps data keys.
type MasterKey struct {
	aead cipher.AEAD
	id   string
	raw  []byte
}

// NewMasterKey returns the master key of raw (KeySize bytes).
func NewMasterKey(raw []byte) (*MasterKey, error) {
	if len(raw) != KeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrBadMasterKey, len(raw), KeySize)
	}
	aead, err := newAEAD(raw)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte("accessledger master key id\x00"), raw...))
	return &MasterKey{aead: aead, id: hex.EncodeToString(sum[:8]), raw: append([]byte(nil), raw...)}, nil
}

// Derive returns a key for another use of the deployment, named by label:
// HMAC-SHA256(master key, "accessledger derived key v1" NUL label). The
// account ids are keyed with one (domain.KeyedIDs).
func (m *MasterKey) Derive(label string) []byte {
	h := hmac.New(sha256.New, m.raw)
	h.Write([]byte("accessledger derived key v1\x00" + label))
	return h.Sum(nil)
}

// ID names the key without revealing it (stored beside each wrapped key).
func (m *MasterKey) ID() string { return m.id }

// LoadMasterKey reads the master key file at path (64 hex digits), which
// only its owner may read.
func LoadMasterKey(path string) (*MasterKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadMasterKey, err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("%w: %s has mode %#o: group or others can access it; run chmod 600 %s", ErrBadMasterKey, path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadMasterKey, err)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not %d bytes in hex", ErrBadMasterKey, path, KeySize)
	}
	return NewMasterKey(raw)
}

// LoadOrCreateMasterKey loads the master key at path, or creates one there
// (mode 0600, its directory 0700) when the file does not exist; created
// reports which.
func LoadOrCreateMasterKey(path string) (m *MasterKey, created bool, err error) {
	if _, err := os.Stat(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		m, err := LoadMasterKey(path)
		return m, false, err
	}
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("keystore: create master key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		m, err := LoadMasterKey(path) // another process created it first
		return m, false, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("keystore: create master key: %w", err)
	}
	_, werr := f.WriteString(hex.EncodeToString(raw) + "\n")
	serr := f.Sync()
	if err := errors.Join(werr, serr, f.Close()); err != nil {
		_ = os.Remove(path)
		return nil, false, fmt.Errorf("keystore: write master key: %w", err)
	}
	m, err = NewMasterKey(raw)
	return m, true, err
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// wrapAAD binds a wrapped key to its subject: a row's key cannot be moved
// to another subject.
func wrapAAD(s Subject) []byte { return []byte("accessledger subject key v1\x00" + string(s)) }

func (m *MasterKey) wrap(s Subject, key []byte) ([]byte, error) {
	nonce := make([]byte, m.aead.NonceSize(), m.aead.NonceSize()+KeySize+m.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return m.aead.Seal(nonce, nonce, key, wrapAAD(s)), nil
}

func (m *MasterKey) unwrap(s Subject, wrapped []byte) ([]byte, error) {
	n := m.aead.NonceSize()
	if len(wrapped) != n+KeySize+m.aead.Overhead() {
		return nil, fmt.Errorf("%w: the stored key of %s has %d bytes", ErrBadMasterKey, s, len(wrapped))
	}
	key, err := m.aead.Open(nil, wrapped[:n], wrapped[n:], wrapAAD(s))
	if err != nil {
		return nil, fmt.Errorf("%w: it does not open the stored key of %s", ErrBadMasterKey, s)
	}
	return key, nil
}

// row is one subject_keys row.
type row struct {
	bun.BaseModel `bun:"table:subject_keys,alias:k"`
	Subject       string `bun:"subject,pk"`
	Wrapped       []byte `bun:"wrapped"`
	MasterKeyID   string `bun:"master_key_id"`
	CreatedAt     int64  `bun:"created_at"`
	ErasedAt      int64  `bun:"erased_at"`
}

// Store is the key table with a cache of unwrapped keys. It is safe for
// concurrent use; several replicas may share one table.
type Store struct {
	db     bun.IDB
	master *MasterKey
	clock  func() time.Time

	mu       sync.Mutex
	cache    map[Subject]cached
	maxCache int
}

// cached is a subject's key, or its erasure (permanent, so cached for good).
type cached struct {
	key    []byte
	erased bool
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock of created_at and erased_at.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.clock = now } }

// WithCacheSize bounds the cache of unwrapped keys (default 200,000
// subjects, about 20 MiB).
func WithCacheSize(n int) Option { return func(s *Store) { s.maxCache = max(n, 1) } }

// Open pins master as the deployment's master key in db (the first call
// records its id; a later one with another key fails with
// ErrBadMasterKey, so that replicas with different key files cannot both
// write keys) and returns the store.
func Open(ctx context.Context, db bun.IDB, master *MasterKey, opts ...Option) (*Store, error) {
	s := New(db, master, opts...)
	if _, err := db.NewRaw("INSERT INTO keystore_master (singleton, master_key_id, created_at) VALUES (1, ?, ?) ON CONFLICT (singleton) DO NOTHING",
		master.id, s.clock().UnixMicro()).Exec(ctx); err != nil {
		return nil, fmt.Errorf("keystore: record the master key: %w", err)
	}
	var pinned string
	if err := db.NewRaw("SELECT master_key_id FROM keystore_master WHERE singleton = 1").Scan(ctx, &pinned); err != nil {
		return nil, fmt.Errorf("keystore: read the master key's id: %w", err)
	}
	if pinned != master.id {
		return nil, fmt.Errorf("%w: this read store's keys are wrapped by master key %s, this file is %s: "+
			"give every replica the same --master-key file", ErrBadMasterKey, pinned, master.id)
	}
	return s, nil
}

// New returns the store over db (migrated with Migrations) and master,
// without pinning the master key (see Open).
func New(db bun.IDB, master *MasterKey, opts ...Option) *Store {
	s := &Store{db: db, master: master, clock: time.Now, cache: map[Subject]cached{}, maxCache: 200_000}
	for _, o := range opts {
		o(s)
	}
	return s
}

func (s *Store) cached(subj Subject) (cached, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cache[subj]
	return c, ok
}

func (s *Store) remember(subj Subject, c cached) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cache) >= s.maxCache {
		// Drop about half, in map order (random): cheap, and a dropped key
		// is read again from the table.
		n := 0
		for k := range s.cache {
			if n >= s.maxCache/2 {
				break
			}
			delete(s.cache, k)
			n++
		}
	}
	s.cache[subj] = c
}

// Forget drops subj from the cache: the next use reads the table again.
// The encryption layer calls it when it reads the subject's erasure event,
// which another replica may have recorded.
func (s *Store) Forget(subj Subject) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.cache, subj)
}

// Key returns subj's data key, creating (and storing) one when subj has
// none yet; ErrErased when subj was erased. Concurrent first uses, in one
// process or several, agree on one key.
func (s *Store) Key(ctx context.Context, subj Subject) ([]byte, error) {
	key, err := s.Find(ctx, subj)
	if !errors.Is(err, ErrNoKey) {
		return key, err
	}
	key = make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	wrapped, err := s.master.wrap(subj, key)
	if err != nil {
		return nil, err
	}
	r := row{Subject: string(subj), Wrapped: wrapped, MasterKeyID: s.master.id, CreatedAt: s.clock().UnixMicro()}
	if _, err := s.db.NewInsert().Model(&r).On("CONFLICT (subject) DO NOTHING").Exec(ctx); err != nil {
		return nil, fmt.Errorf("keystore: store the key of %s: %w", subj, err)
	}
	return s.Find(ctx, subj) // the stored one: ours, or the one that won
}

// Find returns subj's data key: ErrNoKey when it has none, ErrErased when
// it was erased.
func (s *Store) Find(ctx context.Context, subj Subject) ([]byte, error) {
	if err := subj.Check(); err != nil {
		return nil, err
	}
	if c, ok := s.cached(subj); ok {
		if c.erased {
			return nil, fmt.Errorf("%s: %w", subj, ErrErased)
		}
		return c.key, nil
	}
	var r row
	err := s.db.NewSelect().Model(&r).Where("k.subject = ?", string(subj)).Limit(1).Scan(ctx)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("%s: %w", subj, ErrNoKey)
	case err != nil:
		return nil, fmt.Errorf("keystore: read the key of %s: %w", subj, err)
	case r.ErasedAt != 0:
		s.remember(subj, cached{erased: true})
		return nil, fmt.Errorf("%s: %w", subj, ErrErased)
	case r.MasterKeyID != s.master.id:
		return nil, fmt.Errorf("%w: the key of %s was wrapped by master key %s, this one is %s", ErrBadMasterKey, subj, r.MasterKeyID, s.master.id)
	}
	key, err := s.master.unwrap(subj, r.Wrapped)
	if err != nil {
		return nil, err
	}
	s.remember(subj, cached{key: key})
	return key, nil
}

// KeyAll is Key for many subjects at once, for bulk loads (an import, a
// reseal): it returns every subject's key, creating one for each subject
// that has none, in a few statements instead of three per subject. The
// keys it makes are written in one transaction per chunk of subjects (one
// commit, so one fsync, per chunk), each subject with a random key of its
// own wrapped as Key wraps it; a subject that another writer gave a key
// meanwhile keeps that one, as with Key. An erased subject maps to nil
// (Key's ErrErased): it never gets a new key. The result holds every
// subject of subjects (duplicates allowed); an invalid one fails the call
// with ErrBadSubject before anything is written.
func (s *Store) KeyAll(ctx context.Context, subjects []Subject) (map[Subject][]byte, error) {
	out, missing, err := s.findAll(ctx, subjects)
	if err != nil || len(missing) == 0 {
		return out, err
	}
	now := s.clock().UnixMicro()
	for start := 0; start < len(missing); start += keyChunk {
		chunk := missing[start:min(start+keyChunk, len(missing))]
		rows := make([]row, len(chunk))
		for i, subj := range chunk {
			key := make([]byte, KeySize)
			if _, err := rand.Read(key); err != nil {
				return nil, err
			}
			wrapped, err := s.master.wrap(subj, key)
			if err != nil {
				return nil, err
			}
			rows[i] = row{Subject: string(subj), Wrapped: wrapped, MasterKeyID: s.master.id, CreatedAt: now}
		}
		if err := s.insertKeys(ctx, rows); err != nil {
			return nil, fmt.Errorf("keystore: store the keys of %d subjects: %w", len(rows), err)
		}
	}
	// The stored ones: ours, or those that won.
	found, still, err := s.findAll(ctx, missing)
	if err != nil {
		return nil, err
	}
	if len(still) > 0 {
		return nil, fmt.Errorf("keystore: the key of %s is missing right after it was stored", still[0])
	}
	for subj, k := range found {
		out[subj] = k
	}
	return out, nil
}

// insertKeys writes rows (subjects without a key when read) in one
// transaction; a subject that has a row by then keeps it.
func (s *Store) insertKeys(ctx context.Context, rows []row) error {
	return s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		_, err := tx.NewInsert().Model(&rows).On("CONFLICT (subject) DO NOTHING").Exec(ctx)
		return err
	})
}

// FindAll is Find for many subjects at once: it returns the key of every
// subject of subjects that has one, read in one statement per chunk of
// subjects (the cached ones not read again); an erased subject maps to nil
// (Find's ErrErased), a subject without a key is absent (Find's ErrNoKey).
// An invalid subject fails the call with ErrBadSubject; a key that the
// master key does not open, with ErrBadMasterKey.
func (s *Store) FindAll(ctx context.Context, subjects []Subject) (map[Subject][]byte, error) {
	out, _, err := s.findAll(ctx, subjects)
	return out, err
}

// keyChunk bounds the subjects of one statement of KeyAll and FindAll
// (SQLite allows 32,766 parameters; a key row has five).
const keyChunk = 1000

// findAll returns the keys (nil: erased) of those of subjects with a row,
// and the subjects without one, each once.
func (s *Store) findAll(ctx context.Context, subjects []Subject) (map[Subject][]byte, []Subject, error) {
	out := make(map[Subject][]byte, len(subjects))
	var read []Subject
	seen := make(map[Subject]bool, len(subjects))
	for _, subj := range subjects {
		if seen[subj] {
			continue
		}
		seen[subj] = true
		if err := subj.Check(); err != nil {
			return nil, nil, err
		}
		if c, ok := s.cached(subj); ok {
			out[subj] = c.key // nil when erased
			continue
		}
		read = append(read, subj)
	}
	var missing []Subject
	for start := 0; start < len(read); start += keyChunk {
		chunk := read[start:min(start+keyChunk, len(read))]
		names := make([]string, len(chunk))
		for i, subj := range chunk {
			names[i] = string(subj)
		}
		var rows []row
		if err := s.db.NewSelect().Model(&rows).Where("k.subject IN (?)", bun.List(names)).Scan(ctx); err != nil {
			return nil, nil, fmt.Errorf("keystore: read the keys of %d subjects: %w", len(chunk), err)
		}
		byName := make(map[string]*row, len(rows))
		for i := range rows {
			byName[rows[i].Subject] = &rows[i]
		}
		for _, subj := range chunk {
			r, ok := byName[string(subj)]
			switch {
			case !ok:
				missing = append(missing, subj)
				continue
			case r.ErasedAt != 0:
				s.remember(subj, cached{erased: true})
				out[subj] = nil
				continue
			case r.MasterKeyID != s.master.id:
				return nil, nil, fmt.Errorf("%w: the key of %s was wrapped by master key %s, this one is %s", ErrBadMasterKey, subj, r.MasterKeyID, s.master.id)
			}
			key, err := s.master.unwrap(subj, r.Wrapped)
			if err != nil {
				return nil, nil, err
			}
			s.remember(subj, cached{key: key})
			out[subj] = key
		}
	}
	return out, missing, nil
}

// Erase destroys subj's key: the wrapped key is overwritten with zeros and
// erased_at set, in one statement; a subject without a key gets an erased
// row, so that it never gets one. It reports whether this call erased it
// (false: it was erased already). Nothing can undo it.
func (s *Store) Erase(ctx context.Context, subj Subject) (bool, error) {
	if err := subj.Check(); err != nil {
		return false, err
	}
	now := max(s.clock().UnixMicro(), 1)
	zeros := make([]byte, s.master.aead.NonceSize()+KeySize+s.master.aead.Overhead())
	tomb := row{Subject: string(subj), Wrapped: zeros, MasterKeyID: s.master.id, CreatedAt: now, ErasedAt: now}
	res, err := s.db.NewInsert().Model(&tomb).
		On("CONFLICT (subject) DO UPDATE").
		Set("wrapped = EXCLUDED.wrapped").
		Set("erased_at = EXCLUDED.erased_at").
		Where("k.erased_at = 0").
		Exec(ctx)
	if err != nil {
		return false, fmt.Errorf("keystore: erase %s: %w", subj, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("keystore: erase %s: %w", subj, err)
	}
	s.remember(subj, cached{erased: true})
	return n > 0, nil
}

// ErasedSubjects lists every erased subject.
func (s *Store) ErasedSubjects(ctx context.Context) ([]Subject, error) {
	var names []string
	if err := s.db.NewSelect().Model((*row)(nil)).Column("subject").Where("k.erased_at <> 0").Scan(ctx, &names); err != nil {
		return nil, fmt.Errorf("keystore: list the erased subjects: %w", err)
	}
	out := make([]Subject, len(names))
	for i, n := range names {
		out[i] = Subject(n)
	}
	return out, nil
}

// State is what the table says of a subject.
type State struct {
	// HasKey: the subject has a row (a live key, or its erasure).
	HasKey   bool
	ErasedAt time.Time // zero while not erased
}

// Erased reports whether subj is erased.
func (st State) Erased() bool { return !st.ErasedAt.IsZero() }

// Status reads subj's row, bypassing the cache.
func (s *Store) Status(ctx context.Context, subj Subject) (State, error) {
	if err := subj.Check(); err != nil {
		return State{}, err
	}
	var r row
	err := s.db.NewSelect().Model(&r).Column("erased_at").Where("k.subject = ?", string(subj)).Limit(1).Scan(ctx)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return State{}, nil
	case err != nil:
		return State{}, fmt.Errorf("keystore: read %s: %w", subj, err)
	}
	st := State{HasKey: true}
	if r.ErasedAt != 0 {
		st.ErasedAt = time.UnixMicro(r.ErasedAt).UTC()
	}
	return st, nil
}
