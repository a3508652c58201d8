package accessindex_test

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/datagen"
	"github.com/accessledger/accessledger/projections/accessindex"
	"github.com/accessledger/accessledger/projections/accessmodel"
)

// reference is the index as it was before issue 18's compact fold: the
// aggregates' facts (accessmodel.Model, the domain's own fold) and
// domain.ChildAccess on them. It collects every pair and child the log
// names, so that a comparison visits all of them.
type reference struct {
	m        *accessmodel.Model
	pairs    map[accessmodel.Pair]bool
	accounts map[uuid.UUID]bool
	children map[uuid.UUID]bool
}

func newReference() *reference {
	return &reference{m: accessmodel.New(accessmodel.WithoutProvenance()), pairs: map[accessmodel.Pair]bool{},
		accounts: map[uuid.UUID]bool{}, children: map[uuid.UUID]bool{}}
}

func (r *reference) apply(t *testing.T, recs ...eventlog.Record) {
	t.Helper()
	for _, rec := range recs {
		res, err := r.m.Apply(rec)
		require.NoError(t, err)
		for _, p := range res.Pairs {
			r.pairs[p] = true
			r.accounts[p.Account] = true
			r.children[p.Child] = true
		}
		if res.Account != nil {
			r.accounts[*res.Account] = true
		}
		if e, ok := res.Envelope.Event.(*domain.ChildRegistered); ok {
			r.children[e.ChildID] = true
		}
	}
}

// access is what Check answers, by the reference: domain.ChildAccess on
// the model's facts, the account's own facts without a pair, and the
// placement end of a grace period.
func (r *reference) access(p accessmodel.Pair, t time.Time) (domain.Access, time.Time) {
	if !r.pairs[p] {
		if a, ok := r.m.Account(p.Account); ok {
			return domain.ChildAccess(a.Facts(), nil, nil, t), time.Time{}
		}
		return domain.Access{Reason: domain.ReasonNoRelationship}, time.Time{}
	}
	f := r.m.Facts(p)
	a := f.At(t)
	if a.Reason == domain.ReasonGracePeriod {
		return a, domain.GraceFrom(f.Placements, t)
	}
	return a, time.Time{}
}

// times are the decision times a pair is compared at: each time its facts
// name, a microsecond before and after it, and the fixed times given.
func (r *reference) times(p accessmodel.Pair, fixed []time.Time) []time.Time {
	f := r.m.Facts(p)
	var named []time.Time
	named = append(named, f.Account.ActivatedAt, f.Account.ClosedAt)
	for _, l := range f.Account.Lapses {
		named = append(named, l.ClosedAt, l.ReopenedAt)
	}
	for _, pl := range f.Placements {
		named = append(named, pl.Start, pl.End, pl.GraceEnd, pl.Since)
	}
	for _, g := range f.Grants {
		named = append(named, g.From, g.To, g.ExpiresAt, g.Since)
	}
	out := slices.Clone(fixed)
	for _, t := range named {
		if !t.IsZero() {
			out = append(out, t.Add(-time.Microsecond), t, t.Add(time.Microsecond))
		}
	}
	return out
}

// compare checks every pair the log names, and each account with a child
// it has no pair with, at every time of r.times: Check against the
// reference; and ChildrenOf and ViewersOf at the fixed times.
func (r *reference) compare(t *testing.T, ix *accessindex.Index, fixed []time.Time) int {
	t.Helper()
	checks := 0
	var someChild uuid.UUID
	for c := range r.children {
		someChild = c
		break
	}
	for p := range r.pairs {
		for _, at := range r.times(p, fixed) {
			want, ended := r.access(p, at)
			got := ix.Check(p.Account, p.Child, domain.View, at)
			require.Equal(t, want.Permissions, got.Permissions, "pair %s/%s at %s", p.Account, p.Child, at)
			require.Equal(t, want.Reason, got.Reason, "pair %s/%s at %s", p.Account, p.Child, at)
			require.Equal(t, want.Until, got.Until, "pair %s/%s at %s", p.Account, p.Child, at)
			require.Equal(t, want.ExpiresAt, got.ExpiresAt, "pair %s/%s at %s", p.Account, p.Child, at)
			require.Equal(t, ended, got.PlacementEndedAt, "pair %s/%s at %s", p.Account, p.Child, at)
			require.Equal(t, want.Allows(domain.View), got.Allowed)
			checks++
		}
	}
	for acct := range r.accounts {
		p := accessmodel.Pair{Account: acct, Child: someChild}
		for _, at := range fixed {
			want, _ := r.access(p, at)
			got := ix.Check(acct, someChild, domain.Record, at)
			require.Equal(t, want.Permissions, got.Permissions, "account %s at %s", acct, at)
			require.Equal(t, want.Reason, got.Reason, "account %s at %s", acct, at)
			require.Equal(t, want.Until, got.Until, "account %s at %s", acct, at)
			checks++
		}
	}
	for _, at := range fixed {
		for acct := range r.accounts {
			var want []accessindex.Entry
			for p := range r.pairs {
				if p.Account == acct {
					if a, _ := r.access(p, at); a.Permissions != 0 {
						want = append(want, accessindex.Entry{Account: acct, Child: p.Child, Permissions: a.Permissions, Reason: a.Reason, Until: a.Until})
					}
				}
			}
			slices.SortFunc(want, func(a, b accessindex.Entry) int { return bytes.Compare(a.Child[:], b.Child[:]) })
			got, _ := ix.ChildrenOf(acct, at)
			require.Equal(t, want, got, "children of %s at %s", acct, at)
		}
		for child := range r.children {
			var want []accessindex.Entry
			for p := range r.pairs {
				if p.Child == child {
					if a, _ := r.access(p, at); a.Permissions != 0 {
						want = append(want, accessindex.Entry{Account: p.Account, Child: child, Permissions: a.Permissions, Reason: a.Reason, Until: a.Until})
					}
				}
			}
			slices.SortFunc(want, func(a, b accessindex.Entry) int { return bytes.Compare(a.Account[:], b.Account[:]) })
			got, _ := ix.ViewersOf(child, at)
			require.Equal(t, want, got, "viewers of %s at %s", child, at)
		}
	}
	require.Equal(t, len(r.pairs), ix.Stats().Pairs)
	return checks
}

// TestIndexMatchesModel replays generated histories (the load tool's
// generator, with its corrections: cancelled placements, reopened
// accounts) into the index and into the reference (the aggregates'
// facts through accessmodel, and domain.ChildAccess), and compares, at a
// few points of each history, every pair's answer at every time its facts
// name (and a microsecond either side) and at fixed times; every account's
// answer for a child it has no pair with; and every account's ChildrenOf
// and every child's ViewersOf. The index keeps its own compact facts
// (issue 18); the answers must be the same.
func TestIndexMatchesModel(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		t.Run("seed", func(t *testing.T) {
			ix := accessindex.New(quiet)
			ref := newReference()
			var seq uint64
			var recs []eventlog.Record
			batches, checks := 0, 0
			fixed := func() []time.Time {
				var out []time.Time
				for y := range datagen.Small.Years + 1 {
					out = append(out, datagen.Epoch.AddDate(y, 0, 0), datagen.Epoch.AddDate(y, 6, 3).Add(7*time.Hour))
				}
				return out
			}()
			_, err := datagen.Generate(context.Background(), datagen.Small, datagen.SinkFunc(func(_ context.Context, batch []datagen.Append) error {
				recs = recs[:0]
				for _, a := range batch {
					base, _ := a.Expected.Version()
					for i, e := range a.Events {
						seq++
						recs = append(recs, eventlog.Record{ID: e.ID, Stream: a.Stream, Version: base + uint64(i) + 1,
							Position: eventlog.At(seq), Type: e.Type, Data: e.Data, Meta: e.Meta})
					}
				}
				ref.apply(t, recs...)
				require.NoError(t, ix.Apply(recs...))
				if batches++; batches%7 == 0 {
					checks += ref.compare(t, ix, fixed)
				}
				return nil
			}), datagen.Options{Seed: seed, BatchAppends: 500})
			require.NoError(t, err)
			checks += ref.compare(t, ix, fixed)
			require.Greater(t, len(ref.pairs), 500, "a history with pairs")
			t.Logf("seed %d: %d records, %d pairs, %d checks compared", seed, seq, len(ref.pairs), checks)
		})
	}
}

// TestPlacementIDsSharingAKey: the index keeps 64 bits of a placement's id
// (its halves xor-ed) unless another placement of the pair has the same
// key; placements of one carer with one child whose ids share a key are
// still told apart: ending, ending the grace early, cancelling one changes
// that one, as the aggregates' facts say, whichever is recorded first.
func TestPlacementIDsSharingAKey(t *testing.T) {
	mask := uuid.UUID{1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8}
	sharing := func(id uuid.UUID) uuid.UUID { // the same halves' xor
		for i := range id {
			id[i] ^= mask[i]
		}
		return id
	}
	for _, endFirst := range []bool{false, true} {
		w := newWorld(t, 77)
		carer := w.carer("carer-ann", t0.Add(-30*day))
		child := w.child("C-1", "worker-ann", t0.Add(-30*day))
		a := w.id()
		b := sharing(a)
		c := b // a third with the key: both halves changed alike
		c[0] ^= 0xff
		c[8] ^= 0xff
		require.NotEqual(t, a, b)
		require.NotEqual(t, b, c)
		w.placeID(child, a, carer, t0, t0)
		w.end(child, a, t0.Add(10*day), t0.Add(10*day))
		w.placeID(child, b, carer, t0.Add(40*day), t0.Add(40*day))
		w.end(child, b, t0.Add(60*day), t0.Add(60*day))
		w.placeID(child, c, carer, t0.Add(80*day), t0.Add(61*day))
		if endFirst {
			w.endGraceEarly(child, b, t0.Add(62*day))
		} else {
			w.end(child, c, t0.Add(90*day), t0.Add(90*day))
		}
		ix := accessindex.New(quiet)
		ref := newReference()
		recs := w.take()
		ref.apply(t, recs...)
		require.NoError(t, ix.Apply(recs...))
		var fixed []time.Time
		for d := range 120 {
			fixed = append(fixed, t0.Add(time.Duration(d)*day+time.Hour))
		}
		ref.compare(t, ix, fixed)
	}
}

// TestManySources: a respite carer's dozens of short breaks and a member's
// many grants (more than a check decodes on its stack) answer as the
// aggregates' facts say, and a check of them allocates nothing.
func TestManySources(t *testing.T) {
	w := newWorld(t, 78)
	carer := w.carer("carer-respite", t0.Add(-30*day))
	member := w.parent("parent-pat", t0.Add(-30*day))
	child := w.child("C-1", "worker-ann", t0.Add(-30*day))
	for i := range 20 {
		start := t0.Add(time.Duration(i*14) * day)
		pl := w.place(child, carer, start, start)
		w.end(child, pl, start.Add(3*day), start.Add(3*day))
		w.expire(child, pl, start.Add(40*day)) // late, after the next breaks: may decide nothing
	}
	for i := range 9 {
		at := t0.Add(time.Duration(i*30)*day + time.Hour)
		w.grant(child, member, []string{"view", "view,record"}[i%2], at)
		if i%3 == 2 {
			w.revoke(child, member, at.Add(5*day))
		}
	}
	ix := accessindex.New(quiet)
	ref := newReference()
	recs := w.take()
	ref.apply(t, recs...)
	require.NoError(t, ix.Apply(recs...))
	var fixed []time.Time
	for d := range 300 {
		fixed = append(fixed, t0.Add(time.Duration(d)*day+time.Hour))
	}
	ref.compare(t, ix, fixed)
	if raceEnabled {
		return // the pool of a check's buffers drops items on purpose under the race detector
	}
	at := t0.Add(100*day + 2*time.Hour)
	for _, acct := range []uuid.UUID{carer, member} {
		allocs := testing.AllocsPerRun(200, func() { _ = ix.Check(acct, child, domain.View, at) })
		require.Zero(t, allocs, "a check of %s", acct)
	}
}
