package accessindex_test

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
)

// generate writes a realistic history of n children into w, through the
// aggregates, in the order of the decisions' times (so streams interleave as
// in a live log): a pool of foster carers (n/2) and of parents and other
// network members (n), some of them never activated; for every child one
// to three placements with different carers, ended on time, backdated,
// planned ahead, with the grace ended early or the carer placed again
// within the grace, and the process manager's expiries (some late); zero to
// three grants, some revoked or widened; phone enrolments; and at the end
// about 1% of the accounts closed. About 12 events and 3.5 pairs per child.
func generate(w *world, n int) {
	type step struct {
		at  time.Time
		seq int
		do  func()
	}
	var plan []step
	at := func(t time.Time, do func()) { plan = append(plan, step{t, len(plan), do}) }
	rng := w.rng
	days := func(lo, hi int) time.Duration { return time.Duration(lo+rng.IntN(hi-lo+1)) * day }
	base := t0.AddDate(-2, 0, 0)

	carers := make([]uuid.UUID, max(1, n/2))
	for i := range carers {
		act := base.Add(-days(1, 60))
		carers[i] = w.carer(fmt.Sprintf("carer-%d", i), act)
		if rng.IntN(3) == 0 {
			w.enrolPhone(carers[i], act.Add(time.Hour))
		}
	}
	family := make([]uuid.UUID, max(4, n))
	kinds := []domain.AccountKind{domain.KindParent, domain.KindParent, domain.KindGuardian, domain.KindNetworkMember}
	for i := range family {
		act := base.Add(-days(1, 60))
		email := fmt.Sprintf("family-%d@family.example.org", i)
		if rng.IntN(20) == 0 { // invited, never activated
			family[i] = w.account(email, kinds[i%len(kinds)], act, time.Time{})
			continue
		}
		family[i] = w.account(email, kinds[i%len(kinds)], act.Add(-time.Hour), act)
	}

	for i := range n {
		reg := base.Add(days(0, 365))
		child := w.id()
		worker := fmt.Sprintf("worker-%d", i%200)
		at(reg, func() {
			c := domain.NewChild(child)
			w.children[child] = c
			by := domain.Actor{ID: worker, Role: domain.RoleWorker}
			evs, err := c.Register(by, fmt.Sprintf("C-%06d", i), time.Time{}, reg)
			w.record(domain.ChildStream(child), by, reg, c.Apply, evs, err)
		})

		cursor := reg.Add(time.Hour)
		used := map[uuid.UUID]bool{}
		for k, nPl := 0, 1+rng.IntN(3); k < nPl; k++ {
			carer := carers[rng.IntN(len(carers))]
			for used[carer] && len(used) < len(carers) {
				carer = carers[rng.IntN(len(carers))]
			}
			used[carer] = true
			pl := w.id()
			start := cursor.Add(days(0, 10))
			at(start, func() { w.placeID(child, pl, carer, start, start) })
			if k == nPl-1 && rng.IntN(10) < 4 {
				break // still placed
			}
			end := start.Add(days(30, 300))
			grace := end.Add(policy.GracePeriod)
			switch x := rng.IntN(100); {
			case x < 5: // recorded long after the fact: expiry written at once
				now := end.Add(days(10, 20))
				at(now, func() { w.end(child, pl, end, now) })
			case x < 10: // a planned move, recorded ahead
				at(end.Add(-20*day), func() { w.end(child, pl, end, end.Add(-20*day)) })
				at(grace.Add(time.Minute), func() { w.expire(child, pl, grace.Add(time.Minute)) })
			case x < 25: // grace ended early by the worker
				at(end, func() { w.end(child, pl, end, end) })
				early := end.Add(days(1, 5))
				at(early, func() { w.endGraceEarly(child, pl, early) })
			case x < 35: // placed again with the same carer within the grace
				at(end, func() { w.end(child, pl, end, end) })
				again := end.Add(days(1, 6))
				pl2 := w.id()
				at(again, func() { w.placeID(child, pl2, carer, again, again) })
				at(grace.Add(time.Minute), func() { w.expire(child, pl, grace.Add(time.Minute)) }) // decides nothing
				k = nPl                                                                            // the re-placement goes on
			default: // ended on time; the process manager expires it, sometimes late
				at(end, func() { w.end(child, pl, end, end) })
				late := grace.Add(time.Duration(rng.IntN(48)) * time.Hour)
				at(late, func() { w.expire(child, pl, late) })
			}
			cursor = end
		}

		picked := map[uuid.UUID]bool{}
		for range rng.IntN(4) {
			acct := family[rng.IntN(len(family))]
			if picked[acct] {
				continue
			}
			picked[acct] = true
			g := reg.Add(days(1, 300))
			perms := "view"
			if rng.IntN(3) == 0 {
				perms = "view,record"
			}
			at(g, func() { w.grant(child, acct, perms, g) })
			switch x := rng.IntN(10); {
			case x < 3:
				r := g.Add(days(1, 100))
				at(r, func() { w.revoke(child, acct, r) })
			case x < 4 && perms == "view":
				r := g.Add(days(1, 100))
				at(r, func() { w.grant(child, acct, "view,record", r) })
			}
		}
	}

	slices.SortFunc(plan, func(a, b step) int {
		return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.seq, b.seq))
	})
	for _, s := range plan {
		s.do()
	}
	closing := plan[len(plan)-1].at.Add(day)
	for i, id := range append(carers, family...) {
		if i%100 == 7 {
			w.closeAccount(id, closing.Add(time.Duration(i)*time.Minute))
		}
	}
}
