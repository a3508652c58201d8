package audit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/memstore"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
)

// forEachBackend runs f on a fresh database of every backend: an SQLite
// file, an in-memory SQLite database and a PostgreSQL schema (skipped when
// sqltest.PostgresEnv is unset, failed when it is set but unreachable).
func forEachBackend(t *testing.T, f func(t *testing.T, db *sqldb.DB)) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f(t, sqltest.Open(t, b.URL(t)))
		})
	}
}

// newStore returns the event log of a test: in memory (the trail is
// SQL; the log only has to be a faithful one, as adapters/eventstoretest
// proves it is). db is the database of the trail, which the log does not
// share.
func newStore(t *testing.T, db *sqldb.DB) eventlog.Store {
	t.Helper()
	_ = db
	return memstore.New()
}

// createGeneration creates the projection's tables of generation gen
// through its Table.Create, as the runner does, and returns them.
func createGeneration(t *testing.T, db bun.IDB, gen int) projections.Tables {
	t.Helper()
	tables := projections.Tables{}
	for _, tb := range New().Tables() {
		physical := fmt.Sprintf("%s_g%d", tb.Name, gen)
		for _, stmt := range tb.Create(db.Dialect().Name(), physical) {
			_, err := db.ExecContext(context.Background(), stmt)
			require.NoError(t, err, stmt)
		}
		tables[tb.Name] = physical
	}
	return tables
}

// pointView points the view audit_entries at tables' physical table.
func pointView(t *testing.T, db bun.IDB, tables projections.Tables) {
	t.Helper()
	ctx := context.Background()
	_, err := db.ExecContext(ctx, "DROP VIEW IF EXISTS "+Table)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, "CREATE VIEW "+Table+" AS SELECT * FROM "+tables.Name(Table))
	require.NoError(t, err)
}

// project feeds recs to a freshly loaded projection in batches of size
// (all at once when size <= 0), each batch in its own transaction, the way
// the runner does. With reload, every batch gets a new Projection loaded
// from the table, as after a restart.
func project(t *testing.T, db *sqldb.DB, tables projections.Tables, recs []eventlog.Record, size int, reload bool) {
	t.Helper()
	ctx := context.Background()
	if size <= 0 {
		size = len(recs) + 1
	}
	p := New()
	at := eventlog.Start
	_, err := p.Load(ctx, db, tables, at)
	require.NoError(t, err)
	for start := 0; start < len(recs); start += size {
		batch := recs[start:min(start+size, len(recs))]
		if reload {
			p = New()
			warmup, err := p.Load(ctx, db, tables, at)
			require.NoError(t, err)
			require.False(t, warmup)
		}
		require.NoError(t, db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			return p.Apply(ctx, tx, tables, batch)
		}))
		at = batch[len(batch)-1].Position
	}
}

// readRows returns every row of a physical table in seq order.
func readRows(t *testing.T, db bun.IDB, physical string) []entryRow {
	t.Helper()
	var rows []entryRow
	require.NoError(t, db.NewSelect().Model(&rows).ModelTableExpr("? AS e", bun.Ident(physical)).OrderExpr("seq").Scan(context.Background()))
	return rows
}

// ---- histories built through the domain ----

var (
	t0      = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	day     = 24 * time.Hour
	worker  = domain.Actor{ID: "worker-ann", Role: domain.RoleWorker}
	portals = domain.Actor{ID: "portals-pat", Role: domain.RolePortalsTeam}
	service = domain.Actor{ID: "portal-backend", Role: domain.RoleService}
	// awkward is a reason with quotes, a backslash, non-ASCII text and a
	// newline: it must survive storage byte for byte on every engine.
	awkward = "Carer's request \u2014 \"urgent\" \\ r\u00e9sum\u00e9 \u2713\nsecond line"
)

// aggregate is what the world needs of Child, Account and IdentityLink.
type aggregate interface {
	Apply(domain.Event) error
	Version() uint64
}

// world runs commands through the domain aggregates and appends the
// events they decide to a real event store, as the command layer does.
// Ids and times are deterministic.
type world struct {
	t        *testing.T
	store    eventlog.Store
	now      time.Time
	ids      int
	children map[uuid.UUID]*domain.Child
	accounts map[uuid.UUID]*domain.Account
	links    map[string]*domain.IdentityLink
}

func newWorld(t *testing.T, store eventlog.Store) *world {
	return &world{t: t, store: store, now: t0, children: map[uuid.UUID]*domain.Child{},
		accounts: map[uuid.UUID]*domain.Account{}, links: map[string]*domain.IdentityLink{}}
}

func (w *world) id() uuid.UUID {
	w.ids++
	return uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "audit-test-%d", w.ids))
}

// do appends the events a decision returned to stream, with by and reason
// as their cause, applies them to agg and moves the clock a minute on.
func (w *world) do(stream string, agg aggregate, by domain.Actor, reason string, events []domain.Event, err error) {
	w.t.Helper()
	require.NoError(w.t, err)
	require.NotEmpty(w.t, events)
	cause := domain.Cause{Actor: by, Reason: reason, RecordedAt: w.now, CorrelationID: w.id()}
	data := make([]eventlog.EventData, len(events))
	for i, e := range events {
		data[i], err = cause.EventData(w.id(), e)
		require.NoError(w.t, err)
	}
	_, err = w.store.Append(context.Background(), stream, eventlog.Exactly(agg.Version()), data)
	require.NoError(w.t, err)
	for _, e := range events {
		require.NoError(w.t, agg.Apply(e))
	}
	w.now = w.now.Add(time.Minute)
}

func (w *world) account(email string) *domain.Account {
	id := domain.AccountIDForEmail(email)
	if w.accounts[id] == nil {
		w.accounts[id] = domain.NewAccount(id)
	}
	return w.accounts[id]
}

func (w *world) link(subject string) *domain.IdentityLink {
	if w.links[subject] == nil {
		w.links[subject] = domain.NewIdentityLink(subject)
	}
	return w.links[subject]
}

// activate invites email as kind and activates it with subject.
func (w *world) activate(email, kind, subject string) *domain.Account {
	a := w.account(email)
	evs, err := a.Invite(worker, email, kind, w.now, domain.DefaultPolicy)
	w.do(domain.AccountStream(a.ID()), a, worker, "", evs, err)
	l := w.link(subject)
	evs, err = l.Link(a.ID(), w.now)
	w.do(domain.IdentityStream(subject), l, service, "", evs, err)
	evs, err = a.Activate(service, subject, email, w.now)
	w.do(domain.AccountStream(a.ID()), a, service, "", evs, err)
	return a
}

// phones are the full numbers the histories enrol; none may reach the
// trail (R11).
func phones(round int) (first, second string) {
	return fmt.Sprintf("+44 7700 9%02d 7%d19", 10+round, round), fmt.Sprintf("07911 1%02d 8%d62", 20+round, round)
}

// history runs rounds of a full story: a child, its foster carer and a
// parent; phone enrolment, a placement with its end, grace expiry, a grant
// and its revocation, a phone reset and a closure. It returns the records
// of the log, read back with ReadAll.
func history(t *testing.T, store eventlog.Store, rounds int) []eventlog.Record {
	t.Helper()
	w := newWorld(t, store)
	for r := range rounds {
		first, second := phones(r)
		c := domain.NewChild(w.id())
		w.children[c.ID()] = c
		stream := domain.ChildStream(c.ID())
		evs, err := c.Register(worker, fmt.Sprintf("C-%04d", r), time.Time{}, w.now)
		w.do(stream, c, worker, "", evs, err)

		carer := w.activate(fmt.Sprintf("carer%d@example.org", r), "foster_carer", fmt.Sprintf("idp|carer%d", r))
		evs, err = carer.EnrolPhone(service, first, w.now)
		w.do(domain.AccountStream(carer.ID()), carer, service, "", evs, err)

		placement := w.id()
		evs, err = c.StartPlacement(worker, placement, carer, w.now.Add(-day), w.now)
		w.do(stream, c, worker, "", evs, err)

		parent := w.activate(fmt.Sprintf("parent%d@example.org", r), "parent", fmt.Sprintf("idp|parent%d", r))
		evs, err = c.Grant(worker, parent, "parent", []string{"view"}, awkward, w.now)
		w.do(stream, c, worker, awkward, evs, err)
		evs, err = c.Revoke(worker, parent.ID(), "no longer needed", w.now)
		w.do(stream, c, worker, "no longer needed", evs, err)

		w.now = w.now.Add(2 * day)
		evs, err = c.EndPlacement(worker, placement, w.now, w.now, domain.DefaultPolicy)
		w.do(stream, c, worker, "", evs, err)

		evs, err = carer.RequestPhoneReset(worker, "lost phone", w.now)
		w.do(domain.AccountStream(carer.ID()), carer, worker, "lost phone", evs, err)
		evs, err = carer.ClearPhone(portals, w.now)
		w.do(domain.AccountStream(carer.ID()), carer, portals, "", evs, err)
		evs, err = carer.EnrolPhone(service, second, w.now)
		w.do(domain.AccountStream(carer.ID()), carer, service, "", evs, err)

		w.now = w.now.Add(8 * day)
		evs, err = c.ExpireCarerAccess(placement, w.now)
		w.do(stream, c, domain.System, "", evs, err)
		evs, err = parent.Close(portals, "safeguarding decision", w.now)
		w.do(domain.AccountStream(parent.ID()), parent, portals, "safeguarding decision", evs, err)
	}
	recs, err := store.ReadAll(context.Background(), eventlog.Start, 0)
	require.NoError(t, err)
	return recs
}
