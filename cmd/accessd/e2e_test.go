package main

// End-to-end tests: accessd serve runs in-process (run, as main calls it) on
// the embedded SQLite default and on PostgreSQL, and the tests talk to it
// over real HTTP with tokens signed by the data directory's secret. Each
// domain rule that shows at the API has a test named after it
// (TestRule_Rn_...); the others cover graceful shutdown, bad input,
// restarts, the watch stream and the accessctl command line.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

var allPerms = []string{"view", "record", "complete_outstanding"}

// e2eEntry is an entry of the children and viewers lists.
type e2eEntry struct {
	ChildID     string     `json:"child_id"`
	AccountID   string     `json:"account_id"`
	Permissions []string   `json:"permissions"`
	Reason      string     `json:"reason"`
	Until       *time.Time `json:"until"`
}

// childrenOf lists the children account may see now, by child id.
func (w *e2eWorld) childrenOf(account string) map[string]e2eEntry {
	w.t.Helper()
	var a struct {
		Children []e2eEntry `json:"children"`
	}
	w.get(w.service, "/v1/accounts/"+account+"/children").decode(&a)
	out := map[string]e2eEntry{}
	for _, e := range a.Children {
		out[e.ChildID] = e
	}
	return out
}

// viewersOf lists the accounts that may see child now, by account id.
func (w *e2eWorld) viewersOf(child string) map[string]e2eEntry {
	w.t.Helper()
	var a struct {
		Viewers []e2eEntry `json:"viewers"`
	}
	w.get(w.worker, "/v1/children/"+child+"/viewers").decode(&a)
	out := map[string]e2eEntry{}
	for _, e := range a.Viewers {
		out[e.AccountID] = e
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
		requireAccess(t, w.check(carer.id, child, "complete_outstanding"), true, "grace_period")
		rec := w.check(carer.id, child, "record")
		require.False(t, rec.Allowed, "no new recordings in the grace period: %+v", rec)
		require.True(t, rec.At.Before(graceUntil))

		// The deadline is exact, to the microsecond.
		requireAccess(t, w.check(carer.id, child, "view", graceUntil.Add(-time.Microsecond)), true, "grace_period")
		for _, p := range allPerms {
			requireAccess(t, w.check(carer.id, child, p, graceUntil), false, "grace_expired", p)
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

func TestRule_R7_NetworkMembersSeeOnlyThroughWorkersGrants(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		child := w.registerChild()
		member := w.account(string(domain.KindNetworkMember))
		parent := w.account(string(domain.KindParent))
		grants := "/v1/children/" + child + "/grants"

		requireAccess(t, w.check(member.id, child, "view"), false, "no_relationship")

		// Bad grants: no reason, a permission a grant cannot give, an
		// unknown relationship.
		before := s.head()
		for _, body := range []map[string]any{
			{"account_id": member.id, "relationship": "network_member", "permissions": []string{"view"}, "reason": ""},
			{"account_id": member.id, "relationship": "network_member", "permissions": []string{"view", "complete_outstanding"}, "reason": "r"},
			{"account_id": member.id, "relationship": "friend", "permissions": []string{"view"}, "reason": "r"},
			{"account_id": member.id, "relationship": "network_member", "permissions": []string{}, "reason": "r"},
		} {
			w.worker.do("POST", grants, body).problem(400, "invalid")
		}
		require.Equal(t, before, s.head())

		w.grant(w.worker, child, member.id, "network_member", []string{"view"}, "family friend, agreed at the review")
		a := w.check(member.id, child, "view")
		requireAccess(t, a, true, "grant")
		require.Equal(t, []string{"view"}, strs(a.Permissions))
		require.False(t, w.check(member.id, child, "record").Allowed)
		require.False(t, w.check(member.id, child, "complete_outstanding").Allowed)
		w.worker.do("POST", grants, map[string]any{"account_id": member.id, "relationship": "network_member",
			"permissions": []string{"view"}, "reason": "again"}).problem(409, "conflict")

		// A new grant replaces the old one: now with record.
		w.grant(w.worker, child, member.id, "network_member", []string{"view", "record"}, "helps with school forms")
		requireAccess(t, w.check(member.id, child, "record"), true, "grant")
		require.False(t, w.check(member.id, child, "complete_outstanding").Allowed, "a grant never gives complete_outstanding")
		require.Equal(t, []string{"view", "record"}, w.viewersOf(child)[member.id].Permissions)
		require.Contains(t, w.childrenOf(member.id), child)

		w.grant(w.worker, child, parent.id, "parent", []string{"view"}, "birth mother, contact plan")
		requireAccess(t, w.check(parent.id, child, "view"), true, "grant")

		// Revocation, with a reason.
		revoke := "/v1/children/" + child + "/grants/" + member.id + "/revoke"
		w.worker.do("POST", revoke, map[string]string{"reason": ""}).problem(400, "invalid")
		w.cmd(w.worker, "POST", revoke, map[string]string{"reason": "no longer part of the network"}, 200)
		for _, p := range allPerms {
			requireAccess(t, w.check(member.id, child, p), false, "revoked", p)
		}
		requireAccess(t, w.check(parent.id, child, "view"), true, "grant", "the parent's grant stands")
		w.worker.do("POST", revoke, map[string]string{"reason": "again"}).problem(404, "not_found")

		entries := w.audit("child_id=" + child)
		made := auditOf(entries, domain.TypeAccessGranted)
		require.Len(t, made, 3)
		var data struct {
			Relationship string   `json:"relationship"`
			Permissions  []string `json:"permissions"`
		}
		require.NoError(t, json.Unmarshal(made[1].Data, &data))
		require.Equal(t, "network_member", data.Relationship)
		require.Equal(t, []string{"view", "record"}, strs(data.Permissions))
		require.Equal(t, "helps with school forms", text(made[1].Reason))
		revoked := auditOf(entries, domain.TypeAccessRevoked)
		require.Len(t, revoked, 1)
		require.Equal(t, "no longer part of the network", text(revoked[0].Reason))
		require.Equal(t, w.worker.sub, revoked[0].Actor)
	})
}

func TestRule_R8_NobodyObtainsAccessByAsking(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		child := w.registerChild()
		carer := w.account(string(domain.KindFosterCarer))
		member := w.account(string(domain.KindNetworkMember))
		pl := w.place(child, carer.id, now().Add(-day))
		eve := s.as(domain.RoleWorker, "worker-eve-"+uuid.NewString()[:6])
		// A worker who is also the holder of the member's portal account
		// (same identity), allocated to a child of their own.
		selfWorker := s.as(domain.RoleWorker, member.subject)
		ownChild := w.registerChildBy(selfWorker)

		grantBody := func(account string, perms ...string) map[string]any {
			return map[string]any{"account_id": account, "relationship": "network_member", "permissions": perms, "reason": "please"}
		}
		grants := "/v1/children/" + child + "/grants"
		refusals := []struct {
			name         string
			c            *e2eClient
			method, path string
			body         any
		}{
			{"a worker not allocated to the child grants", eve, "POST", grants, grantBody(member.id, "view")},
			{"a manager grants", w.manager, "POST", grants, grantBody(member.id, "view")},
			{"the service grants", w.service, "POST", grants, grantBody(member.id, "view")},
			{"the portals team grants", w.portals, "POST", grants, grantBody(member.id, "view")},
			{"an auditor grants", w.auditor, "POST", grants, grantBody(member.id, "view")},
			{"the service widens a carer's access", w.service, "POST", grants, grantBody(carer.id, "view", "record")},
			{"an account holder grants themselves access", selfWorker, "POST", "/v1/children/" + ownChild + "/grants", grantBody(member.id, "view")},
			{"the service places a child", w.service, "POST", "/v1/children/" + child + "/placements",
				map[string]string{"carer_account_id": carer.id, "started_at": rfc(now())}},
			{"a worker not allocated ends a placement", eve, "POST", "/v1/children/" + child + "/placements/" + pl + "/end",
				map[string]string{"ended_at": rfc(now()), "reason": "r"}},
			{"a worker allocates a child to themselves", eve, "POST", "/v1/children/" + child + "/allocation",
				map[string]string{"worker_id": eve.sub}},
			{"the service invites", w.service, "POST", "/v1/invitations", map[string]string{"email": "x-" + uuid.NewString()[:8] + "@example.org", "kind": "parent"}},
			{"a worker closes an account", w.worker, "POST", "/v1/accounts/" + carer.id + "/close", map[string]string{"reason": "r"}},
		}
		before := s.head()
		ids := map[string]int{}
		for i, r := range refusals {
			id := fmt.Sprintf("e2e-r8-%d-%s", i, uuid.NewString()[:8])
			ids[id] = i
			res := r.c.do(r.method, r.path, r.body, "X-Request-Id", id)
			res.problem(403, "forbidden")
			require.Equal(t, id, res.header.Get("X-Request-Id"), r.name)
		}
		require.Equal(t, before, s.head(), "refused commands append nothing")
		requireAccess(t, w.check(member.id, child, "view"), false, "no_relationship")
		requireAccess(t, w.check(member.id, ownChild, "view"), false, "no_relationship")
		viewers := w.viewersOf(child)
		require.Len(t, viewers, 1, "nothing widened: %+v", viewers)
		require.Equal(t, "placement", text(viewers[carer.id].Reason))

		// Queries refused for the caller's role.
		w.service.do("GET", "/v1/audit", nil, "X-Request-Id", "e2e-r8-query-audit").problem(403, "forbidden")
		w.worker.do("GET", "/v1/security-log", nil, "X-Request-Id", "e2e-r8-query-seclog").problem(403, "forbidden")

		// Every refusal is in the security log, for auditors.
		log := w.securityLog("")
		found := map[string]e2eSecurityEntry{}
		for _, e := range log {
			found[e.RequestID] = e
		}
		for id, i := range ids {
			e, ok := found[id]
			require.True(t, ok, "%s: not in the security log", refusals[i].name)
			require.Equal(t, refusals[i].c.sub, e.ActorID, refusals[i].name)
			require.Equal(t, string(refusals[i].c.role), e.ActorRole, refusals[i].name)
			require.Equal(t, "forbidden", e.Code, refusals[i].name)
			require.NotEmpty(t, e.Command, refusals[i].name)
			require.NotEmpty(t, e.Target, refusals[i].name)
			require.NotEmpty(t, e.Detail, refusals[i].name)
		}
		require.Equal(t, "query_audit_list", found["e2e-r8-query-audit"].Command)
		require.Equal(t, "query_security_log", found["e2e-r8-query-seclog"].Command)
		require.Equal(t, "grant", found[keyOf(ids, 0)].Command)
		require.Equal(t, "child/"+child+"/grant/"+member.id, found[keyOf(ids, 0)].Target)

		// A manager reallocates the child: then only the new worker grants.
		w.cmd(w.manager, "POST", "/v1/children/"+child+"/allocation", map[string]string{"worker_id": eve.sub}, 200)
		w.worker.do("POST", grants, grantBody(member.id, "view")).problem(403, "forbidden")
		w.grant(eve, child, member.id, "network_member", []string{"view"}, "agreed at the review")
		requireAccess(t, w.check(member.id, child, "view"), true, "grant")
	})
}

// keyOf returns the key of m whose value is v.
func keyOf(m map[string]int, v int) string {
	for k, x := range m {
		if x == v {
			return k
		}
	}
	return ""
}

func TestRule_R9_AccountsExistOnlyByInvitation(t *testing.T) {
	const ttl = 8 * time.Second // room for the activation below on a loaded machine
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, append(store, "--invitation-ttl", ttl.String())...)
		w := newWorld(s)
		start := now()
		a := w.invite(string(domain.KindFosterCarer))
		require.False(t, a.expiresAt.Before(start.Add(ttl)), "expires_at %s: the policy's TTL from the invitation", a.expiresAt)

		// Accepted when the invitee signs in with an identity whose email
		// is the invited one, as reported by the service (and nobody else).
		act := "/v1/accounts/" + a.id + "/activation"
		before := s.head()
		w.worker.do("POST", act, map[string]string{"identity_subject": a.subject, "email": a.email}).problem(403, "forbidden")
		p := w.service.do("POST", act, map[string]string{"identity_subject": a.subject, "email": "someone-else@example.org"}).problem(409, "conflict")
		require.Contains(t, p.Detail, "does not match")
		w.activate(a)
		require.Equal(t, before+2, s.head(), "the activation and the identity's link; the refusals appended nothing")
		v, _ := w.accountView(a.id)
		require.Equal(t, "active", text(v.Status))
		require.Equal(t, "foster_carer", text(v.Kind))
		require.True(t, a.expiresAt.Equal(v.ExpiresAt))
		require.NotNil(t, v.ActivatedAt)

		before = s.head()
		w.service.do("POST", "/v1/accounts/"+uuid.NewString()+"/activation",
			map[string]string{"identity_subject": "idp|" + uuid.NewString(), "email": a.email}).problem(404, "not_found")
		w.service.do("POST", "/v1/invitations", map[string]string{"email": "x@example.org", "kind": "parent"}).problem(403, "forbidden")
		w.worker.do("POST", "/v1/invitations", map[string]string{"email": "x@example.org", "kind": "admin"}).problem(400, "invalid")
		require.Equal(t, before, s.head())
		var byIdentity struct {
			Accounts []struct {
				AccountID string `json:"account_id"`
			} `json:"accounts"`
		}
		w.get(w.service, "/v1/accounts?identity_subject="+a.subject).decode(&byIdentity)
		require.Len(t, byIdentity.Accounts, 1)
		require.Equal(t, a.id, text(byIdentity.Accounts[0].AccountID), "the identity's subject is linked")

		// An invitation nobody accepts expires.
		b := w.invite(string(domain.KindParent))
		v, _ = w.accountView(b.id, "at="+rfc(b.expiresAt.Add(-time.Microsecond)))
		require.Equal(t, "parent", text(v.Kind))
		require.Equal(t, "invited", text(v.Status))
		v, _ = w.accountView(b.id, "at="+rfc(b.expiresAt))
		require.Equal(t, "expired", text(v.Status))
		require.Eventually(t, func() bool {
			v, _ := w.accountView(b.id)
			return v.Status == "expired"
		}, e2eWait, 50*time.Millisecond)
		var expired struct {
			Accounts []struct {
				AccountID string `json:"account_id"`
				Status    string `json:"status"`
			} `json:"accounts"`
		}
		w.get(w.worker, "/v1/accounts?status=expired").decode(&expired)
		require.Len(t, expired.Accounts, 1, "the list agrees: %+v", expired)
		require.Equal(t, b.id, text(expired.Accounts[0].AccountID))
		// The status is "expired" from expires_at on; the process manager
		// writes InvitationExpired soon after: wait for it, so that the log
		// stands still while the refusal is checked.
		require.Eventually(t, func() bool {
			return len(auditOf(w.audit(""), domain.TypeInvitationExpired)) == 1
		}, e2eWait, 50*time.Millisecond)
		before = s.head()
		w.service.do("POST", "/v1/accounts/"+b.id+"/activation",
			map[string]string{"identity_subject": b.subject, "email": b.email}).problem(409, "conflict")
		require.Equal(t, before, s.head())
		v, _ = w.accountView(b.id)
		require.Equal(t, "expired", text(v.Status))

		// Inviting again renews the invitation.
		b2 := w.inviteEmail(b.email, string(domain.KindParent))
		require.Equal(t, b.id, b2.id, "one email, one account")
		require.True(t, b2.expiresAt.After(b.expiresAt))
		v, _ = w.accountView(b.id)
		require.Equal(t, "invited", text(v.Status))
	})
}

func TestRule_R10_OneEmailOneIdentityOneAccount(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		a := w.account(string(domain.KindFosterCarer))
		b := w.invite(string(domain.KindParent))
		before := s.head()

		for _, email := range []string{a.email, strings.ToUpper(a.email)} {
			p := w.worker.do("POST", "/v1/invitations", map[string]string{"email": email, "kind": "parent"}).problem(409, "already_registered")
			require.Contains(t, p.Detail, "already registered: sign in with your existing account")
		}
		// An identity already linked to another account.
		p := w.service.do("POST", "/v1/accounts/"+b.id+"/activation",
			map[string]string{"identity_subject": a.subject, "email": b.email}).problem(409, "already_registered")
		require.Contains(t, p.Detail, "already registered: sign in with your existing account")
		// An account whose identity would change.
		w.service.do("POST", "/v1/accounts/"+a.id+"/activation",
			map[string]string{"identity_subject": "idp|" + uuid.NewString(), "email": a.email}).problem(409, "already_registered")
		require.Equal(t, before, s.head())
		v, _ := w.accountView(b.id)
		require.Equal(t, "invited", text(v.Status))

		// Signing in again with the same identity changes nothing.
		w.cmd(w.service, "POST", "/v1/accounts/"+a.id+"/activation", map[string]string{"identity_subject": a.subject, "email": a.email}, 200)
		require.Equal(t, before, s.head())

		// The refusals are in the security log.
		log := w.securityLog("code=already_registered")
		require.GreaterOrEqual(t, len(log), 4, "%+v", log)
	})
}

func TestRule_R11_PhoneResetWorkflow(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		carer := w.account(string(domain.KindFosterCarer))
		phone := "/v1/accounts/" + carer.id + "/phone"
		resets := "/v1/accounts/" + carer.id + "/phone-reset-requests"
		const first, second = "+44 7700 900123", "07700 900456"

		v, _ := w.accountView(carer.id)
		require.True(t, v.NeedsPhoneEnrolment)
		require.Nil(t, v.PhoneHint)

		// The service reports the enrolment at sign-in; the engine keeps the
		// last three digits.
		w.cmd(w.service, "PUT", phone, map[string]string{"phone": first}, 200)
		v, r := w.accountView(carer.id)
		require.False(t, v.NeedsPhoneEnrolment)
		require.NotNil(t, v.PhoneHint)
		require.Equal(t, "***123", *v.PhoneHint)
		require.NotContains(t, string(r.body), "900123")

		// Nobody changes the number directly: not its user (through the
		// service), not a worker, not the portals team.
		before := s.head()
		p := w.service.do("PUT", phone, map[string]string{"phone": second}).problem(409, "conflict")
		require.Contains(t, p.Detail, "cannot be changed by its user")
		w.worker.do("PUT", phone, map[string]string{"phone": second}).problem(403, "forbidden")
		w.portals.do("PUT", phone, map[string]string{"phone": second}).problem(403, "forbidden")
		// The portals team clears only after a worker's request.
		w.portals.do("POST", phone+"/clear", map[string]string{}).problem(409, "conflict")
		w.worker.do("POST", resets, map[string]string{"reason": ""}).problem(400, "invalid")
		s.as(domain.RoleWorker, carer.subject).do("POST", resets, map[string]string{"reason": "my own phone"}).problem(403, "forbidden")
		w.service.do("POST", resets, map[string]string{"reason": "lost phone"}).problem(403, "forbidden")
		require.Equal(t, before, s.head())

		w.cmd(w.worker, "POST", resets, map[string]string{"reason": "carer lost their phone, confirmed by call"}, 200)
		var pending struct {
			Accounts []struct {
				AccountID           string `json:"account_id"`
				PhoneResetRequested bool   `json:"phone_reset_requested"`
			} `json:"accounts"`
		}
		w.get(w.portals, "/v1/accounts?phone_reset_requested=true").decode(&pending)
		require.Len(t, pending.Accounts, 1)
		require.Equal(t, carer.id, text(pending.Accounts[0].AccountID))
		w.worker.do("POST", resets, map[string]string{"reason": "again"}).problem(409, "conflict")
		w.worker.do("POST", phone+"/clear", map[string]string{}).problem(403, "forbidden")
		w.service.do("POST", phone+"/clear", map[string]string{}).problem(403, "forbidden")

		w.cmd(w.portals, "POST", phone+"/clear", map[string]string{}, 200)
		v, _ = w.accountView(carer.id)
		require.True(t, v.NeedsPhoneEnrolment, "needs phone enrolment until the next sign-in")
		require.Nil(t, v.PhoneHint)

		w.cmd(w.service, "PUT", phone, map[string]string{"phone": second}, 200)
		v, _ = w.accountView(carer.id)
		require.False(t, v.NeedsPhoneEnrolment)
		require.Equal(t, "***456", *v.PhoneHint)

		// Only the masked number was ever kept.
		entries := w.audit("account_id=" + carer.id)
		require.Len(t, auditOf(entries, domain.TypePhoneEnrolled), 2)
		raw, err := json.Marshal(entries)
		require.NoError(t, err)
		for _, digits := range []string{"7700 900123", "7700900123", "7700 900456", "7700900456"} {
			require.NotContains(t, string(raw), digits)
		}
		if s.isSQLite() {
			files := string(s.dbFiles())
			for _, digits := range []string{"7700 900123", "7700900123", "7700 900456", "7700900456"} {
				require.NotContains(t, files, digits, "the database holds the full number")
			}
		}
	})
}

func TestRule_R12_NoPasswordIsEverReceivedOrStored(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		a := w.invite(string(domain.KindFosterCarer))
		secret := "CorrectHorseBatteryStaple-" + uuid.NewString()
		before := s.head()
		for _, r := range []struct {
			c            *e2eClient
			method, path string
			body         map[string]string
		}{
			{w.worker, "POST", "/v1/invitations", map[string]string{"email": "p-" + uuid.NewString()[:8] + "@example.org", "kind": "parent", "password": secret}},
			{w.service, "POST", "/v1/accounts/" + a.id + "/activation", map[string]string{"identity_subject": a.subject, "email": a.email, "password": secret}},
			{w.service, "POST", "/v1/accounts/" + a.id + "/activation", map[string]string{"identity_subject": a.subject, "email": a.email, "new_password": secret}},
			{w.service, "PUT", "/v1/accounts/" + a.id + "/phone", map[string]string{"phone": "+44 7700 900123", "password": secret}},
		} {
			p := r.c.do(r.method, r.path, r.body).problem(400, "invalid")
			require.Contains(t, p.Detail, "password")
			require.NotContains(t, p.Detail, secret, "the problem never echoes the value")
		}
		require.Equal(t, before, s.head())
		w.activate(a)
		_, r := w.accountView(a.id)
		require.NotContains(t, strings.ToLower(string(r.body)), "passw")
		require.NotContains(t, s.logText(), secret, "not even the log saw it")
		if s.isSQLite() {
			require.NotContains(t, string(s.dbFiles()), secret)
		}
	})
}

// TestRule_R12_OpenAPIHasNoPassword: no property or parameter of the API's
// document is a password.
func TestRule_R12_OpenAPIHasNoPassword(t *testing.T) {
	t.Parallel()
	doc, err := openapi3.NewLoader().LoadFromFile("../../docs/openapi.yaml")
	require.NoError(t, err)
	raw, err := json.Marshal(doc)
	require.NoError(t, err)
	var tree any
	require.NoError(t, json.Unmarshal(raw, &tree))
	var names []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if props, ok := x["properties"].(map[string]any); ok {
				for k := range props {
					names = append(names, k)
				}
			}
			if n, ok := x["name"].(string); ok && x["in"] != nil {
				names = append(names, n)
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(tree)
	require.Contains(t, names, "identity_subject", "the walk finds the properties")
	require.Contains(t, names, "min_position", "the walk finds the parameters")
	for _, n := range names {
		require.NotContains(t, strings.ToLower(n), "passw", n)
	}
}

func TestRule_R13_ClosingAnAccountEndsAllItsAccess(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		c1, c2 := w.registerChild(), w.registerChild()
		carer := w.account(string(domain.KindFosterCarer))
		member := w.account(string(domain.KindNetworkMember))
		w.place(c1, carer.id, now().Add(-30*day))
		pl2 := w.place(c2, carer.id, now().Add(-30*day))
		w.endPlacement(w.worker, c2, pl2, now(), "moved") // in grace on c2
		w.grant(w.worker, c1, member.id, "network_member", []string{"view", "record"}, "aunt")
		requireAccess(t, w.check(carer.id, c1, "record"), true, "placement")
		requireAccess(t, w.check(carer.id, c2, "view"), true, "grace_period")
		requireAccess(t, w.checkCarer(carer.id, carer.id, "view"), true, "own_record")
		require.Len(t, w.childrenOf(carer.id), 2)

		closePath := "/v1/accounts/" + carer.id + "/close"
		before := s.head()
		w.worker.do("POST", closePath, map[string]string{"reason": "r"}).problem(403, "forbidden")
		w.portals.do("POST", closePath, map[string]string{"reason": ""}).problem(400, "invalid")
		require.Equal(t, before, s.head())

		w.cmd(w.portals, "POST", closePath, map[string]string{"reason": "carer deregistered at panel"}, 200)
		for _, child := range []string{c1, c2} {
			for _, p := range allPerms {
				requireAccess(t, w.check(carer.id, child, p), false, "account_closed", p)
			}
			require.NotContains(t, w.viewersOf(child), carer.id)
		}
		requireAccess(t, w.checkCarer(carer.id, carer.id, "view"), false, "account_closed")
		require.Empty(t, w.childrenOf(carer.id))
		v, _ := w.accountView(carer.id)
		require.Equal(t, "closed", text(v.Status))
		require.NotNil(t, v.ClosedAt)
		requireAccess(t, w.check(member.id, c1, "record"), true, "grant", "other accounts keep theirs")

		// A closed account gets nothing new.
		w.portals.do("POST", closePath, map[string]string{"reason": "again"}).problem(409, "conflict")
		w.worker.do("POST", "/v1/children/"+c2+"/placements",
			map[string]string{"carer_account_id": carer.id, "started_at": rfc(now())}).problem(409, "conflict")

		// The member's account too.
		w.cmd(w.portals, "POST", "/v1/accounts/"+member.id+"/close", map[string]string{"reason": "asked to leave"}, 200)
		requireAccess(t, w.check(member.id, c1, "view"), false, "account_closed")
		w.worker.do("POST", "/v1/children/"+c2+"/grants", map[string]any{"account_id": member.id,
			"relationship": "network_member", "permissions": []string{"view"}, "reason": "r"}).problem(409, "conflict")
		require.Empty(t, w.viewersOf(c1))
	})
}

func TestRule_R14_EveryChangeIsAnAuditedEventAndTheTrailVerifies(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		// Every command of the API, with the reasons the API takes.
		reasons := map[string]string{}
		child := w.registerChild()
		carer := w.account(string(domain.KindFosterCarer))
		member := w.account(string(domain.KindNetworkMember))
		pl := w.place(child, carer.id, now().Add(-day))
		reasons[domain.TypeAccessGranted] = "grandmother, agreed at review"
		w.grant(w.worker, child, member.id, "guardian", []string{"view"}, reasons[domain.TypeAccessGranted])
		reasons[domain.TypeAccessRevoked] = "contact suspended"
		w.cmd(w.worker, "POST", "/v1/children/"+child+"/grants/"+member.id+"/revoke", map[string]string{"reason": reasons[domain.TypeAccessRevoked]}, 200)
		reasons[domain.TypePlacementEnded] = "planned move"
		w.endPlacement(w.worker, child, pl, now(), reasons[domain.TypePlacementEnded])
		reasons[domain.TypeGraceEndedEarly] = "safeguarding"
		w.cmd(w.worker, "POST", "/v1/children/"+child+"/placements/"+pl+"/end-grace", map[string]string{"reason": reasons[domain.TypeGraceEndedEarly]}, 200)
		w.cmd(w.service, "PUT", "/v1/accounts/"+carer.id+"/phone", map[string]string{"phone": "+44 7700 900123"}, 200)
		reasons[domain.TypePhoneResetRequested] = "lost phone"
		w.cmd(w.worker, "POST", "/v1/accounts/"+carer.id+"/phone-reset-requests", map[string]string{"reason": reasons[domain.TypePhoneResetRequested]}, 200)
		w.cmd(w.portals, "POST", "/v1/accounts/"+carer.id+"/phone/clear", map[string]string{}, 200)
		w.cmd(w.manager, "POST", "/v1/children/"+child+"/allocation", map[string]string{"worker_id": "worker-zed"}, 200)
		reasons[domain.TypeAccountClosed] = "left fostering"
		w.cmd(w.portals, "POST", "/v1/accounts/"+member.id+"/close", map[string]string{"reason": reasons[domain.TypeAccountClosed]}, 200)
		ended := now().Add(-30 * day)
		child2 := w.registerChild()
		pl2 := w.place(child2, carer.id, now().Add(-60*day))
		w.endPlacement(w.worker, child2, pl2, ended, reasons[domain.TypePlacementEnded]) // and its expiry, at once

		entries := w.audit("")
		require.EqualValues(t, s.head(), len(entries), "one entry per event")
		types := map[string]bool{}
		for i, e := range entries {
			types[e.Type] = true
			require.EqualValues(t, i+1, e.Seq)
			require.NotEmpty(t, e.EventID, "%+v", e)
			require.NotEmpty(t, e.Actor, "%+v", e)
			require.NotEmpty(t, e.ActorRole, "%+v", e)
			require.NotNil(t, e.Reason, "every entry has a reason field: %+v", e)
			require.False(t, e.EffectiveAt.IsZero(), "%+v", e)
			require.False(t, e.RecordedAt.IsZero(), "%+v", e)
			require.Len(t, e.Hash, 64)
			if i > 0 {
				require.Equal(t, entries[i-1].Hash, e.PrevHash, "the chain links entry %d", e.Seq)
				require.False(t, e.RecordedAt.Before(entries[i-1].RecordedAt), "recorded in order")
			}
			if want, ok := reasons[e.Type]; ok {
				require.Equal(t, want, text(e.Reason), e.Type)
			}
		}
		for _, typ := range []string{domain.TypeChildRegistered, domain.TypeWorkerAllocated, domain.TypePlacementStarted,
			domain.TypePlacementEnded, domain.TypeGraceEndedEarly, domain.TypeGraceExpired, domain.TypeAccessGranted,
			domain.TypeAccessRevoked, domain.TypeAccountInvited, domain.TypeAccountActivated, domain.TypeIdentityLinked,
			domain.TypeAccountClosed, domain.TypePhoneResetRequested, domain.TypePhoneCleared, domain.TypePhoneEnrolled} {
			require.True(t, types[typ], "no %s in the trail", typ)
		}
		exp := auditOf(entries, domain.TypeGraceExpired)[0]
		require.True(t, ended.Add(domain.DefaultPolicy.GracePeriod).Equal(exp.EffectiveAt), "effective: the deadline")
		require.True(t, exp.RecordedAt.After(exp.EffectiveAt), "recorded: now")
		require.Equal(t, w.worker.sub, exp.Actor, "written by the end's command")

		var ok struct {
			OK          bool            `json:"ok"`
			Entries     int64           `json:"entries"`
			HeadHash    string          `json:"head_hash"`
			FirstBroken json.RawMessage `json:"first_broken"`
		}
		w.get(w.auditor, "/v1/audit/verify").decode(&ok)
		require.True(t, ok.OK)
		require.EqualValues(t, len(entries), ok.Entries)
		require.Equal(t, entries[len(entries)-1].Hash, ok.HeadHash)
		require.Equal(t, "null", string(ok.FirstBroken))

		// Edit one entry behind the server's back: verify names it.
		db := s.openDB()
		table := auditTable(t, s, db)
		const broken = 5
		res, err := db.ExecContext(context.Background(), "UPDATE "+table+" SET reason = 'nothing to see here' WHERE seq = ?", broken)
		require.NoError(t, err)
		n, err := res.RowsAffected()
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
		var bad struct {
			OK          bool  `json:"ok"`
			Entries     int64 `json:"entries"`
			FirstBroken *struct {
				Seq    int64  `json:"seq"`
				Reason string `json:"reason"`
			} `json:"first_broken"`
		}
		w.get(w.auditor, "/v1/audit/verify").decode(&bad)
		require.False(t, bad.OK)
		require.NotNil(t, bad.FirstBroken)
		require.EqualValues(t, broken, bad.FirstBroken.Seq)
		require.NotEmpty(t, bad.FirstBroken.Reason)
		require.EqualValues(t, broken-1, bad.Entries)

		// So does the operator's command, on the same store.
		args := append([]string{"audit", "verify", "--data-dir", s.dir}, s.storeFlags()...)
		code, out, errOut := runCmd(t, context.Background(), noEnv, args...)
		require.Equal(t, exitError, code, "%s%s", out, errOut)
		require.Contains(t, out, fmt.Sprintf("BROKEN at entry %d", broken))
	})
}

// auditTable finds the physical table of the audit trail: its name carries
// the read model's generation (audit_entries_g<N>, read through the view
// audit_entries).
func auditTable(t *testing.T, s *e2eServer, db *sqldb.DB) string {
	t.Helper()
	q := "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'audit_entries_g%'"
	if !s.isSQLite() {
		q = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name LIKE 'audit_entries_g%'"
	}
	rows, err := db.QueryContext(context.Background(), q)
	require.NoError(t, err)
	defer rows.Close()
	re := regexp.MustCompile(`^audit_entries_g(\d+)$`)
	best, gen := "", -1
	for rows.Next() {
		var name string
		require.NoError(t, rows.Scan(&name))
		if m := re.FindStringSubmatch(name); m != nil {
			if g, _ := strconv.Atoi(m[1]); g > gen {
				best, gen = name, g
			}
		}
	}
	require.NoError(t, rows.Err())
	require.NotEmpty(t, best, "no audit_entries_g<N> table")
	return best
}

func TestRule_R15_HistoryNamesTheEventsAndActorsOfEachAccess(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		child := w.registerChild()
		carer := w.account(string(domain.KindFosterCarer))
		member := w.account(string(domain.KindNetworkMember))
		pl := w.place(child, carer.id, now().Add(-10*day))
		w.grant(w.worker, child, member.id, "guardian", []string{"view"}, "grandmother")
		ben := s.as(domain.RoleWorker, "worker-ben-"+uuid.NewString()[:6])
		w.cmd(w.manager, "POST", "/v1/children/"+child+"/allocation", map[string]string{"worker_id": ben.sub}, 200)
		w.cmd(ben, "POST", "/v1/children/"+child+"/grants/"+member.id+"/revoke", map[string]string{"reason": "contact stopped"}, 200)
		w.endPlacement(ben, child, pl, now(), "moved")
		w.cmd(ben, "POST", "/v1/children/"+child+"/placements/"+pl+"/end-grace", map[string]string{"reason": "safeguarding"}, 200)

		entries := w.audit("child_id=" + child)
		granted := auditOf(entries, domain.TypeAccessGranted)[0]
		revoked := auditOf(entries, domain.TypeAccessRevoked)[0]

		all := w.history("/v1/children/"+child+"/history", "")
		m := intervalsOf(all, member.id)
		require.Len(t, m, 1, "%+v", all)
		require.Equal(t, "grant", text(m[0].Reason))
		require.Equal(t, []string{"view"}, strs(m[0].Permissions))
		require.True(t, granted.EffectiveAt.Equal(m[0].From))
		require.NotNil(t, m[0].To)
		require.True(t, revoked.EffectiveAt.Equal(*m[0].To))
		require.Equal(t, domain.TypeAccessGranted, m[0].OpenedByEvent.Type)
		require.Equal(t, text(granted.EventID), text(m[0].OpenedByEvent.EventID))
		require.Equal(t, w.worker.sub, m[0].OpenedByEvent.Actor)
		require.Equal(t, "worker", m[0].OpenedByEvent.ActorRole)
		require.Equal(t, domain.TypeAccessRevoked, m[0].ClosedByEvent.Type)
		require.Equal(t, ben.sub, m[0].ClosedByEvent.Actor, "the new worker revoked")

		c := intervalsOf(all, carer.id)
		require.Len(t, c, 2, "placement, then grace: %+v", c)
		sort.Slice(c, func(i, j int) bool { return c[i].From.Before(c[j].From) })
		require.Equal(t, "placement", text(c[0].Reason))
		require.Equal(t, allPerms, strs(c[0].Permissions))
		require.Equal(t, domain.TypeAccountActivated, c[0].OpenedByEvent.Type, "the account became active after the backdated start")
		require.Equal(t, "service", c[0].OpenedByEvent.ActorRole)
		require.Equal(t, domain.TypePlacementEnded, c[0].ClosedByEvent.Type)
		require.Equal(t, ben.sub, c[0].ClosedByEvent.Actor)
		require.Equal(t, "grace_period", text(c[1].Reason))
		require.Equal(t, []string{"view", "complete_outstanding"}, strs(c[1].Permissions))
		require.Equal(t, domain.TypePlacementEnded, c[1].OpenedByEvent.Type)
		require.Equal(t, domain.TypeGraceEndedEarly, c[1].ClosedByEvent.Type)
		require.Equal(t, ben.sub, c[1].ClosedByEvent.Actor)
		require.True(t, c[0].To.Equal(c[1].From))

		// Who could see the child at a time T in the past, and why.
		mid := granted.EffectiveAt.Add(revoked.EffectiveAt.Sub(granted.EffectiveAt) / 2)
		atMid := w.history("/v1/children/"+child+"/history", "at="+rfc(mid))
		require.Len(t, atMid, 2, "%+v", atMid)
		require.Len(t, intervalsOf(atMid, member.id), 1)
		require.Len(t, intervalsOf(atMid, carer.id), 1)
		require.Empty(t, w.history("/v1/children/"+child+"/history", "at="+rfc(now())), "nobody now")
		// The same from the account's side.
		acct := w.history("/v1/accounts/"+member.id+"/history", "")
		require.Len(t, acct, 1)
		require.Equal(t, child, text(acct[0].ChildID))
		require.Equal(t, text(m[0].OpenedByEvent.EventID), text(acct[0].OpenedByEvent.EventID))
		// And the check agrees at T.
		requireAccess(t, w.check(member.id, child, "view", mid), true, "grant")
	})
}

func TestRule_R16_PolicyIsPublished(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		type policy struct {
			GracePeriod         int64  `json:"grace_period"`
			InvitationTTL       int64  `json:"invitation_ttl"`
			SessionIdleTimeout  int64  `json:"session_idle_timeout"`
			SessionWarningAfter int64  `json:"session_warning_after"`
			Position            string `json:"position"`
		}
		for _, tc := range []struct {
			name  string
			flags []string
			want  policy
		}{
			{"defaults", nil, policy{GracePeriod: 7 * 24 * 3600, InvitationTTL: 14 * 24 * 3600, SessionIdleTimeout: 15 * 60, SessionWarningAfter: 10 * 60}},
			{"flags", []string{"--grace-period", "90m", "--invitation-ttl", "48h", "--session-idle-timeout", "20m", "--session-warning-after", "12m"},
				policy{GracePeriod: 90 * 60, InvitationTTL: 48 * 3600, SessionIdleTimeout: 20 * 60, SessionWarningAfter: 12 * 60}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := startServer(t, append(slices.Clone(store), tc.flags...)...)
				for _, role := range []domain.Role{domain.RoleService, domain.RoleWorker, domain.RoleManager, domain.RolePortalsTeam, domain.RoleAuditor} {
					var got policy
					r := s.as(role, "anyone").do("GET", "/v1/policy", nil)
					require.Equal(t, 200, r.status, r.String())
					r.decode(&got)
					require.NotEmpty(t, got.Position)
					got.Position = ""
					require.Equal(t, tc.want, got, role)
				}
				s.anonymous().do("GET", "/v1/policy", nil).problem(401, "unauthenticated")
			})
		}
		// A warning at or after the idle timeout is refused at start.
		code, _, errOut := runCmd(t, context.Background(), noEnv, append([]string{"serve", "--data-dir", t.TempDir(), "--addr", "127.0.0.1:0",
			"--session-idle-timeout", "10m", "--session-warning-after", "10m"}, store...)...)
		require.Equal(t, exitUsage, code, errOut)
	})
}

// ---- graceful shutdown, restarts, bad input ----

// TestGracefulShutdownLosesNoAcknowledgedCommand fires commands from
// several goroutines, stops the server (as SIGTERM does) in the middle,
// and after a restart on the same store finds the effect of every command
// the server acknowledged with a 2xx.
func TestGracefulShutdownLosesNoAcknowledgedCommand(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		worker := s.as(domain.RoleWorker, "worker-load")
		type ack struct {
			kind, id string
			pos      eventlog.Position
		}
		var (
			mu       sync.Mutex
			acks     []ack
			early    []string // failures before the stop began: none expected
			late     int      // no answer, or not a 2xx, once the stop began
			stopping atomic.Bool
			wg       sync.WaitGroup
		)
		fail := func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			if stopping.Load() {
				late++
				return
			}
			early = append(early, fmt.Sprintf(format, args...))
		}
		const goroutines, stopAfter, maxPerGoroutine = 6, 60, 1000
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range maxPerGoroutine {
					var (
						res  *e2eResp
						err  error
						kind string
					)
					if (g+i)%2 == 0 {
						kind = "child"
						res, err = worker.try("POST", "/v1/children", map[string]string{"reference": fmt.Sprintf("LOAD-%d-%d", g, i)})
					} else {
						kind = "account"
						res, err = worker.try("POST", "/v1/invitations", map[string]string{
							"email": fmt.Sprintf("load-%d-%d-%s@example.org", g, i, uuid.NewString()[:6]), "kind": "parent"})
					}
					if err != nil { // no answer: not acknowledged; the server is gone
						fail("no answer: %v", err)
						return
					}
					if res.status/100 != 2 {
						fail("%s", res)
						continue
					}
					var m map[string]any
					_ = json.Unmarshal(res.body, &m)
					p, perr := eventlog.ParsePosition(fmt.Sprint(m["position"]))
					id, _ := m[kind+"_id"].(string)
					if perr != nil || id == "" {
						fail("a 2xx answer without id or position: %s", res)
						continue
					}
					mu.Lock()
					acks = append(acks, ack{kind: kind, id: id, pos: p})
					mu.Unlock()
				}
			}()
		}
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(acks) >= stopAfter || len(early) > 0
		}, e2eWait, time.Millisecond)
		stopping.Store(true)
		s.stop() // cancels the server's context; requires exit code 0
		wg.Wait()
		require.Empty(t, early, "commands failed before the shutdown")
		require.GreaterOrEqual(t, len(acks), stopAfter)
		t.Logf("%d commands acknowledged; %d requests got no answer or not a 2xx once the stop began", len(acks), late)

		s.start()
		w := newWorld(s)
		byPos := map[eventlog.Position]ack{}
		for _, a := range acks {
			_, dup := byPos[a.pos]
			require.False(t, dup, "two acknowledged commands with position %s", a.pos)
			byPos[a.pos] = a
			if w.last.Before(a.pos) {
				w.last = a.pos
			}
		}
		require.False(t, s.headPosition().Before(w.last), "the log's head is at or after every acknowledged position")
		entries := w.audit("")
		atPos := map[string]e2eAuditEntry{}
		for _, e := range entries {
			atPos[e.Position] = e
		}
		for _, a := range acks {
			e, ok := atPos[a.pos.String()]
			require.True(t, ok, "acknowledged %s %s at %s: not in the log after the restart", a.kind, a.id, a.pos)
			if a.kind == "child" {
				require.Equal(t, domain.TypeChildRegistered, e.Type)
				require.Equal(t, a.id, text(*e.ChildID))
			} else {
				require.Equal(t, domain.TypeAccountInvited, e.Type)
				require.Equal(t, a.id, text(*e.AccountID))
				v, _ := w.accountView(a.id)
				require.Equal(t, "invited", text(v.Status))
			}
		}
	})
}

// TestRestartKeepsStateAndIdempotencyKeys: after a restart the index is
// rebuilt from the log (same answers), and a retried command with the
// same Idempotency-Key gets the first answer and appends nothing.
func TestRestartKeepsStateAndIdempotencyKeys(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		child := w.registerChild()
		carer := w.account(string(domain.KindFosterCarer))
		key := "e2e-" + uuid.NewString()
		body := map[string]string{"carer_account_id": carer.id, "started_at": rfc(now().Add(-day))}
		first := w.worker.do("POST", "/v1/children/"+child+"/placements", body, "Idempotency-Key", key)
		require.Equal(t, 201, first.status, first.String())
		w.note(first.json())
		before := w.check(carer.id, child, "record")
		requireAccess(t, before, true, "placement")
		head := s.head()

		s.restart() // the tokens stay valid: the secret is the data directory's
		after := w.check(carer.id, child, "record")
		require.Equal(t, before.Allowed, after.Allowed)
		require.Equal(t, text(before.Reason), text(after.Reason))
		require.Equal(t, before.Position, after.Position)

		again := w.worker.do("POST", "/v1/children/"+child+"/placements", body, "Idempotency-Key", key)
		require.Equal(t, 201, again.status, again.String())
		require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
		require.JSONEq(t, string(first.body), string(again.body))
		require.Equal(t, head, s.head(), "the retry appends nothing")
		// The same key for another request is refused.
		w.worker.do("POST", "/v1/children/"+child+"/placements", map[string]string{"carer_account_id": carer.id,
			"started_at": rfc(now())}, "Idempotency-Key", key).problem(422, "invalid")
	})
}

// TestBadInputAppendsNothing: malformed requests of every kind are refused
// with a 4xx problem and the right code, and none appends anything.
func TestBadInputAppendsNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		child := w.registerChild()
		carer := w.account(string(domain.KindFosterCarer))
		member := w.account(string(domain.KindNetworkMember))
		pl := w.place(child, carer.id, now().Add(-day))
		w.grant(w.worker, child, member.id, "network_member", []string{"view"}, "friend")
		head := s.head()
		seclog := len(w.securityLog(""))

		// A body of exactly 64 KiB + 1 byte, valid JSON.
		oversized := func(field string) []byte {
			prefix, suffix := `{"`+field+`":"`, `"}`
			return []byte(prefix + strings.Repeat("a", 64<<10+1-len(prefix)-len(suffix)) + suffix)
		}
		require.Len(t, oversized("reference"), 64<<10+1)
		grants := "/v1/children/" + child + "/grants"
		place := "/v1/children/" + child + "/placements"
		end := place + "/" + pl + "/end"
		invite := "/v1/invitations"
		phone := "/v1/accounts/" + carer.id + "/phone"
		tests := []struct {
			name         string
			c            *e2eClient
			method, path string
			body         any
			headers      []string
			status       int
			code         string
		}{
			{"oversized register", w.worker, "POST", "/v1/children", oversized("reference"), nil, 413, "too_large"},
			{"oversized grant reason", w.worker, "POST", grants, oversized("reason"), nil, 413, "too_large"},
			{"oversized invitation", w.worker, "POST", invite, oversized("email"), nil, 413, "too_large"},
			{"oversized no content length", w.worker, "POST", "/v1/children", &chunked{oversized("reference")}, nil, 413, "too_large"},
			{"malformed", w.worker, "POST", "/v1/children", `{"reference":`, nil, 400, "invalid"},
			{"empty", w.worker, "POST", "/v1/children", ``, nil, 400, "invalid"},
			{"not an object", w.worker, "POST", "/v1/children", `["NCC-1"]`, nil, 400, "invalid"},
			{"two values", w.worker, "POST", "/v1/children", `{"reference":"a"}{"reference":"b"}`, nil, 400, "invalid"},
			{"wrong type", w.worker, "POST", "/v1/children", `{"reference":42}`, nil, 400, "invalid"},
			{"wrong type in array", w.worker, "POST", grants, `{"account_id":"` + member.id + `","relationship":"network_member","permissions":[1],"reason":"r"}`, nil, 400, "invalid"},
			{"permissions not an array", w.worker, "POST", grants, `{"account_id":"` + member.id + `","relationship":"network_member","permissions":"view,record","reason":"r"}`, nil, 400, "invalid"},
			{"null required", w.worker, "POST", "/v1/children", `{"reference":null}`, nil, 400, "invalid"},
			{"missing field", w.worker, "POST", invite, `{"email":"a@example.org"}`, nil, 400, "invalid"},
			{"unknown field", w.worker, "POST", "/v1/children", `{"reference":"a","worker_id":"me"}`, nil, 400, "invalid"},
			{"field in another case", w.worker, "POST", "/v1/children", `{"Reference":"a"}`, nil, 400, "invalid"},
			{"duplicate field", w.worker, "POST", grants, `{"account_id":"` + member.id + `","relationship":"network_member","permissions":["view"],"reason":"a","reason":"b"}`, nil, 400, "invalid"},
			{"deeply nested", w.worker, "POST", "/v1/children", `{"reference":"a","x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, nil, 400, "invalid"},
			{"invalid UTF-8", w.worker, "POST", "/v1/children", []byte("{\"reference\":\"\xff\xfe\"}"), nil, 400, "invalid"},
			{"lone surrogate", w.worker, "POST", "/v1/children", `{"reference":"a\ud800b"}`, nil, 400, "invalid"},
			{"NUL", w.worker, "POST", "/v1/children", `{"reference":"a\u0000b"}`, nil, 400, "invalid"},
			{"escape character", w.worker, "POST", grants, `{"account_id":"` + member.id + `","relationship":"network_member","permissions":["view","record"],"reason":"\u001b[31mred"}`, nil, 400, "invalid"},
			{"right-to-left override", w.worker, "POST", "/v1/children/" + child + "/grants/" + member.id + "/revoke", `{"reason":"fine\u202egnp.exe"}`, nil, 400, "invalid"},
			{"bidi isolate in email", w.worker, "POST", invite, "{\"email\":\"a\u2067b@example.org\",\"kind\":\"parent\"}", nil, 400, "invalid"},
			{"replacement character", w.worker, "POST", "/v1/children", "{\"reference\":\"a\ufffdb\"}", nil, 400, "invalid"},
			{"not JSON content type", w.worker, "POST", "/v1/children", `{"reference":"a"}`, []string{"Content-Type", "text/plain"}, 415, "invalid"},
			{"form content type", w.worker, "POST", "/v1/children", `reference=a`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "invalid"},
			{"latin-1 charset", w.worker, "POST", "/v1/children", `{"reference":"a"}`, []string{"Content-Type", "application/json; charset=iso-8859-1"}, 415, "invalid"},
			{"bad path id", w.worker, "POST", "/v1/children/not-a-uuid/placements", `{"carer_account_id":"` + carer.id + `","started_at":"2026-01-01T00:00:00Z"}`, nil, 400, "invalid"},
			{"nil uuid", w.worker, "POST", place, `{"carer_account_id":"00000000-0000-0000-0000-000000000000","started_at":"2026-01-01T00:00:00Z"}`, nil, 400, "invalid"},
			{"braced uuid", w.worker, "POST", place, `{"carer_account_id":"{` + carer.id + `}","started_at":"2026-01-01T00:00:00Z"}`, nil, 400, "invalid"},
			{"time without zone", w.worker, "POST", end, `{"ended_at":"2026-01-01T00:00:00","reason":"r"}`, nil, 400, "invalid"},
			{"time in words", w.worker, "POST", end, `{"ended_at":"yesterday","reason":"r"}`, nil, 400, "invalid"},
			{"impossible date", w.worker, "POST", end, `{"ended_at":"2026-02-30T00:00:00Z","reason":"r"}`, nil, 400, "invalid"},
			{"year out of range", w.worker, "POST", end, `{"ended_at":"0001-01-01T00:00:00Z","reason":"r"}`, nil, 400, "invalid"},
			{"bad email", w.worker, "POST", invite, `{"email":"not-an-email","kind":"parent"}`, nil, 400, "invalid"},
			{"bad kind", w.worker, "POST", invite, `{"email":"k@example.org","kind":"Parent"}`, nil, 400, "invalid"},
			{"bad phone", w.service, "PUT", phone, `{"phone":"call me"}`, nil, 400, "invalid"},
			{"bad idempotency key", w.worker, "POST", "/v1/children", `{"reference":"a"}`, []string{"Idempotency-Key", strings.Repeat("k", 300)}, 400, "invalid"},
			{"no token", s.anonymous(), "POST", "/v1/children", `{"reference":"a"}`, nil, 401, "unauthenticated"},
			{"forged token", &e2eClient{s: s, token: w.worker.token[:len(w.worker.token)-2] + "xx"}, "POST", "/v1/children", `{"reference":"a"}`, nil, 401, "unauthenticated"},
			{"wrong method", w.worker, "DELETE", "/v1/children", nil, nil, 405, "invalid"},
			{"unknown path", w.worker, "POST", "/v1/children/" + child + "/adoptions", `{}`, nil, 404, "not_found"},
			{"unknown query parameter", w.worker, "POST", "/v1/children?force=true", `{"reference":"a"}`, nil, 400, "invalid"},
		}
		for _, tc := range tests {
			res := tc.c.do(tc.method, tc.path, tc.body, tc.headers...)
			require.Equal(t, tc.status, res.status, "%s: %s", tc.name, res)
			res.problem(tc.status, tc.code)
		}
		require.Equal(t, head, s.head(), "bad input appends nothing")
		// The commands the service refused (email, kind, phone) are in the
		// security log.
		require.GreaterOrEqual(t, len(w.securityLog("")), seclog+3)
	})
}

// chunked is a body of unknown length (sent chunked, without
// Content-Length).
type chunked struct{ b []byte }

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.b)
	c.b = c.b[n:]
	return n, nil
}

// ---- the watch stream ----

// e2eWatchEvent is the data of an "access" event of GET /v1/watch.
type e2eWatchEvent struct {
	AccountID   string   `json:"account_id"`
	ChildID     string   `json:"child_id"`
	Permissions []string `json:"permissions"`
	Reason      string   `json:"reason"`
	Position    string   `json:"position"`
}

// TestWatchStreamsAccessChangesAndEndsAtShutdown: the service's watch
// stream carries each access change with its position, over real HTTP;
// stopping the server ends an open stream and the server still exits 0.
func TestWatchStreamsAccessChangesAndEndsAtShutdown(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		child := w.registerChild()
		member := w.account(string(domain.KindNetworkMember))

		req, err := http.NewRequest("GET", s.url+"/v1/watch?after="+w.last.String(), nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+w.service.token)
		res, err := (&http.Client{}).Do(req) // no timeout: a stream
		require.NoError(t, err)
		defer res.Body.Close()
		require.Equal(t, 200, res.StatusCode)
		require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
		events := make(chan e2eWatchEvent, 16)
		go func() {
			defer close(events)
			sc := bufio.NewScanner(res.Body)
			event := ""
			for sc.Scan() {
				line := sc.Text()
				switch {
				case strings.HasPrefix(line, "event: "):
					event = strings.TrimPrefix(line, "event: ")
				case strings.HasPrefix(line, "data: ") && event == "access":
					var e e2eWatchEvent
					if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &e) == nil {
						events <- e
					}
				case line == "":
					event = ""
				}
			}
		}()
		next := func() e2eWatchEvent {
			t.Helper()
			select {
			case e, ok := <-events:
				require.True(t, ok, "the stream ended")
				return e
			case <-time.After(e2eWait):
				t.Fatal("no event on the watch stream")
				return e2eWatchEvent{}
			}
		}

		w.grant(w.worker, child, member.id, "network_member", []string{"view"}, "friend")
		e := next()
		require.Equal(t, e2eWatchEvent{AccountID: member.id, ChildID: child, Permissions: []string{"view"}, Reason: "grant",
			Position: w.last.String()}, e)
		w.cmd(w.worker, "POST", "/v1/children/"+child+"/grants/"+member.id+"/revoke", map[string]string{"reason": "ended"}, 200)
		e = next()
		require.Equal(t, "revoked", text(e.Reason))
		require.Empty(t, e.Permissions)
		require.Equal(t, w.last.String(), e.Position)

		// Shutting down with the stream open: the stream ends and the
		// server exits 0 (stop requires it).
		s.stop()
		select {
		case _, ok := <-events:
			require.False(t, ok, "no more events")
		case <-time.After(e2eWait):
			t.Fatal("the stream did not end at shutdown")
		}
	})
}

// ---- accessctl against the real server ----

// buildAccessctl builds cmd/accessctl into dir and returns its path.
func buildAccessctl(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "accessctl")
	cmd := exec.Command(goBin, "build", "-o", bin, "../accessctl")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build ../accessctl: %s", out)
	return bin
}

func TestAccessctlAgainstTheRealServer(t *testing.T) {
	t.Parallel()
	bin := buildAccessctl(t, t.TempDir())
	for _, b := range e2eBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, b.flags(t)...)
			w := newWorld(s)
			home := t.TempDir()
			ctl := func(c *e2eClient, args ...string) (int, map[string]any, string) {
				t.Helper()
				cmd := exec.Command(bin, args...)
				cmd.Env = []string{"ACCESSLEDGER_SERVER=" + s.url, "ACCESSLEDGER_TOKEN=" + c.token,
					"ACCESSLEDGER_OUTPUT=json", "HOME=" + home}
				var out, errb strings.Builder
				cmd.Stdout, cmd.Stderr = &out, &errb
				err := cmd.Run()
				code := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				} else {
					require.NoError(t, err)
				}
				var m map[string]any
				if out.Len() > 0 {
					require.NoError(t, json.Unmarshal([]byte(out.String()), &m), out.String())
					if p, ok := m["position"].(string); ok && c.role != domain.RoleAuditor && c.role != domain.RoleService {
						w.note(map[string]any{"position": p})
					}
				}
				return code, m, errb.String()
			}
			mustCtl := func(c *e2eClient, args ...string) map[string]any {
				t.Helper()
				code, m, errOut := ctl(c, args...)
				require.Equal(t, exitOK, code, "accessctl %v: %s", args, errOut)
				return m
			}

			email := "ctl-" + uuid.NewString()[:8] + "@example.org"
			carer := mustCtl(w.worker, "invite", "--email", email, "--kind", "foster_carer")["account_id"].(string)
			w.activate(e2eAccount{id: carer, email: email, subject: "idp|" + uuid.NewString()})
			child := mustCtl(w.worker, "register-child", "--reference", "CTL-1")["child_id"].(string)
			pl := mustCtl(w.worker, "place", "--child", child, "--carer", carer, "--started-at", rfc(now().Add(-day)))["placement_id"].(string)
			require.NotEmpty(t, pl)

			pos := w.last.String()
			m := mustCtl(w.service, "check", "--account", carer, "--child", child, "--permission", "record", "--min-position", pos)
			require.Equal(t, true, m["allowed"])
			require.Equal(t, "placement", m["reason"])
			code, m, _ := ctl(w.service, "check", "--account", uuid.NewString(), "--child", child, "--permission", "view", "--min-position", pos)
			require.Equal(t, exitDeniedCtl, code, "denied: exit 3")
			require.Equal(t, false, m["allowed"])

			// A refused command: exit 1 and the problem on stderr.
			code, _, errOut := ctl(s.as(domain.RoleWorker, "worker-eve"), "end-placement", "--child", child, "--placement", pl,
				"--ended-at", rfc(now()), "--reason", "r")
			require.Equal(t, exitError, code)
			require.Contains(t, errOut, "(code forbidden, status 403)")

			mustCtl(w.worker, "end-placement", "--child", child, "--placement", pl, "--ended-at", rfc(now()), "--reason", "moved")
			h := mustCtl(w.auditor, "history", "--child", child, "--min-position", w.last.String())
			ivs, _ := h["intervals"].([]any)
			require.NotEmpty(t, ivs)
			for _, iv := range ivs {
				require.Equal(t, carer, iv.(map[string]any)["account_id"])
			}
			v := mustCtl(w.auditor, "verify", "--min-position", w.last.String())
			require.Equal(t, true, v["ok"])
			require.EqualValues(t, s.head(), v["entries"])
		})
	}
}

// exitDeniedCtl is accessctl's exit code for a denied check.
const exitDeniedCtl = 3
