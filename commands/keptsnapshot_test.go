package commands_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/memstore"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

func withKeptSnapshots(dir string) option {
	return func(c *commands.Config, _ *commands.Store) { c.KeptSnapshots = commands.KeptSnapshotConfig{Dir: dir} }
}

// restarted is a new service (a restart of e's) on e's log with the kept
// state snapshot of dir, reading through a counting store, and its log.
func restarted(t *testing.T, e *env, dir string, opts ...func(*commands.Config)) (*commands.Service, *countingStore, *syncBuffer) {
	t.Helper()
	counted := &countingStore{Store: e.store}
	out := &syncBuffer{}
	cfg := commands.Config{Clock: e.clock.Now, Logger: slog.New(slog.NewTextHandler(out, nil)),
		KeptSnapshots: commands.KeptSnapshotConfig{Dir: dir}, Eraser: &recordingEraser{}}
	for _, o := range opts {
		o(&cfg)
	}
	svc, err := commands.New(counted, e.refusals, cfg)
	require.NoError(t, err)
	return svc, counted, out
}

// freshChild is the state of child a service without kept state folds
// from its whole stream; freshChildAt from its first version events.
func freshChild(t *testing.T, e *env, child uuid.UUID) *domain.Child {
	t.Helper()
	return freshChildAt(t, e, child, 1<<62)
}

func freshChildAt(t *testing.T, e *env, child uuid.UUID, version uint64) *domain.Child {
	t.Helper()
	c := domain.NewChild(child)
	for _, env := range e.stream(t, domain.ChildStream(child)) {
		if c.Version() == version {
			break
		}
		require.NoError(t, c.Apply(env.Event))
	}
	return c
}

// sameAggregate checks that got is want: the same whole state (shown on
// a difference) and deep equal.
func sameAggregate[T interface{ Clone() T }](t *testing.T, want, got T, whole func(T) any) {
	t.Helper()
	require.Equal(t, whole(want), whole(got))
	require.True(t, reflect.DeepEqual(want.Clone(), got.Clone()), "deep equal")
}

func childWhole(c *domain.Child) any     { return c.WholeState() }
func accountWhole(a *domain.Account) any { return a.WholeState() }

func freshAccount(t *testing.T, e *env, id uuid.UUID) *domain.Account {
	t.Helper()
	a := domain.NewAccount(id)
	for _, env := range e.stream(t, domain.AccountStream(id)) {
		require.NoError(t, a.Apply(env.Event))
	}
	return a
}

// TestKeptSnapshotRestoresKeptState: a service restarted from the kept
// state snapshot keeps exactly what the first one kept (file mode 0600);
// its first command on a kept child reads only the events appended since
// the snapshot (another replica's), decides on them (a revoke of the other
// replica's grant) and keeps the state a whole read gives; a request
// retried across the restart finds its events and appends nothing.
func TestKeptSnapshotRestoresKeptState(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, memory, withKeptSnapshots(dir))
	ctx := context.Background()
	other, err := commands.New(e.store, e.refusals, commands.Config{Clock: e.clock.Now, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)

	w := e.worker()
	child := e.child(t, w)
	carer, m1, m2 := e.withPhone(t, domain.KindFosterCarer), e.active(t, domain.KindParent), e.active(t, domain.KindParent)
	for range 8 {
		e.grant(t, w, child, m1.id)
		_, err := e.svc.Revoke(ctx, as(w), commands.Revoke{ChildID: child, AccountID: m1.id, Reason: "ended"})
		require.NoError(t, err)
	}
	p := e.place(t, w, child, carer.id, t0.Add(-30*day))
	key := commands.Meta{Actor: w, IdempotencyKey: "grant-m1-across-restart"}
	first, err := e.svc.Grant(ctx, key, commands.Grant{ChildID: child, AccountID: m1.id, Relationship: "parent",
		Permissions: []string{"view"}, Reason: "agreed"})
	require.NoError(t, err)
	_, err = e.svc.Revoke(ctx, as(w), commands.Revoke{ChildID: child, AccountID: m1.id, Reason: "ended"})
	require.NoError(t, err)
	keptChild, ok := e.svc.KeptChild(child)
	require.True(t, ok)
	keptCarer, ok := e.svc.KeptAccount(carer.id)
	require.True(t, ok)

	info, err := e.svc.WriteKeptSnapshot(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, info.Children)
	require.GreaterOrEqual(t, info.Accounts, 1)
	st, err := os.Stat(filepath.Join(dir, commands.KeptSnapshotFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	// Another replica's events after the snapshot.
	_, err = other.Grant(ctx, as(w), commands.Grant{ChildID: child, AccountID: m2.id, Relationship: "parent",
		Permissions: []string{"view"}, Reason: "agreed"})
	require.NoError(t, err)
	_, err = other.EndPlacement(ctx, as(w), commands.EndPlacement{ChildID: child, PlacementID: p, EndedAt: t0, Reason: "moved on"})
	require.NoError(t, err)

	svc, counted, out := restarted(t, e, dir)
	got, ok := svc.StartFromKeptSnapshot(ctx, e.store)
	require.True(t, ok, out.String())
	require.Equal(t, info.Children, got.Children)
	require.Contains(t, out.String(), "kept state loaded from its snapshot")
	restoredChild, ok := svc.KeptChild(child)
	require.True(t, ok)
	sameAggregate(t, keptChild, restoredChild, childWhole)
	restoredCarer, ok := svc.KeptAccount(carer.id)
	require.True(t, ok)
	sameAggregate(t, keptCarer, restoredCarer, accountWhole)
	require.Equal(t, "+44 7700 900123"[len("+44 7700 900123")-3:], restoredCarer.PhoneHint()[len(restoredCarer.PhoneHint())-3:])

	// The first command reads the tail alone: the last revoke (the state
	// is kept as loaded before a command's own events) and the other
	// replica's two events; it sees the grant of m2 (a revoke of no grant
	// would be refused).
	_, err = svc.Revoke(ctx, as(w), commands.Revoke{ChildID: child, AccountID: m2.id, Reason: "ended"})
	require.NoError(t, err)
	require.Equal(t, int64(3), counted.childRecords.Load(), "only the tail after the snapshot")
	after, ok := svc.KeptChild(child)
	require.True(t, ok)
	sameAggregate(t, freshChildAt(t, e, child, after.Version()), after, childWhole)
	require.Equal(t, uint64(len(e.stream(t, domain.ChildStream(child))))-1, after.Version(), "kept as loaded before its revoke")
	counted.accountRecords.Store(0)
	_, err = svc.StartPlacement(ctx, as(w), commands.StartPlacement{ChildID: child, CarerAccountID: carer.id, StartedAt: t0.Add(day)})
	require.NoError(t, err)
	require.Zero(t, counted.accountRecords.Load(), "the restored carer's account is read from its end")

	// The request retried across the restart appends nothing.
	head := e.head(t)
	again, err := svc.Grant(ctx, key, commands.Grant{ChildID: child, AccountID: m1.id, Relationship: "parent",
		Permissions: []string{"view"}, Reason: "agreed"})
	require.NoError(t, err)
	require.Equal(t, first.Position, again.Position)
	require.Equal(t, head, e.head(t))
	final, ok := svc.KeptChild(child)
	require.True(t, ok)
	sameAggregate(t, freshChild(t, e, child), final, childWhole)
	finalCarer, ok := svc.KeptAccount(carer.id)
	require.True(t, ok)
	sameAggregate(t, freshAccount(t, e, carer.id), finalCarer, accountWhole)
}

// countingAs wraps s as newKeptEnv does: counting the records of
// children's streams read, in the way wrap names.
func countingAs(s commands.Store, wrap func(commands.Store, *countingStore) commands.Store) (commands.Store, *countingStore) {
	counted := &countingStore{Store: s}
	if sql, ok := s.(interface {
		eventlog.StreamsReader
		eventlog.StreamTailsReader
		eventlog.BatchAppender
	}); ok {
		return wrap(wholeCounting{countingStore: counted, sql: sql}, counted), counted
	}
	return wrap(s, counted), counted
}

// TestKeptSnapshotFireDeadlinesOnRestoredChild: the deadlines' batch path
// decides on a restored child and reads only the events after the
// snapshot: another replica's end of the placement makes the expiry due.
func TestKeptSnapshotFireDeadlinesOnRestoredChild(t *testing.T) {
	for _, tt := range keptStateStores[:2] {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			e, _ := newKeptEnv(t, tt.url(t), tt.wrap, withKeptSnapshots(dir))
			ctx := context.Background()
			other, err := commands.New(e.store, e.refusals, commands.Config{Clock: e.clock.Now, Logger: slog.New(slog.DiscardHandler)})
			require.NoError(t, err)
			w := e.worker()
			child := e.child(t, w)
			carer := e.active(t, domain.KindFosterCarer)
			p := e.place(t, w, child, carer.id, t0.Add(-30*day))
			_, err = e.svc.WriteKeptSnapshot(ctx)
			require.NoError(t, err)
			_, err = other.EndPlacement(ctx, as(w), commands.EndPlacement{ChildID: child, PlacementID: p, EndedAt: t0, Reason: "moved on"})
			require.NoError(t, err)

			store, counted := countingAs(e.store, tt.wrap)
			restartedSvc, err := commands.New(store, e.refusals, commands.Config{Clock: e.clock.Now,
				Logger: slog.New(slog.DiscardHandler), KeptSnapshots: commands.KeptSnapshotConfig{Dir: dir}})
			require.NoError(t, err)
			_, ok := restartedSvc.StartFromKeptSnapshot(ctx, e.store)
			require.True(t, ok)

			e.clock.Set(t0.Add(8 * day))
			outs := restartedSvc.FireDeadlines(ctx, []commands.DeadlineCommand{{Meta: system("deadline/grace/" + p.String() + "/1"),
				Command: commands.ExpireCarerAccess{ChildID: child, PlacementID: p}}})
			require.NoError(t, outs[0].Err, "the other replica's end was read")
			require.Len(t, outs[0].Events, 1)
			require.Equal(t, int64(2), counted.childRecords.Load(), "the placement (kept as loaded before it) and the other's end")
			require.Equal(t, map[uuid.UUID]int{p: 1}, e.graceExpired(t))
			kept, ok := restartedSvc.KeptChild(child)
			require.True(t, ok)
			fresh := freshChild(t, e, child)
			require.Equal(t, fresh.Version()-1, kept.Version(), "kept as loaded before its expiry")
		})
	}
}

// TestKeptSnapshotIgnored: a snapshot that is corrupt, truncated, of
// another format version, ahead of the log or not matching it is ignored
// with a warning; the service starts with nothing kept and its first
// command reads the whole stream, deciding as ever. A missing one is an
// info line.
func TestKeptSnapshotIgnored(t *testing.T) {
	tests := []struct {
		name    string
		spoil   func(t *testing.T, file string)
		log     func(e *env) commands.KeptLog
		want    error
		wantLog string
	}{
		{"corrupt", func(t *testing.T, file string) {
			data, err := os.ReadFile(file)
			require.NoError(t, err)
			data[len(data)/2] ^= 0x40
			require.NoError(t, os.WriteFile(file, data, 0o600))
		}, nil, commands.ErrKeptSnapshotCorrupt, "level=WARN"},
		{"truncated", func(t *testing.T, file string) {
			data, err := os.ReadFile(file)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(file, data[:len(data)-40], 0o600))
		}, nil, commands.ErrKeptSnapshotCorrupt, "level=WARN"},
		{"other version", func(t *testing.T, file string) {
			data, err := os.ReadFile(file)
			require.NoError(t, err)
			binary.BigEndian.PutUint32(data[len(commands.KeptSnapshotMagic):], commands.KeptSnapshotVersion+1)
			require.NoError(t, os.WriteFile(file, data, 0o600))
		}, nil, commands.ErrKeptSnapshotVersion, "level=WARN"},
		{"ahead of the log", nil, func(*env) commands.KeptLog { return memstore.New() },
			commands.ErrKeptSnapshotAhead, "level=WARN"},
		{"another log", nil, func(e *env) commands.KeptLog {
			st := memstore.New()
			for range 200 {
				_, err := st.Append(context.Background(), "other-"+uuid.NewString(), eventlog.NoStream,
					[]eventlog.EventData{{ID: uuid.New(), Type: "x", Data: []byte(`{}`)}})
				if err != nil {
					panic(err)
				}
			}
			return st
		}, commands.ErrKeptSnapshotMismatch, "level=WARN"},
		{"missing", func(t *testing.T, file string) { require.NoError(t, os.Remove(file)) }, nil, os.ErrNotExist,
			"no kept-state snapshot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			e := newEnv(t, memory, withKeptSnapshots(dir))
			ctx := context.Background()
			w := e.worker()
			child := e.child(t, w)
			m := e.active(t, domain.KindParent)
			for range 5 {
				e.grant(t, w, child, m.id)
				_, err := e.svc.Revoke(ctx, as(w), commands.Revoke{ChildID: child, AccountID: m.id, Reason: "ended"})
				require.NoError(t, err)
			}
			_, err := e.svc.WriteKeptSnapshot(ctx)
			require.NoError(t, err)
			if tt.spoil != nil {
				tt.spoil(t, filepath.Join(dir, commands.KeptSnapshotFile))
			}
			var log commands.KeptLog = e.store
			if tt.log != nil {
				log = tt.log(e)
			}

			check, _, _ := restarted(t, e, dir)
			_, err = check.LoadKeptSnapshot(ctx, log)
			require.ErrorIs(t, err, tt.want)
			_, kept := check.KeptChild(child)
			require.False(t, kept, "nothing restored on an error")

			svc, counted, out := restarted(t, e, dir)
			_, ok := svc.StartFromKeptSnapshot(ctx, log)
			require.False(t, ok)
			require.Contains(t, out.String(), tt.wantLog)
			_, kept = svc.KeptChild(child)
			require.False(t, kept)
			e.grant(t, w, child, m.id)
			_, err = svc.Revoke(ctx, as(w), commands.Revoke{ChildID: child, AccountID: m.id, Reason: "ended"})
			require.NoError(t, err)
			length := int64(len(e.stream(t, domain.ChildStream(child))))
			require.Equal(t, length-1, counted.childRecords.Load(), "the whole stream read")
		})
	}
}

// filesHolding returns the files of dir whose bytes contain secret.
func filesHolding(t *testing.T, dir, secret string) []string {
	t.Helper()
	var out []string
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, ent := range entries {
		data, err := os.ReadFile(filepath.Join(dir, ent.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // removed since it was listed
		}
		require.NoError(t, err)
		if bytes.Contains(data, []byte(secret)) {
			out = append(out, ent.Name())
		}
	}
	return out
}

// TestKeptSnapshotErasure: the snapshot holds a kept child's reference
// and an account's email; the erase command removes the file before it
// returns (no file of the directory holds them after), the writer's next
// snapshot leaves the erased out, and an erasure by another replica while
// this one was down is read by ForgetErased, resuming after the restart
// where the snapshot may have missed it: the restored child is dropped and
// the file removed, while the other restored states stay kept.
func TestKeptSnapshotErasure(t *testing.T) {
	const ref, email = "REF-ERASE-7f3a9c", "erase-me-51d2@example.org"
	ctx := context.Background()
	setup := func(t *testing.T) (*env, string, uuid.UUID, uuid.UUID, uuid.UUID) {
		dir := t.TempDir()
		e := newEnv(t, memory, withKeptSnapshots(dir), withEraser(&recordingEraser{}))
		w := e.worker()
		r, err := e.svc.RegisterChild(ctx, as(w), commands.RegisterChild{Reference: ref})
		require.NoError(t, err)
		keep := e.child(t, w)
		inv, err := e.svc.Invite(ctx, as(e.worker()), commands.Invite{Email: email, Kind: string(domain.KindParent)})
		require.NoError(t, err)
		e.grant(t, w, r.ChildID, inv.AccountID)
		e.grant(t, w, keep, inv.AccountID)
		_, err = e.svc.WriteKeptSnapshot(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{commands.KeptSnapshotFile}, filesHolding(t, dir, ref), "the test can fail")
		require.Equal(t, []string{commands.KeptSnapshotFile}, filesHolding(t, dir, email))
		return e, dir, r.ChildID, keep, inv.AccountID
	}

	t.Run("erase commands", func(t *testing.T) {
		e, dir, child, keep, acct := setup(t)
		_, err := e.svc.EraseChild(ctx, as(e.actor(domain.RoleDPO)), commands.EraseChild{ChildID: child, Reason: "Art. 17"})
		require.NoError(t, err)
		require.Empty(t, filesHolding(t, dir, ref), "removed before the command returned")
		_, err = e.svc.WriteKeptSnapshot(ctx)
		require.NoError(t, err)
		require.Empty(t, filesHolding(t, dir, ref), "the next snapshot leaves the erased child out")
		require.Equal(t, []string{commands.KeptSnapshotFile}, filesHolding(t, dir, email))
		_, err = e.svc.EraseAccount(ctx, as(e.actor(domain.RoleDPO)), commands.EraseAccount{AccountID: acct, Reason: "Art. 17"})
		require.NoError(t, err)
		require.Empty(t, filesHolding(t, dir, email))
		_, err = e.svc.WriteKeptSnapshot(ctx)
		require.NoError(t, err)
		require.Empty(t, filesHolding(t, dir, email))
		svc, _, _ := restarted(t, e, dir)
		_, ok := svc.StartFromKeptSnapshot(ctx, e.store)
		require.True(t, ok)
		_, kept := svc.KeptChild(keep)
		require.True(t, kept)
		_, kept = svc.KeptChild(child)
		require.False(t, kept)
	})

	t.Run("erased by another replica while down", func(t *testing.T) {
		e, dir, child, keep, _ := setup(t)
		other, err := commands.New(e.store, e.refusals, commands.Config{Clock: e.clock.Now, Logger: slog.New(slog.DiscardHandler),
			Eraser: &recordingEraser{}})
		require.NoError(t, err)
		_, err = other.EraseChild(ctx, as(e.actor(domain.RoleDPO)), commands.EraseChild{ChildID: child, Reason: "Art. 17"})
		require.NoError(t, err)
		// Later records, so the erasure is not at the head.
		w := e.worker()
		e.grant(t, w, e.child(t, w), e.active(t, domain.KindParent).id)

		svc, _, out := restarted(t, e, dir)
		_, ok := svc.StartFromKeptSnapshot(ctx, e.store)
		require.True(t, ok)
		_, kept := svc.KeptChild(child)
		require.True(t, kept, "restored until ForgetErased reads the erasure")
		fctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- svc.ForgetErased(fctx, e.store) }()
		require.Eventually(t, func() bool {
			_, kept := svc.KeptChild(child)
			return !kept && len(filesHolding(t, dir, ref)) == 0
		}, 5*time.Second, 5*time.Millisecond, out.String())
		_, kept = svc.KeptChild(keep)
		require.True(t, kept, "the other restored states stay kept")
		cancel()
		require.NoError(t, <-done)
	})
}

// TestRunKeptSnapshots: the writer writes once the kept state changed and
// once more when it stops; the last snapshot restores the latest state.
func TestRunKeptSnapshots(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, memory, func(c *commands.Config, _ *commands.Store) {
		c.KeptSnapshots = commands.KeptSnapshotConfig{Dir: dir, Every: 1, Interval: 20 * time.Millisecond}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.svc.RunKeptSnapshots(ctx) }()
	w := e.worker()
	child := e.child(t, w)
	m := e.active(t, domain.KindParent)
	e.grant(t, w, child, m.id) // the child kept as registered
	file := filepath.Join(dir, commands.KeptSnapshotFile)
	require.Eventually(t, func() bool { _, err := os.Stat(file); return err == nil }, 5*time.Second, 5*time.Millisecond)
	_, err := e.svc.Revoke(ctx, as(w), commands.Revoke{ChildID: child, AccountID: m.id, Reason: "ended"})
	require.NoError(t, err)
	cancel()
	require.NoError(t, <-done)

	svc, _, out := restarted(t, e, dir)
	_, ok := svc.StartFromKeptSnapshot(context.Background(), e.store)
	require.True(t, ok, out.String())
	kept, ok := svc.KeptChild(child)
	require.True(t, ok)
	require.Equal(t, freshChild(t, e, child).Version()-1, kept.Version(), "the stop's snapshot: kept as loaded before the revoke")
}

// TestLoadKeptSnapshotBeforeForgetErased: a snapshot loads into a
// service that keeps state (a child kept at a later version stays as its
// command kept it), not into one that follows erasures, nor with
// snapshots off.
func TestLoadKeptSnapshotBeforeForgetErased(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, memory, withKeptSnapshots(dir))
	ctx := context.Background()
	w := e.worker()
	child := e.child(t, w)
	m := e.active(t, domain.KindParent)
	e.grant(t, w, child, m.id) // kept at version 1 (as loaded before the grant)
	info, err := e.svc.WriteKeptSnapshot(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, info.Children)
	_, err = e.svc.Revoke(ctx, as(w), commands.Revoke{ChildID: child, AccountID: m.id, Reason: "ended"})
	require.NoError(t, err)

	svc, _, _ := restarted(t, e, dir)
	_, err = svc.Grant(ctx, as(w), commands.Grant{ChildID: child, AccountID: m.id, Relationship: "parent",
		Permissions: []string{"view"}, Reason: "again"})
	require.NoError(t, err)
	_, err = svc.LoadKeptSnapshot(ctx, e.store)
	require.NoError(t, err)
	kept, ok := svc.KeptChild(child)
	require.True(t, ok)
	require.Equal(t, uint64(3), kept.Version(), "the command's later state stays")

	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.ForgetErased(fctx, e.store) }()
	require.Eventually(t, func() bool {
		_, err := svc.LoadKeptSnapshot(ctx, e.store)
		return errors.Is(err, commands.ErrKeptSnapshotNotFresh)
	}, 5*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	off, err := commands.New(e.store, e.refusals, commands.Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	_, err = off.LoadKeptSnapshot(ctx, e.store)
	require.ErrorIs(t, err, commands.ErrKeptSnapshotOff)
}

// TestWarmUp: one pass over the log keeps the first KeptChildren
// children as a whole read folds them (a command on one then reads
// nothing before deciding), leaves out an erased child and the children
// past the limit, and the next snapshot holds what it kept.
func TestWarmUp(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, memory, withEraser(&recordingEraser{}))
	ctx := context.Background()
	w := e.worker()
	m := e.active(t, domain.KindParent)
	var children []uuid.UUID
	for range 4 {
		c := e.child(t, w)
		for range 3 {
			e.grant(t, w, c, m.id)
			_, err := e.svc.Revoke(ctx, as(w), commands.Revoke{ChildID: c, AccountID: m.id, Reason: "ended"})
			require.NoError(t, err)
		}
		children = append(children, c)
	}
	_, err := e.svc.EraseChild(ctx, as(e.actor(domain.RoleDPO)), commands.EraseChild{ChildID: children[1], Reason: "Art. 17"})
	require.NoError(t, err)

	svc, counted, _ := restarted(t, e, dir, func(c *commands.Config) { c.KeptChildren = 3 })
	info, err := svc.WarmUp(ctx, e.store)
	require.NoError(t, err)
	require.Equal(t, 2, info.Children, "the first three children met, the erased one left out")
	require.Equal(t, len(e.since(t, eventlog.Start)), info.Records)
	for i, c := range children {
		kept, ok := svc.KeptChild(c)
		require.Equal(t, i == 0 || i == 2, ok, "child %d", i)
		if ok {
			sameAggregate(t, freshChild(t, e, c), kept, childWhole)
		}
	}
	counted.childRecords.Store(0)
	e.grant(t, w, children[0], m.id) // through e.svc: svc's state is now behind by one event
	_, err = svc.Revoke(ctx, as(w), commands.Revoke{ChildID: children[0], AccountID: m.id, Reason: "ended"})
	require.NoError(t, err)
	require.Equal(t, int64(1), counted.childRecords.Load(), "the other service's grant alone")

	wrote, err := svc.WriteKeptSnapshot(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, wrote.Children)
}

// TestKeptSnapshotErasureWhileWriting: with the writer writing all the
// time (a change after every command), an erase command's answer comes
// after the last file holding the erased reference is gone: no write that
// copied the state before the erasure is put in place after it.
func TestKeptSnapshotErasureWhileWriting(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, memory, withEraser(&recordingEraser{}), func(c *commands.Config, _ *commands.Store) {
		c.KeptSnapshots = commands.KeptSnapshotConfig{Dir: dir, Every: 1, Interval: time.Millisecond}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.svc.RunKeptSnapshots(ctx) }()
	w := e.worker()
	m := e.active(t, domain.KindParent)
	busy := e.child(t, w)
	stop := make(chan struct{})
	churned := make(chan struct{})
	go func() { // changes all the time, so the writer always has one to write
		defer close(churned)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = e.svc.Grant(context.Background(), as(w), commands.Grant{ChildID: busy, AccountID: m.id, Relationship: "parent",
				Permissions: []string{"view"}, Reason: "r"})
			_, _ = e.svc.Revoke(context.Background(), as(w), commands.Revoke{ChildID: busy, AccountID: m.id, Reason: "r"})
		}
	}()
	for i := range 20 {
		ref := "REF-ERASE-RACE-" + uuid.NewString()
		r, err := e.svc.RegisterChild(context.Background(), as(w), commands.RegisterChild{Reference: ref})
		require.NoError(t, err)
		e.grant(t, w, r.ChildID, m.id) // kept as registered
		require.Eventually(t, func() bool { return len(filesHolding(t, dir, ref)) > 0 }, 5*time.Second, time.Millisecond,
			"round %d: a snapshot holds it", i)
		_, err = e.svc.EraseChild(context.Background(), as(e.actor(domain.RoleDPO)), commands.EraseChild{ChildID: r.ChildID, Reason: "Art. 17"})
		require.NoError(t, err)
		for range 20 {
			require.Empty(t, filesHolding(t, dir, ref), "round %d", i)
			time.Sleep(time.Millisecond)
		}
	}
	close(stop)
	<-churned
	cancel()
	require.NoError(t, <-done)
}
