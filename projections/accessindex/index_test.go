package accessindex_test

import (
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accessindex"
	"github.com/accessledger/accessledger/projections/accessmodel"
)

var allPerms = []domain.Permission{domain.View, domain.Record, domain.CompleteOutstanding}

// feed applies the world's new records to ix (a new index when nil) and
// returns it.
func feed(t *testing.T, w *world, ix *accessindex.Index) *accessindex.Index {
	t.Helper()
	if ix == nil {
		ix = accessindex.New()
	}
	require.NoError(t, ix.Apply(w.take()...))
	require.Equal(t, eventlog.At(uint64(len(w.recs))), ix.Position())
	return ix
}

// expect is one expected answer of the index.
type expect struct {
	name   string
	acct   uuid.UUID
	child  uuid.UUID
	at     time.Time
	perms  domain.PermissionSet
	reason domain.Reason
	until  time.Time
}

// requireAnswers checks every expectation with every permission, and that
// every answer carries the index's position.
func requireAnswers(t *testing.T, ix *accessindex.Index, tests []expect) {
	t.Helper()
	for _, tt := range tests {
		for _, p := range allPerms {
			got := ix.Check(tt.acct, tt.child, p, tt.at)
			// During a grace period, and only then, the answer says when the
			// placement ended (before the decision time).
			require.Equal(t, tt.reason == domain.ReasonGracePeriod, !got.PlacementEndedAt.IsZero(), "%s: placement_ended_at", tt.name)
			require.False(t, got.PlacementEndedAt.After(tt.at), "%s: the placement ended before the decision time", tt.name)
			got.PlacementEndedAt = time.Time{}
			want := accessindex.Answer{Allowed: tt.perms.Has(p), Permissions: tt.perms, Reason: tt.reason,
				Until: tt.until, Position: ix.Position()}
			require.Equal(t, want, got, "%s: %s", tt.name, p)
		}
	}
}

// requireAgrees checks the index against the aggregates at every time of
// times: Check for every account with every child, CheckCarer for every
// account with every foster carer, ChildrenOf and ViewersOf against the
// answers of the aggregates.
func requireAgrees(t testing.TB, ix *accessindex.Index, w *world, times ...time.Time) {
	t.Helper()
	pos := ix.Position()
	for _, at := range times {
		children := map[uuid.UUID][]accessindex.Entry{}
		viewers := map[uuid.UUID][]accessindex.Entry{}
		for _, p := range w.pairs(false) {
			want := w.want(p, at)
			for _, perm := range allPerms {
				got := ix.Check(p.Account, p.Child, perm, at)
				if exp := (accessindex.Answer{Allowed: want.Allows(perm), Permissions: want.Permissions,
					Reason: want.Reason, Until: want.Until, Position: pos}); !sameAnswer(exp, got) {
					require.Equal(t, exp, got, "%v at %s", p, at)
				}
			}
			if want.Permissions != 0 {
				e := accessindex.Entry{Account: p.Account, Child: p.Child, Permissions: want.Permissions, Reason: want.Reason, Until: want.Until}
				children[p.Account] = append(children[p.Account], e)
				viewers[p.Child] = append(viewers[p.Child], e)
			}
		}
		for id := range w.accounts {
			want := children[id]
			slices.SortFunc(want, func(a, b accessindex.Entry) int { return compareUUID(a.Child, b.Child) })
			got, gotPos := ix.ChildrenOf(id, at)
			require.Equal(t, want, got, "children of %s at %s", id, at)
			require.Equal(t, pos, gotPos)
		}
		for id := range w.children {
			want := viewers[id]
			slices.SortFunc(want, func(a, b accessindex.Entry) int { return compareUUID(a.Account, b.Account) })
			got, gotPos := ix.ViewersOf(id, at)
			require.Equal(t, want, got, "viewers of %s at %s", id, at)
			require.Equal(t, pos, gotPos)
		}
		for id, a := range w.accounts {
			for carer, c := range w.accounts {
				if c.Kind() != domain.KindFosterCarer {
					continue
				}
				want := domain.CarerRecordAccess(id == carer, a.Facts(), at)
				got := ix.CheckCarer(id, carer, domain.Record, at)
				if exp := (accessindex.Answer{Allowed: want.Allows(domain.Record), Permissions: want.Permissions,
					Reason: want.Reason, Until: want.Until, Position: pos}); !sameAnswer(exp, got) {
					require.Equal(t, exp, got, "carer record %s by %s at %s", carer, id, at)
				}
			}
		}
	}
}

func compareUUID(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) }

func sameAnswer(a, b accessindex.Answer) bool {
	return a.Allowed == b.Allowed && a.Permissions == b.Permissions && a.Reason == b.Reason &&
		a.Until.Equal(b.Until) && a.Position == b.Position
}

// changesAt returns the changes the index published at position p.
func changesAt(t *testing.T, ix *accessindex.Index, p eventlog.Position) []accessindex.Change {
	t.Helper()
	all, _, _, err := ix.Changes(eventlog.Start)
	require.NoError(t, err)
	var out []accessindex.Change
	for _, c := range all {
		if c.Position == p {
			out = append(out, c)
		}
	}
	return out
}

func last(w *world) eventlog.Position { return eventlog.At(uint64(len(w.recs))) }

func TestRule_R1_CarerRecord(t *testing.T) {
	w := newWorld(t, 1)
	carer := w.carer("carer", t0)
	other := w.carer("other", t0)
	parent := w.parent("parent", t0)
	invitedOnly := w.account("new@carers.example.org", domain.KindFosterCarer, t0, time.Time{})
	ix := feed(t, w, nil)

	tests := []struct {
		name         string
		acct, record uuid.UUID
		at           time.Time
		perms        domain.PermissionSet
		reason       domain.Reason
	}{
		{"own record", carer, carer, t0.Add(time.Minute), domain.All, domain.ReasonOwnRecord},
		{"before the account is active", carer, carer, t0.Add(-time.Minute), 0, domain.ReasonAccountNotActive},
		{"another carer's record", carer, other, t0.Add(time.Minute), 0, domain.ReasonNoRelationship},
		{"a parent's account is no carer", parent, parent, t0.Add(time.Minute), 0, domain.ReasonNoRelationship},
		{"an invited carer is not active", invitedOnly, invitedOnly, t0.Add(time.Minute), 0, domain.ReasonAccountNotActive},
		{"an unknown account", uuid.New(), carer, t0, 0, domain.ReasonNoRelationship},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range allPerms {
				got := ix.CheckCarer(tt.acct, tt.record, p, tt.at)
				require.Equal(t, accessindex.Answer{Allowed: tt.perms.Has(p), Permissions: tt.perms, Reason: tt.reason, Position: last(w)}, got, p.String())
			}
		})
	}

	w.closeAccount(carer, t0.Add(day))
	feed(t, w, ix)
	got := ix.CheckCarer(carer, carer, domain.View, t0.Add(day))
	require.Equal(t, accessindex.Answer{Reason: domain.ReasonAccountClosed, Position: last(w)}, got)
	got = ix.CheckCarer(carer, carer, domain.View, t0.Add(time.Hour))
	require.Equal(t, accessindex.Answer{Allowed: true, Permissions: domain.All, Reason: domain.ReasonOwnRecord, Until: t0.Add(day), Position: last(w)}, got)
	requireAgrees(t, ix, w, t0.Add(-time.Minute), t0, t0.Add(day))
}

func TestRule_R2_CurrentPlacement(t *testing.T) {
	w := newWorld(t, 2)
	carer := w.carer("carer", t0)
	child := w.child("C-1", "worker-ann", t0)
	w.place(child, carer, t0.Add(day), t0.Add(day))
	ix := feed(t, w, nil)

	requireAnswers(t, ix, []expect{
		{"during the placement: everything", carer, child, t0.Add(2 * day), domain.All, domain.ReasonPlacement, time.Time{}},
		{"at its start", carer, child, t0.Add(day), domain.All, domain.ReasonPlacement, time.Time{}},
		{"before it starts", carer, child, t0.Add(day - time.Second), 0, domain.ReasonNoRelationship, time.Time{}},
	})
	requireAgrees(t, ix, w, t0, t0.Add(day), t0.Add(30*day))
}

func TestRule_R3_GraceAllowsOnlyOutstandingWork(t *testing.T) {
	w := newWorld(t, 3)
	carer := w.carer("carer", t0)
	child := w.child("C-1", "worker-ann", t0)
	pl := w.place(child, carer, t0, t0)
	end := t0.Add(10 * day)
	deadline := end.Add(policy.GracePeriod)
	w.end(child, pl, end, end)
	ix := feed(t, w, nil)

	graceAndAfter := []expect{
		{"before the end: everything, until the end", carer, child, end.Add(-time.Hour), domain.All, domain.ReasonPlacement, end},
		{"during grace: view and complete_outstanding, not record", carer, child, end.Add(3 * day), viewCompleting, domain.ReasonGracePeriod, deadline},
		{"just before the deadline", carer, child, deadline.Add(-time.Microsecond), viewCompleting, domain.ReasonGracePeriod, deadline},
		{"at the deadline nothing, though no expiry event was written", carer, child, deadline, 0, domain.ReasonGraceExpired, time.Time{}},
		{"long after", carer, child, deadline.Add(300 * day), 0, domain.ReasonGraceExpired, time.Time{}},
	}
	requireAnswers(t, ix, graceAndAfter)
	ended := changesAt(t, ix, last(w))
	require.Equal(t, []accessindex.Change{{Account: carer, Child: child, At: end, Position: last(w),
		Access: domain.Access{Permissions: viewCompleting, Reason: domain.ReasonGracePeriod, Until: deadline}}}, ended)

	// The process manager is a day late: the answers do not change, and the
	// change feed learns of the expiry when it is recorded.
	w.expire(child, pl, deadline.Add(day))
	require.Len(t, w.recs, 6)
	feed(t, w, ix)
	requireAnswers(t, ix, graceAndAfter)
	require.Equal(t, []accessindex.Change{{Account: carer, Child: child, At: deadline.Add(day), Position: last(w),
		Access: domain.Access{Reason: domain.ReasonGraceExpired}}}, changesAt(t, ix, last(w)))
	requireAgrees(t, ix, w, t0, end, end.Add(day), deadline, deadline.Add(day))
}

func TestRule_R4_BackdatedAndPlannedEnds(t *testing.T) {
	tests := []struct {
		name    string
		endedAt time.Time
		now     time.Time
		records int // the end decision's events
		want    []expect
	}{
		{"backdated past the grace: no access now, the past kept", t0.Add(10 * day), t0.Add(30 * day), 2, []expect{
			{name: "now", at: t0.Add(30 * day), reason: domain.ReasonGraceExpired},
			{name: "in the past grace", at: t0.Add(12 * day), perms: viewCompleting, reason: domain.ReasonGracePeriod, until: t0.Add(17 * day)},
			{name: "before the effective end", at: t0.Add(9 * day), perms: domain.All, reason: domain.ReasonPlacement, until: t0.Add(10 * day)},
		}},
		{"backdated within the grace: grace counts from the effective end", t0.Add(10 * day), t0.Add(12 * day), 1, []expect{
			{name: "now", at: t0.Add(12 * day), perms: viewCompleting, reason: domain.ReasonGracePeriod, until: t0.Add(17 * day)},
			{name: "at the deadline", at: t0.Add(17 * day), reason: domain.ReasonGraceExpired},
		}},
		{"planned ahead: everything until the end, then grace", t0.Add(40 * day), t0.Add(20 * day), 1, []expect{
			{name: "now", at: t0.Add(20 * day), perms: domain.All, reason: domain.ReasonPlacement, until: t0.Add(40 * day)},
			{name: "at the end", at: t0.Add(40 * day), perms: viewCompleting, reason: domain.ReasonGracePeriod, until: t0.Add(47 * day)},
			{name: "at the deadline", at: t0.Add(47 * day), reason: domain.ReasonGraceExpired},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, 4)
			carer := w.carer("carer", t0)
			child := w.child("C-1", "worker-ann", t0)
			pl := w.place(child, carer, t0, t0)
			before := len(w.recs)
			w.end(child, pl, tt.endedAt, tt.now)
			require.Len(t, w.recs, before+tt.records)
			ix := feed(t, w, nil)
			for i := range tt.want {
				tt.want[i].acct, tt.want[i].child = carer, child
			}
			requireAnswers(t, ix, tt.want)
			requireAgrees(t, ix, w, t0, tt.endedAt, tt.now, tt.endedAt.Add(policy.GracePeriod))
		})
	}
}

func TestRule_R5_Replacement(t *testing.T) {
	t.Run("placed again within the grace: no gap", func(t *testing.T) {
		w := newWorld(t, 5)
		carer := w.carer("carer", t0)
		child := w.child("C-1", "worker-ann", t0)
		pl := w.place(child, carer, t0, t0)
		end := t0.Add(10 * day)
		w.end(child, pl, end, end)
		w.place(child, carer, end.Add(3*day), end.Add(3*day))
		w.expire(child, pl, end.Add(8*day)) // decides nothing
		ix := feed(t, w, nil)
		require.Len(t, w.recs, 6)

		for at := end; at.Before(end.Add(30 * day)); at = at.Add(6 * time.Hour) {
			require.True(t, ix.Check(carer, child, domain.View, at).Allowed, "no gap at %s", at)
		}
		requireAnswers(t, ix, []expect{
			// The answer changes when the new placement starts, not at the old deadline.
			{"in the grace before the new placement", carer, child, end.Add(day), viewCompleting, domain.ReasonGracePeriod, end.Add(3 * day)},
			{"during the new placement, before the old deadline", carer, child, end.Add(4 * day), domain.All, domain.ReasonPlacement, time.Time{}},
			{"after the old deadline", carer, child, end.Add(8 * day), domain.All, domain.ReasonPlacement, time.Time{}},
		})
		requireAgrees(t, ix, w, end, end.Add(3*day), end.Add(7*day), end.Add(8*day))
	})

	t.Run("overlapping placements with different carers", func(t *testing.T) {
		w := newWorld(t, 6)
		carer := w.carer("carer", t0)
		respite := w.carer("respite", t0)
		child := w.child("C-1", "worker-ann", t0)
		w.place(child, carer, t0, t0)
		rp := w.place(child, respite, t0.Add(day), t0.Add(day))
		w.end(child, rp, t0.Add(3*day), t0.Add(3*day))
		ix := feed(t, w, nil)

		requireAnswers(t, ix, []expect{
			{"the carer", carer, child, t0.Add(4 * day), domain.All, domain.ReasonPlacement, time.Time{}},
			{"the respite carer in grace", respite, child, t0.Add(4 * day), viewCompleting, domain.ReasonGracePeriod, t0.Add(10 * day)},
			{"the respite carer after", respite, child, t0.Add(10 * day), 0, domain.ReasonGraceExpired, time.Time{}},
		})
		both := []accessindex.Entry{
			{Account: carer, Child: child, Permissions: domain.All, Reason: domain.ReasonPlacement},
			{Account: respite, Child: child, Permissions: viewCompleting, Reason: domain.ReasonGracePeriod, Until: t0.Add(10 * day)},
		}
		slices.SortFunc(both, func(a, b accessindex.Entry) int { return compareUUID(a.Account, b.Account) })
		got, pos := ix.ViewersOf(child, t0.Add(4*day))
		require.Equal(t, both, got)
		require.Equal(t, last(w), pos)
		got, _ = ix.ViewersOf(child, t0.Add(10*day))
		require.Equal(t, []accessindex.Entry{{Account: carer, Child: child, Permissions: domain.All, Reason: domain.ReasonPlacement}}, got)
		requireAgrees(t, ix, w, t0, t0.Add(day), t0.Add(4*day), t0.Add(10*day))
	})
}

func TestRule_R6_GraceEndedEarly(t *testing.T) {
	w := newWorld(t, 7)
	carer := w.carer("carer", t0)
	child := w.child("C-1", "worker-ann", t0)
	pl := w.place(child, carer, t0, t0)
	end := t0.Add(10 * day)
	w.end(child, pl, end, end)
	early := end.Add(2 * day)
	w.endGraceEarly(child, pl, early)
	ix := feed(t, w, nil)

	requireAnswers(t, ix, []expect{
		{"just before the early end", carer, child, early.Add(-time.Second), viewCompleting, domain.ReasonGracePeriod, early},
		{"at the early end", carer, child, early, 0, domain.ReasonGraceExpired, time.Time{}},
		{"at the old deadline", carer, child, end.Add(policy.GracePeriod), 0, domain.ReasonGraceExpired, time.Time{}},
	})
	require.Equal(t, []accessindex.Change{{Account: carer, Child: child, At: early, Position: last(w),
		Access: domain.Access{Reason: domain.ReasonGraceExpired}}}, changesAt(t, ix, last(w)))
	requireAgrees(t, ix, w, end, early, end.Add(policy.GracePeriod))
}

func TestRule_R7_Grants(t *testing.T) {
	w := newWorld(t, 8)
	parent := w.parent("parent", t0)
	child := w.child("C-1", "worker-ann", t0)
	ix := feed(t, w, nil)
	requireAnswers(t, ix, []expect{{"no grant yet", parent, child, t0.Add(day), 0, domain.ReasonNoRelationship, time.Time{}}})

	w.grant(child, parent, "view", t0.Add(day))
	feed(t, w, ix)
	requireAnswers(t, ix, []expect{
		{"view only: view, not record", parent, child, t0.Add(2 * day), viewOnly, domain.ReasonGrant, time.Time{}},
		{"before the grant", parent, child, t0, 0, domain.ReasonNoRelationship, time.Time{}},
	})

	w.grant(child, parent, "view,record", t0.Add(2*day))
	feed(t, w, ix)
	requireAnswers(t, ix, []expect{
		{"with record", parent, child, t0.Add(3 * day), viewRecord, domain.ReasonGrant, time.Time{}},
		{"the narrower grant, in the past", parent, child, t0.Add(day), viewOnly, domain.ReasonGrant, t0.Add(2 * day)},
	})

	w.revoke(child, parent, t0.Add(4*day))
	feed(t, w, ix)
	requireAnswers(t, ix, []expect{
		{"revoked", parent, child, t0.Add(5 * day), 0, domain.ReasonRevoked, time.Time{}},
		{"before the revocation", parent, child, t0.Add(3 * day), viewRecord, domain.ReasonGrant, t0.Add(4 * day)},
	})
	require.Equal(t, []accessindex.Change{{Account: parent, Child: child, At: t0.Add(4 * day), Position: last(w),
		Access: domain.Access{Reason: domain.ReasonRevoked}}}, changesAt(t, ix, last(w)))
	requireAgrees(t, ix, w, t0, t0.Add(day), t0.Add(2*day), t0.Add(4*day))
}

func TestAccountEventsReachEveryPair(t *testing.T) {
	// A grant to an invited account gives nothing until the account is
	// activated; the activation changes every pair of the account.
	w := newWorld(t, 9)
	parent := w.account("late@family.example.org", domain.KindParent, t0, time.Time{})
	c1 := w.child("C-1", "worker-ann", t0)
	c2 := w.child("C-2", "worker-bob", t0)
	w.grant(c1, parent, "view", t0.Add(time.Hour))
	w.grant(c2, parent, "view,record", t0.Add(time.Hour))
	ix := feed(t, w, nil)
	requireAnswers(t, ix, []expect{
		{"c1 before activation", parent, c1, t0.Add(day), 0, domain.ReasonAccountNotActive, time.Time{}},
		{"c2 before activation", parent, c2, t0.Add(day), 0, domain.ReasonAccountNotActive, time.Time{}},
	})

	a := w.accounts[parent]
	evs, err := a.Activate(service, "idp|late", "late@family.example.org", t0.Add(2*day))
	w.record(domain.AccountStream(parent), service, t0.Add(2*day), a.Apply, evs, err)
	feed(t, w, ix)
	requireAnswers(t, ix, []expect{
		{"c1 after activation", parent, c1, t0.Add(3 * day), viewOnly, domain.ReasonGrant, time.Time{}},
		{"c2 after activation", parent, c2, t0.Add(3 * day), viewRecord, domain.ReasonGrant, time.Time{}},
		{"c1 before the activation time", parent, c1, t0.Add(day), 0, domain.ReasonAccountNotActive, time.Time{}},
	})
	require.Len(t, changesAt(t, ix, last(w)), 2, "one change per pair of the account")
	requireAgrees(t, ix, w, t0.Add(day), t0.Add(3*day))
}

func TestRule_R13_ClosingEndsAllAccess(t *testing.T) {
	w := newWorld(t, 10)
	carer := w.carer("carer", t0)
	parent := w.parent("parent", t0)
	child := w.child("C-1", "worker-ann", t0)
	other := w.child("C-2", "worker-ann", t0)
	w.place(child, carer, t0, t0)
	w.place(other, carer, t0, t0)
	w.grant(child, parent, "view,record", t0)
	closeAt := t0.Add(5 * day)
	w.closeAccount(carer, closeAt)
	w.closeAccount(parent, closeAt)
	ix := feed(t, w, nil)

	requireAnswers(t, ix, []expect{
		{"carer before the closure", carer, child, closeAt.Add(-time.Hour), domain.All, domain.ReasonPlacement, closeAt},
		{"parent before the closure", parent, child, closeAt.Add(-time.Hour), viewRecord, domain.ReasonGrant, closeAt},
		{"carer from the closure", carer, child, closeAt, 0, domain.ReasonAccountClosed, time.Time{}},
		{"carer's other child", carer, other, closeAt, 0, domain.ReasonAccountClosed, time.Time{}},
		{"parent from the closure", parent, child, closeAt, 0, domain.ReasonAccountClosed, time.Time{}},
		{"a child the parent never had", parent, other, closeAt, 0, domain.ReasonAccountClosed, time.Time{}},
	})
	got, _ := ix.ChildrenOf(carer, closeAt)
	require.Empty(t, got)
	got, _ = ix.ChildrenOf(carer, closeAt.Add(-time.Hour))
	require.Len(t, got, 2)
	got, _ = ix.ViewersOf(child, closeAt)
	require.Empty(t, got)
	require.Equal(t, accessindex.Answer{Reason: domain.ReasonAccountClosed, Position: last(w)}, ix.CheckCarer(carer, carer, domain.View, closeAt))

	// The carer's closure changed both of its pairs.
	closing := eventlog.At(uint64(len(w.recs) - 1))
	changes := changesAt(t, ix, closing)
	require.Len(t, changes, 2)
	for _, c := range changes {
		require.Equal(t, carer, c.Account)
		require.Equal(t, domain.Access{Reason: domain.ReasonAccountClosed}, c.Access)
	}
	requireAgrees(t, ix, w, t0, closeAt.Add(-time.Hour), closeAt)
}

func TestUnknownIDs(t *testing.T) {
	ix := accessindex.New()
	none := accessindex.Answer{Reason: domain.ReasonNoRelationship}
	require.Equal(t, none, ix.Check(uuid.New(), uuid.New(), domain.View, t0))
	require.Equal(t, none, ix.CheckCarer(uuid.New(), uuid.New(), domain.View, t0))
	got, pos := ix.ChildrenOf(uuid.New(), t0)
	require.Empty(t, got)
	require.Equal(t, eventlog.Start, pos)
	got, _ = ix.ViewersOf(uuid.New(), t0)
	require.Empty(t, got)

	w := newWorld(t, 11)
	active := w.parent("active", t0)
	invited := w.account("invited@family.example.org", domain.KindParent, t0, time.Time{})
	child := w.child("C-1", "worker-ann", t0)
	feed(t, w, ix)
	requireAnswers(t, ix, []expect{
		{"unknown account, known child", uuid.New(), child, t0.Add(day), 0, domain.ReasonNoRelationship, time.Time{}},
		{"known account, unknown child", active, uuid.New(), t0.Add(day), 0, domain.ReasonNoRelationship, time.Time{}},
		{"known account, no relationship", active, child, t0.Add(day), 0, domain.ReasonNoRelationship, time.Time{}},
		{"invited account", invited, child, t0.Add(day), 0, domain.ReasonAccountNotActive, time.Time{}},
		{"active account before its activation", active, child, t0.Add(-day), 0, domain.ReasonAccountNotActive, time.Time{}},
	})
	st := ix.Stats()
	require.Equal(t, accessindex.Stats{Position: last(w), Applied: uint64(len(w.recs)), Accounts: 2}, st)
}

func TestApplyStopsOnABadRecord(t *testing.T) {
	w := newWorld(t, 12)
	carer := w.carer("carer", t0)
	child := w.child("C-1", "worker-ann", t0)
	w.place(child, carer, t0, t0)
	recs := w.take()
	ix := accessindex.New()
	require.NoError(t, ix.Apply(recs[:2]...))

	bad := recs[3]
	bad.Position = eventlog.At(1) // out of order
	err := ix.Apply(recs[2], bad)
	require.ErrorIs(t, err, accessmodel.ErrApply)
	require.Equal(t, eventlog.At(3), ix.Position(), "the records before the bad one stay applied")
	require.ErrorIs(t, ix.Apply(recs[3]), accessmodel.ErrApply, "the index stays stopped")
	require.Equal(t, eventlog.At(3), ix.Check(carer, child, domain.View, t0).Position)
}

// TestAgreesWithAggregates feeds random realistic histories in random
// batches and checks every answer against the aggregates' own, at random
// times and at every time a fact names.
func TestAgreesWithAggregates(t *testing.T) {
	for seed := range uint64(4) {
		w := newWorld(t, 100+seed)
		generate(w, 12)
		recs := w.take()
		ix := accessindex.New()
		for len(recs) > 0 {
			n := min(len(recs), 1+w.rng.IntN(20))
			require.NoError(t, ix.Apply(recs[:n]...))
			recs = recs[n:]
		}
		require.Equal(t, last(w), ix.Position())
		// Times where answers change, and just before; and random ones.
		var times []time.Time
		for _, p := range w.pairs(true) {
			c := w.children[p.Child]
			for _, f := range c.PlacementFacts(p.Account) {
				times = append(times, f.Start, f.End, f.GraceEnd, f.GraceEnd.Add(-time.Microsecond))
			}
			for _, g := range c.GrantFacts(p.Account) {
				times = append(times, g.From, g.To)
			}
		}
		times = slices.DeleteFunc(times, time.Time.IsZero)
		w.rng.Shuffle(len(times), func(i, j int) { times[i], times[j] = times[j], times[i] })
		times = times[:min(len(times), 30)]
		for range 10 {
			times = append(times, t0.AddDate(-2, 0, 0).Add(time.Duration(w.rng.Int64N(int64(1000*day)))))
		}
		requireAgrees(t, ix, w, times...)
	}
}

// TestCheckMany: a batch answers, in order, exactly what Check and
// CheckCarer answer for each item, marks the items whose account, child or
// carer the index has never seen, and carries one position.
func TestCheckMany(t *testing.T) {
	w := newWorld(t, 13)
	carer := w.carer("carer", t0)
	parent := w.parent("parent", t0)
	invited := w.account("invited@family.example.org", domain.KindParent, t0, time.Time{})
	child := w.child("C-1", "worker-ann", t0)
	other := w.child("C-2", "worker-ann", t0)
	w.place(child, carer, t0.Add(day), t0.Add(day))
	w.grant(other, parent, "view", t0.Add(day))
	moved := w.carer("moved", t0)
	pl := w.place(other, moved, t0.Add(day), t0.Add(day))
	w.end(other, pl, t0.Add(day+time.Hour), t0.Add(day+time.Hour))
	ix := feed(t, w, nil)
	at := t0.Add(2 * day)
	stranger, nobody := uuid.New(), uuid.New()

	for _, tc := range []struct {
		name    string
		item    accessindex.CheckItem
		unknown bool
	}{
		{"placed carer, record", accessindex.CheckItem{Account: carer, Child: child, Permission: domain.Record}, false},
		{"granted parent, view", accessindex.CheckItem{Account: parent, Child: other, Permission: domain.View}, false},
		{"carer in a grace period", accessindex.CheckItem{Account: moved, Child: other, Permission: domain.CompleteOutstanding}, false},
		{"granted parent, record", accessindex.CheckItem{Account: parent, Child: other, Permission: domain.Record}, false},
		{"no relationship", accessindex.CheckItem{Account: parent, Child: child, Permission: domain.View}, false},
		{"invited account", accessindex.CheckItem{Account: invited, Child: child, Permission: domain.View}, false},
		{"own carer record", accessindex.CheckItem{Account: carer, Carer: carer, Permission: domain.Record}, false},
		{"someone else's carer record", accessindex.CheckItem{Account: parent, Carer: carer, Permission: domain.View}, false},
		{"unknown account", accessindex.CheckItem{Account: stranger, Child: child, Permission: domain.View}, true},
		{"unknown child", accessindex.CheckItem{Account: carer, Child: nobody, Permission: domain.View}, true},
		{"unknown carer", accessindex.CheckItem{Account: carer, Carer: nobody, Permission: domain.View}, true},
		{"a child id as carer", accessindex.CheckItem{Account: carer, Carer: child, Permission: domain.View}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The item alone, and in the middle of a batch.
			batch := []accessindex.CheckItem{{Account: carer, Child: child, Permission: domain.View}, tc.item,
				{Account: parent, Child: other, Permission: domain.Record}}
			got, pos := ix.CheckMany(batch, at, nil)
			require.Equal(t, last(w), pos)
			require.Len(t, got, len(batch))
			for i, it := range batch {
				want := ix.Check(it.Account, it.Child, it.Permission, at)
				if it.Carer != uuid.Nil {
					want = ix.CheckCarer(it.Account, it.Carer, it.Permission, at)
				}
				require.Equal(t, want, got[i].Answer, "item %d", i)
				require.Equal(t, pos, got[i].Position)
			}
			require.Equal(t, tc.unknown, got[1].Unknown)
			if got[1].Reason == domain.ReasonGracePeriod {
				require.True(t, got[1].PlacementEndedAt.Equal(t0.Add(day+time.Hour)), "placement_ended_at as Check's")
			}
			require.False(t, got[0].Unknown)
			require.False(t, got[2].Unknown)
		})
	}
	got, pos := ix.CheckMany(nil, at, nil)
	require.Empty(t, got)
	require.Equal(t, last(w), pos)
}
