package datagen

import (
	"slices"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
)

// sample adds the region's share (quota per list) of samples to s,
// answered by the policy on the aggregates as they stand at the end of the
// region's history.
func (r *region) sample(s *Samples, quota int) {
	at := r.time(r.end)
	order := r.rng.Perm(len(r.kids))

	for _, i := range order[:min(quota, len(order))] {
		s.Children = append(s.Children, r.kids[i].id)
	}

	seen := map[uuid.UUID]bool{}
	n := 0
	for _, i := range order {
		k := r.kids[i]
		for _, a := range k.related {
			if n == quota {
				break
			}
			if !seen[a.id] && k.agg.Access(a.agg, at).Allows(domain.View) {
				seen[a.id] = true
				s.Accounts = append(s.Accounts, a.id)
				n++
			}
		}
	}

	accounts := slices.Concat(r.carers, r.members)
	can, cannot := 0, 0
	for try := 0; try < 100*quota && (can < quota || cannot < quota); try++ {
		k := pick(r, r.kids)
		var a *acct
		if len(k.related) > 0 && r.chance(0.8) {
			a = pick(r, k.related)
		} else {
			a = pick(r, accounts)
		}
		t := r.time(r.sampleTime(k, a))
		access := k.agg.Access(a.agg, t)
		tr := Triple{Child: k.id, Account: a.id, At: t, Reason: access.Reason}
		switch {
		case access.Allows(domain.View) && can < quota:
			s.CanSee = append(s.CanSee, tr)
			can++
		case !access.Allows(domain.View) && cannot < quota:
			s.CannotSee = append(s.CannotSee, tr)
			cannot++
		}
	}
}

// sampleTime picks a decision time for a question about a on k: half the
// time anywhere from two years before k's registration to the end, half the
// time just around one of the pair's own fact times (a placement's start,
// end or grace end, a grant's start or end), where answers change.
func (r *region) sampleTime(k *kid, a *acct) int64 {
	var facts []int64
	if r.chance(0.5) {
		for _, p := range k.agg.PlacementFacts(a.id) {
			facts = append(facts, p.Start.UnixMicro())
			if !p.End.IsZero() {
				facts = append(facts, p.End.UnixMicro(), p.GraceEnd.UnixMicro())
			}
		}
		for _, g := range k.agg.GrantFacts(a.id) {
			facts = append(facts, g.From.UnixMicro())
			if !g.To.IsZero() {
				facts = append(facts, g.To.UnixMicro())
			}
		}
	}
	if len(facts) == 0 {
		return r.between(k.regAt-2*year, r.end)
	}
	return min(pick(r, facts)+r.between(-3*day, 10*day), r.end)
}
