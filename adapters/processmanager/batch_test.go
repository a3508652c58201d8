package processmanager

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
)

// graceExpiries counts the GraceExpired events of each placement in the
// log, and returns their event ids.
func (e *env) graceExpiries(t testing.TB) (map[uuid.UUID]int, map[uuid.UUID]uuid.UUID) {
	t.Helper()
	n, ids := map[uuid.UUID]int{}, map[uuid.UUID]uuid.UUID{}
	for _, r := range e.all(t) {
		if g, ok := decode(t, r).Event.(*domain.GraceExpired); ok {
			n[g.PlacementID]++
			ids[g.PlacementID] = r.ID
		}
	}
	return n, ids
}

// Many deadlines due at once, two process managers on one database (each
// with its own command service and bus, the relay publishing to both):
// they claim BatchSize deadlines at a time and carry each batch out with
// one FireDeadlines call. Every deadline is fired once in all, exactly one
// expiry is appended per placement, and each row is resolved by its own
// expiry as soon as its batch is settled (the settling event, when it
// comes back, writes nothing).
func TestExpiriesInBatchesWithTwoProcessManagers(t *testing.T) {
	const placements, batchSize = 40, 7
	for _, be := range []sqltest.Backend{{Name: "sqlite-file", URL: sqltest.SQLiteFile}, {Name: "postgres", URL: sqltest.Postgres}} {
		t.Run(be.Name, func(t *testing.T) {
			url := be.URL(t)
			e := newSQLLogEnv(t, url)
			cfgB, _ := e.replica(t, url)
			busB := newBus(t)
			small := func(c *Config) { c.BatchSize = batchSize }
			a := e.start(t, nil, small, func(c *Config) { c.InstanceID = "replica-a" })
			b := e.start(t, busB, small, func(c *Config) {
				c.InstanceID, c.DB, c.Commands = "replica-b", cfgB.DB, cfgB.Commands
			})
			caughtUp := e.startRelay(t, e.bus, busB)
			s := e.setUp(t, placements, 0, 0)
			caughtUp()
			e.waitRecorded(t, a, s)
			e.waitRecorded(t, b, s)

			e.clock.Set(t0.Add(grace).Add(time.Minute))
			require.Eventually(t, func() bool {
				st, err := a.Status(context.Background())
				return err == nil && st.Pending == 0
			}, waitFor, 5*time.Millisecond)

			counts, ids := e.graceExpiries(t)
			require.Len(t, counts, placements)
			for _, p := range s.placements {
				require.Equal(t, 1, counts[p.placeID], "one expiry of placement %s", p.placeID)
				d := a.deadline(t, GraceID(p.placeID))
				require.Equal(t, StateResolved, d.State)
				require.Equal(t, ids[p.placeID], d.ResolvedBy, "resolved by its own expiry")
				require.Empty(t, d.ClaimedBy)
			}
			calls := append(a.spy.Calls(), b.spy.Calls()...)
			require.Len(t, calls, placements, "each deadline carried out once in all")
			for _, c := range calls {
				require.NoError(t, c.Err)
			}
			batches := append(a.spy.Batches(), b.spy.Batches()...)
			total := 0
			for _, n := range batches {
				require.LessOrEqual(t, n, batchSize)
				total += n
			}
			require.Equal(t, placements, total)
			require.Less(t, len(batches), placements, "in batches, not one by one")
			// A process manager counts a batch as fired just after its rows
			// are settled, so the count may trail the rows for a moment.
			require.Eventually(t, func() bool {
				st, err := a.Status(context.Background())
				require.NoError(t, err)
				stB, err := b.Status(context.Background())
				require.NoError(t, err)
				return st.Fired+stB.Fired == placements
			}, waitFor, 5*time.Millisecond, "every deadline counted as fired once")
		})
	}
}

// dying passes a batch to the service, then dies before the process manager
// records the outcomes: it tells died and waits for the process manager to
// be stopped, then answers every command with the stop's error.
type dying struct {
	Commands
	died chan struct{}
}

func (d *dying) FireDeadlines(ctx context.Context, batch []commands.DeadlineCommand) []commands.DeadlineOutcome {
	d.Commands.FireDeadlines(ctx, batch)
	close(d.died)
	<-ctx.Done()
	out := make([]commands.DeadlineOutcome, len(batch))
	for i := range out {
		out[i].Err = ctx.Err()
	}
	return out
}

// A process manager that dies after its batch's expiries were appended and
// before their rows were settled loses nothing and duplicates nothing: its
// claims stay until it comes back (same instance id), which fires the
// deadlines again; the command service finds each expiry already written
// (the idempotency key), appends nothing, and the rows are resolved by the
// expiries written before the crash.
func TestACrashMidBatchLosesAndDuplicatesNothing(t *testing.T) {
	const placements = 12
	for _, be := range []sqltest.Backend{{Name: "sqlite-file", URL: sqltest.SQLiteFile}, {Name: "postgres", URL: sqltest.Postgres}} {
		t.Run(be.Name, func(t *testing.T) {
			e := newSQLLogEnv(t, be.URL(t))
			die := &dying{Commands: e.svc, died: make(chan struct{})}
			first := e.start(t, nil, func(c *Config) { c.InstanceID, c.Commands = "replica-a", die })
			s := e.setUp(t, placements, 0, 0)
			e.relay(t)
			e.waitRecorded(t, first, s)

			e.clock.Set(t0.Add(grace).Add(time.Minute))
			select {
			case <-die.died:
			case <-time.After(waitFor):
				t.Fatal("the batch was not fired")
			}
			first.stop()
			counts, ids := e.graceExpiries(t)
			require.Len(t, counts, placements, "the batch was written before the crash")
			pending, err := first.Pending(context.Background())
			require.NoError(t, err)
			require.Len(t, pending, placements, "and not settled")
			for _, d := range pending {
				require.Equal(t, "replica-a", d.ClaimedBy)
			}
			e.fresh(t) // what the crashed batch wrote (no relay runs)

			again := e.start(t, nil, func(c *Config) { c.InstanceID = "replica-a" })
			require.Eventually(t, func() bool {
				st, err := again.Status(context.Background())
				return err == nil && st.Pending == 0
			}, waitFor, 5*time.Millisecond)
			require.Empty(t, e.fresh(t), "the second firing appended nothing")
			require.Len(t, again.spy.Calls(), placements)
			after, _ := e.graceExpiries(t)
			require.Equal(t, counts, after)
			for _, p := range s.placements {
				require.Equal(t, 1, after[p.placeID])
				d := again.deadline(t, GraceID(p.placeID))
				require.Equal(t, StateResolved, d.State)
				require.Equal(t, ids[p.placeID], d.ResolvedBy)
				require.Equal(t, 2, d.Attempts)
			}
		})
	}
}

// A batch's settlement resolves each row by the expiry it appended; when
// the expiries come back through the bus, the process manager knows their
// rows are settled and reads none of them. A process manager that did not
// settle them (a restart) reads each once, and writes nothing either way.
func TestSettledRowsNeedNoReadWhenTheirExpiriesComeBack(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		p := e.start(t, nil)
		var ids []string
		for range 5 {
			pl := e.place(t, t0.Add(-30*day))
			e.end(t, pl, t0)
			ids = append(ids, GraceID(pl.placeID))
		}
		e.relay(t)
		e.clock.Set(t0.Add(grace))
		// Fired counts a batch once its settlement returned (the row is
		// resolved a moment before that, when its statement commits).
		require.Eventually(t, func() bool {
			st, err := p.Status(context.Background())
			return err == nil && st.Fired >= int64(len(ids))
		}, waitFor, 5*time.Millisecond)
		for _, id := range ids {
			require.Equal(t, StateResolved, p.deadline(t, id).State)
		}
		_, byPlacement := e.graceExpiries(t)
		require.Len(t, byPlacement, len(ids))

		reads := p.table.resolveReads.Load()
		recs := e.relay(t)
		require.Len(t, ofType(recs, domain.TypeGraceExpired), len(ids))
		require.Equal(t, reads, p.table.resolveReads.Load(), "the settled rows were read again")

		// Another process manager on the same table knows nothing of the
		// settlement: it reads each row once, then not again.
		p.stop()
		q := e.start(t, nil)
		e.publish(t, nil, recs...)
		require.EqualValues(t, len(ids), q.table.resolveReads.Load())
		e.publish(t, nil, recs...)
		require.EqualValues(t, len(ids), q.table.resolveReads.Load())

		for _, r := range ofType(recs, domain.TypeGraceExpired) {
			g, ok := decode(t, r).Event.(*domain.GraceExpired)
			require.True(t, ok)
			d := q.deadline(t, GraceID(g.PlacementID))
			require.Equal(t, StateResolved, d.State)
			require.Equal(t, r.ID, d.ResolvedBy, "resolved by its own expiry")
		}
	})
}

func TestResolutionsCover(t *testing.T) {
	tests := []struct {
		name              string
		through0, through int64
		by0, by           string
		want              bool
	}{
		{"further than asked", 10, 5, "a", "b", true},
		{"as far, by the same event", 5, 5, "a", "a", true},
		{"as far, by another event", 5, 5, "a", "b", false},
		{"not as far", 4, 5, "a", "a", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, covers(tc.through0, tc.by0, tc.through, tc.by))
		})
	}

	var r resolutions
	r.note("d", 10, "a")
	r.note("d", 5, "b") // a settlement never moves back
	got, ok := r.get("d")
	require.True(t, ok)
	require.Equal(t, resolution{through: 10, by: "a"}, got)
	r.note("e", 10, "b")
	r.note("e", 10, "c") // as far, by a larger id: the row stays at "b"
	r.note("f", 10, "b")
	r.note("f", 10, "a") // as far, by a smaller id: the row moves to "a"
	for id, want := range map[string]string{"e": "b", "f": "a"} {
		got, ok := r.get(id)
		require.True(t, ok)
		require.Equal(t, resolution{through: 10, by: want}, got, id)
	}
	for i := range maxResolutions {
		r.note(fmt.Sprint(i), 1, "x")
	}
	require.LessOrEqual(t, len(r.m), maxResolutions, "bounded")
}
