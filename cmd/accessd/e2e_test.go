package main

// End-to-end tests: accessd serve runs in-process (run, as main calls it) on
// the embedded SQLite default and on PostgreSQL, and the tests talk to it
// over real HTTP with tokens signed by the data directory's secret. Each
// domain rule that shows at the API has a test named after it
// (TestRule_Rn_...); the others cover graceful shutdown, bad input,
// restarts, the watch stream and the accessctl command line.

import (
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
)

var allPerms = []string{"view", "record", "complete_outstanding"}

// childrenOf lists the children account may see now, by child id.
func (w *e2eWorld) childrenOf(account string) map[string]api.ChildAccess {
	w.t.Helper()
	var a api.ChildrenAnswer
	w.get(w.service, "/v1/accounts/"+account+"/children").decode(&a)
	out := map[string]api.ChildAccess{}
	for _, e := range a.Children {
		out[e.ChildID.String()] = e
	}
	return out
}

// viewersOf lists the accounts that may see child now, by account id.
func (w *e2eWorld) viewersOf(child string) map[string]api.Viewer {
	w.t.Helper()
	var a api.ViewersAnswer
	w.get(w.worker, "/v1/children/"+child+"/viewers").decode(&a)
	out := map[string]api.Viewer{}
	for _, e := range a.Viewers {
		out[e.AccountID.String()] = e
	}
	return out
}

// ---- R1 to R16 ----

func TestRule_R1_CarerSeesOwnCarerRecord(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		carer := w.account(string(domain.KindFosterCarer))
		other := w.account(string(domain.KindFosterCarer))
		parent := w.account(string(domain.KindParent))
		pending := w.invite(string(domain.KindFosterCarer))

		for _, p := range allPerms {
			a := w.checkCarer(carer.id, carer.id, p)
			requireAccess(t, a, true, "own_record", p)
			require.Nil(t, a.Until, "nothing scheduled ends it")
		}
		requireAccess(t, w.checkCarer(other.id, carer.id, "view"), false, "no_relationship", "another carer's record")
		requireAccess(t, w.checkCarer(parent.id, parent.id, "view"), false, "no_relationship", "a parent has no carer record")
		requireAccess(t, w.checkCarer(pending.id, pending.id, "view"), false, "account_not_active", "an invitation not yet accepted")
		v, _ := w.accountView(carer.id)
		require.NotNil(t, v.ActivatedAt)
		requireAccess(t, w.checkCarer(carer.id, carer.id, "view", v.ActivatedAt.Add(-time.Microsecond)), false,
			"account_not_active", "before the account was activated")
	})
}

func TestRule_R2_CarerSeesAndRecordsForPlacedChildren(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		child, other := w.registerChild(), w.registerChild()
		carer := w.account(string(domain.KindFosterCarer))
		stranger := w.account(string(domain.KindFosterCarer))
		parent := w.account(string(domain.KindParent))

		requireAccess(t, w.check(carer.id, child, "view"), false, "no_relationship", "before the placement")
		w.place(child, carer.id, now().Add(-30*day))
		for _, p := range allPerms {
			a := w.check(carer.id, child, p)
			requireAccess(t, a, true, "placement", p)
			require.Nil(t, a.Until, "an open placement")
		}
		requireAccess(t, w.check(carer.id, other, "view"), false, "no_relationship", "a child not placed with the carer")
		requireAccess(t, w.check(stranger.id, child, "view"), false, "no_relationship", "a carer the child is not placed with")

		kids := w.childrenOf(carer.id)
		require.Len(t, kids, 1)
		require.Equal(t, allPerms, strs(kids[child].Permissions))
		require.Equal(t, "placement", text(kids[child].Reason))
		viewers := w.viewersOf(child)
		require.Contains(t, viewers, carer.id)
		require.Equal(t, "placement", text(viewers[carer.id].Reason))
		require.NotContains(t, viewers, stranger.id)

		// Only a foster carer's account can be placed with a child.
		before := s.head()
		w.worker.do("POST", "/v1/children/"+other+"/placements",
			map[string]string{"carer_account_id": parent.id, "started_at": rfc(now())}).problem(409, "conflict")
		require.Equal(t, before, s.head())
	})
}

func TestRule_R3_GracePeriodGivesLimitedAccessUntilItsDeadline(t *testing.T) {
	const grace = 8 * time.Second // room for the checks below on a loaded machine
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, append(store, "--grace-period", grace.String())...)
		w := newWorld(s)
		child := w.registerChild()
		carer := w.account(string(domain.KindFosterCarer))
		pl := w.place(child, carer.id, now().Add(-day))

		endedAt := now()
		graceUntil := w.endPlacement(w.worker, child, pl, endedAt, "moved to a long-term placement")
		require.True(t, endedAt.Add(grace).Equal(graceUntil), "grace_until %s = ended_at %s + %s", graceUntil, endedAt, grace)

		// During the grace period, decided at the request's own time: view
		// and complete_outstanding, not record.
		view := w.check(carer.id, child, "view")
		require.True(t, view.At.Before(graceUntil), "the check ran %s after the end: the machine is too slow for this test", view.At.Sub(endedAt))
		requireAccess(t, view, true, "grace_period")
		require.Equal(t, []string{"view", "complete_outstanding"}, strs(view.Permissions))
		require.NotNil(t, view.Until)
		require.True(t, graceUntil.Equal(*view.Until))
		// What complete_outstanding covers: the work started before the end.
		require.NotNil(t, view.PlacementEndedAt)
		require.True(t, endedAt.Equal(*view.PlacementEndedAt), "placement_ended_at %s, ended_at %s", view.PlacementEndedAt, endedAt)
		requireAccess(t, w.check(carer.id, child, "complete_outstanding"), true, "grace_period")
		rec := w.check(carer.id, child, "record")
		require.False(t, rec.Allowed, "no new recordings in the grace period: %+v", rec)
		require.True(t, rec.At.Before(graceUntil))

		// The deadline is exact, to the microsecond.
		requireAccess(t, w.check(carer.id, child, "view", graceUntil.Add(-time.Microsecond)), true, "grace_period")
		for _, p := range allPerms {
			after := w.check(carer.id, child, p, graceUntil)
			requireAccess(t, after, false, "grace_expired", p)
			require.Nil(t, after.PlacementEndedAt, "only during a grace period")
		}

		// When the grace period ends, access ends, with no event needed: the
		// decision compares the deadline with its own time.
		require.Eventually(t, func() bool {
			a := w.check(carer.id, child, "view")
			return !a.Allowed && a.Reason == "grace_expired"
		}, e2eWait, 50*time.Millisecond)
		for _, p := range allPerms {
			requireAccess(t, w.check(carer.id, child, p), false, "grace_expired", p)
		}
		require.Empty(t, w.childrenOf(carer.id))

		// The audit trail names who ended the placement.
		ended := auditOf(w.audit("child_id="+child), domain.TypePlacementEnded)
		require.Len(t, ended, 1)
		require.Equal(t, w.worker.sub, ended[0].Actor)
		require.Equal(t, "worker", ended[0].ActorRole)
		require.Equal(t, "moved to a long-term placement", text(ended[0].Reason))
		require.True(t, endedAt.Equal(ended[0].EffectiveAt))
	})
}

// TestRule_R3_ExpiryEventIsRecordedAtTheDeadline: the process manager
// records the grace expiry as an event at the deadline.
func TestRule_R3_ExpiryEventIsRecordedAtTheDeadline(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, append(store, "--grace-period", "1s")...)
		w := newWorld(s)
		child := w.registerChild()
		carer := w.account(string(domain.KindFosterCarer))
		pl := w.place(child, carer.id, now().Add(-day))
		graceUntil := w.endPlacement(w.worker, child, pl, now(), "moved")
		require.Eventually(t, func() bool {
			return len(auditOf(w.audit("child_id="+child), domain.TypeGraceExpired)) == 1
		}, e2eWait, 100*time.Millisecond)
		e := auditOf(w.audit("child_id="+child), domain.TypeGraceExpired)[0]
		require.True(t, graceUntil.Equal(e.EffectiveAt))
		require.Equal(t, "system", e.ActorRole)
	})
}

func TestRule_R4_BackdatedAndPlannedPlacementTimes(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		grace := domain.DefaultPolicy.GracePeriod
		carer := w.account(string(domain.KindFosterCarer))

		// A start backdated to before the child was registered (the record
		// moved over from an older system).
		child := w.registerChild()
		startedAt := now().Add(-400 * day)
		pl := w.place(child, carer.id, startedAt)
		entries := w.audit("child_id=" + child)
		registered := auditOf(entries, domain.TypeChildRegistered)
		started := auditOf(entries, domain.TypePlacementStarted)
		require.Len(t, started, 1)
		require.True(t, startedAt.Equal(started[0].EffectiveAt), "effective time is the start")
		require.True(t, started[0].EffectiveAt.Before(registered[0].EffectiveAt), "before the child was registered")
		require.False(t, started[0].RecordedAt.Before(registered[0].RecordedAt), "recorded after it")

		// An end before its start is refused and appends nothing.
		before := s.head()
		w.worker.do("POST", "/v1/children/"+child+"/placements/"+pl+"/end",
			map[string]string{"ended_at": rfc(startedAt.Add(-time.Hour)), "reason": "typo"}).problem(400, "invalid")
		require.Equal(t, before, s.head())

		// A late end: grace counts from the effective end.
		endedAt := now().Add(-2 * day)
		graceUntil := w.endPlacement(w.worker, child, pl, endedAt, "recorded late")
		require.True(t, endedAt.Add(grace).Equal(graceUntil))
		a := w.check(carer.id, child, "view")
		requireAccess(t, a, true, "grace_period")
		require.True(t, graceUntil.Equal(*a.Until))
		require.False(t, w.check(carer.id, child, "record").Allowed)

		// An end recorded after its grace period is over: access ends at
		// once, and the expiry is written at once, with the end.
		child2 := w.registerChild()
		pl2 := w.place(child2, carer.id, now().Add(-400*day))
		placedAt := w.last.String()
		requireAccess(t, w.check(carer.id, child2, "record"), true, "placement")
		ended2 := now().Add(-10 * day)
		grace2 := w.endPlacement(w.worker, child2, pl2, ended2, "moved out ten days ago")
		require.True(t, ended2.Add(grace).Equal(grace2))
		for _, p := range allPerms {
			requireAccess(t, w.check(carer.id, child2, p), false, "grace_expired", p)
		}
		entries2 := w.audit("child_id=" + child2)
		endE, expE := auditOf(entries2, domain.TypePlacementEnded), auditOf(entries2, domain.TypeGraceExpired)
		require.Len(t, endE, 1)
		require.Len(t, expE, 1, "the expiry is written with the end")
		require.True(t, grace2.Equal(expE[0].EffectiveAt), "the expiry's effective time is the deadline")
		require.True(t, endE[0].RecordedAt.Equal(expE[0].RecordedAt), "recorded together")
		require.Equal(t, endE[0].Actor, expE[0].Actor)
		require.Equal(t, endE[0].Seq+1, expE[0].Seq)

		// History as known before the end was recorded shows the access
		// open; as known now, the carer never had access to child2 (the
		// account was activated after the grace period was over).
		asOf := intervalsOf(w.history("/v1/children/"+child2+"/history", "as_of="+placedAt), carer.id)
		require.Len(t, asOf, 1, "%+v", asOf)
		require.Nil(t, asOf[0].To)
		require.Equal(t, "placement", text(asOf[0].Reason))
		require.Empty(t, intervalsOf(w.history("/v1/children/"+child2+"/history", ""), carer.id))

		// A planned move: an end in the future.
		child3 := w.registerChild()
		pl3 := w.place(child3, carer.id, now().Add(-day))
		planned := now().Add(time.Hour)
		grace3 := w.endPlacement(w.worker, child3, pl3, planned, "planned move")
		require.True(t, planned.Add(grace).Equal(grace3))
		a = w.check(carer.id, child3, "record")
		requireAccess(t, a, true, "placement")
		require.True(t, planned.Equal(*a.Until), "the placement access ends at the planned end")
		requireAccess(t, w.check(carer.id, child3, "view", planned.Add(time.Minute)), true, "grace_period")
		require.False(t, w.check(carer.id, child3, "record", planned.Add(time.Minute)).Allowed)
		requireAccess(t, w.check(carer.id, child3, "view", grace3), false, "grace_expired")
	})
}

func TestRule_R5_ReplacementWithoutGapAndOverlappingCarers(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		child := w.registerChild()
		a := w.account(string(domain.KindFosterCarer))
		b := w.account(string(domain.KindFosterCarer))

		plA := w.place(child, a.id, now().Add(-30*day))
		graceUntil := w.endPlacement(w.worker, child, plA, now(), "placement breakdown")
		requireAccess(t, w.check(a.id, child, "view"), true, "grace_period")

		// The same carer is placed again before the grace period ends.
		w.place(child, a.id, now())
		for _, p := range allPerms {
			requireAccess(t, w.check(a.id, child, p), true, "placement", p)
		}
		// The old deadline changes nothing.
		requireAccess(t, w.check(a.id, child, "record", graceUntil.Add(time.Hour)), true, "placement")
		w.worker.do("POST", "/v1/children/"+child+"/placements/"+plA+"/end-grace",
			map[string]string{"reason": "no longer needed"}).problem(409, "conflict")

		// No gap in the history: each interval starts where the previous
		// one ended, and the last is open.
		ivs := intervalsOf(w.history("/v1/children/"+child+"/history", ""), a.id)
		require.NotEmpty(t, ivs)
		sort.Slice(ivs, func(i, j int) bool { return ivs[i].From.Before(ivs[j].From) })
		for i := 1; i < len(ivs); i++ {
			require.NotNil(t, ivs[i-1].To, "%+v", ivs)
			require.True(t, ivs[i-1].To.Equal(ivs[i].From), "gap between %+v and %+v", ivs[i-1], ivs[i])
		}
		require.Nil(t, ivs[len(ivs)-1].To)
		require.Equal(t, "placement", text(ivs[len(ivs)-1].Reason))

		// A placement of a carer who already has one at that time is
		// refused; another carer's may overlap (respite).
		w.worker.do("POST", "/v1/children/"+child+"/placements",
			map[string]string{"carer_account_id": a.id, "started_at": rfc(now())}).problem(409, "conflict")
		plB := w.place(child, b.id, now().Add(-day))
		viewers := w.viewersOf(child)
		require.Equal(t, "placement", text(viewers[a.id].Reason))
		require.Equal(t, "placement", text(viewers[b.id].Reason))

		// Each carer's access follows that carer's own placements.
		w.endPlacement(w.worker, child, plB, now(), "respite over")
		requireAccess(t, w.check(b.id, child, "view"), true, "grace_period")
		requireAccess(t, w.check(a.id, child, "record"), true, "placement")
		w.cmd(w.worker, "POST", "/v1/children/"+child+"/placements/"+plB+"/end-grace",
			map[string]string{"reason": "respite carer asked to be removed"}, 200)
		requireAccess(t, w.check(b.id, child, "view"), false, "grace_expired")
		requireAccess(t, w.check(a.id, child, "record"), true, "placement")
	})
}

// TestRule_R5_OldDeadlineIsNotTheAnswersUntil: after a re-placement within
// the grace period, the check's "until" ("when this answer stops holding;
// null when nothing known ends it", docs/openapi.yaml) must not be the old
// grace deadline, which changes nothing.
func TestRule_R5_OldDeadlineIsNotTheAnswersUntil(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		child := w.registerChild()
		a := w.account(string(domain.KindFosterCarer))
		pl := w.place(child, a.id, now().Add(-30*day))
		w.endPlacement(w.worker, child, pl, now(), "placement breakdown")
		w.place(child, a.id, now())
		c := w.check(a.id, child, "record")
		requireAccess(t, c, true, "placement")
		require.Nil(t, c.Until, "an open placement: nothing known ends it")
		require.Nil(t, w.viewersOf(child)[a.id].Until)
	})
}

func TestRule_R6_WorkerEndsGracePeriodEarly(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		child := w.registerChild()
		carer := w.account(string(domain.KindFosterCarer))
		pl := w.place(child, carer.id, now().Add(-30*day))
		w.endPlacement(w.worker, child, pl, now(), "moved")
		requireAccess(t, w.check(carer.id, child, "view"), true, "grace_period")
		path := "/v1/children/" + child + "/placements/" + pl + "/end-grace"

		before := s.head()
		s.as(domain.RoleWorker, "worker-not-allocated").do("POST", path, map[string]string{"reason": "concern"}).problem(403, "forbidden")
		w.worker.do("POST", path, map[string]string{"reason": ""}).problem(400, "invalid")
		w.worker.do("POST", path, map[string]string{}).problem(400, "invalid")
		require.Equal(t, before, s.head())

		const reason = "safeguarding concern raised at the strategy meeting"
		w.cmd(w.worker, "POST", path, map[string]string{"reason": reason}, 200)
		for _, p := range allPerms {
			requireAccess(t, w.check(carer.id, child, p), false, "grace_expired", p)
		}
		e := auditOf(w.audit("child_id="+child), domain.TypeGraceEndedEarly)
		require.Len(t, e, 1)
		require.Equal(t, w.worker.sub, e[0].Actor)
		require.Equal(t, reason, text(e[0].Reason))

		w.worker.do("POST", path, map[string]string{"reason": reason}).problem(409, "conflict")
	})
}
