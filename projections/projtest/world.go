// Package projtest builds event histories for the tests of the read models:
// a World runs commands through the real domain aggregates, as the command
// layer does, and keeps the records they append, with stream versions and
// dense global positions. It is meant for tests only.
package projtest

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// Actors the World acts as.
var (
	Worker  = domain.Actor{ID: "worker-ann", Role: domain.RoleWorker}
	Manager = domain.Actor{ID: "manager-meg", Role: domain.RoleManager}
	Portals = domain.Actor{ID: "portals-pat", Role: domain.RolePortalsTeam}
	Service = domain.Actor{ID: "portal-backend", Role: domain.RoleService}
)

// T0 is a Monday morning, the start of every World's clock.
var T0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// World holds the aggregates and the log of one history. Its clock (Now)
// only moves forward, by Advance. Commands fail the test through Fatalf when
// the domain refuses them, unless called through Try.
type World struct {
	Now     time.Time
	Policy  domain.Policy
	Records []eventlog.Record

	fatalf   func(format string, args ...any)
	children map[uuid.UUID]*domain.Child
	accounts map[uuid.UUID]*domain.Account
	versions map[string]uint64
	ids      uint64
	policies *domain.PolicyHistory
}

// New returns an empty World at T0 with the default policy; fatalf is
// usually t.Fatalf.
func New(fatalf func(format string, args ...any)) *World {
	return &World{Now: T0, Policy: domain.DefaultPolicy, fatalf: fatalf,
		children: map[uuid.UUID]*domain.Child{}, accounts: map[uuid.UUID]*domain.Account{},
		versions: map[string]uint64{}}
}

// SetPolicy records a change of the policy by by (domain.System for the
// initial one) now (R25); Policy becomes the new policy, which the
// World's later commands decide with.
func (w *World) SetPolicy(by domain.Actor, change domain.PolicyChange) {
	if w.policies == nil {
		w.policies = domain.NewPolicyHistory(w.Policy)
	}
	evs, err := w.policies.SetPolicy(by, change, "", w.Now)
	from := len(w.Records)
	w.must(w.commit(domain.PolicyStream, by, "policy set", func(domain.Event) error { return nil }, evs, err))
	for _, r := range w.Records[from:] {
		env, err := domain.DecodeRecord(r)
		w.must(err)
		w.must(w.policies.Apply(env))
	}
	w.Policy = w.policies.Current().Policy
}

// Advance moves the clock forward by d.
func (w *World) Advance(d time.Duration) { w.Now = w.Now.Add(d) }

// ID returns a fresh, deterministic id.
func (w *World) ID() uuid.UUID {
	w.ids++
	return uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "projtest-%d", w.ids))
}

// Child returns the child's aggregate (nil if unknown).
func (w *World) Child(id uuid.UUID) *domain.Child { return w.children[id] }

// Account returns the account's aggregate (nil if unknown).
func (w *World) Account(id uuid.UUID) *domain.Account { return w.accounts[id] }

// Children lists the ids of every child, in creation order is not kept:
// callers sort when they need an order.
func (w *World) Children() []uuid.UUID {
	out := make([]uuid.UUID, 0, len(w.children))
	for id := range w.children {
		out = append(out, id)
	}
	return out
}

// Accounts lists the ids of every account.
func (w *World) Accounts() []uuid.UUID {
	out := make([]uuid.UUID, 0, len(w.accounts))
	for id := range w.accounts {
		out = append(out, id)
	}
	return out
}

// Head is the position of the last record (eventlog.Start when none).
func (w *World) Head() eventlog.Position {
	if len(w.Records) == 0 {
		return eventlog.Start
	}
	return w.Records[len(w.Records)-1].Position
}

// commit records the decided events of one stream and applies them.
func (w *World) commit(stream string, by domain.Actor, reason string, apply func(domain.Event) error, events []domain.Event, err error) error {
	if err != nil {
		return err
	}
	cause := domain.Cause{Actor: by, Reason: reason, RecordedAt: w.Now}
	for _, e := range events {
		data, err := cause.EventData(w.ID(), e)
		if err != nil {
			return err
		}
		if err := apply(e); err != nil {
			return err
		}
		w.versions[stream]++
		pos := eventlog.At(uint64(len(w.Records) + 1))
		w.Records = append(w.Records, eventlog.Record{ID: data.ID, Stream: stream, Version: w.versions[stream],
			Position: pos, Type: data.Type, Data: data.Data, Meta: data.Meta})
	}
	return nil
}

func (w *World) must(err error) {
	if err != nil {
		w.fatalf("projtest: %v", err)
	}
}

// RegisterChild registers a new child, allocated to Worker.
func (w *World) RegisterChild() uuid.UUID {
	id := w.ID()
	c := domain.NewChild(id)
	w.children[id] = c
	evs, err := c.Register(Worker, "C-"+id.String()[:8], time.Time{}, w.Now)
	w.must(w.commit(domain.ChildStream(id), Worker, "", c.Apply, evs, err))
	return id
}

// EraseChild erases the child's personal data (R22), as a data protection
// officer, with reason.
func (w *World) EraseChild(id uuid.UUID, reason string) {
	c := w.children[id]
	evs, err := c.Erase(domain.Actor{ID: "dpo-dee", Role: domain.RoleDPO}, reason, w.Now)
	w.must(w.commit(domain.ChildStream(id), domain.Actor{ID: "dpo-dee", Role: domain.RoleDPO}, reason, c.Apply, evs, err))
}

// Invite invites a new account of kind; Activate must follow for it to see
// anything.
func (w *World) Invite(kind domain.AccountKind) uuid.UUID {
	email := fmt.Sprintf("user%d@example.org", w.ids+1)
	id := domain.AccountIDForEmail(email)
	w.ids++
	a := domain.NewAccount(id)
	w.accounts[id] = a
	evs, err := a.Invite(Worker, email, string(kind), w.Now, w.Policy)
	w.must(w.commit(domain.AccountStream(id), Worker, "", a.Apply, evs, err))
	return id
}

// Activate activates an invited account now.
func (w *World) Activate(id uuid.UUID) { w.must(w.TryActivate(id)) }

// TryActivate activates an invited account now, returning the domain's
// refusal.
func (w *World) TryActivate(id uuid.UUID) error {
	a := w.accounts[id]
	evs, err := a.Activate(Service, "idp|"+id.String(), a.Email(), w.Now)
	return w.commit(domain.AccountStream(id), Service, "", a.Apply, evs, err)
}

// Carer invites and activates a foster carer.
func (w *World) Carer() uuid.UUID {
	id := w.Invite(domain.KindFosterCarer)
	w.Activate(id)
	return id
}

// Member invites and activates a network member.
func (w *World) Member() uuid.UUID {
	id := w.Invite(domain.KindNetworkMember)
	w.Activate(id)
	return id
}

// Close closes an account now.
func (w *World) Close(id uuid.UUID) { w.must(w.TryClose(id)) }

// TryClose closes an account now, returning the domain's refusal.
func (w *World) TryClose(id uuid.UUID) error {
	a := w.accounts[id]
	evs, err := a.Close(Portals, "closed by test", w.Now)
	return w.commit(domain.AccountStream(id), Portals, "closed by test", a.Apply, evs, err)
}

// Place starts a placement of child with carer at startedAt.
func (w *World) Place(child, carer uuid.UUID, startedAt time.Time) uuid.UUID {
	id, err := w.TryPlace(child, carer, startedAt)
	w.must(err)
	return id
}

// TryPlace starts a placement, returning the domain's refusal.
func (w *World) TryPlace(child, carer uuid.UUID, startedAt time.Time) (uuid.UUID, error) {
	c := w.children[child]
	id := w.ID()
	evs, err := c.StartPlacement(Worker, id, w.accounts[carer], startedAt, w.Now)
	return id, w.commit(domain.ChildStream(child), Worker, "", c.Apply, evs, err)
}

// End ends a placement at endedAt (backdated or ahead of Now).
func (w *World) End(child, placement uuid.UUID, endedAt time.Time) {
	w.must(w.TryEnd(child, placement, endedAt))
}

// TryEnd ends a placement, returning the domain's refusal.
func (w *World) TryEnd(child, placement uuid.UUID, endedAt time.Time) error {
	c := w.children[child]
	evs, err := c.EndPlacement(Worker, placement, endedAt, w.Now, w.Policy)
	return w.commit(domain.ChildStream(child), Worker, "placement ended", c.Apply, evs, err)
}

// EndGrace ends a placement's grace period now (R6).
func (w *World) EndGrace(child, placement uuid.UUID) { w.must(w.TryEndGrace(child, placement)) }

// TryEndGrace ends a grace period early, returning the domain's refusal.
func (w *World) TryEndGrace(child, placement uuid.UUID) error {
	c := w.children[child]
	evs, err := c.EndGraceEarly(Worker, placement, "safeguarding concern", w.Now)
	return w.commit(domain.ChildStream(child), Worker, "safeguarding concern", c.Apply, evs, err)
}

// Expire records the grace expiry of a placement, as the process manager
// does at the deadline.
func (w *World) Expire(child, placement uuid.UUID) error {
	c := w.children[child]
	evs, err := c.ExpireCarerAccess(placement, w.Now)
	return w.commit(domain.ChildStream(child), domain.System, "grace period expired", c.Apply, evs, err)
}

// Grant grants account permissions (names) on child now.
func (w *World) Grant(child, account uuid.UUID, perms ...string) {
	w.must(w.TryGrant(child, account, perms...))
}

// TryGrant grants, returning the domain's refusal.
func (w *World) TryGrant(child, account uuid.UUID, perms ...string) error {
	c := w.children[child]
	evs, err := c.Grant(Worker, w.accounts[account], string(domain.RelNetworkMember), perms, "agreed at review", w.Now)
	return w.commit(domain.ChildStream(child), Worker, "agreed at review", c.Apply, evs, err)
}

// Revoke revokes account's grant on child now.
func (w *World) Revoke(child, account uuid.UUID) { w.must(w.TryRevoke(child, account)) }

// TryRevoke revokes, returning the domain's refusal.
func (w *World) TryRevoke(child, account uuid.UUID) error {
	c := w.children[child]
	evs, err := c.Revoke(Worker, account, "no longer needed", w.Now)
	return w.commit(domain.ChildStream(child), Worker, "no longer needed", c.Apply, evs, err)
}

// EnrolPhone enrols a phone number for an active account.
func (w *World) EnrolPhone(id uuid.UUID, phone string) {
	a := w.accounts[id]
	evs, err := a.EnrolPhone(Service, phone, w.Now)
	w.must(w.commit(domain.AccountStream(id), Service, "", a.Apply, evs, err))
}

// Access is the domain's own answer for account on child at t, from the
// aggregates as they stand: the reference the read models are compared with.
func (w *World) Access(account, child uuid.UUID, t time.Time) domain.Access {
	c := w.children[child]
	if c == nil {
		return domain.Access{Reason: domain.ReasonNoRelationship}
	}
	return c.Access(w.accounts[account], t)
}
