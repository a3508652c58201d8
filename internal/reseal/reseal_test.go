package reseal_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/keystore"
	"github.com/accessledger/accessledger/adapters/personaldata"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/internal/reseal"
	"github.com/accessledger/accessledger/internal/reseal/resealtest"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/ledger"
)

var quiet = slog.New(slog.DiscardHandler)

// backend names where a test deployment keeps its log: the embedded
// SQLite default, or a fresh PostgreSQL schema.
type backend struct {
	name  string
	store func(t *testing.T) string // "" = the data directory's SQLite file
}

var backends = []backend{
	{"sqlite", func(*testing.T) string { return "" }},
	{"postgres", func(t *testing.T) string { return sqltest.Postgres(t) }},
}

// privateDir is a new directory of mode 0700.
func privateDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o700))
	return dir
}

// open opens a deployment on cfg; it is closed at cleanup.
func open(t *testing.T, cfg *engine.Config) reseal.Deployment {
	t.Helper()
	st, err := engine.OpenStores(context.Background(), cfg, quiet)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return reseal.Deployment{Config: cfg, Stores: st}
}

// source is a deployment with a history written partly before sealing
// and partly by the current engine.
type source struct {
	reseal.Deployment
	legacy *resealtest.Legacy
	// erased is an account the current engine made (keyed id, sealed
	// values) and erased; keyed one it made and kept.
	erased, keyed resealtest.Person
	// reason is a reason the current engine sealed on the legacy child.
	reason string
}

func newSource(t *testing.T, b backend) *source {
	t.Helper()
	ctx := context.Background()
	src := &source{Deployment: open(t, &engine.Config{DataDir: privateDir(t), EventStore: b.store(t)})}
	tag := strings.ToLower(uuid.NewString()[:8])
	l, err := resealtest.WriteLegacy(ctx, src.Stores.Events.Log, time.Now(), tag)
	require.NoError(t, err)
	src.legacy = l
	// The current engine: through the layer, keyed ids.
	w := l.Writer
	w.Log = src.Stores.Log
	w.Now = w.Now.Add(time.Hour)
	ids := src.Stores.IDs
	person := func(who string) resealtest.Person {
		email := who + "." + tag + "@example.org"
		return resealtest.Person{ID: ids.AccountID(email), Email: email, Subject: "idp|" + who + "-" + tag,
			Phone: "+44 7700 900555", PhoneHint: "***555"}
	}
	src.erased, src.keyed = person("erased"), person("keyed")
	for _, p := range []resealtest.Person{src.erased, src.keyed} {
		require.NoError(t, w.Account(ctx, p, domain.KindNetworkMember, ids.IdentityStream(p.Subject)))
	}
	src.reason = "sealed by the current engine " + tag
	require.NoError(t, w.Grant(ctx, l.Child, src.keyed.ID, src.reason, domain.PermView))
	require.NoError(t, w.Grant(ctx, l.Child, src.erased.ID, "erased member's grant "+tag, domain.PermView))
	require.NoError(t, w.EraseAccount(ctx, src.Stores.Log, src.erased.ID, "Art. 17 request "+tag))
	require.NoError(t, w.EraseChild(ctx, src.Stores.Log, l.ErasableChild, "retention ended "+tag))
	return src
}

// destination prepares and opens a destination for src in a new data
// directory (and a new schema on PostgreSQL).
func destination(t *testing.T, src *source, b backend) reseal.Deployment {
	t.Helper()
	cfg := &engine.Config{DataDir: filepath.Join(privateDir(t), "new"), EventStore: b.store(t)}
	require.NoError(t, cfg.CheckPrivate())
	require.NoError(t, reseal.CheckDistinct(src.Config, cfg))
	_, err := reseal.PrepareSecrets(src.Config, cfg)
	require.NoError(t, err)
	return open(t, cfg)
}

func readAll(t *testing.T, log eventlog.Store) []eventlog.Record {
	t.Helper()
	recs, err := log.ReadAll(context.Background(), eventlog.Start, 0)
	require.NoError(t, err)
	return recs
}

// storedText is every stored record's stream, data and reason.
func storedText(recs []eventlog.Record) string {
	var b strings.Builder
	for _, r := range recs {
		b.WriteString(r.Stream + " " + string(r.Data) + " " + r.Meta.Reason + "\n")
	}
	return b.String()
}

func TestReseal_SealsEverythingAndKeepsEverythingElse(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			src := newSource(t, b)
			dst := destination(t, src, b)
			srcPlain, srcTotal, err := personaldata.CountPlain(ctx, src.Stores.Events.Log)
			require.NoError(t, err)
			require.Positive(t, srcPlain)
			srcStored := readAll(t, src.Stores.Events.Log)

			rep, err := reseal.Run(ctx, src.Deployment, dst, reseal.Options{Logger: quiet})
			require.NoError(t, err)
			require.True(t, rep.OK(), "%+v", rep.Checks)
			require.Equal(t, srcTotal, rep.Copy.Total)
			require.Equal(t, srcTotal, rep.Copy.Copied)
			require.Less(t, rep.Copy.Writes, rep.Copy.Copied, "many events go in one write")
			require.Equal(t, reseal.Stats{SubjectsKeyed: 4, ErasedSubjects: 2, IdentityRenamed: 2, IdentityKeyed: 1, IdentityKept: 1},
				rep.Copy.Stats)
			require.NotNil(t, rep.Checkpoint)
			require.Equal(t, srcTotal, rep.Checkpoint.Size)
			require.NotEqual(t, rep.SourceLedger.Root, rep.Checkpoint.Root, "a new log, a new tree")

			// (c): nothing personal in plain text, in the events or the files.
			plain, total, err := personaldata.CountPlain(ctx, dst.Stores.Events.Log)
			require.NoError(t, err)
			require.Equal(t, [2]int64{0, srcTotal}, [2]int64{plain, total})
			stored := storedText(readAll(t, dst.Stores.Events.Log))
			personal := append(append([]string{}, src.legacy.Personal...), src.reason, src.erased.Email, src.keyed.Email,
				src.legacy.Carer.Subject, domain.IdentityStream(src.legacy.Carer.Subject))
			for _, v := range personal {
				require.NotContains(t, stored, v)
			}
			require.Contains(t, stored, personaldata.Prefix)
			if b.name == "sqlite" {
				files := sqliteFiles(t, dst.Config.DataDir)
				for _, v := range personal {
					require.NotContains(t, files, v, "the destination's SQLite files hold %q", v)
				}
			}

			// The source is as it was.
			require.Equal(t, srcStored, readAll(t, src.Stores.Events.Log))

			// Erased subjects: stand-ins, and no key.
			for _, s := range []keystore.Subject{keystore.AccountSubject(src.erased.ID), keystore.ChildSubject(src.legacy.ErasableChild)} {
				_, err := dst.Stores.Keys.Find(ctx, s)
				require.ErrorIs(t, err, keystore.ErrErased, s)
			}
			reg := firstOfType(t, dst.Stores.Log, domain.ChildStream(src.legacy.ErasableChild), domain.TypeChildRegistered)
			require.JSONEq(t, `"[erased]"`, field(t, reg.Data, "reference"), "the plain reference of an erased child is not copied")
			srcReg := firstOfType(t, src.Stores.Events.Log, domain.ChildStream(src.legacy.ErasableChild), domain.TypeChildRegistered)
			require.JSONEq(t, `"`+src.legacy.ErasableReference+`"`, field(t, srcReg.Data, "reference"),
				"the source still holds it in plain text (written before sealing)")
			srcOpened := firstOfType(t, src.Stores.Log, domain.ChildStream(src.legacy.ErasableChild), domain.TypeChildRegistered)
			require.JSONEq(t, `"[erased]"`, field(t, srcOpened.Data, "reference"), "though it reads as erased")

			// Live subjects open as they were.
			inv := firstOfType(t, dst.Stores.Log, domain.AccountStream(src.legacy.Carer.ID), domain.TypeAccountInvited)
			require.JSONEq(t, `"`+src.legacy.Carer.Email+`"`, field(t, inv.Data, "email"), "account ids are kept")
			_, err = dst.Stores.Keys.Find(ctx, keystore.AccountSubject(src.legacy.Carer.ID))
			require.NoError(t, err)

			// Identity streams under the destination's keyed names only.
			for _, p := range []resealtest.Person{src.legacy.Carer, src.legacy.Member, src.keyed} {
				old, err := dst.Stores.Log.ReadStream(ctx, domain.IdentityStream(p.Subject), 1, 0)
				require.NoError(t, err)
				require.Empty(t, old)
				keyed, err := dst.Stores.Log.ReadStream(ctx, dst.Stores.IDs.IdentityStream(p.Subject), 1, 0)
				require.NoError(t, err)
				require.Len(t, keyed, 1)
				require.JSONEq(t, `"`+p.Subject+`"`, field(t, keyed[0].Data, "subject"))
			}

			// Running it again finds everything copied and changes nothing.
			before := readAll(t, dst.Stores.Events.Log)
			again, err := reseal.Run(ctx, src.Deployment, dst, reseal.Options{Logger: quiet})
			require.NoError(t, err)
			require.True(t, again.OK(), "%+v", again.Checks)
			require.Equal(t, [2]int64{srcTotal, 0}, [2]int64{again.Copy.Verified, again.Copy.Copied})
			require.Equal(t, before, readAll(t, dst.Stores.Events.Log))
			require.Equal(t, rep.Checkpoint.Root, again.Checkpoint.Root)
		})
	}
}

func sqliteFiles(t *testing.T, dir string) string {
	t.Helper()
	var all []byte
	for _, suffix := range []string{"", "-wal", "-journal"} {
		b, err := os.ReadFile(filepath.Join(dir, engine.DefaultDBName+suffix))
		if err == nil {
			all = append(all, b...)
		}
	}
	require.NotEmpty(t, all)
	return string(all)
}

func firstOfType(t *testing.T, log eventlog.Store, stream, typ string) eventlog.Record {
	t.Helper()
	recs, err := log.ReadStream(context.Background(), stream, 1, 0)
	require.NoError(t, err)
	for _, r := range recs {
		if r.Type == typ {
			return r
		}
	}
	t.Fatalf("no %s in %s", typ, stream)
	return eventlog.Record{}
}

func field(t *testing.T, data []byte, name string) string {
	t.Helper()
	var obj map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(data, &obj))
	return string(obj[name])
}

// stopAfter is an event store whose context is cancelled right after its
// n-th append has been stored: a process killed between two appends.
type stopAfter struct {
	eventlog.Store
	n      int64
	count  atomic.Int64
	cancel context.CancelFunc
}

func (s *stopAfter) Append(ctx context.Context, stream string, expected eventlog.ExpectedVersion, events []eventlog.EventData) (eventlog.AppendResult, error) {
	res, err := s.Store.Append(ctx, stream, expected, events)
	if err == nil && s.count.Add(1) == s.n {
		s.cancel()
	}
	return res, err
}

// bulkStopAfter is stopAfter for a store that writes many streams in one
// transaction.
type bulkStopAfter struct {
	*stopAfter
	bulk interface {
		AppendBatch(context.Context, []sqlstore.StreamAppend) ([]eventlog.AppendResult, error)
	}
}

func (s bulkStopAfter) AppendBatch(ctx context.Context, batch []sqlstore.StreamAppend) ([]eventlog.AppendResult, error) {
	res, err := s.bulk.AppendBatch(ctx, batch)
	if err == nil && s.count.Add(1) == s.n {
		s.cancel()
	}
	return res, err
}

func TestReseal_AnInterruptedCopyResumesWithoutLosingOrRepeatingAnything(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			src := newSource(t, b)
			total := int64(len(readAll(t, src.Stores.Events.Log)))
			tests := []struct {
				stopAt int64
				bulk   bool
			}{{1, false}, {5, false}, {11, false}, {1, true}, {3, true}}
			for _, tt := range tests {
				dst := destination(t, src, b)
				ctx, cancel := context.WithCancel(context.Background())
				stopping := &stopAfter{Store: dst.Stores.Events.Log, n: tt.stopAt, cancel: cancel}
				var inner eventlog.Store = stopping
				if tt.bulk {
					inner = bulkStopAfter{stopAfter: stopping, bulk: dst.Stores.Events.Log.(*sqlstore.Store)}
				}
				s := reseal.Source{Log: src.Stores.Log, Stored: src.Stores.Events.Log}
				d := reseal.Destination{Log: personaldata.New(inner, dst.Stores.Keys), Keys: dst.Stores.Keys, IDs: dst.Stores.IDs}
				first, err := reseal.Copy(ctx, s, d, reseal.CopyOptions{BatchSize: 4})
				cancel()
				require.ErrorIs(t, err, context.Canceled, "stopped after write %d (bulk %v)", tt.stopAt, tt.bulk)
				require.Equal(t, tt.stopAt, first.Writes)
				stored := readAll(t, dst.Stores.Events.Log)
				require.Len(t, stored, int(first.Copied), "every append is whole")
				require.Less(t, first.Copied, total)

				rep, err := reseal.Run(context.Background(), src.Deployment, dst, reseal.Options{Logger: quiet, Copy: reseal.CopyOptions{BatchSize: 4}})
				require.NoError(t, err)
				require.True(t, rep.OK(), "%+v", rep.Checks)
				require.Equal(t, first.Copied, rep.Copy.Verified)
				require.Equal(t, total, rep.Copy.Verified+rep.Copy.Copied)
				all := readAll(t, dst.Stores.Events.Log)
				require.Len(t, all, int(total))
				seen := map[uuid.UUID]bool{}
				for _, r := range all {
					require.False(t, seen[r.ID], "event %s twice", r.ID)
					seen[r.ID] = true
				}
			}
		})
	}
}

func TestReseal_AnotherLogInTheDestinationIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sqlite := backends[0]
	src := newSource(t, sqlite)
	otherSrc := newSource(t, sqlite)
	tests := []struct {
		name string
		fill func(t *testing.T, dst reseal.Deployment)
	}{
		{"an unrelated event", func(t *testing.T, dst reseal.Deployment) {
			w := resealtest.NewWriter(dst.Stores.Log, time.Now())
			_, err := w.RegisterChild(ctx, "NCC-OTHER")
			require.NoError(t, err)
		}},
		{"another source's copy", func(t *testing.T, dst reseal.Deployment) {
			s := reseal.Source{Log: otherSrc.Stores.Log, Stored: otherSrc.Stores.Events.Log}
			d := reseal.Destination{Log: dst.Stores.Log, Keys: dst.Stores.Keys, IDs: dst.Stores.IDs}
			_, err := reseal.Copy(ctx, s, d, reseal.CopyOptions{})
			require.NoError(t, err)
		}},
		{"more events than the source", func(t *testing.T, dst reseal.Deployment) {
			rep, err := reseal.Run(ctx, src.Deployment, dst, reseal.Options{Logger: quiet})
			require.NoError(t, err)
			require.True(t, rep.OK(), "%+v", rep.Checks)
			w := resealtest.NewWriter(dst.Stores.Log, time.Now())
			_, err = w.RegisterChild(ctx, "NCC-AFTER")
			require.NoError(t, err)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := destination(t, src, sqlite)
			tt.fill(t, dst)
			before := readAll(t, dst.Stores.Events.Log)
			rep, err := reseal.Run(ctx, src.Deployment, dst, reseal.Options{Logger: quiet})
			require.NoError(t, err)
			require.False(t, rep.OK())
			failed, _ := rep.Failed()
			require.Equal(t, reseal.CheckCopy, failed.Name)
			require.Contains(t, failed.Detail, reseal.ErrNotResumable.Error())
			require.Equal(t, before, readAll(t, dst.Stores.Events.Log), "nothing appended")
		})
	}
}

func TestReseal_ASourceThatDisagreesWithItsLedgerIsNotCopied(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := newSource(t, backends[0])
	dst := destination(t, src, backends[0])
	// Build the source's ledger as serve does, then change an event
	// behind its back.
	buildSourceLedger(t, src.Deployment)
	_, err := src.Stores.Events.DB.ExecContext(ctx, "UPDATE events SET actor_id = 'someone-else' WHERE position = 3")
	require.NoError(t, err)

	rep, err := reseal.Run(ctx, src.Deployment, dst, reseal.Options{Logger: quiet})
	require.NoError(t, err)
	require.False(t, rep.OK())
	failed, _ := rep.Failed()
	require.Equal(t, reseal.CheckSource, failed.Name, "%+v", rep.Checks)
	require.Empty(t, readAll(t, dst.Stores.Events.Log))
}

func TestReseal_Secrets(t *testing.T) {
	t.Parallel()
	src := &engine.Config{DataDir: privateDir(t)}
	st, err := engine.OpenStores(context.Background(), src, quiet)
	require.NoError(t, err)
	require.NoError(t, st.Close())
	require.NoError(t, os.WriteFile(filepath.Join(src.DataDir, "jwt-secret"), []byte(strings.Repeat("ab", 32)+"\n"), 0o600))
	buildKey := func(t *testing.T, path string) {
		t.Helper()
		_, _, err := ledgerKey(path)
		require.NoError(t, err)
	}
	buildKey(t, src.LedgerKeyPath())

	t.Run("copied", func(t *testing.T) {
		dst := &engine.Config{DataDir: privateDir(t)}
		notes, err := reseal.PrepareSecrets(src, dst)
		require.NoError(t, err)
		require.Len(t, notes, 2)
		for _, f := range []string{dst.MasterKeyPath(), filepath.Join(dst.DataDir, "jwt-secret")} {
			fi, err := os.Stat(f)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), f)
		}
		a, err := keystore.LoadMasterKey(src.MasterKeyPath())
		require.NoError(t, err)
		b, err := keystore.LoadMasterKey(dst.MasterKeyPath())
		require.NoError(t, err)
		require.Equal(t, a.ID(), b.ID())
		_, err = reseal.PrepareSecrets(src, dst)
		require.NoError(t, err, "again: the same files")
	})
	t.Run("another master key", func(t *testing.T) {
		dst := &engine.Config{DataDir: privateDir(t)}
		_, _, err := keystore.LoadOrCreateMasterKey(dst.MasterKeyPath())
		require.NoError(t, err)
		_, err = reseal.PrepareSecrets(src, dst)
		require.ErrorIs(t, err, reseal.ErrOtherMasterKey)
	})
	t.Run("the source's ledger key", func(t *testing.T) {
		dst := &engine.Config{DataDir: privateDir(t)}
		b, err := os.ReadFile(src.LedgerKeyPath())
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(dst.LedgerKeyPath(), b, 0o600))
		_, err = reseal.PrepareSecrets(src, dst)
		require.ErrorIs(t, err, reseal.ErrSameLedgerKey)
	})
}

func TestReseal_AnEmptyOrMissingSourceIsRefused(t *testing.T) {
	t.Parallel()
	dir := privateDir(t)
	missing := &engine.Config{DataDir: filepath.Join(dir, "typo")}
	require.ErrorIs(t, reseal.CheckSourceExists(missing), reseal.ErrNoSource)
	require.NoError(t, reseal.CheckSourceExists(&engine.Config{DataDir: dir, EventStore: "postgres://h/db"}))

	src := open(t, &engine.Config{DataDir: filepath.Join(dir, "empty")})
	require.NoError(t, reseal.CheckSourceExists(src.Config))
	dst := open(t, &engine.Config{DataDir: filepath.Join(dir, "new")})
	rep, err := reseal.Run(context.Background(), src, dst, reseal.Options{Logger: quiet})
	require.NoError(t, err)
	require.False(t, rep.OK())
	failed, _ := rep.Failed()
	require.Equal(t, reseal.CheckSource, failed.Name)
	require.Contains(t, failed.Detail, "empty")
}

func TestReseal_CheckDistinct(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := &engine.Config{DataDir: filepath.Join(dir, "old")}
	tests := []struct {
		name string
		dst  engine.Config
		ok   bool
	}{
		{"another directory", engine.Config{DataDir: filepath.Join(dir, "new")}, true},
		{"the same directory", engine.Config{DataDir: filepath.Join(dir, "old", ".")}, false},
		{"the source's SQLite file", engine.Config{DataDir: filepath.Join(dir, "new"),
			EventStore: "sqlite:" + filepath.Join(dir, "old", engine.DefaultDBName)}, false},
		{"the source's database as read store", engine.Config{DataDir: filepath.Join(dir, "new"),
			ReadStore: "sqlite:" + filepath.Join(dir, "old", engine.DefaultDBName) + "?_pragma=foo"}, false},
		{"the source's checkpoints", engine.Config{DataDir: filepath.Join(dir, "new"), CheckpointDir: filepath.Join(dir, "old", "checkpoints")}, false},
		{"the source's ledger key", engine.Config{DataDir: filepath.Join(dir, "new"), LedgerKey: filepath.Join(dir, "old", "ledger-key")}, false},
		{"another PostgreSQL database", engine.Config{DataDir: filepath.Join(dir, "new"), EventStore: "postgres://h/b"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := reseal.CheckDistinct(src, &tt.dst)
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, reseal.ErrSameStore)
		})
	}
	pg := &engine.Config{DataDir: filepath.Join(dir, "old"), EventStore: "postgres://u:secret@h/a"}
	err := reseal.CheckDistinct(pg, &engine.Config{DataDir: filepath.Join(dir, "new"), EventStore: "postgres://u:secret@h/a"})
	require.ErrorIs(t, err, reseal.ErrSameStore)
	require.NotContains(t, err.Error(), "secret", "no password in the message")
}

func ledgerKey(path string) (*ledger.Key, bool, error) { return ledger.LoadOrCreateKey(path) }

// buildSourceLedger builds d's ledger tree and signs a checkpoint of it,
// as accessd serve does.
func buildSourceLedger(t *testing.T, d reseal.Deployment) {
	t.Helper()
	ctx := context.Background()
	key, _, err := ledgerKey(d.Config.LedgerKeyPath())
	require.NoError(t, err)
	require.NoError(t, projections.Rebuild(ctx, d.Stores.Read.DB, d.Stores.Events.Log, ledger.New(), nil))
	l, err := ledger.NewLedger(ledger.Config{DB: d.Stores.Read, Key: key, Dir: d.Config.CheckpointPath(), Logger: quiet})
	require.NoError(t, err)
	_, err = l.Guard(ctx, d.Stores.Events.Log, ledger.VerifyOptions{})
	require.NoError(t, err)
	_, _, err = l.Publish(ctx)
	require.NoError(t, err)
}
