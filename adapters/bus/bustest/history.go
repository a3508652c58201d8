package bustest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/projtest"
)

// History returns a log of at least n records (dense positions from 1) made
// by the real aggregates through projtest.World, holding every event type of
// the catalogue, over many streams, with correlation and causation ids set.
func History(t testing.TB, n int) []eventlog.Record {
	t.Helper()
	w := projtest.New(t.Fatalf)
	member := w.Member()
	for i := 0; len(w.Records) < n || i < 2; i++ {
		child := w.RegisterChild()
		carer := w.Carer()
		w.EnrolPhone(carer, "+447700900123")
		p := w.Place(child, carer, w.Now)
		w.Advance(time.Hour)
		w.Grant(child, member, "view")
		w.Advance(time.Hour)
		w.End(child, p, w.Now)
		if i%2 == 0 {
			w.Advance(time.Hour)
			w.EndGrace(child, p)
		} else {
			w.Advance(w.Policy.GracePeriod)
			if err := w.Expire(child, p); err != nil {
				t.Fatalf("bustest: expire: %v", err)
			}
		}
		w.Revoke(child, member)
		w.Advance(time.Minute)
	}

	w.Close(member)

	// The event types World has no command for, through the aggregates,
	// on streams World writes no more to.
	x := extra{t: t, w: w}
	child := w.Children()[0]
	c := w.Child(child)
	x.commit(domain.ChildStream(child), projtest.Manager, "", c.Apply, must(t)(c.AllocateWorker(projtest.Manager, "worker-bob", w.Now)))

	invited := w.Invite(domain.KindParent)
	a := w.Account(invited)
	w.Advance(w.Policy.InvitationTTL + time.Hour)
	x.commit(domain.AccountStream(invited), domain.System, "invitation expired", a.Apply, must(t)(a.ExpireInvitation(w.Now)))

	carer := w.Carer()
	a = w.Account(carer)
	w.EnrolPhone(carer, "+447700900456")
	x.commit(domain.AccountStream(carer), projtest.Worker, "lost phone", a.Apply, must(t)(a.RequestPhoneReset(projtest.Worker, "lost phone", w.Now)))
	x.commit(domain.AccountStream(carer), projtest.Portals, "", a.Apply, must(t)(a.ClearPhone(projtest.Portals, w.Now)))

	subject := "idp|" + carer.String()
	link := domain.NewIdentityLink(subject)
	x.commit(domain.IdentityStream(subject), projtest.Service, "", link.Apply, must(t)(link.Link(carer, w.Now)))

	dpo := domain.Actor{ID: "dpo-1", Role: domain.RoleDPO}
	c = w.Child(child)
	x.commit(domain.ChildStream(child), dpo, "kept until the care leaver turns 75", c.Apply,
		must(t)(c.SetRetention(dpo, w.Now.AddDate(70, 0, 0), "kept until the care leaver turns 75", w.Now)))

	// The corrections (R18). A placement planned ahead and cancelled
	// before it starts, on a child World writes no more to.
	planned := w.RegisterChild()
	c = w.Child(planned)
	p := w.Place(planned, carer, w.Now.Add(7*24*time.Hour))
	x.commit(domain.ChildStream(planned), projtest.Worker, "carer unavailable", c.Apply,
		must(t)(c.CancelPlacement(projtest.Worker, p, "carer unavailable", w.Now)))

	// A placement planned ahead, and its end recorded ahead: the process
	// manager marks each when it comes.
	ahead := w.RegisterChild()
	c = w.Child(ahead)
	p = w.Place(ahead, carer, w.Now.Add(time.Hour))
	w.End(ahead, p, w.Now.Add(2*time.Hour))
	w.Advance(time.Hour)
	x.commit(domain.ChildStream(ahead), domain.System, "", c.Apply, must(t)(c.MarkStartReached(p, w.Now)))
	w.Advance(time.Hour)
	x.commit(domain.ChildStream(ahead), domain.System, "", c.Apply, must(t)(c.MarkEndReached(p, w.Now)))

	// The member closed above reopened.
	w.Advance(time.Hour)
	a = w.Account(member)
	x.commit(domain.AccountStream(member), projtest.Portals, "closed in error", a.Apply,
		must(t)(a.Reopen(projtest.Portals, "closed in error", w.Now)))

	// An account invited as commands.Service.Invite appends it (the
	// email's claim, then the invitation), activated, whose email is
	// changed: the worker's request, then the portals team's change as
	// commands.Service.ChangeEmail appends it (the new email's claim, the
	// change, the old email's release).
	const oldEmail, newEmail = "moving@example.org", "moved@example.org"
	moving := domain.AccountIDForEmail(oldEmail)
	a = domain.NewAccount(moving)
	oldClaim, newClaim := domain.NewEmailClaim(), domain.NewEmailClaim()
	invitation := must(t)(a.Invite(projtest.Worker, oldEmail, string(domain.KindParent), w.Now, w.Policy))
	x.commit(domain.EmailStream(oldEmail), projtest.Worker, "", oldClaim.Apply, must(t)(oldClaim.Claim(moving, false, w.Now)))
	x.commit(domain.AccountStream(moving), projtest.Worker, "", a.Apply, invitation)
	w.Advance(time.Hour)
	x.commit(domain.AccountStream(moving), projtest.Service, "", a.Apply,
		must(t)(a.Activate(projtest.Service, "idp|"+moving.String(), oldEmail, w.Now)))
	w.Advance(time.Hour)
	x.commit(domain.AccountStream(moving), projtest.Worker, "new email address", a.Apply,
		must(t)(a.RequestEmailChange(projtest.Worker, newEmail, "new email address", w.Now)))
	w.Advance(time.Hour)
	change := must(t)(a.ChangeEmail(projtest.Portals, newEmail, w.Now))
	x.commit(domain.EmailStream(newEmail), projtest.Portals, "", newClaim.Apply, must(t)(newClaim.Claim(moving, false, w.Now)))
	x.commit(domain.AccountStream(moving), projtest.Portals, "", a.Apply, change)
	x.commit(domain.EmailStream(oldEmail), projtest.Portals, "", oldClaim.Apply, must(t)(oldClaim.Release(moving, w.Now), nil))
	// The policy (R25): the engine's initial one, then a manager's change.
	policies := domain.NewPolicyHistory(w.Policy)
	x.commit(domain.PolicyStream, domain.System, "initial policy from start-up flags", func(domain.Event) error { return nil },
		must(t)(policies.SetPolicy(domain.System, domain.PolicyChange{}, "", w.Now)))
	longer := 2 * w.Policy.InvitationTTL
	x.commit(domain.PolicyStream, projtest.Manager, "review", func(domain.Event) error { return nil },
		must(t)(domain.NewPolicyHistory(w.Policy).SetPolicy(projtest.Manager, domain.PolicyChange{InvitationTTL: &longer}, "review", w.Now)))

	// Grants that end, and reviews (R19), on the child of the cancelled
	// placement: an open-ended grant reviewed, replaced by a time-limited
	// one that runs out.
	c = w.Child(planned)
	x.commit(domain.ChildStream(planned), projtest.Worker, "contact agreed", c.Apply,
		must(t)(c.GrantWith(projtest.Worker, w.Account(member), domain.GrantTerms{Relationship: string(domain.RelParent),
			Permissions: []string{domain.PermView}, Reason: "contact agreed"}, w.Now, w.Policy)))
	w.Advance(time.Hour)
	x.commit(domain.ChildStream(planned), projtest.Worker, "still agreed", c.Apply,
		must(t)(c.ReviewGrant(projtest.Worker, member, "still agreed", w.Now, w.Policy)))
	x.commit(domain.ChildStream(planned), projtest.Worker, "until the hearing", c.Apply,
		must(t)(c.GrantWith(projtest.Worker, w.Account(member), domain.GrantTerms{Relationship: string(domain.RelParent),
			Permissions: []string{domain.PermView}, Reason: "until the hearing", ExpiresAt: w.Now.Add(time.Hour)}, w.Now, w.Policy)))
	grantedAt := w.Now
	w.Advance(2 * time.Hour)
	x.commit(domain.ChildStream(planned), domain.System, "time-limited grant ran out", c.Apply,
		must(t)(c.ExpireGrant(member, grantedAt, w.Now)))

	// Erasures last: nothing personal is recorded of an erased subject.
	a = w.Account(invited)
	x.commit(domain.AccountStream(invited), dpo, "Art. 17 request", a.Apply, must(t)(a.Erase(dpo, "Art. 17 request", w.Now)))
	c = w.Child(child)
	x.commit(domain.ChildStream(child), dpo, "retention ended", c.Apply, must(t)(c.Erase(dpo, "retention ended", w.Now)))

	// Correlation and causation ids, as commands and the process manager
	// set them: one correlation per stream, caused by the previous event.
	var prev uuid.UUID
	for i := range w.Records {
		r := &w.Records[i]
		r.Meta.CorrelationID = uuid.NewSHA1(uuid.NameSpaceOID, []byte("correlation/"+r.Stream))
		r.Meta.CausationID = prev
		prev = r.ID
	}

	seen := map[string]bool{}
	for _, r := range w.Records {
		seen[r.Type] = true
	}
	for _, typ := range domain.EventTypes() {
		if !seen[typ] {
			t.Fatalf("bustest: History has no %s event", typ)
		}
	}
	return w.Records
}

// extra appends events the aggregates decided to the World's records, as
// World's own commands do. Only for streams World writes no more to.
type extra struct {
	t testing.TB
	w *projtest.World
}

func (x extra) commit(stream string, by domain.Actor, reason string, apply func(domain.Event) error, events []domain.Event) {
	x.t.Helper()
	var version uint64
	for _, r := range x.w.Records {
		if r.Stream == stream {
			version = r.Version
		}
	}
	cause := domain.Cause{Actor: by, Reason: reason, RecordedAt: x.w.Now}
	for _, e := range events {
		data, err := cause.EventData(x.w.ID(), e)
		if err != nil {
			x.t.Fatalf("bustest: %v", err)
		}
		if err := apply(e); err != nil {
			x.t.Fatalf("bustest: %v", err)
		}
		version++
		x.w.Records = append(x.w.Records, eventlog.Record{ID: data.ID, Stream: stream, Version: version,
			Position: eventlog.At(uint64(len(x.w.Records) + 1)), Type: data.Type, Data: data.Data, Meta: data.Meta})
	}
}

func must(t testing.TB) func([]domain.Event, error) []domain.Event {
	return func(evs []domain.Event, err error) []domain.Event {
		t.Helper()
		if err != nil {
			t.Fatalf("bustest: %v", err)
		}
		if len(evs) == 0 {
			t.Fatalf("bustest: the aggregate decided nothing")
		}
		return evs
	}
}

// Appender is the part of an event store AppendAll writes through.
type Appender interface {
	Append(ctx context.Context, stream string, expected eventlog.ExpectedVersion, events []eventlog.EventData) (eventlog.AppendResult, error)
}

// AppendAll appends records to a store one by one, each at its stream
// version, so that an empty store gives them the positions they have.
func AppendAll(ctx context.Context, s Appender, recs []eventlog.Record) error {
	for _, r := range recs {
		res, err := s.Append(ctx, r.Stream, eventlog.Exactly(r.Version-1),
			[]eventlog.EventData{{ID: r.ID, Type: r.Type, Data: r.Data, Meta: r.Meta}})
		if err != nil {
			return fmt.Errorf("append %s at %s: %w", r.ID, r.Position, err)
		}
		if res.Position != r.Position {
			return fmt.Errorf("append %s: position %s, want %s", r.ID, res.Position, r.Position)
		}
	}
	return nil
}
