package accesshistory_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/accesshistory"
	"github.com/accessledger/accessledger/projections/projtest"
)

// historyChildren is the size of the benchmarks' history: about 21,600
// records and 12,500 rows, generated and folded in about a second and a
// half.
const historyChildren = 2_500

// historyFixture is an access history table filled by the projection from a
// generated history, and what the benchmarks ask it.
type historyFixture struct {
	db *sqldb.DB
	w  *projtest.World
	// pairs lists, per child, the accounts that ever had a placement or a
	// grant of it.
	pairs map[uuid.UUID][]uuid.UUID
	// childAt and accountAt are what the queries ask about, in a random
	// order: a child, or an account with a relationship, at a time from
	// 60 days before to 60 days after the child came into care (the
	// questions an auditor asks are about times when something happened).
	childAt, accountAt []target
}

type target struct {
	id    uuid.UUID
	at    time.Time
	known eventlog.Position // the log's head once the child's events were recorded
}

// newHistoryFixture generates the history (placements over two years,
// ended, re-placed, with grace periods running, ended early or expired;
// grants made and revoked; a few accounts closed) and applies it to the
// projection on the database of url, in batches of 500 records as the
// runner does.
func newHistoryFixture(b *testing.B, url string) *historyFixture {
	ctx := context.Background()
	f := &historyFixture{db: sqltest.Open(b, url), pairs: map[uuid.UUID][]uuid.UUID{}}
	w := projtest.New(b.Fatalf)
	f.w = w
	rng := rand.New(rand.NewPCG(3, 5))
	dayLen := 24 * time.Hour
	carers := make([]uuid.UUID, historyChildren/3)
	for i := range carers {
		carers[i] = w.Carer()
	}
	members := make([]uuid.UUID, historyChildren)
	for i := range members {
		members[i] = w.Member()
	}
	pair := func(c, a uuid.UUID) {
		if !slices.Contains(f.pairs[c], a) {
			f.pairs[c] = append(f.pairs[c], a)
		}
	}
	// Children come in over two years (about 7 hours apart); each one's
	// events are at and around its arrival.
	for i := range historyChildren {
		w.Advance(time.Duration(rng.IntN(12)+2) * time.Hour)
		c := w.RegisterChild()
		arrived := w.Now
		ci := rng.IntN(len(carers))
		p := w.Place(c, carers[ci], w.Now.Add(-time.Duration(rng.IntN(90)+20)*dayLen))
		pair(c, carers[ci])
		switch i % 4 {
		case 0: // ended, grace expired, placed with another carer
			w.End(c, p, w.Now.Add(-10*dayLen))
			next := carers[(ci+1+rng.IntN(len(carers)-1))%len(carers)]
			w.Place(c, next, w.Now.Add(-5*dayLen))
			pair(c, next)
		case 1: // ended recently, grace period running
			w.End(c, p, w.Now.Add(-dayLen))
		case 2: // ended, grace ended early
			w.End(c, p, w.Now.Add(-dayLen))
			w.EndGrace(c, p)
		}
		for k := range rng.IntN(3) + 1 {
			m := members[(i+k*131)%len(members)]
			w.Grant(c, m, domain.PermView)
			pair(c, m)
			if rng.IntN(4) == 0 {
				w.Revoke(c, m)
			}
		}
		at := arrived.Add(time.Duration(rng.IntN(120*24)-60*24) * time.Hour)
		f.childAt = append(f.childAt, target{id: c, at: at, known: w.Head()})
		f.accountAt = append(f.accountAt, target{id: f.pairs[c][rng.IntN(len(f.pairs[c]))], at: at})
	}
	for i := 0; i < len(members); i += 97 {
		w.Close(members[i])
	}

	// The projection, driven as the runner drives it.
	names := projections.Tables{accesshistory.Name: accesshistory.Name}
	p := accesshistory.New()
	for _, tb := range p.Tables() {
		for _, stmt := range tb.Create(f.db.Dialect().Name(), names.Name(tb.Name)) {
			_, err := f.db.ExecContext(ctx, stmt)
			require.NoError(b, err, stmt)
		}
	}
	_, err := p.Load(ctx, f.db, names, eventlog.Start)
	require.NoError(b, err)
	for recs := w.Records; len(recs) > 0; {
		n := min(len(recs), 500)
		require.NoError(b, f.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			return p.Apply(ctx, tx, names, recs[:n])
		}))
		recs = recs[n:]
	}
	var rows int
	require.NoError(b, f.db.QueryRowContext(ctx, "SELECT count(*) FROM "+names.Name(accesshistory.Name)).Scan(&rows))
	b.Logf("access history of %d records: %d rows", len(w.Records), rows)
	rng.Shuffle(len(f.childAt), func(i, j int) { f.childAt[i], f.childAt[j] = f.childAt[j], f.childAt[i] })
	rng.Shuffle(len(f.accountAt), func(i, j int) { f.accountAt[i], f.accountAt[j] = f.accountAt[j], f.accountAt[i] })
	return f
}

// checkWho requires WhoCouldSee(child, at) to name exactly the accounts the
// domain allows at at (the aggregates' current knowledge).
func (f *historyFixture) checkWho(b *testing.B, child uuid.UUID, at time.Time) int {
	ivs, err := accesshistory.WhoCouldSee(context.Background(), f.db, child, at, accesshistory.Current)
	require.NoError(b, err)
	var got, want []uuid.UUID
	for _, iv := range ivs {
		got = append(got, iv.AccountID)
	}
	for _, a := range f.pairs[child] {
		if f.w.Access(a, child, at).Permissions != 0 {
			want = append(want, a)
		}
	}
	require.ElementsMatch(b, want, got, "who could see %s at %s", child, at)
	return len(got)
}

// BenchmarkHistoryAt measures the history-at-T queries of R15 on an access
// history of historyChildren children, per backend (the PostgreSQL one
// skips unless sqltest.PostgresEnv is set):
//
//   - query=who_could_see: "who could see child C at T, and why"
//     (accesshistory.WhoCouldSee, current knowledge), for a random child at
//     a time around its arrival in care;
//   - query=who_could_see_as_of: the same as known once the child's first
//     events were recorded (R4: before later corrections);
//   - query=what_could_see: "what could account A see at T"
//     (accesshistory.WhatCouldSee) for a random account with a
//     relationship, at a time around it.
//
// rows/op is the mean number of intervals answered.
func BenchmarkHistoryAt(b *testing.B) {
	backends := []sqltest.Backend{{Name: "sqlite-file", URL: sqltest.SQLiteFile}, {Name: "postgres", URL: sqltest.Postgres}}
	for _, be := range backends {
		b.Run("store="+be.Name, func(b *testing.B) {
			f := newHistoryFixture(b, be.URL(b))
			ctx := context.Background()
			seen := 0
			for _, t := range f.childAt[:50] {
				seen += f.checkWho(b, t.id, t.at)
			}
			require.NotZero(b, seen, "the checks saw nobody: the history is empty")

			run := func(b *testing.B, ts []target, query func(t target) ([]accesshistory.Interval, error)) {
				b.ReportAllocs()
				i, rows := 0, 0
				for b.Loop() {
					ivs, err := query(ts[i%len(ts)])
					if err != nil {
						b.Fatal(err)
					}
					rows += len(ivs)
					i++
				}
				b.ReportMetric(float64(rows)/float64(i), "rows/op")
			}
			b.Run("query=who_could_see", func(b *testing.B) {
				run(b, f.childAt, func(t target) ([]accesshistory.Interval, error) {
					return accesshistory.WhoCouldSee(ctx, f.db, t.id, t.at, accesshistory.Current)
				})
			})
			b.Run("query=who_could_see_as_of", func(b *testing.B) {
				run(b, f.childAt, func(t target) ([]accesshistory.Interval, error) {
					return accesshistory.WhoCouldSee(ctx, f.db, t.id, t.at, accesshistory.AsOf(t.known))
				})
			})
			b.Run("query=what_could_see", func(b *testing.B) {
				run(b, f.accountAt, func(t target) ([]accesshistory.Interval, error) {
					return accesshistory.WhatCouldSee(ctx, f.db, t.id, t.at, accesshistory.Current)
				})
			})
		})
	}
}
