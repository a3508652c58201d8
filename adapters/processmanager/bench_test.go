package processmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
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
// PM_BENCH_EXPIRIES sets n (default 1000). PM_BENCH_HISTORY sets the events
// each child's stream holds before its placement (default 0; the county's
// children hold about 86: here the worker's allocation changed back and
// forth). With PM_BENCH_COLD set, the process manager's command service is
// another replica's, which has not loaded the children (as after a
// restart): it reads each child's whole stream.
func BenchmarkExpiries(b *testing.B) {
	n, history := 1000, 0
	for name, v := range map[string]*int{"PM_BENCH_EXPIRIES": &n, "PM_BENCH_HISTORY": &history} {
		if s := os.Getenv(name); s != "" {
			var err error
			*v, err = strconv.Atoi(s)
			require.NoError(b, err)
		}
	}
	cold := os.Getenv("PM_BENCH_COLD") != ""
	for _, be := range []sqltest.Backend{{Name: "sqlite-file", URL: sqltest.SQLiteFile}, {Name: "postgres", URL: sqltest.Postgres}} {
		name := fmt.Sprintf("%s/n=%d", be.Name, n)
		if history > 0 {
			name += fmt.Sprintf("/history=%d", history)
		}
		if cold {
			name += "/cold"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				e := newSQLLogEnv(b, be.URL(b))
				var opts []pmOpts
				if cold {
					svc, err := commands.New(e.store, noRefusals{}, commands.Config{
						Policy: domain.Policy{GracePeriod: grace, InvitationTTL: ttl, ClosedAccountRetention: retention},
						Clock:  e.clock.Now, Logger: slog.New(slog.DiscardHandler)})
					require.NoError(b, err)
					opts = append(opts, func(c *Config) { c.Commands = svc })
				}
				p := e.start(b, nil, opts...)
				caughtUp := e.startRelayOnce(b)
				e.placeAndEnd(b, n, history)
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
// placements at t0 (grace deadlines at t0+grace), with 8 clients. Each
// child's stream holds history events (worker allocations, appended to
// the log directly) between its registration and its placement.
func (e *env) placeAndEnd(t testing.TB, n, history int) {
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
				if err := e.appendHistory(gctx, r.ChildID, worker, history); err != nil {
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

// appendHistory appends n events to the stream of a child just registered
// by worker: the allocation moved to another worker and back, ending with
// worker allocated (n rounded up to even).
func (e *env) appendHistory(ctx context.Context, child uuid.UUID, worker domain.Actor, n int) error {
	if n <= 0 {
		return nil
	}
	c := domain.Cause{Actor: domain.Actor{ID: "manager-1", Role: domain.RoleManager}, Reason: "caseload", RecordedAt: t0.Add(-60 * day)}
	data := make([]eventlog.EventData, 0, n+1)
	for i := 0; len(data) < n; i++ {
		at := t0.Add(-60 * day).Add(time.Duration(i) * time.Minute)
		for _, ev := range []*domain.WorkerAllocated{
			{ChildID: child, WorkerID: "worker-other", PreviousWorkerID: worker.ID, AllocatedAt: at},
			{ChildID: child, WorkerID: worker.ID, PreviousWorkerID: "worker-other", AllocatedAt: at.Add(time.Second)},
		} {
			d, err := c.EventData(uuid.New(), ev)
			if err != nil {
				return err
			}
			data = append(data, d)
		}
	}
	_, err := e.store.Append(ctx, domain.ChildStream(child), eventlog.Exactly(1), data)
	return err
}
