package commands_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/memstore"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

var (
	t0  = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC) // a Monday
	day = 24 * time.Hour
)

// memory names the in-memory event store for newEnv: the command service's
// tests need a faithful event log, not a database (the SQL and EventStoreDB
// stores pass the same conformance suite, and the end-to-end tests in
// cmd/accessd run the commands on each of them).
const memory = "memory"

// forEachBackend runs f on the in-memory event store, in a subtest named
// after it.
func forEachBackend(t *testing.T, f func(t *testing.T, url string)) {
	t.Run(memory, func(t *testing.T) { f(t, memory) })
}

// ---- fakes ----

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// recordingRefusals records every refusal; with fail set it also returns
// an error.
type recordingRefusals struct {
	mu   sync.Mutex
	list []commands.Refusal
	fail atomic.Bool
}

func (r *recordingRefusals) RecordRefusal(_ context.Context, ref commands.Refusal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, ref)
	if r.fail.Load() {
		return errors.New("security log unavailable")
	}
	return nil
}

func (r *recordingRefusals) All() []commands.Refusal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]commands.Refusal(nil), r.list...)
}

// conflictStore makes the next `conflicts` Appends fail with a
// *eventlog.ConflictError, writing nothing, and counts Append calls.
type conflictStore struct {
	commands.Store
	conflicts atomic.Int64
	appends   atomic.Int64
}

func (s *conflictStore) Append(ctx context.Context, stream string, expected eventlog.ExpectedVersion, events []eventlog.EventData) (eventlog.AppendResult, error) {
	s.appends.Add(1)
	if s.conflicts.Add(-1) >= 0 {
		return eventlog.AppendResult{}, fmt.Errorf("injected: %w", &eventlog.ConflictError{Stream: stream, Expected: expected})
	}
	return s.Store.Append(ctx, stream, expected, events)
}

// ---- the test environment ----

// env is a Service on a real, migrated SQL event store.
type env struct {
	store    eventlog.Store
	svc      *commands.Service
	refusals *recordingRefusals
	clock    *fakeClock
	n        atomic.Int64
}

type option func(*commands.Config, *commands.Store)

func withMaxRetries(n int) option {
	return func(c *commands.Config, _ *commands.Store) { c.MaxRetries = n }
}

func withStore(wrap func(commands.Store) commands.Store) option {
	return func(_ *commands.Config, s *commands.Store) { *s = wrap(*s) }
}

func newEnv(t *testing.T, url string, opts ...option) *env {
	t.Helper()
	ctx := context.Background()
	var st eventlog.Store
	if url == memory {
		st = memstore.New()
	} else {
		db := sqltest.Open(t, url)
		require.NoError(t, sqlstore.Migrate(ctx, db))
		sq, err := sqlstore.New(ctx, db)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, sq.Close()) })
		st = sq
	}

	e := &env{store: st, refusals: &recordingRefusals{}, clock: &fakeClock{now: t0}}
	cfg := commands.Config{Clock: e.clock.Now, Logger: slog.New(slog.DiscardHandler)}
	var store commands.Store = st
	for _, o := range opts {
		o(&cfg, &store)
	}
	var err error
	e.svc, err = commands.New(store, e.refusals, cfg)
	require.NoError(t, err)
	return e
}

// uniq returns a name unique in the environment.
func (e *env) uniq(prefix string) string { return fmt.Sprintf("%s-%d", prefix, e.n.Add(1)) }

func (e *env) head(t *testing.T) eventlog.Position {
	t.Helper()
	p, err := e.store.Head(context.Background())
	require.NoError(t, err)
	return p
}

// since returns the events appended after position p.
func (e *env) since(t *testing.T, p eventlog.Position) []domain.Envelope {
	t.Helper()
	recs, err := e.store.ReadAll(context.Background(), p, 0)
	require.NoError(t, err)
	out := make([]domain.Envelope, len(recs))
	for i, r := range recs {
		out[i], err = domain.DecodeRecord(r)
		require.NoError(t, err)
	}
	return out
}

// stream returns the events of stream.
func (e *env) stream(t *testing.T, stream string) []domain.Envelope {
	t.Helper()
	recs, err := e.store.ReadStream(context.Background(), stream, 1, 0)
	require.NoError(t, err)
	out := make([]domain.Envelope, len(recs))
	for i, r := range recs {
		out[i], err = domain.DecodeRecord(r)
		require.NoError(t, err)
	}
	return out
}

func types(envs []domain.Envelope) []string {
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = e.Type
	}
	return out
}

// ---- actors ----

func (e *env) worker() domain.Actor {
	return domain.Actor{ID: e.uniq("worker"), Role: domain.RoleWorker}
}

func (e *env) actor(role domain.Role) domain.Actor {
	return domain.Actor{ID: e.uniq(string(role)), Role: role}
}

func as(a domain.Actor) commands.Meta { return commands.Meta{Actor: a} }

// ---- fixtures, made through the service ----

func (e *env) child(t *testing.T, worker domain.Actor) uuid.UUID {
	t.Helper()
	r, err := e.svc.RegisterChild(context.Background(), as(worker), commands.RegisterChild{Reference: e.uniq("C")})
	require.NoError(t, err)
	return r.ChildID
}

type account struct {
	id      uuid.UUID
	email   string
	subject string
}

func (e *env) invited(t *testing.T, kind domain.AccountKind) account {
	t.Helper()
	a := account{email: e.uniq(string(kind)) + "@example.org"}
	a.subject = "idp|" + a.email
	r, err := e.svc.Invite(context.Background(), as(e.worker()), commands.Invite{Email: a.email, Kind: string(kind)})
	require.NoError(t, err)
	a.id = r.AccountID
	return a
}

func (e *env) active(t *testing.T, kind domain.AccountKind) account {
	t.Helper()
	a := e.invited(t, kind)
	_, err := e.svc.Activate(context.Background(), as(e.actor(domain.RoleService)),
		commands.Activate{AccountID: a.id, IdentitySubject: a.subject, Email: a.email})
	require.NoError(t, err)
	return a
}

// withPhone is an active account of kind with a phone number enrolled.
func (e *env) withPhone(t *testing.T, kind domain.AccountKind) account {
	t.Helper()
	a := e.active(t, kind)
	_, err := e.svc.EnrolPhone(context.Background(), as(e.actor(domain.RoleService)),
		commands.EnrolPhone{AccountID: a.id, Phone: "+44 7700 900123"})
	require.NoError(t, err)
	return a
}

func (e *env) place(t *testing.T, worker domain.Actor, child, carer uuid.UUID, at time.Time) uuid.UUID {
	t.Helper()
	r, err := e.svc.StartPlacement(context.Background(), as(worker),
		commands.StartPlacement{ChildID: child, CarerAccountID: carer, StartedAt: at})
	require.NoError(t, err)
	return r.PlacementID
}

func (e *env) end(t *testing.T, worker domain.Actor, child, placement uuid.UUID, at time.Time) commands.PlacementEnded {
	t.Helper()
	r, err := e.svc.EndPlacement(context.Background(), as(worker),
		commands.EndPlacement{ChildID: child, PlacementID: placement, EndedAt: at, Reason: "moved on"})
	require.NoError(t, err)
	return r
}

func (e *env) grant(t *testing.T, worker domain.Actor, child, acct uuid.UUID) {
	t.Helper()
	_, err := e.svc.Grant(context.Background(), as(worker), commands.Grant{ChildID: child, AccountID: acct,
		Relationship: "parent", Permissions: []string{"view"}, Reason: "agreed at review"})
	require.NoError(t, err)
}

// refused checks that run was refused with the domain's sentinel: the error
// wraps it, nothing was appended, and exactly one refusal was recorded with
// the command, target, code, actor and request ids.
func (e *env) refused(t *testing.T, meta commands.Meta, command, target string, sentinel error,
	run func(commands.Meta) error) {
	t.Helper()
	before, refusals := e.head(t), len(e.refusals.All())
	err := run(meta)
	require.Error(t, err)
	require.ErrorIs(t, err, sentinel)
	code := domain.KindOf(sentinel).String()
	require.Equal(t, code, commands.Code(err))
	require.Equal(t, before, e.head(t), "a refused command appends nothing")
	all := e.refusals.All()
	require.Len(t, all, refusals+1, "one refusal recorded")
	r := all[len(all)-1]
	require.Equal(t, command, r.Command)
	if target == "" {
		require.Regexp(t, `^child/[0-9a-f-]{36}$`, r.Target, "a new child's target")
	} else {
		require.Equal(t, target, r.Target)
	}
	require.Equal(t, code, r.Code)
	require.Equal(t, meta.Actor, r.Actor)
	require.Equal(t, meta.RequestID, r.RequestID)
	if meta.CorrelationID != uuid.Nil {
		require.Equal(t, meta.CorrelationID, r.CorrelationID)
	} else {
		require.NotEqual(t, uuid.Nil, r.CorrelationID)
	}
	require.Equal(t, err.Error(), r.Detail)
	require.Equal(t, e.clock.Now().UTC(), r.At)
}

func childT(id uuid.UUID) string { return "child/" + id.String() }

func placementT(child, p uuid.UUID) string { return childT(child) + "/placement/" + p.String() }

func grantT(child, a uuid.UUID) string { return childT(child) + "/grant/" + a.String() }

func accountT(id uuid.UUID) string { return "account/" + id.String() }
