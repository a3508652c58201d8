// Package resealtest writes event histories for the tests of accessd
// reseal: the part an engine wrote before personal data was sealed (plain
// values, name-based account ids and identity streams, straight into the
// event store) and a part the current engine writes (sealed, keyed ids,
// erasures). Tests only.
package resealtest

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/adapters/personaldata"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// Actors of the histories.
var (
	Worker  = domain.Actor{ID: "worker-ann", Role: domain.RoleWorker}
	Service = domain.Actor{ID: "portal-backend", Role: domain.RoleService}
	DPO     = domain.Actor{ID: "dpo-dee", Role: domain.RoleDPO}
)

// Appender is where a Writer appends: the raw event store (as an engine
// before sealing did) or the personal-data layer (as the engine does now).
type Appender interface {
	Append(ctx context.Context, stream string, expected eventlog.ExpectedVersion, events []eventlog.EventData) (eventlog.AppendResult, error)
}

// Person is an account's holder.
type Person struct {
	ID                               uuid.UUID
	Email, Subject, Phone, PhoneHint string
}

// Writer decides events with the domain's aggregates and appends them,
// one append per decision, at the exact expected version, as the command
// layer does. Log may be switched between appends.
type Writer struct {
	Log Appender
	// Now is the clock of decisions and recorded times.
	Now time.Time

	versions map[string]uint64
	children map[uuid.UUID]*domain.Child
	accounts map[uuid.UUID]*domain.Account
	links    map[string]*domain.IdentityLink
	// Events counts the events appended.
	Events int
}

// NewWriter returns a Writer appending to log.
func NewWriter(log Appender, now time.Time) *Writer {
	return &Writer{Log: log, Now: now, versions: map[string]uint64{}, children: map[uuid.UUID]*domain.Child{},
		accounts: map[uuid.UUID]*domain.Account{}, links: map[string]*domain.IdentityLink{}}
}

func (w *Writer) commit(ctx context.Context, stream string, by domain.Actor, reason string,
	apply func(domain.Event) error, events []domain.Event, err error) error {
	if err != nil {
		return err
	}
	if len(events) == 0 {
		return nil
	}
	cause := domain.Cause{Actor: by, Reason: reason, RecordedAt: w.Now, CorrelationID: uuid.New()}
	data := make([]eventlog.EventData, len(events))
	for i, e := range events {
		if data[i], err = cause.EventData(uuid.New(), e); err != nil {
			return err
		}
		if err := apply(e); err != nil {
			return err
		}
	}
	if _, err := w.Log.Append(ctx, stream, eventlog.Exactly(w.versions[stream]), data); err != nil {
		return fmt.Errorf("append to %s: %w", stream, err)
	}
	w.versions[stream] += uint64(len(events))
	w.Events += len(events)
	return nil
}

// RegisterChild registers a child with reference, by Worker.
func (w *Writer) RegisterChild(ctx context.Context, reference string) (uuid.UUID, error) {
	id := uuid.New()
	c := domain.NewChild(id)
	w.children[id] = c
	evs, err := c.Register(Worker, reference, time.Time{}, w.Now)
	return id, w.commit(ctx, domain.ChildStream(id), Worker, "", c.Apply, evs, err)
}

// Account invites, activates (linking subject) and enrols the phone of p,
// whose ID must be set (name-based or keyed), and links the identity in
// identityStream.
func (w *Writer) Account(ctx context.Context, p Person, kind domain.AccountKind, identityStream string) error {
	a := domain.NewAccount(p.ID)
	w.accounts[p.ID] = a
	stream := domain.AccountStream(p.ID)
	evs, err := a.Invite(Worker, p.Email, string(kind), w.Now, domain.DefaultPolicy)
	if err := w.commit(ctx, stream, Worker, "", a.Apply, evs, err); err != nil {
		return err
	}
	link := domain.NewIdentityLink(p.Subject)
	w.links[identityStream] = link
	evs, err = link.Link(p.ID, w.Now)
	if err := w.commit(ctx, identityStream, Service, "", link.Apply, evs, err); err != nil {
		return err
	}
	// The activation and the phone: two appends in a row to one stream.
	evs, err = a.Activate(Service, p.Subject, p.Email, w.Now)
	if err := w.commit(ctx, stream, Service, "", a.Apply, evs, err); err != nil {
		return err
	}
	if p.Phone == "" {
		return nil
	}
	evs, err = a.EnrolPhone(Service, p.Phone, w.Now)
	return w.commit(ctx, stream, Service, "", a.Apply, evs, err)
}

// Place places child with carer from startedAt, by Worker.
func (w *Writer) Place(ctx context.Context, child, carer uuid.UUID, startedAt time.Time) (uuid.UUID, error) {
	c := w.children[child]
	id := uuid.New()
	evs, err := c.StartPlacement(Worker, id, w.accounts[carer], startedAt, w.Now)
	return id, w.commit(ctx, domain.ChildStream(child), Worker, "", c.Apply, evs, err)
}

// EndPlacement ends a placement at endedAt, with reason, by Worker.
func (w *Writer) EndPlacement(ctx context.Context, child, placement uuid.UUID, endedAt time.Time, reason string) error {
	c := w.children[child]
	evs, err := c.EndPlacement(Worker, placement, endedAt, w.Now, domain.DefaultPolicy)
	return w.commit(ctx, domain.ChildStream(child), Worker, reason, c.Apply, evs, err)
}

// Grant grants account view (and record) on child with reason, by Worker.
func (w *Writer) Grant(ctx context.Context, child, account uuid.UUID, reason string, perms ...string) error {
	c := w.children[child]
	evs, err := c.Grant(Worker, w.accounts[account], string(domain.RelNetworkMember), perms, reason, w.Now)
	return w.commit(ctx, domain.ChildStream(child), Worker, reason, c.Apply, evs, err)
}

// EraseAccount erases account id by DPO with reason, as the erase command
// does: the erasure event, then the key (log must be the layer).
func (w *Writer) EraseAccount(ctx context.Context, log *personaldata.Store, id uuid.UUID, reason string) error {
	a := w.accounts[id]
	evs, err := a.Erase(DPO, reason, w.Now)
	if err := w.commit(ctx, domain.AccountStream(id), DPO, reason, a.Apply, evs, err); err != nil {
		return err
	}
	return log.EraseAccount(ctx, id)
}

// EraseChild erases child id (see EraseAccount).
func (w *Writer) EraseChild(ctx context.Context, log *personaldata.Store, id uuid.UUID, reason string) error {
	c := w.children[id]
	evs, err := c.Erase(DPO, reason, w.Now)
	if err := w.commit(ctx, domain.ChildStream(id), DPO, reason, c.Apply, evs, err); err != nil {
		return err
	}
	return log.EraseChild(ctx, id)
}

// Legacy is a history as an engine before sealing wrote it.
type Legacy struct {
	Writer *Writer
	// Child is placed with Carer and granted to Member; ErasableChild is
	// granted to Member (the tests erase it with the current engine).
	Child, ErasableChild uuid.UUID
	// Reference and ErasableReference are their references.
	Reference, ErasableReference string
	Placement                    uuid.UUID
	Carer, Member                Person
	// Reasons are the reasons recorded; Personal every personal value
	// written in plain text (emails, subjects, phone hints, references,
	// reasons).
	Reasons  []string
	Personal []string
}

// WriteLegacy writes into raw (an event store, not the layer) a history
// with plain personal values and name-based ids, as an engine before
// sealing did: two accounts invited, linked to their identity (the
// name-based identity stream), activated, a phone enrolled; a child
// registered with a reference, placed with the carer, granted to the
// member with a reason; a second child granted too. tag makes the values
// unique (the tests look for them in files). The events are recorded at
// now minus a day.
func WriteLegacy(ctx context.Context, raw Appender, now time.Time, tag string) (*Legacy, error) {
	w := NewWriter(raw, now.Add(-24*time.Hour).UTC().Truncate(time.Microsecond))
	l := &Legacy{Writer: w}
	person := func(who string) Person {
		email := fmt.Sprintf("%s.%s@example.org", who, tag)
		return Person{ID: domain.AccountIDForEmail(email), Email: email, Subject: "idp|" + who + "-" + tag,
			Phone: "+44 7700 900" + fmt.Sprint(100+len(who)), PhoneHint: fmt.Sprintf("***%d", 100+len(who))}
	}
	l.Carer, l.Member = person("carer"), person("member")
	for _, p := range []struct {
		p    Person
		kind domain.AccountKind
	}{{l.Carer, domain.KindFosterCarer}, {l.Member, domain.KindNetworkMember}} {
		if err := w.Account(ctx, p.p, p.kind, domain.IdentityStream(p.p.Subject)); err != nil {
			return nil, err
		}
		l.Personal = append(l.Personal, p.p.Email, p.p.Subject, p.p.PhoneHint)
	}
	var err error
	ref := "NCC-LEGACY-" + tag
	if l.Child, err = w.RegisterChild(ctx, ref); err != nil {
		return nil, err
	}
	w.Now = w.Now.Add(time.Minute)
	if l.Placement, err = w.Place(ctx, l.Child, l.Carer.ID, w.Now.Add(-time.Hour)); err != nil {
		return nil, err
	}
	grant := "agreed at the review of " + tag + " with her aunt"
	if err := w.Grant(ctx, l.Child, l.Member.ID, grant, domain.PermView, domain.PermRecord); err != nil {
		return nil, err
	}
	ref2 := "NCC-ERASABLE-" + tag
	if l.ErasableChild, err = w.RegisterChild(ctx, ref2); err != nil {
		return nil, err
	}
	grant2 := "sibling contact " + tag
	if err := w.Grant(ctx, l.ErasableChild, l.Member.ID, grant2, domain.PermView); err != nil {
		return nil, err
	}
	l.Reasons = []string{grant, grant2}
	l.Reference, l.ErasableReference = ref, ref2
	l.Personal = append(l.Personal, ref, ref2, grant, grant2)
	return l, nil
}
