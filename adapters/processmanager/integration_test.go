package processmanager

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// startRelay follows the event store from the start and publishes every
// event on TopicEvents of each bus, twice (at-least-once delivery with
// duplicates), until the test ends. It stands in for the outbox relay. The
// function it returns waits until the relay has published the whole log
// (the buses block each publish until it is handled).
func (e *env) startRelay(t testing.TB, buses ...message.Publisher) (caughtUp func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var published atomic.Uint64
	go func() {
		done <- e.store.Subscribe(ctx, eventlog.Start, func(_ context.Context, r eventlog.Record) error {
			defer published.Store(r.Position.Commit)
			for range 2 {
				for _, b := range buses {
					msg, err := bus.EncodeEvent(r)
					if err != nil {
						return err
					}
					if err := b.Publish(bus.TopicEvents, msg); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		err := <-done
		if !errors.Is(err, context.Canceled) {
			t.Errorf("relay: %v", err)
		}
	})
	return func() {
		t.Helper()
		head, err := e.store.Head(context.Background())
		require.NoError(t, err)
		require.Eventually(t, func() bool { return published.Load() >= head.Commit },
			waitFor, 5*time.Millisecond, "the relay published the log up to %s", head)
	}
}

// scenario is what the integration tests set up: placements ended at
// t0 (grace deadlines at t0+grace), open invitations (deadlines at
// t0+ttl), and invitations accepted at once (no deadline left).
type scenario struct {
	placements []placement
	open       []uuid.UUID
	accepted   []uuid.UUID
}

func (e *env) setUp(t testing.TB, placements, open, accepted int) scenario {
	t.Helper()
	var s scenario
	for range placements {
		p := e.place(t, t0.Add(-30*day))
		require.Equal(t, t0.Add(grace), e.end(t, p, t0))
		s.placements = append(s.placements, p)
		s.accepted = append(s.accepted, p.carer)
	}
	for range open {
		id, _ := e.invite(t)
		s.open = append(s.open, id)
	}
	for range accepted {
		id, email := e.invite(t)
		e.activate(t, id, email)
		s.accepted = append(s.accepted, id)
	}
	return s
}

// waitRecorded waits until p's table holds the scenario's deadlines as the
// events leave them: grace and open invitations pending, accepted
// invitations resolved.
func (e *env) waitRecorded(t testing.TB, p *pm, s scenario) {
	t.Helper()
	want := map[string]State{}
	for _, pl := range s.placements {
		want[GraceID(pl.placeID)] = StatePending
	}
	for _, a := range s.open {
		want[InvitationID(a)] = StatePending
	}
	for _, a := range s.accepted {
		want[InvitationID(a)] = StateResolved
	}
	require.Eventually(t, func() bool {
		for id, st := range want {
			d, ok, err := p.Deadline(context.Background(), id)
			if err != nil || !ok || d.State != st {
				return false
			}
		}
		return true
	}, waitFor, 5*time.Millisecond, "the deadlines recorded")
}

// waitAllResolved waits until the table holds a row for every deadline of
// the scenario and every row is resolved (the expiry event came back).
func (e *env) waitAllResolved(t testing.TB, p *pm, s scenario) {
	t.Helper()
	ids := make([]string, 0, len(s.placements)+len(s.open))
	for _, pl := range s.placements {
		ids = append(ids, GraceID(pl.placeID))
	}
	for _, a := range s.open {
		ids = append(ids, InvitationID(a))
	}
	require.Eventually(t, func() bool {
		for _, id := range ids {
			d, ok, err := p.Deadline(context.Background(), id)
			if err != nil || !ok || d.State != StateResolved {
				return false
			}
		}
		return true
	}, waitFor, 5*time.Millisecond, "every deadline resolved")
}

// checkExactlyOnce checks the log holds exactly one GraceExpired per
// placement and one InvitationExpired per open invitation, none for an
// accepted one, each effective at its deadline.
func (e *env) checkExactlyOnce(t testing.TB, s scenario) {
	t.Helper()
	graces := map[uuid.UUID]int{}
	invitations := map[uuid.UUID]int{}
	for _, r := range e.all(t) {
		switch ev := decode(t, r).Event.(type) {
		case *domain.GraceExpired:
			graces[ev.PlacementID]++
			require.Equal(t, t0.Add(grace), ev.ExpiredAt)
		case *domain.InvitationExpired:
			invitations[ev.AccountID]++
			require.Equal(t, t0.Add(ttl), ev.ExpiredAt)
		}
	}
	require.Len(t, graces, len(s.placements))
	for _, p := range s.placements {
		require.Equal(t, 1, graces[p.placeID], "GraceExpired of placement %s", p.placeID)
	}
	require.Len(t, invitations, len(s.open))
	for _, a := range s.open {
		require.Equal(t, 1, invitations[a], "InvitationExpired of account %s", a)
	}
	for _, a := range s.accepted {
		require.Zero(t, invitations[a], "an accepted invitation does not expire")
	}
}

// The whole loop on a real store, the real command service and gochannel:
// the relay publishes every event twice, the process manager records the
// deadlines, fires them when the clock passes them, and the expiry events
// it causes come back and resolve them. Exactly one expiry per deadline.
func TestEndToEndWithTheRealService(t *testing.T) {
	for _, b := range []sqltest.Backend{{Name: "sqlite-file", URL: sqltest.SQLiteFile}, {Name: "postgres", URL: sqltest.Postgres}} {
		t.Run(b.Name, func(t *testing.T) {
			e := newSQLLogEnv(t, b.URL(t))
			p := e.start(t, nil)
			caughtUp := e.startRelay(t, e.bus)
			s := e.setUp(t, 4, 2, 2)
			caughtUp()
			e.waitRecorded(t, p, s)
			pending, err := p.Pending(context.Background())
			require.NoError(t, err)
			require.Len(t, pending, 6)

			e.clock.Set(t0.Add(ttl).Add(time.Hour))
			e.waitAllResolved(t, p, s)
			e.checkExactlyOnce(t, s)
			// The spy records a call once the service returns, which can be
			// after its expiry event resolved the row.
			require.Eventually(t, func() bool { return len(p.spy.Calls()) >= 6 }, waitFor, 5*time.Millisecond)
			require.Len(t, p.spy.Calls(), 6, "one firing per deadline")
			for _, a := range s.accepted {
				require.Equal(t, StateResolved, p.deadline(t, InvitationID(a)).State)
			}
		})
	}
}

// replica is a second engine on the same PostgreSQL database: its own
// connection pool, event store and command service.
func (e *env) replica(t testing.TB, url string) (Config, *commands.Service) {
	t.Helper()
	ctx := context.Background()
	db := sqltest.Open(t, url)
	st, err := sqlstore.New(ctx, db)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	svc, err := commands.New(st, noRefusals{}, commands.Config{
		Policy: domain.Policy{GracePeriod: grace, InvitationTTL: ttl, ClosedAccountRetention: retention},
		Clock:  e.clock.Now,
		Logger: slog.New(slog.DiscardHandler),
		Eraser: &e.erased,
	})
	require.NoError(t, err)
	return Config{DB: db, Commands: svc}, svc
}

// Two process managers on one PostgreSQL database share the deadlines
// table and race to fire: there is exactly one expiry event per deadline.
//
//   - A gochannel each (two processes with embedded buses; the relay
//     publishes to both): both record every deadline, idempotently, and
//     the claims alone keep them apart: every deadline is fired exactly
//     once in all.
//   - One shared gochannel: every event reaches both (gochannel has no
//     consumer groups); the expiries are carried out in batches by the
//     instance that claimed them, not through the bus: each deadline is
//     claimed once and its command carried out once.
//   - The PostgreSQL bus (watermill-sql), one consumer group: each event
//     reaches one of them; every deadline is fired once.
//
// Each claims two deadlines at a time (BatchSize 2), so the batches of the
// two interleave.
func TestTwoProcessManagersOnOnePostgres(t *testing.T) {
	const placements, open = 12, 4
	for _, variant := range []string{"a-gochannel-each", "one-shared-gochannel", "postgres-bus"} {
		t.Run(variant, func(t *testing.T) {
			e, a, b, relayTo := twoReplicas(t, variant)
			e.startRelay(t, relayTo...)
			s := e.setUp(t, placements, open, 1)
			e.waitRecorded(t, b, s)

			e.clock.Set(t0.Add(ttl).Add(time.Hour))
			e.waitAllResolved(t, a, s)
			e.checkExactlyOnce(t, s)

			want, why := placements+open, "each deadline fired once in all"
			// The deadline is resolved by the first handler to finish; on
			// the shared bus the other replica's handler may still be
			// running its copy of the command.
			require.Eventually(t, func() bool { return len(a.spy.Calls())+len(b.spy.Calls()) >= want }, 10*time.Second, 5*time.Millisecond)
			calls := len(a.spy.Calls()) + len(b.spy.Calls())
			t.Logf("commands carried out: %d by %s, %d by %s", len(a.spy.Calls()), a.InstanceID(), len(b.spy.Calls()), b.InstanceID())
			require.Equal(t, want, calls, why)
			for _, c := range append(a.spy.Calls(), b.spy.Calls()...) {
				require.NoError(t, c.Err)
			}
		})
	}
}

// twoReplicas starts two process managers, replica-a and replica-b, on
// one PostgreSQL database, each with its own command service, connected
// as variant says: "a-gochannel-each", "one-shared-gochannel" or
// "postgres-bus". It returns the env (replica-a's) and the publishers the
// relay must publish the events to.
func twoReplicas(t testing.TB, variant string) (e *env, a, b *pm, relayTo []message.Publisher) {
	t.Helper()
	url := sqltest.Postgres(t)
	e = newSQLLogEnv(t, url)
	cfgB, _ := e.replica(t, url)
	var pubA, pubB message.Publisher
	var subA, subB message.Subscriber
	switch variant {
	case "a-gochannel-each":
		busA, busB := e.bus, newBus(t)
		pubA, subA, pubB, subB = busA, busA, busB, busB
		relayTo = []message.Publisher{busA, busB}
	case "one-shared-gochannel":
		pubA, subA, pubB, subB = e.bus, e.bus, e.bus, e.bus
		relayTo = []message.Publisher{e.bus}
	case "postgres-bus":
		pubA, subA = openBus(t, url)
		pubB, subB = openBus(t, url)
		relayTo = []message.Publisher{pubA}
	default:
		t.Fatalf("unknown variant %q", variant)
	}
	small := func(c *Config) { c.BatchSize = 2 }
	a = e.start(t, nil, small, func(c *Config) {
		c.InstanceID, c.Publisher, c.Subscriber = "replica-a", pubA, subA
	})
	b = e.start(t, nil, small, func(c *Config) {
		c.InstanceID, c.Publisher, c.Subscriber = "replica-b", pubB, subB
		c.DB, c.Commands = cfgB.DB, cfgB.Commands
	})
	return e, a, b, relayTo
}

// openBus opens the PostgreSQL bus (watermill-sql) on the database of url,
// consumer group "accessledger", closed when the test ends.
func openBus(t testing.TB, url string) (message.Publisher, message.Subscriber) {
	t.Helper()
	pub, sub, closeBus, err := bus.Open(context.Background(), bus.Config{
		Kind: bus.KindPostgres, URL: url, PollInterval: 20 * time.Millisecond, Logger: testLogger(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, closeBus()) })
	return pub, sub
}
