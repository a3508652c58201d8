package accessmodel_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accessmodel"
)

var (
	t0     = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	day    = 24 * time.Hour
	policy = domain.DefaultPolicy
)

// ---- Timeline ----

// factsGen draws the facts of one pair on a grid of whole minutes (so that
// times coincide often): an account that may be unactivated or closed, up
// to three placements (open, ended, with a grace that may be zero-length),
// and up to three grant intervals.
func factsGen() *rapid.Generator[accessmodel.Facts] {
	minute := func(t *rapid.T, label string) time.Time {
		return t0.Add(time.Duration(rapid.IntRange(0, 60).Draw(t, label)) * time.Minute)
	}
	maybe := func(t *rapid.T, label string, from time.Time) time.Time {
		if rapid.Bool().Draw(t, label+"?") {
			return time.Time{}
		}
		return from.Add(time.Duration(rapid.IntRange(0, 30).Draw(t, label)) * time.Minute)
	}
	return rapid.Custom(func(t *rapid.T) accessmodel.Facts {
		var f accessmodel.Facts
		f.Account.Kind = rapid.SampledFrom([]domain.AccountKind{domain.KindFosterCarer, domain.KindParent}).Draw(t, "kind")
		if rapid.IntRange(0, 5).Draw(t, "active") > 0 {
			f.Account.ActivatedAt = minute(t, "activated")
			f.Account.ClosedAt = maybe(t, "closed", f.Account.ActivatedAt)
		}
		for i := range rapid.IntRange(0, 3).Draw(t, "placements") {
			p := domain.PlacementFacts{Start: minute(t, fmt.Sprint("start", i))}
			if p.End = maybe(t, fmt.Sprint("end", i), p.Start); !p.End.IsZero() {
				p.GraceEnd = p.End.Add(time.Duration(rapid.IntRange(0, 15).Draw(t, fmt.Sprint("grace", i))) * time.Minute)
			}
			f.Placements = append(f.Placements, p)
		}
		for i := range rapid.IntRange(0, 3).Draw(t, "grants") {
			g := domain.GrantFacts{From: minute(t, fmt.Sprint("from", i))}
			g.To = maybe(t, fmt.Sprint("to", i), g.From)
			g.Permissions = rapid.SampledFrom([]domain.PermissionSet{
				domain.PermissionSet(domain.View), domain.PermissionSet(domain.View | domain.Record),
			}).Draw(t, fmt.Sprint("perms", i))
			f.Grants = append(f.Grants, g)
		}
		return f
	})
}

// TestTimelineIsTheSampledPolicy checks Timeline against brute force: the
// policy evaluated every half minute across the grid (so inside every
// interval between fact times and at every fact time), and far before and
// after it, lies in a segment with the same permissions and reason exactly
// when it allows something. The segments are ordered, disjoint, non-empty
// and maximal.
func TestTimelineIsTheSampledPolicy(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		f := factsGen().Draw(rt, "facts")
		segs := f.Timeline()

		for i, s := range segs {
			require.NotZero(rt, s.Permissions, "segment %d is empty", i)
			require.True(rt, s.To.IsZero() || s.From.Before(s.To), "segment %d: from %s to %s", i, s.From, s.To)
			if i == 0 {
				continue
			}
			prev := segs[i-1]
			require.False(rt, prev.To.IsZero(), "an open-ended segment %d before segment %d", i-1, i)
			require.False(rt, s.From.Before(prev.To), "segments %d and %d overlap", i-1, i)
			if prev.To.Equal(s.From) {
				require.False(rt, prev.Permissions == s.Permissions && prev.Reason == s.Reason, "segments %d and %d should be one", i-1, i)
			}
		}

		samples := []time.Time{t0.Add(-1000 * time.Hour), t0.Add(1000 * time.Hour)}
		for at := t0.Add(-time.Minute); !at.After(t0.Add(125 * time.Minute)); at = at.Add(30 * time.Second) {
			samples = append(samples, at)
		}
		for _, at := range samples {
			want := f.At(at)
			var in []accessmodel.Segment
			for _, s := range segs {
				if s.Contains(at) {
					in = append(in, s)
				}
			}
			if want.Permissions == 0 {
				require.Empty(rt, in, "no access at %s, yet a segment", at)
				continue
			}
			require.Len(rt, in, 1, "access %v at %s", want, at)
			require.Equal(rt, want.Permissions, in[0].Permissions, "at %s", at)
			require.Equal(rt, want.Reason, in[0].Reason, "at %s", at)
		}
	})
}

func TestTimelineExample(t *testing.T) {
	end := t0.Add(10 * day)
	f := accessmodel.Facts{
		Account:    domain.AccountFacts{Kind: domain.KindFosterCarer, ActivatedAt: t0},
		Placements: []domain.PlacementFacts{{Start: t0.Add(day), End: end, GraceEnd: end.Add(7 * day)}},
	}
	require.Equal(t, []accessmodel.Segment{
		{From: t0.Add(day), To: end, Permissions: domain.All, Reason: domain.ReasonPlacement},
		{From: end, To: end.Add(7 * day), Permissions: domain.PermissionSet(domain.View | domain.CompleteOutstanding), Reason: domain.ReasonGracePeriod},
	}, f.Timeline())
	require.Empty(t, (&accessmodel.Facts{}).Timeline())
}

// ---- Apply ----

// history records events decided by the aggregates with the next position.
type history struct {
	t        *testing.T
	children map[uuid.UUID]*domain.Child
	accounts map[uuid.UUID]*domain.Account
	versions map[string]uint64
	recs     []eventlog.Record
}

func newHistory(t *testing.T) *history {
	return &history{t: t, children: map[uuid.UUID]*domain.Child{}, accounts: map[uuid.UUID]*domain.Account{}, versions: map[string]uint64{}}
}

// add encodes events (already decided, applied here) into records.
func (l *history) add(stream string, by domain.Actor, now time.Time, apply func(domain.Event) error, evs []domain.Event, err error) []eventlog.Record {
	l.t.Helper()
	require.NoError(l.t, err)
	require.NotEmpty(l.t, evs)
	var out []eventlog.Record
	for _, e := range evs {
		require.NoError(l.t, apply(e))
		data, err := domain.Cause{Actor: by, Reason: "test", RecordedAt: now}.EventData(uuid.New(), e)
		require.NoError(l.t, err)
		l.versions[stream]++
		r := eventlog.Record{ID: data.ID, Stream: stream, Version: l.versions[stream],
			Position: eventlog.At(uint64(len(l.recs) + 1)), Type: data.Type, Data: data.Data, Meta: data.Meta}
		l.recs = append(l.recs, r)
		out = append(out, r)
	}
	return out
}

func (l *history) account(email string) (*domain.Account, uuid.UUID) {
	id := domain.AccountIDForEmail(email)
	if l.accounts[id] == nil {
		l.accounts[id] = domain.NewAccount(id)
	}
	return l.accounts[id], id
}

func TestApplyRoutesPairs(t *testing.T) {
	var (
		worker  = domain.Actor{ID: "worker-ann", Role: domain.RoleWorker}
		manager = domain.Actor{ID: "manager-meg", Role: domain.RoleManager}
		service = domain.Actor{ID: "portal-backend", Role: domain.RoleService}
		portals = domain.Actor{ID: "portals-pat", Role: domain.RolePortalsTeam}
		l       = newHistory(t)
		m       = accessmodel.New()
		child1  = uuid.New()
		child2  = uuid.New()
		pl1     = uuid.New()
		pl2     = uuid.New()
	)
	carer, carerID := l.account("carer@example.org")
	parent, parentID := l.account("parent@example.org")
	late, lateID := l.account("late@example.org")
	l.children[child1] = domain.NewChild(child1)
	l.children[child2] = domain.NewChild(child2)
	c1, c2 := l.children[child1], l.children[child2]
	pair := func(a, c uuid.UUID) accessmodel.Pair { return accessmodel.Pair{Account: a, Child: c} }

	tests := []struct {
		name    string
		do      func() []eventlog.Record
		pairs   [][]accessmodel.Pair // per record
		account *uuid.UUID
	}{
		{"an invitation: the account, no pairs yet", func() []eventlog.Record {
			evs, err := carer.Invite(worker, "carer@example.org", "foster_carer", t0, policy)
			return l.add(domain.AccountStream(carerID), worker, t0, carer.Apply, evs, err)
		}, [][]accessmodel.Pair{nil}, &carerID},
		{"an activation", func() []eventlog.Record {
			evs, err := carer.Activate(service, "idp|carer", "carer@example.org", t0)
			return l.add(domain.AccountStream(carerID), service, t0, carer.Apply, evs, err)
		}, [][]accessmodel.Pair{nil}, &carerID},
		{"another invitation", func() []eventlog.Record {
			evs, err := parent.Invite(worker, "parent@example.org", "parent", t0, policy)
			return l.add(domain.AccountStream(parentID), worker, t0, parent.Apply, evs, err)
		}, [][]accessmodel.Pair{nil}, &parentID},
		{"a child registered: no pair", func() []eventlog.Record {
			evs, err := c1.Register(worker, "C-1", time.Time{}, t0)
			return l.add(domain.ChildStream(child1), worker, t0, c1.Apply, evs, err)
		}, [][]accessmodel.Pair{nil}, nil},
		{"a worker allocated: no pair", func() []eventlog.Record {
			evs, err := c1.AllocateWorker(manager, "worker-bob", t0)
			return l.add(domain.ChildStream(child1), manager, t0, c1.Apply, evs, err)
		}, [][]accessmodel.Pair{nil}, nil},
		{"a placement: the carer with the child", func() []eventlog.Record {
			by := domain.Actor{ID: "worker-bob", Role: domain.RoleWorker}
			evs, err := c1.StartPlacement(by, pl1, carer, t0, t0)
			return l.add(domain.ChildStream(child1), by, t0, c1.Apply, evs, err)
		}, [][]accessmodel.Pair{{pair(carerID, child1)}}, nil},
		{"another child placed with the carer", func() []eventlog.Record {
			evs, err := c2.Register(worker, "C-2", time.Time{}, t0)
			recs := l.add(domain.ChildStream(child2), worker, t0, c2.Apply, evs, err)
			evs, err = c2.StartPlacement(worker, pl2, carer, t0, t0)
			return append(recs, l.add(domain.ChildStream(child2), worker, t0, c2.Apply, evs, err)...)
		}, [][]accessmodel.Pair{nil, {pair(carerID, child2)}}, nil},
		{"a grant: the grantee with the child", func() []eventlog.Record {
			evs, err := c2.Grant(worker, parent, "parent", []string{"view"}, "contact", t0.Add(day))
			return l.add(domain.ChildStream(child2), worker, t0.Add(day), c2.Apply, evs, err)
		}, [][]accessmodel.Pair{{pair(parentID, child2)}}, nil},
		{"the grantee's activation reaches its pair", func() []eventlog.Record {
			evs, err := parent.Activate(service, "idp|parent", "parent@example.org", t0.Add(day))
			return l.add(domain.AccountStream(parentID), service, t0.Add(day), parent.Apply, evs, err)
		}, [][]accessmodel.Pair{{pair(parentID, child2)}}, &parentID},
		{"a phone enrolment changes no access", func() []eventlog.Record {
			evs, err := carer.EnrolPhone(service, "+44 7700 900123", t0.Add(day))
			return l.add(domain.AccountStream(carerID), service, t0.Add(day), carer.Apply, evs, err)
		}, [][]accessmodel.Pair{nil}, nil},
		{"an identity link changes no access", func() []eventlog.Record {
			link := domain.NewIdentityLink("idp|carer")
			evs, err := link.Link(carerID, t0)
			return l.add(domain.IdentityStream("idp|carer"), service, t0, link.Apply, evs, err)
		}, [][]accessmodel.Pair{nil}, nil},
		{"an end of placement, backdated past the grace, with its expiry", func() []eventlog.Record {
			evs, err := c2.EndPlacement(worker, pl2, t0.Add(day), t0.Add(30*day), policy)
			return l.add(domain.ChildStream(child2), worker, t0.Add(30*day), c2.Apply, evs, err)
		}, [][]accessmodel.Pair{{pair(carerID, child2)}, {pair(carerID, child2)}}, nil},
		{"an end of placement, then the grace ended early", func() []eventlog.Record {
			by := domain.Actor{ID: "worker-bob", Role: domain.RoleWorker}
			evs, err := c1.EndPlacement(by, pl1, t0.Add(10*day), t0.Add(10*day), policy)
			recs := l.add(domain.ChildStream(child1), by, t0.Add(10*day), c1.Apply, evs, err)
			evs, err = c1.EndGraceEarly(by, pl1, "concern", t0.Add(11*day))
			return append(recs, l.add(domain.ChildStream(child1), by, t0.Add(11*day), c1.Apply, evs, err)...)
		}, [][]accessmodel.Pair{{pair(carerID, child1)}, {pair(carerID, child1)}}, nil},
		{"a revocation", func() []eventlog.Record {
			evs, err := c2.Revoke(worker, parentID, "suspended", t0.Add(12*day))
			return l.add(domain.ChildStream(child2), worker, t0.Add(12*day), c2.Apply, evs, err)
		}, [][]accessmodel.Pair{{pair(parentID, child2)}}, nil},
		{"a closure reaches every pair of the account, in first-seen order", func() []eventlog.Record {
			evs, err := carer.Close(portals, "left", t0.Add(40*day))
			return l.add(domain.AccountStream(carerID), portals, t0.Add(40*day), carer.Apply, evs, err)
		}, [][]accessmodel.Pair{{pair(carerID, child1), pair(carerID, child2)}}, &carerID},
		{"an invitation's expiry reaches the pairs of the account", func() []eventlog.Record {
			evs, err := late.Invite(worker, "late@example.org", "guardian", t0, policy)
			recs := l.add(domain.AccountStream(lateID), worker, t0, late.Apply, evs, err)
			evs, err = c2.Grant(worker, late, "guardian", []string{"view"}, "contact", t0.Add(day))
			recs = append(recs, l.add(domain.ChildStream(child2), worker, t0.Add(day), c2.Apply, evs, err)...)
			evs, err = late.ExpireInvitation(t0.Add(30 * day))
			return append(recs, l.add(domain.AccountStream(lateID), domain.System, t0.Add(30*day), late.Apply, evs, err)...)
		}, [][]accessmodel.Pair{nil, {pair(lateID, child2)}, {pair(lateID, child2)}}, &lateID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l.t = t
			recs := tt.do()
			require.Len(t, recs, len(tt.pairs))
			for i, rec := range recs {
				res, err := m.Apply(rec)
				require.NoError(t, err)
				require.Equal(t, rec.Type, res.Envelope.Type)
				require.Equal(t, rec.Position, res.Envelope.Position)
				if tt.pairs[i] == nil {
					require.Empty(t, res.Pairs, "record %d (%s)", i, rec.Type)
				} else {
					require.Equal(t, tt.pairs[i], res.Pairs, "record %d (%s)", i, rec.Type)
				}
				if i == len(recs)-1 {
					require.Equal(t, tt.account, res.Account)
				}
				require.Equal(t, rec.Position, m.Position())
			}
			// The model's facts are the aggregates' own, for every pair.
			for cid, c := range l.children {
				for aid, a := range l.accounts {
					want := accessmodel.Facts{Placements: c.PlacementFacts(aid), Grants: c.GrantFacts(aid)}
					if a.Exists() {
						want.Account = a.Facts()
					}
					require.Equal(t, want, m.Facts(pair(aid, cid)), "facts of %s with %s", aid, cid)
				}
			}
		})
	}

	require.Equal(t, uint64(len(l.recs)), m.Applied())
	require.Equal(t, []uuid.UUID{child1, child2}, m.ChildrenOf(carerID))
	require.Equal(t, []uuid.UUID{child2}, m.ChildrenOf(parentID))
	_, ok := m.Account(uuid.New())
	require.False(t, ok)

	// Provenance: the times of the pair's facts name the events that set
	// them; a time set by both a pair event and an account event names the
	// later one.
	ref, ok := m.Source(pair(carerID, child1), t0.Add(11*day))
	require.True(t, ok)
	require.Equal(t, domain.TypeGraceEndedEarly, ref.Type)
	require.Equal(t, "worker-bob", ref.ActorID)
	ref, ok = m.Source(pair(carerID, child1), t0.Add(40*day))
	require.True(t, ok)
	require.Equal(t, domain.TypeAccountClosed, ref.Type)
	_, ok = m.Source(pair(carerID, child1), t0.Add(99*day))
	require.False(t, ok)
}

func TestApplyRefuses(t *testing.T) {
	l := newHistory(t)
	acct, id := l.account("carer@example.org")
	evs, err := acct.Invite(domain.Actor{ID: "w", Role: domain.RoleWorker}, "carer@example.org", "foster_carer", t0, policy)
	recs := l.add(domain.AccountStream(id), domain.Actor{ID: "w", Role: domain.RoleWorker}, t0, acct.Apply, evs, err)

	tests := []struct {
		name string
		rec  func(eventlog.Record) eventlog.Record
	}{
		{"a record not after the last one", func(r eventlog.Record) eventlog.Record { return r }},
		{"an unknown type", func(r eventlog.Record) eventlog.Record {
			r.Position, r.Type = eventlog.At(2), "something.else.v1"
			return r
		}},
		{"data that does not decode", func(r eventlog.Record) eventlog.Record {
			r.Position, r.Data = eventlog.At(2), []byte(`{"bad":1}`)
			return r
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := accessmodel.New()
			_, err := m.Apply(recs[0])
			require.NoError(t, err)
			_, err = m.Apply(tt.rec(recs[0]))
			require.ErrorIs(t, err, accessmodel.ErrApply)
			require.Equal(t, eventlog.At(1), m.Position())
			require.Equal(t, uint64(1), m.Applied())
		})
	}
}
