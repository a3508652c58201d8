package accessindex_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accessmodel"
)

var (
	t0      = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC) // a Monday
	day     = 24 * time.Hour
	policy  = domain.DefaultPolicy
	inviter = domain.Actor{ID: "worker-inviter", Role: domain.RoleWorker}
	portals = domain.Actor{ID: "portals-pat", Role: domain.RolePortalsTeam}
	service = domain.Actor{ID: "portal-backend", Role: domain.RoleService}

	viewOnly       = domain.PermissionSet(domain.View)
	viewRecord     = domain.PermissionSet(domain.View | domain.Record)
	viewCompleting = domain.PermissionSet(domain.View | domain.CompleteOutstanding)
)

// world builds an event log the way the engine does: every event is decided
// by a domain aggregate, applied to it, and encoded with its metadata into a
// record with the next position (dense, from 1), as the SQL store numbers
// them. Every helper fails the test when the aggregate refuses.
type world struct {
	tb       testing.TB
	rng      *rand.Rand
	children map[uuid.UUID]*domain.Child
	accounts map[uuid.UUID]*domain.Account
	versions map[string]uint64
	related  map[accessmodel.Pair]bool // pairs with a placement or a grant
	recs     []eventlog.Record
	taken    int
}

func newWorld(tb testing.TB, seed uint64) *world {
	return &world{
		tb:       tb,
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		children: map[uuid.UUID]*domain.Child{},
		accounts: map[uuid.UUID]*domain.Account{},
		versions: map[string]uint64{},
		related:  map[accessmodel.Pair]bool{},
	}
}

// id returns a random (version 4) UUID from the world's generator, so a
// seed gives the same log every time.
func (w *world) id() uuid.UUID {
	var u uuid.UUID
	for i := 0; i < 16; i += 8 {
		v := w.rng.Uint64()
		for j := range 8 {
			u[i+j] = byte(v >> (8 * j))
		}
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// take returns the records appended since the last take.
func (w *world) take() []eventlog.Record {
	out := w.recs[w.taken:]
	w.taken = len(w.recs)
	return out
}

// record applies decided events to their aggregate and appends them.
func (w *world) record(stream string, by domain.Actor, now time.Time, apply func(domain.Event) error, events []domain.Event, err error) {
	w.tb.Helper()
	if err != nil {
		w.tb.Fatalf("world: %s: %v", stream, err)
	}
	for _, e := range events {
		if err := apply(e); err != nil {
			w.tb.Fatalf("world: apply %s: %v", e.EventType(), err)
		}
		data, err := domain.Cause{Actor: by, Reason: "test", RecordedAt: now}.EventData(w.id(), e)
		if err != nil {
			w.tb.Fatalf("world: encode %s: %v", e.EventType(), err)
		}
		w.versions[stream]++
		w.recs = append(w.recs, eventlog.Record{ID: data.ID, Stream: stream, Version: w.versions[stream],
			Position: eventlog.At(uint64(len(w.recs) + 1)), Type: data.Type, Data: data.Data, Meta: data.Meta})
	}
}

func (w *world) acct(id uuid.UUID) *domain.Account {
	a := w.accounts[id]
	if a == nil {
		a = domain.NewAccount(id)
		w.accounts[id] = a
	}
	return a
}

// account invites email as kind at invitedAt and, unless activatedAt is
// zero, activates it then.
func (w *world) account(email string, kind domain.AccountKind, invitedAt, activatedAt time.Time) uuid.UUID {
	w.tb.Helper()
	id := domain.AccountIDForEmail(email)
	a := w.acct(id)
	evs, err := a.Invite(inviter, email, string(kind), invitedAt, policy)
	w.record(domain.AccountStream(id), inviter, invitedAt, a.Apply, evs, err)
	if !activatedAt.IsZero() {
		evs, err := a.Activate(service, "idp|"+email, email, activatedAt)
		w.record(domain.AccountStream(id), service, activatedAt, a.Apply, evs, err)
	}
	return id
}

func (w *world) carer(name string, activatedAt time.Time) uuid.UUID {
	return w.account(name+"@carers.example.org", domain.KindFosterCarer, activatedAt.Add(-time.Hour), activatedAt)
}

func (w *world) parent(name string, activatedAt time.Time) uuid.UUID {
	return w.account(name+"@family.example.org", domain.KindParent, activatedAt.Add(-time.Hour), activatedAt)
}

func (w *world) enrolPhone(id uuid.UUID, at time.Time) {
	w.tb.Helper()
	a := w.accounts[id]
	evs, err := a.EnrolPhone(service, "+44 7700 900123", at)
	w.record(domain.AccountStream(id), service, at, a.Apply, evs, err)
}

func (w *world) closeAccount(id uuid.UUID, at time.Time) {
	w.tb.Helper()
	a := w.accounts[id]
	evs, err := a.Close(portals, "left", at)
	w.record(domain.AccountStream(id), portals, at, a.Apply, evs, err)
}

// child registers a child by worker at.
func (w *world) child(ref, worker string, at time.Time) uuid.UUID {
	w.tb.Helper()
	id := w.id()
	c := domain.NewChild(id)
	w.children[id] = c
	by := domain.Actor{ID: worker, Role: domain.RoleWorker}
	evs, err := c.Register(by, ref, time.Time{}, at)
	w.record(domain.ChildStream(id), by, at, c.Apply, evs, err)
	return id
}

func (w *world) workerOf(c *domain.Child) domain.Actor {
	return domain.Actor{ID: c.Worker(), Role: domain.RoleWorker}
}

func (w *world) place(child, carer uuid.UUID, startedAt, now time.Time) uuid.UUID {
	w.tb.Helper()
	id := w.id()
	w.placeID(child, id, carer, startedAt, now)
	return id
}

func (w *world) placeID(child, placement, carer uuid.UUID, startedAt, now time.Time) {
	w.tb.Helper()
	c := w.children[child]
	by := w.workerOf(c)
	evs, err := c.StartPlacement(by, placement, w.accounts[carer], startedAt, now)
	w.record(domain.ChildStream(child), by, now, c.Apply, evs, err)
	w.related[accessmodel.Pair{Account: carer, Child: child}] = true
}

func (w *world) end(child, placement uuid.UUID, endedAt, now time.Time) {
	w.tb.Helper()
	c := w.children[child]
	by := w.workerOf(c)
	evs, err := c.EndPlacement(by, placement, endedAt, now, policy)
	w.record(domain.ChildStream(child), by, now, c.Apply, evs, err)
}

func (w *world) endGraceEarly(child, placement uuid.UUID, now time.Time) {
	w.tb.Helper()
	c := w.children[child]
	by := w.workerOf(c)
	evs, err := c.EndGraceEarly(by, placement, "safeguarding concern", now)
	w.record(domain.ChildStream(child), by, now, c.Apply, evs, err)
}

// expire is the process manager's late or timely job; it may decide
// nothing.
func (w *world) expire(child, placement uuid.UUID, now time.Time) {
	w.tb.Helper()
	c := w.children[child]
	evs, err := c.ExpireCarerAccess(placement, now)
	w.record(domain.ChildStream(child), domain.System, now, c.Apply, evs, err)
}

func (w *world) grant(child, acct uuid.UUID, perms string, now time.Time) {
	w.tb.Helper()
	c := w.children[child]
	by := w.workerOf(c)
	evs, err := c.Grant(by, w.accounts[acct], "parent", strings.Split(perms, ","), "contact agreed", now)
	w.record(domain.ChildStream(child), by, now, c.Apply, evs, err)
	w.related[accessmodel.Pair{Account: acct, Child: child}] = true
}

func (w *world) revoke(child, acct uuid.UUID, now time.Time) {
	w.tb.Helper()
	c := w.children[child]
	by := w.workerOf(c)
	evs, err := c.Revoke(by, acct, "contact suspended", now)
	w.record(domain.ChildStream(child), by, now, c.Apply, evs, err)
}

// pairs lists every (account, child) pair of the world: each account with
// each child (so that pairs without a relationship are checked too; for
// small worlds), or, with onlyRelated, the pairs with a placement or a
// grant.
func (w *world) pairs(onlyRelated bool) []accessmodel.Pair {
	var out []accessmodel.Pair
	if onlyRelated {
		for p := range w.related {
			out = append(out, p)
		}
		return out
	}
	for cid := range w.children {
		for aid := range w.accounts {
			out = append(out, accessmodel.Pair{Account: aid, Child: cid})
		}
	}
	return out
}

// want is the aggregates' own answer for a pair at t: the oracle the index
// must agree with.
func (w *world) want(p accessmodel.Pair, t time.Time) domain.Access {
	a := w.accounts[p.Account]
	c := w.children[p.Child]
	if c == nil || a == nil {
		return domain.Access{Reason: domain.ReasonNoRelationship}
	}
	return c.Access(a, t)
}
