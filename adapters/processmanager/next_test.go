package processmanager

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
)

// TestNextMatchesTheScan: the next time a pending deadline can be claimed,
// read by walking the deadlines in due order, equals the minimum over every
// pending row, whatever the claims: none pending, a few, more than one
// walk's worth claimed past their due (the walk gives up and scans), the
// earliest claimable one behind many claimed ones, and random tables;
// fired and resolved rows never count. It also checks which cases the
// walk settles and which it leaves to the scan.
func TestNextMatchesTheScan(t *testing.T) {
	ctx := context.Background()
	base := t0.UnixMicro()
	type dl struct {
		due, claimed int64 // offsets from base, in seconds
		state        string
	}
	many := func(n int, f func(i int) dl) []dl {
		out := make([]dl, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []dl {
		return many(n, func(int) dl {
			d := dl{due: rng.Int64N(1000), state: []string{"pending", "pending", "pending", "fired", "resolved"}[rng.IntN(5)]}
			if rng.IntN(3) == 0 {
				d.claimed = d.due + rng.Int64N(500) - 100
			}
			return d
		})
	}
	type testCase struct {
		rows []dl
		scan bool // the walk cannot settle it: next scans
	}
	cases := map[string]testCase{
		"none":                       {},
		"only settled":               {rows: []dl{{due: 5, state: "fired"}, {due: 1, state: "resolved"}}},
		"one unclaimed":              {rows: []dl{{due: 10, state: "pending"}}},
		"first claimed past its due": {rows: []dl{{due: 10, claimed: 50, state: "pending"}, {due: 20, state: "pending"}, {due: 60, state: "pending"}}},
		"claim before its due":       {rows: []dl{{due: 10, claimed: 5, state: "pending"}}},
		"claimed ones, then the earliest free, then more": {rows: append(append(
			many(nextWalk-2, func(i int) dl { return dl{due: int64(i), claimed: 500, state: "pending"} }),
			dl{due: 100, state: "pending"}),
			many(10, func(i int) dl { return dl{due: 200 + int64(i), state: "pending"} })...)},
		"more claimed than a walk": {scan: true, rows: append(many(nextWalk+10, func(i int) dl { return dl{due: int64(i), claimed: 1000 + int64(i), state: "pending"} }),
			dl{due: 900, state: "pending"})},
		"more claimed than a walk, the earliest claim last": {scan: true, rows: append(many(nextWalk+10, func(i int) dl { return dl{due: int64(i), claimed: 2000, state: "pending"} }),
			dl{due: nextWalk + 20, claimed: 1500, state: "pending"})},
		"random small": {rows: random(20)},
		"random large": {rows: random(500)},
	}
	forEachBackend(t, func(t *testing.T, url string) {
		db := sqltest.Open(t, url)
		require.NoError(t, Migrate(ctx, db))
		tbl, err := newTable(db)
		require.NoError(t, err)
		for name, c := range cases {
			t.Run(name, func(t *testing.T) {
				rows := c.rows
				_, err := db.ExecContext(ctx, "DELETE FROM deadlines")
				require.NoError(t, err)
				for i, r := range rows {
					_, err := db.ExecContext(ctx, `INSERT INTO deadlines (id, kind, due_at, claimed_until, state, updated_at) VALUES (?, 'grace', ?, ?, ?, 0)`,
						fmt.Sprintf("d-%d", i), base+r.due*1e6, claimedAt(base, r.claimed), r.state)
					require.NoError(t, err)
				}
				want, wantOK, err := tbl.nextByScan(ctx) // next as it was: the reference
				require.NoError(t, err)
				scans := tbl.fullScans.Load()
				got, ok, err := tbl.next(ctx)
				require.NoError(t, err)
				require.Equal(t, wantOK, ok)
				require.True(t, want.Equal(got), "want %s, got %s", want, got)
				if !strings.HasPrefix(name, "random") {
					require.Equal(t, c.scan, tbl.fullScans.Load() > scans, "whether the walk settled it")
				}
			})
		}
	})
}

// claimedAt is a claimed_until: 0 (no claim) for offset 0.
func claimedAt(base, offset int64) int64 {
	if offset == 0 {
		return 0
	}
	return base + offset*1e6
}

// BenchmarkNext: the next claimable time on an SQLite file holding 50,000
// pending deadlines (about the county data set's pending retention and
// grace deadlines), none claimed: by the walk in due order (next, as the
// scheduler reads it after every firing) and by the scan over every
// pending row (what next ran before).
func BenchmarkNext(b *testing.B) {
	ctx := context.Background()
	db := sqltest.Open(b, "sqlite:"+b.TempDir()+"/deadlines.db")
	require.NoError(b, Migrate(ctx, db))
	base := t0.UnixMicro()
	require.NoError(b, db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for i := range 50_000 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO deadlines (id, kind, due_at, claimed_until, state, updated_at) VALUES (?, 'grace', ?, 0, 'pending', 0)`,
				fmt.Sprintf("d-%d", i), base+int64(i)*1e6); err != nil {
				return err
			}
		}
		return nil
	}))
	tbl, err := newTable(db)
	require.NoError(b, err)
	b.Run("way=walk", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok, err := tbl.next(ctx); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("way=scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok, err := tbl.nextByScan(ctx); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
}
