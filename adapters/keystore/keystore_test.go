package keystore_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/keystore"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
)

func open(t *testing.T, url string) *sqldb.DB {
	t.Helper()
	db := sqltest.Open(t, url)
	pg, lite := keystore.Migrations()
	require.NoError(t, sqldb.Migrate(context.Background(), db, keystore.Component, pg, lite))
	return db
}

func master(t *testing.T, b byte) *keystore.MasterKey {
	t.Helper()
	m, err := keystore.NewMasterKey(bytes.Repeat([]byte{b}, keystore.KeySize))
	require.NoError(t, err)
	return m
}

// TestKeyStore is the key table's conformance suite, on every backend.
func TestKeyStore(t *testing.T) {
	t.Parallel()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("a key is made once and kept", func(t *testing.T) { keyIsKept(t, open(t, b.URL(t))) })
			t.Run("concurrent first uses agree", func(t *testing.T) { concurrentFirstUse(t, open(t, b.URL(t))) })
			t.Run("erasure", func(t *testing.T) { erasure(t, open(t, b.URL(t))) })
			t.Run("another master key", func(t *testing.T) { otherMaster(t, open(t, b.URL(t))) })
			t.Run("bad subjects", func(t *testing.T) { badSubjects(t, open(t, b.URL(t))) })
			t.Run("many subjects at once", func(t *testing.T) { manyAtOnce(t, open(t, b.URL(t))) })
			t.Run("many subjects at once, concurrently", func(t *testing.T) { manyAtOnceConcurrently(t, open(t, b.URL(t))) })
		})
	}
}

func keyIsKept(t *testing.T, db *sqldb.DB) {
	ctx := context.Background()
	s := keystore.New(db, master(t, 1))
	subj := keystore.AccountSubject(uuid.New())
	_, err := s.Find(ctx, subj)
	require.ErrorIs(t, err, keystore.ErrNoKey)
	k1, err := s.Key(ctx, subj)
	require.NoError(t, err)
	require.Len(t, k1, keystore.KeySize)
	k2, err := s.Key(ctx, subj)
	require.NoError(t, err)
	require.Equal(t, k1, k2)
	fresh := keystore.New(db, master(t, 1)) // no cache: read from the table
	k3, err := fresh.Find(ctx, subj)
	require.NoError(t, err)
	require.Equal(t, k1, k3)
	other, err := s.Key(ctx, keystore.ChildSubject(uuid.New()))
	require.NoError(t, err)
	require.NotEqual(t, k1, other, "a key per subject")

	var wrapped []byte
	require.NoError(t, db.NewRaw("SELECT wrapped FROM subject_keys WHERE subject = ?", string(subj)).Scan(ctx, &wrapped))
	require.False(t, bytes.Contains(wrapped, k1), "the table holds the key wrapped, never plain")
	st, err := s.Status(ctx, subj)
	require.NoError(t, err)
	require.Equal(t, keystore.State{HasKey: true}, st)
}

func concurrentFirstUse(t *testing.T, db *sqldb.DB) {
	ctx := context.Background()
	subj := keystore.ChildSubject(uuid.New())
	const n = 8
	keys := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := keystore.New(db, master(t, 1)).Key(ctx, subj) // as n replicas
			require.NoError(t, err)
			keys[i] = k
		}()
	}
	wg.Wait()
	for _, k := range keys[1:] {
		require.Equal(t, keys[0], k)
	}
}

func erasure(t *testing.T, db *sqldb.DB) {
	ctx := context.Background()
	a, b := keystore.New(db, master(t, 1)), keystore.New(db, master(t, 1)) // two replicas
	subj := keystore.AccountSubject(uuid.New())
	key, err := a.Key(ctx, subj)
	require.NoError(t, err)
	_, err = b.Find(ctx, subj) // b caches the live key
	require.NoError(t, err)

	erased, err := a.Erase(ctx, subj)
	require.NoError(t, err)
	require.True(t, erased)
	erased, err = a.Erase(ctx, subj)
	require.NoError(t, err)
	require.False(t, erased, "erasing twice erases once")
	_, err = a.Key(ctx, subj)
	require.ErrorIs(t, err, keystore.ErrErased, "an erased subject never gets a new key")
	b.Forget(subj) // as when b reads the erasure event
	_, err = b.Find(ctx, subj)
	require.ErrorIs(t, err, keystore.ErrErased)
	st, err := b.Status(ctx, subj)
	require.NoError(t, err)
	require.True(t, st.Erased())

	var wrapped []byte
	require.NoError(t, db.NewRaw("SELECT wrapped FROM subject_keys WHERE subject = ?", string(subj)).Scan(ctx, &wrapped))
	require.Equal(t, make([]byte, len(wrapped)), wrapped, "the wrapped key is overwritten")
	require.False(t, bytes.Contains(wrapped, key))

	never := keystore.ChildSubject(uuid.New())
	erased, err = a.Erase(ctx, never)
	require.NoError(t, err)
	require.True(t, erased, "a subject without a key is erased too")
	_, err = b.Key(ctx, never)
	require.ErrorIs(t, err, keystore.ErrErased)
}

func otherMaster(t *testing.T, db *sqldb.DB) {
	ctx := context.Background()
	subj := keystore.AccountSubject(uuid.New())
	_, err := keystore.New(db, master(t, 1)).Key(ctx, subj)
	require.NoError(t, err)
	_, err = keystore.New(db, master(t, 2)).Find(ctx, subj)
	require.ErrorIs(t, err, keystore.ErrBadMasterKey)

	// A wrapped key moved to another subject does not open.
	moved := keystore.AccountSubject(uuid.New())
	_, err = db.NewRaw("INSERT INTO subject_keys (subject, wrapped, master_key_id, created_at, erased_at) "+
		"SELECT ?, wrapped, master_key_id, created_at, 0 FROM subject_keys WHERE subject = ?", string(moved), string(subj)).Exec(ctx)
	require.NoError(t, err)
	_, err = keystore.New(db, master(t, 1)).Find(ctx, moved)
	require.ErrorIs(t, err, keystore.ErrBadMasterKey)
}

func badSubjects(t *testing.T, db *sqldb.DB) {
	s := keystore.New(db, master(t, 1))
	for _, subj := range []keystore.Subject{"", "account:", "account:not-a-uuid", "person:" + keystore.Subject(uuid.NewString()),
		"child:" + keystore.Subject(uuid.Nil.String()), "child:" + keystore.Subject(uuid.NewString()) + " "} {
		_, err := s.Key(context.Background(), subj)
		require.ErrorIs(t, err, keystore.ErrBadSubject, "%q", subj)
		_, err = s.Erase(context.Background(), subj)
		require.ErrorIs(t, err, keystore.ErrBadSubject, "%q", subj)
		good := keystore.AccountSubject(uuid.New())
		_, err = s.KeyAll(context.Background(), []keystore.Subject{good, subj})
		require.ErrorIs(t, err, keystore.ErrBadSubject, "%q", subj)
		_, err = s.FindAll(context.Background(), []keystore.Subject{subj})
		require.ErrorIs(t, err, keystore.ErrBadSubject, "%q", subj)
		_, err = s.Find(context.Background(), good)
		require.ErrorIs(t, err, keystore.ErrNoKey, "a refused KeyAll makes no key")
	}
}

// manyAtOnce: KeyAll and FindAll agree with Key and Find subject by
// subject, across more subjects than one statement takes.
func manyAtOnce(t *testing.T, db *sqldb.DB) {
	ctx := context.Background()
	s := keystore.New(db, master(t, 1))
	existing := keystore.ChildSubject(uuid.New())
	kept, err := s.Key(ctx, existing)
	require.NoError(t, err)
	erased := keystore.AccountSubject(uuid.New())
	_, err = s.Erase(ctx, erased)
	require.NoError(t, err)
	subjects := []keystore.Subject{existing, erased, existing}
	for i := range 2500 {
		if i%2 == 0 {
			subjects = append(subjects, keystore.AccountSubject(uuid.New()))
		} else {
			subjects = append(subjects, keystore.ChildSubject(uuid.New()))
		}
	}

	fresh := keystore.New(db, master(t, 1)) // no cache
	found, err := fresh.FindAll(ctx, subjects)
	require.NoError(t, err)
	require.Equal(t, map[keystore.Subject][]byte{existing: kept, erased: nil}, found, "FindAll makes no key")

	keys, err := fresh.KeyAll(ctx, subjects)
	require.NoError(t, err)
	require.Len(t, keys, len(subjects)-1, "every subject, once")
	require.Equal(t, kept, keys[existing], "a subject's key is kept")
	k, ok := keys[erased]
	require.True(t, ok)
	require.Nil(t, k, "an erased subject gets no key")
	distinct := map[string]bool{}
	for _, subj := range subjects[3:] {
		require.Len(t, keys[subj], keystore.KeySize)
		distinct[string(keys[subj])] = true
	}
	require.Len(t, distinct, len(subjects)-3, "a key per subject")

	other := keystore.New(db, master(t, 1)) // another replica reads them one by one
	for _, subj := range subjects[3:] {
		k, err := other.Find(ctx, subj)
		require.NoError(t, err)
		require.Equal(t, keys[subj], k)
	}
	_, err = other.Find(ctx, erased)
	require.ErrorIs(t, err, keystore.ErrErased)
	again, err := keystore.New(db, master(t, 1)).KeyAll(ctx, subjects)
	require.NoError(t, err)
	require.Equal(t, keys, again, "KeyAll again makes nothing new")
	var wrapped []byte
	require.NoError(t, db.NewRaw("SELECT wrapped FROM subject_keys WHERE subject = ?", string(subjects[5])).Scan(ctx, &wrapped))
	require.False(t, bytes.Contains(wrapped, keys[subjects[5]]), "the table holds the key wrapped, never plain")

	_, err = keystore.New(db, master(t, 2)).FindAll(ctx, subjects)
	require.ErrorIs(t, err, keystore.ErrBadMasterKey)
}

// manyAtOnceConcurrently: replicas making keys for overlapping subjects
// at once, in bulk and one by one, agree on one key per subject.
func manyAtOnceConcurrently(t *testing.T, db *sqldb.DB) {
	ctx := context.Background()
	subjects := make([]keystore.Subject, 300)
	for i := range subjects {
		subjects[i] = keystore.AccountSubject(uuid.New())
	}
	const n = 4
	got := make([]map[keystore.Subject][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := keystore.New(db, master(t, 1))
			if i == 0 {
				got[i] = map[keystore.Subject][]byte{}
				for _, subj := range subjects {
					k, err := s.Key(ctx, subj)
					assert.NoError(t, err)
					got[i][subj] = k
				}
				return
			}
			keys, err := s.KeyAll(ctx, subjects)
			assert.NoError(t, err)
			got[i] = keys
		}()
	}
	wg.Wait()
	for _, keys := range got[1:] {
		require.Equal(t, got[0], keys)
	}
}

// TestEraseLeavesNoKeyInTheSQLiteFile: after erasure and a checkpoint, the
// database file holds neither the wrapped key nor (of course) the key.
func TestEraseLeavesNoKeyInTheSQLiteFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.db")
	db := open(t, "sqlite:"+path)
	s := keystore.New(db, master(t, 1))
	subj := keystore.ChildSubject(uuid.New())
	_, err := s.Key(ctx, subj)
	require.NoError(t, err)
	var wrapped []byte
	require.NoError(t, db.NewRaw("SELECT wrapped FROM subject_keys WHERE subject = ?", string(subj)).Scan(ctx, &wrapped))
	_, err = db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
	require.NoError(t, err)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, bytes.Contains(raw, wrapped), "the test looks for the right bytes")

	_, err = s.Erase(ctx, subj)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
	require.NoError(t, err)
	raw, err = os.ReadFile(path)
	require.NoError(t, err)
	require.False(t, bytes.Contains(raw, wrapped), "the wrapped key is gone from the file")
}

func TestMasterKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", keystore.MasterKeyFileName)
	m1, created, err := keystore.LoadOrCreateMasterKey(path)
	require.NoError(t, err)
	require.True(t, created)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	m2, created, err := keystore.LoadOrCreateMasterKey(path)
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, m1.ID(), m2.ID())

	require.NoError(t, os.Chmod(path, 0o644))
	_, err = keystore.LoadMasterKey(path)
	require.ErrorIs(t, err, keystore.ErrBadMasterKey)
	require.ErrorContains(t, err, "chmod 600")

	short := filepath.Join(dir, "short")
	require.NoError(t, os.WriteFile(short, []byte("abcd\n"), 0o600))
	_, err = keystore.LoadMasterKey(short)
	require.ErrorIs(t, err, keystore.ErrBadMasterKey)
	_, err = keystore.LoadMasterKey(filepath.Join(dir, "missing"))
	require.ErrorIs(t, err, keystore.ErrBadMasterKey)
}

// TestOpenPinsTheMasterKey: the first Open records the master key's id; a
// replica with another key file is refused before it writes a key.
func TestOpenPinsTheMasterKey(t *testing.T) {
	t.Parallel()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := open(t, b.URL(t))
			ctx := context.Background()
			_, err := keystore.Open(ctx, db, master(t, 1))
			require.NoError(t, err)
			_, err = keystore.Open(ctx, db, master(t, 1))
			require.NoError(t, err, "the same key again")
			_, err = keystore.Open(ctx, db, master(t, 2))
			require.ErrorIs(t, err, keystore.ErrBadMasterKey)
			require.ErrorContains(t, err, "same --master-key")
		})
	}
}
