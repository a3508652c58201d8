package accounts_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
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
	"github.com/accessledger/accessledger/projections/accounts"
)

var (
	t0      = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	day     = 24 * time.Hour
	policy  = domain.DefaultPolicy
	worker  = domain.Actor{ID: "worker-ann", Role: domain.RoleWorker}
	portals = domain.Actor{ID: "portals-pat", Role: domain.RolePortalsTeam}
	service = domain.Actor{ID: "portal-backend", Role: domain.RoleService}
)

// physical is the table the tests let the projection write; the view
// "accounts" points at it, as the runner would.
const physical = "accounts_g1"

var tables = projections.Tables{accounts.TableName: physical}

// ---- database ----

type env struct {
	db    *sqldb.DB
	store eventlog.Store
}

// setup opens url with an event store and the projection's table and view.
func setup(t *testing.T, url string) env {
	t.Helper()
	ctx := context.Background()
	db := sqltest.Open(t, url)
	store := memstore.New() // the read model is SQL; the log only has to be faithful

	p := accounts.New()
	require.Equal(t, "accounts", p.Name())
	require.Equal(t, 2, p.Version())
	tbs := p.Tables()
	require.Len(t, tbs, 1)
	require.Equal(t, accounts.TableName, tbs[0].Name)
	for _, stmt := range tbs[0].Create(db.Dialect().Name(), physical) {
		_, err := db.ExecContext(ctx, stmt)
		require.NoError(t, err, stmt)
	}
	_, err := db.ExecContext(ctx, `CREATE VIEW accounts AS SELECT * FROM `+physical)
	require.NoError(t, err)
	warm, err := p.Load(ctx, db, tables, eventlog.Start)
	require.NoError(t, err)
	require.False(t, warm)
	return env{db: db, store: store}
}

// apply applies recs in one transaction, as the runner does.
func (e env) apply(t *testing.T, recs []eventlog.Record) {
	t.Helper()
	ctx := context.Background()
	tx, err := e.db.BeginTx(ctx, nil)
	require.NoError(t, err)
	if err := accounts.New().Apply(ctx, tx, tables, recs); err != nil {
		_ = tx.Rollback()
		require.NoError(t, err)
	}
	require.NoError(t, tx.Commit())
}

func (e env) readAll(t *testing.T) []eventlog.Record {
	t.Helper()
	recs, err := e.store.ReadAll(context.Background(), eventlog.Start, 100000)
	require.NoError(t, err)
	return recs
}

func forEachBackend(t *testing.T, f func(t *testing.T, url func(testing.TB) string)) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			if b.Name == "postgres" {
				sqltest.Postgres(t) // skip (or fail) once here
			}
			f(t, b.URL)
		})
	}
}

// ---- histories through the aggregates ----

// world runs commands through the domain's aggregates and appends the
// events they decide to the store.
type world struct {
	t        *testing.T
	store    eventlog.Store
	accounts map[uuid.UUID]*domain.Account
	links    map[string]*domain.IdentityLink
	probes   []time.Time // times worth asking about: the deadlines ±1µs, a few others
}

func newWorld(t *testing.T, store eventlog.Store) *world {
	return &world{t: t, store: store, accounts: map[uuid.UUID]*domain.Account{}, links: map[string]*domain.IdentityLink{}}
}

type aggregate interface {
	Apply(domain.Event) error
	Version() uint64
}

// exec appends what decide decides to stream and applies it to agg.
func (w *world) exec(stream string, agg aggregate, by domain.Actor, now time.Time, decide func() ([]domain.Event, error)) {
	w.t.Helper()
	events, err := decide()
	require.NoError(w.t, err)
	require.NotEmpty(w.t, events)
	cause := domain.Cause{Actor: by, Reason: "test", RecordedAt: now, CorrelationID: uuid.New()}
	data := make([]eventlog.EventData, len(events))
	for i, e := range events {
		data[i], err = cause.EventData(uuid.New(), e)
		require.NoError(w.t, err)
	}
	_, err = w.store.Append(context.Background(), stream, eventlog.Exactly(agg.Version()), data)
	require.NoError(w.t, err)
	for _, e := range events {
		require.NoError(w.t, agg.Apply(e))
	}
}

func (w *world) probe(ts ...time.Time) { w.probes = append(w.probes, ts...) }

func (w *world) account(email string) *domain.Account {
	id := domain.AccountIDForEmail(email)
	a := w.accounts[id]
	if a == nil {
		a = domain.NewAccount(id)
		w.accounts[id] = a
	}
	return a
}

func (w *world) invite(email string, kind domain.AccountKind, now time.Time) {
	a := w.account(email)
	w.exec(domain.AccountStream(a.ID()), a, worker, now, func() ([]domain.Event, error) {
		return a.Invite(worker, email, string(kind), now, policy)
	})
	d := a.InvitationExpiresAt()
	w.probe(d.Add(-time.Microsecond), d, d.Add(time.Microsecond))
}

func (w *world) expire(email string, now time.Time) {
	a := w.account(email)
	w.exec(domain.AccountStream(a.ID()), a, domain.System, now, func() ([]domain.Event, error) { return a.ExpireInvitation(now) })
}

// activate links the subject, then activates: two appends, so a batch may
// end between them.
func (w *world) activate(email, subject string, now time.Time) {
	a := w.account(email)
	l := w.links[subject]
	if l == nil {
		l = domain.NewIdentityLink(subject)
		w.links[subject] = l
	}
	w.exec(domain.IdentityStream(subject), l, service, now, func() ([]domain.Event, error) { return l.Link(a.ID(), now) })
	w.exec(domain.AccountStream(a.ID()), a, service, now, func() ([]domain.Event, error) {
		return a.Activate(service, subject, strings.ToUpper(email), now)
	})
}

func (w *world) enrol(email, phone string, now time.Time) {
	a := w.account(email)
	w.exec(domain.AccountStream(a.ID()), a, service, now, func() ([]domain.Event, error) { return a.EnrolPhone(service, phone, now) })
}

func (w *world) requestReset(email string, now time.Time) {
	a := w.account(email)
	w.exec(domain.AccountStream(a.ID()), a, worker, now, func() ([]domain.Event, error) {
		return a.RequestPhoneReset(worker, "lost phone", now)
	})
}

func (w *world) clearPhone(email string, now time.Time) {
	a := w.account(email)
	w.exec(domain.AccountStream(a.ID()), a, portals, now, func() ([]domain.Event, error) { return a.ClearPhone(portals, now) })
}

func (w *world) close(email string, now time.Time) {
	a := w.account(email)
	w.exec(domain.AccountStream(a.ID()), a, portals, now, func() ([]domain.Event, error) { return a.Close(portals, "left the service", now) })
}

// The accounts of the history.
const (
	lapsed    = "lapsed@example.org"    // invited, never answered: expired by time only
	renewed   = "renewed@example.org"   // expiry recorded, re-invited, activated
	phone     = "phone@example.org"     // R11: enrol, reset requested, cleared, re-enrol
	closed    = "closed@example.org"    // R13: active with a phone and an open reset request, closed
	neverUsed = "neverused@example.org" // closed while still invited
	quitter   = "quitter@example.org"   // R13: closed while active without a phone
)

// The phone numbers enrolled: only their last three digits may be stored.
var phones = []string{"+44 7700 900123", "07700 900456", "+44 (0) 7700-900789"}

// history writes the test's history: the account rules R9, R11, R13, with a
// child's events interleaved (the projection must skip them).
func history(w *world) {
	w.probe(t0.Add(-time.Hour), t0.Add(day+time.Hour), t0.Add(4*day), t0.Add(100*day))
	w.invite(lapsed, domain.KindFosterCarer, t0)
	w.invite(renewed, domain.KindParent, t0.Add(time.Minute))
	w.invite(phone, domain.KindFosterCarer, t0.Add(time.Hour))
	w.invite(closed, domain.KindGuardian, t0.Add(2*time.Hour))
	w.invite(neverUsed, domain.KindNetworkMember, t0.Add(3*time.Hour))
	w.invite(quitter, domain.KindParent, t0.Add(3*time.Hour+time.Minute))

	// A child placed with the carer: not the projection's business.
	childID := uuid.New()
	c := domain.NewChild(childID)
	w.exec(domain.ChildStream(childID), c, worker, t0.Add(4*time.Hour), func() ([]domain.Event, error) {
		return c.Register(worker, "C-0001", time.Time{}, t0.Add(4*time.Hour))
	})

	w.activate(phone, "idp|phone", t0.Add(day))
	w.enrol(phone, phones[0], t0.Add(day+time.Minute))
	w.exec(domain.ChildStream(childID), c, worker, t0.Add(day+time.Hour), func() ([]domain.Event, error) {
		return c.StartPlacement(worker, uuid.New(), w.account(phone), t0.Add(day), t0.Add(day+time.Hour))
	})
	w.activate(closed, "idp|closed", t0.Add(day+2*time.Hour))
	w.enrol(closed, phones[1], t0.Add(day+3*time.Hour))
	w.requestReset(phone, t0.Add(2*day))
	w.clearPhone(phone, t0.Add(3*day))
	w.requestReset(closed, t0.Add(3*day+time.Hour))
	w.enrol(phone, phones[2], t0.Add(4*day))
	w.close(closed, t0.Add(5*day))
	w.close(neverUsed, t0.Add(6*day))
	w.activate(quitter, "idp|quitter", t0.Add(6*day+time.Hour))
	w.close(quitter, t0.Add(7*day))

	deadline := w.account(renewed).InvitationExpiresAt()
	w.expire(renewed, deadline.Add(time.Hour))
	w.invite(renewed, domain.KindParent, deadline.Add(2*day))
	w.activate(renewed, "idp|renewed", deadline.Add(3*day))
}

// ---- the domain's answers ----

// replay is what the aggregates answer after the records recs.
type replay struct {
	accounts  map[uuid.UUID]*domain.Account
	invitedAt map[uuid.UUID]time.Time
	linked    map[uuid.UUID]string
	last      map[uuid.UUID]uint64
}

func replayOf(t *testing.T, recs []eventlog.Record) replay {
	r := replay{accounts: map[uuid.UUID]*domain.Account{}, invitedAt: map[uuid.UUID]time.Time{},
		linked: map[uuid.UUID]string{}, last: map[uuid.UUID]uint64{}}
	for _, rec := range recs {
		env, err := domain.DecodeRecord(rec)
		require.NoError(t, err)
		if l, ok := env.Event.(*domain.IdentityLinked); ok {
			r.linked[l.AccountID] = l.Subject
			r.last[l.AccountID] = rec.Position.Commit
			continue
		}
		if !strings.HasPrefix(rec.Stream, domain.AccountStreamPrefix) {
			continue
		}
		id := uuid.MustParse(strings.TrimPrefix(rec.Stream, domain.AccountStreamPrefix))
		a := r.accounts[id]
		if a == nil {
			a = domain.NewAccount(id)
			r.accounts[id] = a
		}
		require.NoError(t, a.Apply(env.Event))
		if inv, ok := env.Event.(*domain.AccountInvited); ok {
			r.invitedAt[id] = inv.InvitedAt
		}
		r.last[id] = rec.Position.Commit
	}
	return r
}

// want is the View the aggregate answers at t, or ok false when the account
// does not exist.
func (r replay) want(id uuid.UUID, t time.Time) (accounts.View, bool) {
	a := r.accounts[id]
	if a == nil || !a.Exists() {
		return accounts.View{}, false
	}
	subject := a.IdentitySubject()
	if subject == "" {
		subject = r.linked[id] // linked, not yet activated
	}
	f := a.Facts()
	return accounts.View{
		AccountID:           id,
		Kind:                a.Kind(),
		Status:              a.StatusAt(t),
		NeedsPhoneEnrolment: a.NeedsPhoneEnrolment(),
		PhoneHint:           a.PhoneHint(),
		InvitedAt:           r.invitedAt[id],
		ExpiresAt:           a.InvitationExpiresAt(),
		ActivatedAt:         f.ActivatedAt,
		ClosedAt:            f.ClosedAt,
		Email:               a.Email(),
		IdentitySubject:     subject,
		PhoneResetRequested: a.PhoneResetRequested(),
		UpdatedPosition:     r.last[id],
	}, true
}

// ---- tests ----

// TestMatchesDomain applies the history in batches of several sizes and,
// after every batch, checks every account at every probe time against the
// aggregates replayed to the same point: Get, ByEmail, and List by status
// and by need of phone enrolment.
func TestMatchesDomain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		for _, batch := range []int{1, 3, 1000} {
			t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
				t.Parallel()
				e := setup(t, url(t))
				w := newWorld(t, e.store)
				history(w)
				recs := e.readAll(t)
				require.Len(t, recs, 27)
				probes := dedupe(w.probes)
				ids := slices.Collect(maps.Keys(w.accounts))

				statuses := map[domain.AccountStatus]bool{}
				for n := 0; n < len(recs); {
					start, end := n, min(n+batch, len(recs))
					e.apply(t, recs[start:end])
					n = end
					r := replayOf(t, recs[:n])
					checkAll(t, e.db, r, ids, probes, statuses, touched(t, recs[start:n]), n == len(recs))
				}
				// The history reaches every status and every phone state.
				require.Len(t, statuses, 4)
				final := replayOf(t, recs)
				for _, email := range []string{lapsed, renewed, phone, closed, neverUsed, quitter} {
					_, ok := final.want(domain.AccountIDForEmail(email), t0)
					require.True(t, ok, email)
				}
				v, err := accounts.Get(context.Background(), e.db, domain.AccountIDForEmail(phone), t0.Add(100*day))
				require.NoError(t, err)
				require.Equal(t, "***789", v.PhoneHint)
				require.Equal(t, domain.StatusActive, v.Status)
			})
		}
	})
}

// touched returns the accounts whose events are among recs.
func touched(t *testing.T, recs []eventlog.Record) map[uuid.UUID]bool {
	out := map[uuid.UUID]bool{}
	for _, rec := range recs {
		env, err := domain.DecodeRecord(rec)
		require.NoError(t, err)
		if l, ok := env.Event.(*domain.IdentityLinked); ok {
			out[l.AccountID] = true
		} else if id, ok := strings.CutPrefix(rec.Stream, domain.AccountStreamPrefix); ok {
			out[uuid.MustParse(id)] = true
		}
	}
	return out
}

// checkAll compares the read model with the replay at the probe times: Get
// for the accounts the last batch touched (the others' rows and replays are
// as at the previous check), List by status and by need of phone enrolment
// at some times, and everything everywhere when full.
func checkAll(t *testing.T, db bun.IDB, r replay, ids []uuid.UUID, probes []time.Time, statuses map[domain.AccountStatus]bool,
	changed map[uuid.UUID]bool, full bool) {
	t.Helper()
	ctx := context.Background()
	for pi, at := range probes {
		byStatus := map[domain.AccountStatus][]uuid.UUID{}
		var needs, noNeed []uuid.UUID
		for _, id := range ids {
			want, ok := r.want(id, at)
			if ok {
				statuses[want.Status] = true
				byStatus[want.Status] = append(byStatus[want.Status], id)
				if want.NeedsPhoneEnrolment {
					needs = append(needs, id)
				} else {
					noNeed = append(noNeed, id)
				}
			}
			if !full && !changed[id] {
				continue
			}
			got, err := accounts.Get(ctx, db, id, at)
			if !ok {
				require.ErrorIs(t, err, accounts.ErrNotFound)
				require.ErrorIs(t, err, domain.ErrAccountNotFound)
				continue
			}
			require.NoError(t, err)
			require.Equal(t, want, got, "account %s at %s", want.Email, at)
			if full || pi%8 == 0 {
				byEmail, err := accounts.ByEmail(ctx, db, "  "+strings.ToUpper(want.Email)+" ", at)
				require.NoError(t, err)
				require.Equal(t, want, byEmail)
			}
		}
		if !full && pi%5 != 0 {
			continue
		}
		for _, s := range []domain.AccountStatus{domain.StatusInvited, domain.StatusActive, domain.StatusExpired, domain.StatusClosed} {
			require.Equal(t, sorted(byStatus[s]), listIDs(t, db, accounts.Filter{At: at, Status: s}), "status %s at %s", s, at)
		}
		yes, no := true, false
		require.Equal(t, sorted(needs), listIDs(t, db, accounts.Filter{At: at, NeedsPhoneEnrolment: &yes}), "needs phone at %s", at)
		require.Equal(t, sorted(noNeed), listIDs(t, db, accounts.Filter{At: at, NeedsPhoneEnrolment: &no}), "needs no phone at %s", at)
	}
}

func listIDs(t *testing.T, db bun.IDB, f accounts.Filter) []uuid.UUID {
	t.Helper()
	views, next, err := accounts.List(context.Background(), db, f)
	require.NoError(t, err)
	require.Equal(t, uuid.Nil, next)
	ids := []uuid.UUID{}
	for _, v := range views {
		ids = append(ids, v.AccountID)
	}
	return ids
}

func sorted(ids []uuid.UUID) []uuid.UUID {
	out := append([]uuid.UUID{}, ids...)
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func dedupe(ts []time.Time) []time.Time {
	out := append([]time.Time{}, ts...)
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return slices.CompactFunc(out, func(a, b time.Time) bool { return a.Equal(b) })
}

// TestStatusRules spells out the account rules on the read model, one case
// per rule, against fixed expectations (TestMatchesDomain compares with the
// aggregates; this one guards against both being wrong the same way).
func TestStatusRules(t *testing.T) {
	e := setup(t, sqltest.SQLiteMemory(t))
	w := newWorld(t, e.store)
	history(w)
	e.apply(t, e.readAll(t))
	ctx := context.Background()
	get := func(email string, at time.Time) accounts.View {
		t.Helper()
		v, err := accounts.Get(ctx, e.db, domain.AccountIDForEmail(email), at)
		require.NoError(t, err)
		return v
	}
	deadline := t0.Add(policy.InvitationTTL)
	tests := []struct {
		name   string
		email  string
		at     time.Time
		status domain.AccountStatus
		needs  bool
		hint   string
	}{
		{"R9 invitation open before its deadline", lapsed, deadline.Add(-time.Microsecond), domain.StatusInvited, false, ""},
		{"R9 expired at its deadline without an expiry event", lapsed, deadline, domain.StatusExpired, false, ""},
		{"R11 enrolled again after the cleared number", phone, t0.Add(50 * day), domain.StatusActive, false, "***789"},
		{"R13 closed with its phone", closed, t0.Add(50 * day), domain.StatusClosed, false, "***456"},
		{"R13 closed before activation", neverUsed, t0.Add(50 * day), domain.StatusClosed, false, ""},
		{"R13 closed while active without a phone", quitter, t0.Add(50 * day), domain.StatusClosed, false, ""},
		{"R9 renewed invitation accepted", renewed, t0.Add(50 * day), domain.StatusActive, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := get(tt.email, tt.at)
			require.Equal(t, tt.status, v.Status)
			require.Equal(t, tt.needs, v.NeedsPhoneEnrolment)
			require.Equal(t, tt.hint, v.PhoneHint)
		})
	}
	require.True(t, get(closed, t0.Add(50*day)).PhoneResetRequested)
	require.Equal(t, "idp|renewed", get(renewed, t0.Add(50*day)).IdentitySubject)
	v, err := accounts.ByIdentity(ctx, e.db, "idp|phone", t0)
	require.NoError(t, err)
	require.Equal(t, domain.AccountIDForEmail(phone), v.AccountID)
	_, err = accounts.ByIdentity(ctx, e.db, "idp|nobody", t0)
	require.ErrorIs(t, err, accounts.ErrNotFound)
	_, err = accounts.ByEmail(ctx, e.db, "nobody@example.org", t0)
	require.ErrorIs(t, err, accounts.ErrNotFound)
	_, err = accounts.ByEmail(ctx, e.db, "  ", t0)
	require.ErrorIs(t, err, accounts.ErrNotFound)
}

// TestStatusFromTheRecordedExpiry: a recorded expiry makes the invitation
// expired even at a time before its deadline (domain.Account.StatusAt).
func TestStatusFromTheRecordedExpiry(t *testing.T) {
	e := setup(t, sqltest.SQLiteMemory(t))
	w := newWorld(t, e.store)
	w.invite(lapsed, domain.KindParent, t0)
	deadline := w.account(lapsed).InvitationExpiresAt()
	w.expire(lapsed, deadline)
	e.apply(t, e.readAll(t))
	v, err := accounts.Get(context.Background(), e.db, domain.AccountIDForEmail(lapsed), t0)
	require.NoError(t, err)
	require.Equal(t, domain.StatusExpired, v.Status)
	require.Equal(t, w.account(lapsed).StatusAt(t0), v.Status)
}

// TestPhoneNumberIsNeverStored (R11): no column of any row holds more of a
// number than its hint, and the table refuses a full number.
func TestPhoneNumberIsNeverStored(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		e := setup(t, url(t))
		w := newWorld(t, e.store)
		history(w)
		e.apply(t, e.readAll(t))
		ctx := context.Background()

		rows, err := e.db.QueryContext(ctx, `SELECT * FROM `+physical)
		require.NoError(t, err)
		defer func() { _ = rows.Close() }()
		cols, err := rows.Columns()
		require.NoError(t, err)
		n := 0
		for rows.Next() {
			vals := make([]sql.NullString, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			require.NoError(t, rows.Scan(ptrs...))
			for i, v := range vals {
				for _, p := range phones {
					digits := strings.Map(func(r rune) rune {
						if r >= '0' && r <= '9' {
							return r
						}
						return -1
					}, p)
					require.NotContains(t, v.String, digits[len(digits)-4:], "column %s", cols[i])
				}
				if cols[i] == "phone_hint" && v.String != "" {
					require.Regexp(t, `^\*\*\*[0-9]{3}$`, v.String)
				}
			}
			n++
		}
		require.NoError(t, rows.Err())
		require.Equal(t, 6, n)

		for _, hint := range []string{"+447700900123", "07700900123", "***1234", "123", "****23"} {
			_, err := e.db.ExecContext(ctx, `UPDATE `+physical+` SET phone_hint = ? WHERE account_id = ?`,
				hint, domain.AccountIDForEmail(phone).String())
			require.Error(t, err, hint)
		}
	})
}

// TestRollbackLeavesNothing: the projection keeps no state in memory, so a
// batch whose transaction does not commit leaves no trace, and the next
// attempt applies it in full.
func TestRollbackLeavesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		e := setup(t, url(t))
		w := newWorld(t, e.store)
		w.invite(lapsed, domain.KindParent, t0)
		recs := e.readAll(t)
		ctx := context.Background()

		tx, err := e.db.BeginTx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, accounts.New().Apply(ctx, tx, tables, recs))
		require.NoError(t, tx.Rollback())
		_, err = accounts.Get(ctx, e.db, domain.AccountIDForEmail(lapsed), t0)
		require.ErrorIs(t, err, accounts.ErrNotFound)

		p := accounts.New()
		warm, err := p.Load(ctx, e.db, tables, eventlog.Start)
		require.NoError(t, err)
		require.False(t, warm)
		require.NoError(t, p.Replay(recs))
		e.apply(t, recs)
		v, err := accounts.Get(ctx, e.db, domain.AccountIDForEmail(lapsed), t0)
		require.NoError(t, err)
		require.Equal(t, domain.StatusInvited, v.Status)
	})
}

// TestLinkBeforeInvitation: an identity linked to an account the log has
// not invited yet is kept, but the account does not exist until invited.
func TestLinkBeforeInvitation(t *testing.T) {
	e := setup(t, sqltest.SQLiteMemory(t))
	w := newWorld(t, e.store)
	id := domain.AccountIDForEmail(lapsed)
	l := domain.NewIdentityLink("idp|early")
	w.exec(domain.IdentityStream("idp|early"), l, service, t0, func() ([]domain.Event, error) { return l.Link(id, t0) })
	e.apply(t, e.readAll(t))
	ctx := context.Background()
	_, err := accounts.Get(ctx, e.db, id, t0)
	require.ErrorIs(t, err, accounts.ErrNotFound)
	_, err = accounts.ByIdentity(ctx, e.db, "idp|early", t0)
	require.ErrorIs(t, err, accounts.ErrNotFound)
	views, _, err := accounts.List(ctx, e.db, accounts.Filter{At: t0})
	require.NoError(t, err)
	require.Empty(t, views)

	recs := e.readAll(t)
	w.invite(lapsed, domain.KindParent, t0.Add(time.Minute))
	e.apply(t, e.readAll(t)[len(recs):])
	v, err := accounts.ByIdentity(ctx, e.db, "idp|early", t0.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, id, v.AccountID)
	require.Equal(t, domain.StatusInvited, v.Status)
}

// TestApplySkipsOtherTypesAndRefusesCorruptRecords.
func TestApplySkipsOtherTypesAndRefusesCorruptRecords(t *testing.T) {
	e := setup(t, sqltest.SQLiteMemory(t))
	ctx := context.Background()
	id := domain.AccountIDForEmail(lapsed)
	other := eventlog.Record{ID: uuid.New(), Stream: "x-1", Version: 1, Position: eventlog.At(1), Type: "x.something.v1", Data: []byte(`{`)}
	e.apply(t, []eventlog.Record{other})
	views, _, err := accounts.List(ctx, e.db, accounts.Filter{At: t0})
	require.NoError(t, err)
	require.Empty(t, views)

	bad := eventlog.Record{ID: uuid.New(), Stream: domain.AccountStream(id), Version: 1, Position: eventlog.At(2),
		Type: domain.TypeAccountInvited, Data: []byte(`{"account_id":"` + id.String() + `"}`)}
	tx, err := e.db.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback() }()
	err = accounts.New().Apply(ctx, tx, tables, []eventlog.Record{bad})
	require.ErrorIs(t, err, accounts.ErrApply)
	require.ErrorIs(t, err, domain.ErrMalformedEvent)
}

// TestLargeBatchAndPaging: one batch of many accounts (several chunks) and
// List's pages, filters and cursor.
func TestLargeBatchAndPaging(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		e := setup(t, url(t))
		ctx := context.Background()
		const n = 1203
		kinds := []domain.AccountKind{domain.KindFosterCarer, domain.KindParent, domain.KindGuardian}
		var recs []eventlog.Record
		for i := range n {
			email := fmt.Sprintf("user%04d@example.org", i)
			id := domain.AccountIDForEmail(email)
			at := t0.Add(time.Duration(i) * time.Minute)
			ev := &domain.AccountInvited{AccountID: id, Email: email, Kind: kinds[i%3], InvitedAt: at, ExpiresAt: at.Add(policy.InvitationTTL)}
			data, err := domain.Encode(ev)
			require.NoError(t, err)
			recs = append(recs, eventlog.Record{ID: uuid.New(), Stream: domain.AccountStream(id), Version: 1,
				Position: eventlog.At(uint64(i + 1)), Type: ev.EventType(), Data: data})
		}
		e.apply(t, recs)

		var all []uuid.UUID
		after := uuid.Nil
		for pages := 0; ; pages++ {
			require.Less(t, pages, 10)
			views, next, err := accounts.List(ctx, e.db, accounts.Filter{At: t0, After: after, Limit: 500})
			require.NoError(t, err)
			for _, v := range views {
				all = append(all, v.AccountID)
			}
			if next == uuid.Nil {
				break
			}
			require.Len(t, views, 500)
			require.Equal(t, views[len(views)-1].AccountID, next)
			after = next
		}
		require.Len(t, all, n)
		require.Equal(t, sorted(all), all)

		// Invitations 0..k expire by time at t0+TTL+k minutes.
		at := t0.Add(policy.InvitationTTL + 100*time.Minute)
		expired, _, err := accounts.List(ctx, e.db, accounts.Filter{At: at, Status: domain.StatusExpired, Limit: accounts.MaxLimit})
		require.NoError(t, err)
		require.Len(t, expired, 101)
		parents, _, err := accounts.List(ctx, e.db, accounts.Filter{At: at, Status: domain.StatusInvited, Kind: domain.KindParent, Limit: accounts.MaxLimit})
		require.NoError(t, err)
		wantParents := 0
		for i := 101; i < n; i++ {
			if kinds[i%3] == domain.KindParent {
				wantParents++
			}
		}
		require.Len(t, parents, wantParents)
		for _, v := range parents {
			require.Equal(t, domain.KindParent, v.Kind)
			require.Equal(t, domain.StatusInvited, v.Status)
		}
		no := false
		views, next, err := accounts.List(ctx, e.db, accounts.Filter{At: at, NeedsPhoneEnrolment: &no, PhoneResetRequested: &no, Limit: 7})
		require.NoError(t, err)
		require.Len(t, views, 7)
		require.NotEqual(t, uuid.Nil, next)
	})
}

func TestQueryValidation(t *testing.T) {
	e := setup(t, sqltest.SQLiteMemory(t))
	ctx := context.Background()
	for name, f := range map[string]accounts.Filter{
		"no time":        {},
		"unknown status": {At: t0, Status: "lost"},
		"unknown kind":   {At: t0, Kind: "uncle"},
		"negative limit": {At: t0, Limit: -1},
		"limit too big":  {At: t0, Limit: accounts.MaxLimit + 1},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := accounts.List(ctx, e.db, f)
			require.ErrorIs(t, err, accounts.ErrInvalidQuery)
			require.ErrorIs(t, err, domain.ErrInvalid)
		})
	}
	_, err := accounts.Get(ctx, e.db, uuid.New(), time.Time{})
	require.ErrorIs(t, err, accounts.ErrInvalidQuery)
	_, err = accounts.ByEmail(ctx, e.db, lapsed, time.Time{})
	require.ErrorIs(t, err, accounts.ErrInvalidQuery)
	_, err = accounts.ByIdentity(ctx, e.db, "idp|x", time.Time{})
	require.ErrorIs(t, err, accounts.ErrInvalidQuery)
}

// TestErasureClearsPersonalValues (R22): an account's erasure clears its
// email, identity subject and phone hint from the row; a rebuild after the
// erasure, reading the earlier events as erased, stores "" as well (the
// phone hint's check would refuse the stand-in).
func TestErasureClearsPersonalValues(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		ctx := context.Background()
		id := domain.AccountIDForEmail("erased.carer@example.org")
		now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		log := func(email, subject, hint string) []eventlog.Record {
			st := memstore.New()
			cause := domain.Cause{Actor: domain.Actor{ID: "w", Role: domain.RoleWorker}, RecordedAt: now}
			var data []eventlog.EventData
			for _, ev := range []domain.Event{
				&domain.AccountInvited{AccountID: id, Email: email, Kind: domain.KindFosterCarer, InvitedAt: now, ExpiresAt: now.Add(time.Hour)},
				&domain.AccountActivated{AccountID: id, IdentitySubject: subject, ActivatedAt: now.Add(time.Minute)},
				&domain.PhoneEnrolled{AccountID: id, PhoneHint: hint, EnrolledAt: now.Add(2 * time.Minute)},
				&domain.AccountErased{AccountID: id, ErasedAt: now.Add(3 * time.Minute)},
			} {
				b, err := json.Marshal(ev) // as stored: Encode refuses the stand-in
				require.NoError(t, err)
				d, err := cause.EventData(uuid.New(), &domain.AccountClosed{AccountID: id, ClosedAt: now})
				require.NoError(t, err)
				d.Type, d.Data = ev.EventType(), b
				data = append(data, d)
			}
			_, err := st.Append(ctx, domain.AccountStream(id), eventlog.NoStream, data)
			require.NoError(t, err)
			recs, err := st.ReadAll(ctx, eventlog.Start, 0)
			require.NoError(t, err)
			return recs
		}
		for name, recs := range map[string][]eventlog.Record{
			"as they happened": log("erased.carer@example.org", "idp|erased", "***123"),
			"rebuilt after":    log(domain.ErasedText, domain.ErasedText, domain.ErasedText),
		} {
			t.Run(name, func(t *testing.T) {
				e := setup(t, url(t))
				for _, r := range recs { // one batch per event, as a live runner may
					e.apply(t, []eventlog.Record{r})
				}
				v, err := accounts.NewReader(e.db).Get(ctx, id, now.Add(time.Hour))
				require.NoError(t, err)
				require.Equal(t, now.Add(3*time.Minute), v.ErasedAt)
				require.Empty(t, v.Email)
				require.Empty(t, v.IdentitySubject)
				require.Empty(t, v.PhoneHint)
				require.Equal(t, domain.StatusActive, v.Status, "erasure does not change the account's status")
			})
		}
	})
}
