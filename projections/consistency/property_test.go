package consistency_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"pgregory.net/rapid"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/accesshistory"
	"github.com/accessledger/accessledger/projections/accessindex"
	"github.com/accessledger/accessledger/projections/projtest"
)

const day = 24 * time.Hour

// history draws a random history: children, carers and network members;
// placements starting (backdated, now or ahead) and ending (backdated, now
// or planned), re-placements, early grace ends, grants and revokes, expiry
// records (on time, late or never), closures, and time moving forward. Every
// command goes through the domain aggregates; refused ones are skipped.
func history(t *rapid.T) *projtest.World {
	w := projtest.New(t.Fatalf)
	w.Policy.GracePeriod = time.Duration(rapid.IntRange(1, 10).Draw(t, "grace_days")) * day
	var children, carers, members []uuid.UUID
	type placed struct{ child, id uuid.UUID }
	var placements []placed
	pick := func(xs []uuid.UUID, label string) uuid.UUID {
		return xs[rapid.IntRange(0, len(xs)-1).Draw(t, label)]
	}
	offset := func(label string) time.Duration {
		return time.Duration(rapid.IntRange(-15*24, 15*24).Draw(t, label)) * time.Hour
	}
	children = append(children, w.RegisterChild())
	carers = append(carers, w.Carer())
	members = append(members, w.Member())
	steps := rapid.IntRange(1, 40).Draw(t, "steps")
	for range steps {
		switch rapid.IntRange(0, 11).Draw(t, "action") {
		case 0:
			children = append(children, w.RegisterChild())
		case 1:
			if rapid.Bool().Draw(t, "activate_now") {
				carers = append(carers, w.Carer())
			} else {
				carers = append(carers, w.Invite(domain.KindFosterCarer)) // never activated
			}
		case 2:
			members = append(members, w.Member())
		case 3, 4:
			c, k := pick(children, "child"), pick(carers, "carer")
			if id, err := w.TryPlace(c, k, w.Now.Add(offset("start"))); err == nil {
				placements = append(placements, placed{c, id})
			}
		case 5, 6:
			if len(placements) > 0 {
				p := placements[rapid.IntRange(0, len(placements)-1).Draw(t, "placement")]
				_ = w.TryEnd(p.child, p.id, w.Now.Add(offset("end")))
			}
		case 7:
			if len(placements) > 0 {
				p := placements[rapid.IntRange(0, len(placements)-1).Draw(t, "placement")]
				_ = w.TryEndGrace(p.child, p.id)
			}
		case 8:
			perms := []string{domain.PermView}
			if rapid.Bool().Draw(t, "record") {
				perms = append(perms, domain.PermRecord)
			}
			_ = w.TryGrant(pick(children, "child"), pick(members, "member"), perms...)
		case 9:
			_ = w.TryRevoke(pick(children, "child"), pick(members, "member"))
		case 10:
			if rapid.IntRange(0, 3).Draw(t, "close") == 0 {
				all := append(slices.Clone(carers), members...)
				_ = w.TryClose(pick(all, "account"))
			} else if len(placements) > 0 {
				p := placements[rapid.IntRange(0, len(placements)-1).Draw(t, "placement")]
				_ = w.Expire(p.child, p.id) // the process manager, when due
			}
		case 11:
			w.Advance(time.Duration(rapid.IntRange(1, 6*24).Draw(t, "hours")) * time.Hour)
		}
	}
	return w
}

// probes are the decision times compared: around every fact time of the
// history (just before, at, just after) and a few arbitrary ones.
func probes(w *projtest.World) []time.Time {
	seen := map[time.Time]bool{}
	var out []time.Time
	add := func(t time.Time) {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	for _, r := range w.Records {
		for _, d := range []time.Duration{-time.Microsecond, 0, time.Microsecond} {
			add(r.Meta.EffectiveAt.Add(d))
		}
		add(r.Meta.EffectiveAt.Add(w.Policy.GracePeriod))
	}
	add(projtest.T0.Add(-400 * day))
	add(w.Now.Add(400 * day))
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

// replay folds records into fresh aggregates: the domain's own view of the
// log up to a point, the reference answer.
type replay struct {
	children map[uuid.UUID]*domain.Child
	accounts map[uuid.UUID]*domain.Account
}

func replayOf(t require.TestingT, recs []eventlog.Record) replay {
	r := replay{children: map[uuid.UUID]*domain.Child{}, accounts: map[uuid.UUID]*domain.Account{}}
	for _, rec := range recs {
		env, err := domain.DecodeRecord(rec)
		require.NoError(t, err)
		switch {
		case len(rec.Stream) > len(domain.ChildStreamPrefix) && rec.Stream[:len(domain.ChildStreamPrefix)] == domain.ChildStreamPrefix:
			id := uuid.MustParse(rec.Stream[len(domain.ChildStreamPrefix):])
			if r.children[id] == nil {
				r.children[id] = domain.NewChild(id)
			}
			require.NoError(t, r.children[id].Apply(env.Event))
		case len(rec.Stream) > len(domain.AccountStreamPrefix) && rec.Stream[:len(domain.AccountStreamPrefix)] == domain.AccountStreamPrefix:
			id := uuid.MustParse(rec.Stream[len(domain.AccountStreamPrefix):])
			if r.accounts[id] == nil {
				r.accounts[id] = domain.NewAccount(id)
			}
			require.NoError(t, r.accounts[id].Apply(env.Event))
		}
	}
	return r
}

func (r replay) access(account, child uuid.UUID, t time.Time) domain.Access {
	c := r.children[child]
	if c == nil {
		return domain.Access{Reason: domain.ReasonNoRelationship}
	}
	a := r.accounts[account]
	if a == nil {
		a = domain.NewAccount(account)
	}
	return c.Access(a, t)
}

var historyTables = projections.Tables{"access_history": "access_history"}

// buildHistory fills a fresh access_history table with recs, in batches of
// the given size.
func buildHistory(t require.TestingT, ctx context.Context, db *sqldb.DB, recs []eventlog.Record, batch int) {
	p := accesshistory.New()
	_, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS access_history")
	require.NoError(t, err)
	for _, tb := range p.Tables() {
		for _, stmt := range tb.Create(db.Dialect().Name(), historyTables.Name(tb.Name)) {
			_, err := db.ExecContext(ctx, stmt)
			require.NoError(t, err)
		}
	}
	_, err = p.Load(ctx, db, historyTables, eventlog.Start)
	require.NoError(t, err)
	for i := 0; i < len(recs); i += batch {
		chunk := recs[i:min(i+batch, len(recs))]
		require.NoError(t, db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			return p.Apply(ctx, tx, historyTables, chunk)
		}))
	}
}

// historyAnswer is the history table's answer for a pair at t as known at k:
// the permissions and reason of the row whose valid time contains t.
func historyAnswer(t require.TestingT, ivs []accesshistory.Interval, account uuid.UUID) (domain.PermissionSet, domain.Reason, time.Time, int) {
	n := 0
	var perms domain.PermissionSet
	var reason domain.Reason
	var until time.Time
	for _, iv := range ivs {
		if iv.AccountID == account {
			n++
			perms, reason, until = iv.Permissions, iv.Reason, iv.To
		}
	}
	return perms, reason, until, n
}

// TestProperty_IndexHistoryAndReplayAgree is the property of the Projections
// issue: for random histories, the access index at T, the history table at
// T and a from-scratch replay of the domain to T give the same answers; and
// the history "as known at P" equals a replay of the log up to P.
//
// It runs without the race detector (make test's RACE_SKIPPED): each
// backend's run is one goroutine folding, writing and querying, where the
// detector has nothing to find, and the index's and the history's
// concurrent use runs under it in their own packages' tests and the
// end-to-end tests.
func TestProperty_IndexHistoryAndReplayAgree(t *testing.T) {
	if raceEnabled {
		t.Skip("one goroutine per backend, 100 random histories: runs without the race detector (make test's RACE_SKIPPED)")
	}
	for _, b := range sqltest.Backends() {
		if b.Name == "sqlite-file" {
			continue // the same SQL as sqlite-memory; the file costs fsyncs
		}
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel() // the backends share nothing; PostgreSQL waits on round trips
			db := sqltest.Open(t, b.URL(t))
			ctx := context.Background()
			rapid.Check(t, func(rt *rapid.T) {
				w := history(rt)
				recs := w.Records
				buildHistory(rt, ctx, db, recs, rapid.IntRange(1, 50).Draw(rt, "batch"))

				ix := accessindex.New()
				require.NoError(rt, ix.Apply(recs...))
				ref := replayOf(rt, recs)
				head := w.Head()

				for _, child := range w.Children() {
					for _, T := range probes(w) {
						ivs, err := accesshistory.WhoCouldSee(ctx, db, child, T, accesshistory.Current)
						require.NoError(rt, err)
						for _, acct := range w.Accounts() {
							want := ref.access(acct, child, T)
							got := ix.Check(acct, child, domain.View, T)
							msg := fmt.Sprintf("account %s child %s at %s", acct, child, T.Format(time.RFC3339Nano))
							require.Equal(rt, head, got.Position, msg)
							require.Equal(rt, want.Permissions, got.Permissions, "index permissions, "+msg)
							require.Equal(rt, want.Reason, got.Reason, "index reason, "+msg)
							require.True(rt, want.Until.Equal(got.Until), "index until %s, want %s, %s", got.Until, want.Until, msg)
							require.Equal(rt, want.Permissions.Has(domain.View), got.Allowed, msg)

							perms, reason, _, n := historyAnswer(rt, ivs, acct)
							require.LessOrEqual(rt, n, 1, "at most one interval per pair contains T, "+msg)
							require.Equal(rt, want.Permissions, perms, "history permissions, "+msg)
							if n == 1 {
								require.Equal(rt, want.Reason, reason, "history reason, "+msg)
							}
						}
					}
				}

				// As known at P: the history's rows known at P equal the
				// access of a replay of the log up to P.
				k := rapid.IntRange(1, len(recs)).Draw(rt, "known_at")
				pos := recs[k-1].Position
				then := replayOf(rt, recs[:k])
				for _, child := range w.Children() {
					for _, T := range probes(w) {
						ivs, err := accesshistory.WhoCouldSee(ctx, db, child, T, accesshistory.AsOf(pos))
						require.NoError(rt, err)
						for _, acct := range w.Accounts() {
							want := then.access(acct, child, T)
							perms, reason, _, n := historyAnswer(rt, ivs, acct)
							msg := fmt.Sprintf("as known at %s: account %s child %s at %s", pos, acct, child, T.Format(time.RFC3339Nano))
							require.LessOrEqual(rt, n, 1, msg)
							require.Equal(rt, want.Permissions, perms, msg)
							if n == 1 {
								require.Equal(rt, want.Reason, reason, msg)
							}
						}
					}
				}
			})
		})
	}
}
