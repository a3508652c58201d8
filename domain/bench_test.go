package domain_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/projtest"
)

// benchHistory is a generated history of 300 children with every common
// event type: carers and network members invited and activated (some with a
// phone, a few closed), placements started, ended (with their grace period
// running, ended early, or already expired) and started again, grants made
// and revoked. It is deterministic.
func benchHistory(tb testing.TB) []eventlog.Record {
	tb.Helper()
	const children = 300
	w := projtest.New(tb.Fatalf)
	rng := rand.New(rand.NewPCG(1, 2))
	carers := make([]uuid.UUID, children/2)
	for i := range carers {
		carers[i] = w.Carer()
	}
	members := make([]uuid.UUID, children)
	for i := range members {
		members[i] = w.Member()
		if i%3 == 0 {
			w.EnrolPhone(members[i], "+44 7700 900123")
		}
	}
	day := 24 * time.Hour
	w.Advance(400 * day)
	for i := range children {
		w.Advance(time.Duration(rng.IntN(12)+1) * time.Hour)
		c := w.RegisterChild()
		carer := carers[rng.IntN(len(carers))]
		p := w.Place(c, carer, w.Now.Add(-time.Duration(rng.IntN(300)+60)*day))
		switch i % 4 {
		case 0: // ended long ago: the expiry is recorded with the end
			w.End(c, p, w.Now.Add(-20*day))
			w.Place(c, carers[(i+1)%len(carers)], w.Now.Add(-10*day))
		case 1: // ended recently: in its grace period
			w.End(c, p, w.Now.Add(-2*day))
		case 2: // ended recently, grace ended early
			w.End(c, p, w.Now.Add(-1*day))
			w.EndGrace(c, p)
		}
		for k := range rng.IntN(3) + 1 {
			m := members[(i+k*97)%len(members)]
			if k == 0 && rng.IntN(2) == 0 {
				w.Grant(c, m, domain.PermView, domain.PermRecord)
			} else {
				w.Grant(c, m, domain.PermView)
			}
			if rng.IntN(4) == 0 {
				w.Revoke(c, m)
			}
		}
	}
	for i := 0; i < len(members); i += 50 {
		w.Close(members[i])
	}
	return w.Records
}

// BenchmarkDecodeRecord measures domain.DecodeRecord, the per-record cost
// every replay pays (the access model under the index and the history, the
// accounts read model and the audit trail decode each record with it) and
// every command pays for each event of the streams it loads: per event type,
// for the most frequent types, and over a whole generated history in log
// order (type=mix, the blend a replay decodes).
func BenchmarkDecodeRecord(b *testing.B) {
	recs := benchHistory(b)
	byType := map[string][]eventlog.Record{}
	for _, r := range recs {
		byType[r.Type] = append(byType[r.Type], r)
	}
	// The history must hold every common type, so that type=mix weighs
	// them as a replay does.
	for _, t := range []string{domain.TypeChildRegistered, domain.TypePlacementStarted, domain.TypePlacementEnded,
		domain.TypeGraceEndedEarly, domain.TypeGraceExpired, domain.TypeAccessGranted, domain.TypeAccessRevoked,
		domain.TypeAccountInvited, domain.TypeAccountActivated, domain.TypeAccountClosed, domain.TypePhoneEnrolled} {
		require.NotEmpty(b, byType[t], "the generated history has no %s", t)
	}
	// The most frequent types of a county's log get a figure of their own
	// (each sub-benchmark costs make bench a second per count).
	types := []string{domain.TypeChildRegistered, domain.TypePlacementStarted, domain.TypePlacementEnded,
		domain.TypeAccessGranted, domain.TypeAccountActivated}
	decode := func(b *testing.B, recs []eventlog.Record) {
		for _, r := range recs {
			env, err := domain.DecodeRecord(r)
			require.NoError(b, err)
			require.Equal(b, r.Type, env.Event.EventType())
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := domain.DecodeRecord(recs[i%len(recs)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	}
	for _, t := range types {
		b.Run("type="+t, func(b *testing.B) { decode(b, byType[t]) })
	}
	b.Run("type=mix", func(b *testing.B) { decode(b, recs) })
}

// BenchmarkChildAccess measures domain.ChildAccess, the decision behind every
// check (the access index looks a pair's facts up and calls it), for the
// common shapes of facts. It must not allocate.
func BenchmarkChildAccess(b *testing.B) {
	day := 24 * time.Hour
	t := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	active := domain.AccountFacts{Kind: domain.KindFosterCarer, ActivatedAt: t.Add(-400 * day)}
	member := domain.AccountFacts{Kind: domain.KindNetworkMember, ActivatedAt: t.Add(-400 * day)}
	view := domain.PermissionSet(domain.View)
	cases := []struct {
		name       string
		acct       domain.AccountFacts
		placements []domain.PlacementFacts
		grants     []domain.GrantFacts
		want       domain.Reason
	}{
		{name: "placement", acct: active, want: domain.ReasonPlacement,
			placements: []domain.PlacementFacts{{Start: t.Add(-90 * day)}}},
		{name: "grace_period", acct: active, want: domain.ReasonGracePeriod,
			placements: []domain.PlacementFacts{{Start: t.Add(-90 * day), End: t.Add(-2 * day), GraceEnd: t.Add(5 * day)}}},
		{name: "grace_expired", acct: active, want: domain.ReasonGraceExpired,
			placements: []domain.PlacementFacts{{Start: t.Add(-90 * day), End: t.Add(-20 * day), GraceEnd: t.Add(-13 * day)}}},
		{name: "grant", acct: member, want: domain.ReasonGrant,
			grants: []domain.GrantFacts{{From: t.Add(-30 * day), Permissions: view}}},
		{name: "no_relationship", acct: member, want: domain.ReasonNoRelationship},
		// A carer placed three times with the child (the last one open) who
		// also held grants: the longest facts a pair has in practice.
		{name: "busy", acct: active, want: domain.ReasonPlacement,
			placements: []domain.PlacementFacts{
				{Start: t.Add(-300 * day), End: t.Add(-200 * day), GraceEnd: t.Add(-193 * day)},
				{Start: t.Add(-150 * day), End: t.Add(-60 * day), GraceEnd: t.Add(-55 * day)},
				{Start: t.Add(-10 * day)},
			},
			grants: []domain.GrantFacts{
				{From: t.Add(-190 * day), To: t.Add(-160 * day), Permissions: view},
				{From: t.Add(-50 * day), Permissions: view | domain.PermissionSet(domain.Record)},
			}},
	}
	for _, c := range cases {
		b.Run("facts="+c.name, func(b *testing.B) {
			require.Equal(b, c.want, domain.ChildAccess(c.acct, c.placements, c.grants, t).Reason)
			b.ReportAllocs()
			for b.Loop() {
				domain.ChildAccess(c.acct, c.placements, c.grants, t)
			}
		})
	}
}
