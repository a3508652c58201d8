package processmanager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// BenchmarkExpiries measures the process manager firing n grace deadlines
// that fall due at one instant, on the SQL event store with the deadlines
// in the same database, the real command service and a relay publishing
// the log to the process manager (so the expiries' own events come back
// and settle their rows meanwhile, as in the engine). One operation is the
// whole batch: from the clock moving past the deadlines until no deadline
// is pending (each one's expiry appended and its row settled). The set-up
// (n children placed with one carer and their placements ended at t0, the
// deadlines recorded) is not timed; run it with -benchtime 1x.
// PM_BENCH_EXPIRIES sets n (default 1000).
func BenchmarkExpiries(b *testing.B) {
	n := 1000
	if v := os.Getenv("PM_BENCH_EXPIRIES"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(b, err)
	}
	for _, be := range []sqltest.Backend{{Name: "sqlite-file", URL: sqltest.SQLiteFile}, {Name: "postgres", URL: sqltest.Postgres}} {
		b.Run(fmt.Sprintf("%s/n=%d", be.Name, n), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				e := newSQLLogEnv(b, be.URL(b))
				p := e.start(b, nil)
				caughtUp := e.startRelayOnce(b)
				e.placeAndEnd(b, n)
				caughtUp()
				require.Eventually(b, func() bool {
					st, err := p.Status(context.Background())
					return err == nil && st.Pending == n
				}, 5*time.Minute, 10*time.Millisecond, "%d deadlines recorded", n)

				stopProfile := profileTimed(b)
				b.StartTimer()
				e.clock.Set(t0.Add(grace).Add(time.Minute))
				// The commands carried out first (a cheap count), then the
				// rows settled (a count over the table).
				for p.spy.count() < n {
					time.Sleep(5 * time.Millisecond)
				}
				for {
					st, err := p.Status(context.Background())
					require.NoError(b, err)
					if st.Pending == 0 {
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				b.StopTimer()
				stopProfile()
				b.ReportMetric(float64(n)/b.Elapsed().Seconds()*float64(b.N), "expiries/s")
				p.stop()
			}
		})
	}
}

// profileTimed writes a CPU profile of the timed part to the file
// PM_BENCH_CPUPROFILE names (nothing when unset) and returns its stop.
func profileTimed(b *testing.B) func() {
	path := os.Getenv("PM_BENCH_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	require.NoError(b, err)
	require.NoError(b, pprof.StartCPUProfile(f))
	return func() {
		pprof.StopCPUProfile()
		require.NoError(b, f.Close())
	}
}

// placeAndEnd places n children with one carer from t0-30d and ends the
// placements at t0 (grace deadlines at t0+grace), with 8 clients.
func (e *env) placeAndEnd(t testing.TB, n int) {
	t.Helper()
	ctx := context.Background()
	carer := e.carer(t)
	worker := e.worker()
	g, gctx := errgroup.WithContext(ctx)
	const clients = 8
	for w := range clients {
		g.Go(func() error {
			for i := w; i < n; i += clients {
				r, err := e.svc.RegisterChild(gctx, as(worker), commands.RegisterChild{Reference: fmt.Sprintf("bench-%d", i)})
				if err != nil {
					return err
				}
				s, err := e.svc.StartPlacement(gctx, as(worker), commands.StartPlacement{ChildID: r.ChildID, CarerAccountID: carer, StartedAt: t0.Add(-30 * day)})
				if err != nil {
					return err
				}
				if _, err := e.svc.EndPlacement(gctx, as(worker), commands.EndPlacement{ChildID: r.ChildID, PlacementID: s.PlacementID, EndedAt: t0, Reason: "moved on"}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
}

// startRelayOnce is startRelay publishing each event once, to e.bus.
func (e *env) startRelayOnce(t testing.TB) (caughtUp func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var published = make(chan uint64, 1)
	published <- 0
	go func() {
		done <- e.store.Subscribe(ctx, eventlog.Start, func(_ context.Context, r eventlog.Record) error {
			msg, err := bus.EncodeEvent(r)
			if err != nil {
				return err
			}
			if err := e.bus.Publish(bus.TopicEvents, msg); err != nil {
				return err
			}
			<-published
			published <- r.Position.Commit
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("relay: %v", err)
		}
	})
	return func() {
		t.Helper()
		head, err := e.store.Head(context.Background())
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			p := <-published
			published <- p
			return p >= head.Commit
		}, 5*time.Minute, 5*time.Millisecond, "the relay published the log up to %s", head)
	}
}
