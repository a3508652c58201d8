package processmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/memstore"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

var (
	t0  = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	day = 24 * time.Hour
	// grace and ttl are the policy of the tests' command service.
	grace = 7 * day
	ttl   = 14 * day
	// retention is the tests' retention period of closed accounts.
	retention = 90 * day
	// never is a poll interval no test reaches, so that every wake of the
	// scheduler in a test is a deadline, a retry or a poke.
	never = 10 * 365 * day
)

const waitFor = 20 * time.Second

// ---- the fake clock ----

// fakeClock is a settable clock whose At channels fire when Set moves
// the time to or past their deadline. Safe for concurrent use.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []clockWaiter
}

type clockWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(now time.Time) *fakeClock { return &fakeClock{now: now} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) At(t time.Time) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if !t.After(c.now) {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, clockWaiter{at: t, ch: ch})
	return ch
}

// Set moves the clock to t and fires every waiter due by then.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(t) {
			kept = append(kept, w)
			continue
		}
		w.ch <- t
	}
	c.waiters = kept
}

func (c *fakeClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// ---- the spy on the command service ----

// call is one expiry command the process manager sent.
type call struct {
	At      time.Time // the process manager's clock at the call
	Meta    commands.Meta
	Command any // commands.ExpireCarerAccess or commands.ExpireInvitation
	Err     error
}

// spy passes the expiry commands to the real service and records them.
// With fail > 0 it fails that many calls with errStoreDown instead.
type spy struct {
	next  Commands
	clock *fakeClock
	fail  atomic.Int64

	mu      sync.Mutex
	calls   []call
	batches []int
}

var errStoreDown = errors.New("injected: the store is down")

func (s *spy) record(c call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c)
}

func (s *spy) Calls() []call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

func (s *spy) ExpireCarerAccess(ctx context.Context, meta commands.Meta, cmd commands.ExpireCarerAccess) (commands.Result, error) {
	return spied(ctx, s, meta, cmd, s.next.ExpireCarerAccess)
}

func (s *spy) ExpireInvitation(ctx context.Context, meta commands.Meta, cmd commands.ExpireInvitation) (commands.Result, error) {
	return spied(ctx, s, meta, cmd, s.next.ExpireInvitation)
}

func (s *spy) EraseAccountAtRetention(ctx context.Context, meta commands.Meta, cmd commands.EraseAccountAtRetention) (commands.Result, error) {
	return spied(ctx, s, meta, cmd, s.next.EraseAccountAtRetention)
}

func (s *spy) EraseChildAtRetention(ctx context.Context, meta commands.Meta, cmd commands.EraseChildAtRetention) (commands.Result, error) {
	return spied(ctx, s, meta, cmd, s.next.EraseChildAtRetention)
}

func (s *spy) MarkPlacementStart(ctx context.Context, meta commands.Meta, cmd commands.MarkPlacementStart) (commands.Result, error) {
	return spied(ctx, s, meta, cmd, s.next.MarkPlacementStart)
}

func (s *spy) MarkPlacementEnd(ctx context.Context, meta commands.Meta, cmd commands.MarkPlacementEnd) (commands.Result, error) {
	return spied(ctx, s, meta, cmd, s.next.MarkPlacementEnd)
}

func (s *spy) ExpireGrant(ctx context.Context, meta commands.Meta, cmd commands.ExpireGrant) (commands.Result, error) {
	return spied(ctx, s, meta, cmd, s.next.ExpireGrant)
}

// FireDeadlines passes the batch to the real service, except the commands
// s is to fail, and records each command as a call and the batch's size.
func (s *spy) FireDeadlines(ctx context.Context, batch []commands.DeadlineCommand) []commands.DeadlineOutcome {
	at := s.clock.Now()
	out := make([]commands.DeadlineOutcome, len(batch))
	var pass []commands.DeadlineCommand
	var where []int
	for i, c := range batch {
		if s.fail.Add(-1) >= 0 {
			out[i].Err = errStoreDown
			continue
		}
		pass = append(pass, c)
		where = append(where, i)
	}
	if len(pass) > 0 {
		for k, o := range s.next.FireDeadlines(ctx, pass) {
			out[where[k]] = o
		}
	}
	s.mu.Lock()
	s.batches = append(s.batches, len(batch))
	s.mu.Unlock()
	for i, c := range batch {
		s.record(call{At: at, Meta: c.Meta, Command: c.Command, Err: out[i].Err})
	}
	return out
}

// count returns the number of calls recorded.
func (s *spy) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

// Batches returns the sizes of the batches FireDeadlines was called with.
func (s *spy) Batches() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.batches)
}

// spied carries out cmd with next, unless s is to fail, and records the
// call.
func spied[C any](ctx context.Context, s *spy, meta commands.Meta, cmd C, next func(context.Context, commands.Meta, C) (commands.Result, error)) (commands.Result, error) {
	at := s.clock.Now()
	var res commands.Result
	var err error
	if s.fail.Add(-1) >= 0 {
		err = errStoreDown
	} else {
		res, err = next(ctx, meta, cmd)
	}
	s.record(call{At: at, Meta: meta, Command: cmd, Err: err})
	return res, err
}

// keyEraser counts the keys the command service destroys (the key store
// itself is adapters/keystore's, tested there).
type keyEraser struct {
	mu       sync.Mutex
	accounts map[uuid.UUID]int
	children map[uuid.UUID]int
}

func (k *keyEraser) EraseAccount(_ context.Context, id uuid.UUID) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.accounts == nil {
		k.accounts = map[uuid.UUID]int{}
	}
	k.accounts[id]++
	return nil
}

func (k *keyEraser) EraseChild(_ context.Context, id uuid.UUID) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.children == nil {
		k.children = map[uuid.UUID]int{}
	}
	k.children[id]++
	return nil
}

// noRefusals discards the security log.
type noRefusals struct{}

func (noRefusals) RecordRefusal(context.Context, commands.Refusal) error { return nil }

// ---- the idle log ----

// idleLog records every time the scheduler goes to sleep and when it will
// wake.
type idleLog struct {
	mu      sync.Mutex
	wakes   []time.Time
	changed chan struct{}
}

func newIdleLog() *idleLog { return &idleLog{changed: make(chan struct{}, 1)} }

func (l *idleLog) add(wake time.Time) {
	l.mu.Lock()
	l.wakes = append(l.wakes, wake)
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

func (l *idleLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.wakes)
}

// waitWake waits until the scheduler, after its from-th sleep, goes to
// sleep to wake at want, and returns the number of sleeps so far.
func (l *idleLog) waitWake(t testing.TB, from int, want time.Time) int {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		l.mu.Lock()
		for i := from; i < len(l.wakes); i++ {
			if l.wakes[i].Equal(want) {
				l.mu.Unlock()
				return i + 1
			}
		}
		got := slices.Clone(l.wakes[min(from, len(l.wakes)):])
		l.mu.Unlock()
		select {
		case <-l.changed:
		case <-timeout:
			t.Fatalf("the scheduler did not go to sleep until %s; it slept until %v", want, got)
		}
	}
}

// ---- the environment ----

// env is a command service on an event store, a fake clock shared by the
// service (optionally skewed) and the process managers, and a gochannel bus
// that blocks each publish until every subscriber acked, so that a test
// knows a published event was handled. The deadlines table is in the SQL
// database db; the event log is in memory (adapters/memstore, held to the
// port's contract by adapters/eventstoretest) unless the test needs the
// SQL store itself (newSQLLogEnv).
type env struct {
	db    *sqldb.DB
	store eventlog.Store
	svc   *commands.Service
	clock *fakeClock
	skew  atomic.Int64 // nanoseconds added to the service's clock
	n     atomic.Int64
	read  eventlog.Position // what relay has published so far
	bus   *gochannel.GoChannel
	// erased counts the keys the command services destroyed.
	erased keyEraser
}

// newEnv returns an env whose deadlines are in the database at url and
// whose event log is in memory.
func newEnv(t testing.TB, url string) *env {
	t.Helper()
	db := sqltest.Open(t, url)
	require.NoError(t, Migrate(context.Background(), db))
	return newEnvOn(t, db, memstore.New())
}

// newSQLLogEnv returns an env whose event log is the SQL store in the same
// database as the deadlines, for tests of the whole loop on a real store
// and of replicas sharing one database.
func newSQLLogEnv(t testing.TB, url string) *env {
	t.Helper()
	ctx := context.Background()
	db := sqltest.Open(t, url)
	require.NoError(t, sqlstore.Migrate(ctx, db))
	require.NoError(t, Migrate(ctx, db))
	st, err := sqlstore.New(ctx, db)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	return newEnvOn(t, db, st)
}

func newEnvOn(t testing.TB, db *sqldb.DB, st eventlog.Store) *env {
	t.Helper()
	e := &env{db: db, store: st, clock: newFakeClock(t0)}
	var err error
	e.svc, err = commands.New(st, noRefusals{}, commands.Config{
		Policy: domain.Policy{GracePeriod: grace, InvitationTTL: ttl, ClosedAccountRetention: retention},
		Clock:  func() time.Time { return e.clock.Now().Add(time.Duration(e.skew.Load())) },
		Logger: slog.New(slog.DiscardHandler),
		Eraser: &e.erased,
	})
	require.NoError(t, err)
	e.bus = newBus(t)
	return e
}

func newBus(t testing.TB) *gochannel.GoChannel {
	b := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, watermill.NopLogger{})
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

// testLogger discards the logs, unless PM_TEST_LOG is set (debug to stderr).
func testLogger() *slog.Logger {
	if os.Getenv("PM_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// pmOpts adjusts a process manager's configuration.
type pmOpts func(*Config)

// pm is a running process manager.
type pm struct {
	*ProcessManager
	spy  *spy
	idle *idleLog
	stop func()
}

// start runs a process manager on e's database and the bus b (e.bus when
// nil) until the test ends or stop is called; it returns once it is ready.
func (e *env) start(t testing.TB, b *gochannel.GoChannel, opts ...pmOpts) *pm {
	t.Helper()
	if b == nil {
		b = e.bus
	}
	cfg := Config{
		DB: e.db, Publisher: b, Subscriber: b, Commands: e.svc, Clock: e.clock,
		Logger:       testLogger(),
		PollInterval: never,

		ClosedAccountRetention: retention,
		Policy:                 e.svc,
	}
	for _, o := range opts {
		o(&cfg)
	}
	s := &spy{next: cfg.Commands, clock: e.clock}
	cfg.Commands = s
	p, err := New(cfg)
	require.NoError(t, err)
	idle := newIdleLog()
	p.idle = idle.add

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(waitFor):
				t.Fatal("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-p.Ready():
	case err := <-done:
		t.Fatalf("Run returned before it was ready: %v", err)
	case <-time.After(waitFor):
		t.Fatal("the process manager did not get ready")
	}
	return &pm{ProcessManager: p, spy: s, idle: idle, stop: stop}
}

// uniq returns a name unique in the environment.
func (e *env) uniq(prefix string) string { return fmt.Sprintf("%s-%d", prefix, e.n.Add(1)) }

func (e *env) worker() domain.Actor {
	return domain.Actor{ID: e.uniq("worker"), Role: domain.RoleWorker}
}

func as(a domain.Actor) commands.Meta { return commands.Meta{Actor: a} }

// invite invites a new account and returns its id.
func (e *env) invite(t testing.TB) (uuid.UUID, string) {
	t.Helper()
	email := e.uniq("person") + "@example.org"
	r, err := e.svc.Invite(context.Background(), as(e.worker()), commands.Invite{Email: email, Kind: string(domain.KindFosterCarer)})
	require.NoError(t, err)
	return r.AccountID, email
}

func (e *env) activate(t testing.TB, account uuid.UUID, email string) {
	t.Helper()
	_, err := e.svc.Activate(context.Background(), as(domain.Actor{ID: "portal", Role: domain.RoleService}),
		commands.Activate{AccountID: account, IdentitySubject: "idp|" + email, Email: email})
	require.NoError(t, err)
}

// carer returns an active foster carer account.
func (e *env) carer(t testing.TB) uuid.UUID {
	t.Helper()
	id, email := e.invite(t)
	e.activate(t, id, email)
	return id
}

// placement is a child placed with a carer by a worker.
type placement struct {
	worker                domain.Actor
	child, carer, placeID uuid.UUID
}

// place registers a child and places it with a new carer from startedAt.
func (e *env) place(t testing.TB, startedAt time.Time) placement {
	t.Helper()
	ctx := context.Background()
	p := placement{worker: e.worker(), carer: e.carer(t)}
	r, err := e.svc.RegisterChild(ctx, as(p.worker), commands.RegisterChild{Reference: e.uniq("C")})
	require.NoError(t, err)
	p.child = r.ChildID
	s, err := e.svc.StartPlacement(ctx, as(p.worker), commands.StartPlacement{ChildID: p.child, CarerAccountID: p.carer, StartedAt: startedAt})
	require.NoError(t, err)
	p.placeID = s.PlacementID
	return p
}

// end ends the placement at endedAt and returns its grace deadline.
func (e *env) end(t testing.TB, p placement, endedAt time.Time) time.Time {
	t.Helper()
	r, err := e.svc.EndPlacement(context.Background(), as(p.worker),
		commands.EndPlacement{ChildID: p.child, PlacementID: p.placeID, EndedAt: endedAt, Reason: "moved on"})
	require.NoError(t, err)
	return r.GraceUntil
}

// fresh returns the records appended since the last call (or relay).
func (e *env) fresh(t testing.TB) []eventlog.Record {
	t.Helper()
	recs, err := e.store.ReadAll(context.Background(), e.read, 0)
	require.NoError(t, err)
	if len(recs) > 0 {
		e.read = recs[len(recs)-1].Position
	}
	return recs
}

// publish publishes recs on TopicEvents of b (e.bus when nil), in the order
// given, each handled when publish returns.
func (e *env) publish(t testing.TB, b message.Publisher, recs ...eventlog.Record) {
	t.Helper()
	if b == nil {
		b = e.bus
	}
	for _, r := range recs {
		msg, err := bus.EncodeEvent(r)
		require.NoError(t, err)
		require.NoError(t, b.Publish(bus.TopicEvents, msg))
	}
}

// relay publishes every record appended since the last relay, in order.
func (e *env) relay(t testing.TB) []eventlog.Record {
	t.Helper()
	recs := e.fresh(t)
	e.publish(t, nil, recs...)
	return recs
}

// ofType returns the records of type typ among recs.
func ofType(recs []eventlog.Record, typ string) []eventlog.Record {
	var out []eventlog.Record
	for _, r := range recs {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

// all returns every record of the log.
func (e *env) all(t testing.TB) []eventlog.Record {
	t.Helper()
	recs, err := e.store.ReadAll(context.Background(), eventlog.Start, 0)
	require.NoError(t, err)
	return recs
}

// decode decodes a record's event.
func decode(t testing.TB, r eventlog.Record) domain.Envelope {
	t.Helper()
	env, err := domain.DecodeRecord(r)
	require.NoError(t, err)
	return env
}

// deadline returns the deadline id, which must exist.
func (p *pm) deadline(t testing.TB, id string) Deadline {
	t.Helper()
	d, ok, err := p.Deadline(context.Background(), id)
	require.NoError(t, err)
	require.True(t, ok, "deadline %s", id)
	return d
}

// waitState waits until the deadline id is in state s.
func (p *pm) waitState(t testing.TB, id string, s State) Deadline {
	t.Helper()
	var d Deadline
	require.Eventually(t, func() bool {
		got, ok, err := p.Deadline(context.Background(), id)
		d = got
		return err == nil && ok && got.State == s
	}, waitFor, 5*time.Millisecond, "deadline %s never became %s", id, s)
	return d
}

// waitSettled waits until the deadline id is fired, or resolved: a
// firing whose command appended the expiry (or time mark) resolves the row
// by that event at once.
func (p *pm) waitSettled(t testing.TB, id string) Deadline {
	t.Helper()
	var d Deadline
	require.Eventually(t, func() bool {
		got, ok, err := p.Deadline(context.Background(), id)
		d = got
		return err == nil && ok && (got.State == StateFired || got.State == StateResolved)
	}, waitFor, 5*time.Millisecond, "deadline %s never became fired or resolved", id)
	return d
}

// forEachBackend runs f on every SQL backend (PostgreSQL skips when its
// environment variable is unset).
func forEachBackend(t *testing.T, f func(t *testing.T, url string)) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) { f(t, b.URL(t)) })
	}
}
