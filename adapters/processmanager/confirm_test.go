package processmanager

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/outbox"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// endedPlacements ends n placements and returns their PlacementEnded
// records, not yet published.
func (e *env) endedPlacements(t *testing.T, n int) []eventlog.Record {
	t.Helper()
	for range n {
		e.end(t, e.place(t, t0.Add(-30*day)), t0)
	}
	ends := ofType(e.fresh(t), domain.TypePlacementEnded)
	require.Len(t, ends, n)
	return ends
}

// recorded reports whether the grace deadline of the placement whose end
// is r is in p's table.
func recorded(t *testing.T, p *ProcessManager, r eventlog.Record) bool {
	t.Helper()
	ended, ok := decode(t, r).Event.(*domain.PlacementEnded)
	require.True(t, ok)
	_, ok, err := p.Deadline(context.Background(), GraceID(ended.PlacementID))
	require.NoError(t, err)
	return ok
}

func encoded(t *testing.T, r eventlog.Record) *message.Message {
	t.Helper()
	msg, err := bus.EncodeEvent(r)
	require.NoError(t, err)
	return msg
}

// failingPublisher fails every publish.
type failingPublisher struct{}

var errBusDown = errors.New("injected: the bus is down")

func (failingPublisher) Publish(string, ...*message.Message) error { return errBusDown }
func (failingPublisher) Close() error                              { return nil }

// A Confirming publisher answers for what the process manager handled: an
// event published while it is not subscribed (before Run, after it) is
// reported, not passed off as delivered.
func TestConfirmingReportsEventsTheProcessManagerDidNotHandle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		ends := e.endedPlacements(t, 4)

		// Built, not running: nobody is subscribed, gochannel drops the
		// message and its Publish returns nil.
		idle, err := New(Config{DB: e.db, Publisher: e.bus, Subscriber: e.bus, Commands: e.svc, Clock: e.clock,
			Logger: testLogger(), PollInterval: never, ClosedAccountRetention: retention, Policy: e.svc})
		require.NoError(t, err)
		require.NoError(t, e.bus.Publish(bus.TopicEvents, encoded(t, ends[0])), "the bus alone reports nothing")
		err = idle.Confirming(e.bus).Publish(bus.TopicEvents, encoded(t, ends[0]))
		require.ErrorIs(t, err, ErrNotHandled)
		require.False(t, recorded(t, idle, ends[0]))

		p := e.start(t, nil)
		c := p.Confirming(e.bus)
		tests := []struct {
			name    string
			pub     message.Publisher
			topic   string
			msgs    []*message.Message
			wantErr error
		}{
			{"one event handled", c, bus.TopicEvents, []*message.Message{encoded(t, ends[0])}, nil},
			{"several, the last handled", c, bus.TopicEvents, []*message.Message{encoded(t, ends[1]), encoded(t, ends[2])}, nil},
			{"another topic is not checked", c, "accessledger.other", []*message.Message{message.NewMessage(uuid.NewString(), nil)}, nil},
			{"nothing published", c, bus.TopicEvents, nil, nil},
			{"the bus's error comes back as it is", p.Confirming(failingPublisher{}), bus.TopicEvents, []*message.Message{encoded(t, ends[3])}, errBusDown},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				err := tc.pub.Publish(tc.topic, tc.msgs...)
				if tc.wantErr != nil {
					require.ErrorIs(t, err, tc.wantErr)
					return
				}
				require.NoError(t, err)
			})
		}
		for _, r := range ends[:3] {
			require.True(t, recorded(t, p.ProcessManager, r))
		}
		require.False(t, recorded(t, p.ProcessManager, ends[3]), "the failed publish reached nobody")

		p.stop()
		err = c.Publish(bus.TopicEvents, encoded(t, ends[3]))
		require.ErrorIs(t, err, ErrNotHandled, "published after the process manager stopped")
		require.False(t, recorded(t, p.ProcessManager, ends[3]))
	})
}

// The process manager stops while events are being published to it: every
// publish that returned without error was handled (its deadline is in the
// table); the others say so, and so do those after the stop.
func TestConfirmingWhileTheProcessManagerStops(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		ends := e.endedPlacements(t, 40)
		p := e.start(t, nil)
		c := p.Confirming(e.bus)
		for _, r := range ends[:5] {
			require.NoError(t, c.Publish(bus.TopicEvents, encoded(t, r)))
		}

		// The next ones race the stop; the last five wait for it.
		after := len(ends) - 5
		errs := make([]error, len(ends))
		stopped := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 5; i < len(ends); i++ {
				if i == after {
					<-stopped
				}
				errs[i] = c.Publish(bus.TopicEvents, encoded(t, ends[i]))
			}
		})
		p.stop()
		close(stopped)
		wg.Wait()

		var handled int
		for i, err := range errs {
			if err == nil {
				handled++
				require.True(t, recorded(t, p.ProcessManager, ends[i]), "publish %d returned nil: its deadline must be recorded", i)
				continue
			}
			require.ErrorIs(t, err, ErrNotHandled, "publish %d", i)
			require.GreaterOrEqual(t, i, 5)
		}
		for i := after; i < len(ends); i++ {
			require.ErrorIs(t, errs[i], ErrNotHandled, "publish %d, after the stop", i)
		}
		t.Logf("%d handled, %d refused", handled, len(ends)-handled)
	})
}

// The outbox relay on the in-process bus, through Confirming: when the
// process manager stops under it, the relay's checkpoint stays before the
// first event the process manager did not handle, and the next start
// delivers the rest. Every placement's end gets its grace deadline.
func TestTheRelaysCheckpointNeverPassesAnEventTheProcessManagerMissed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		e := newEnv(t, url)
		require.NoError(t, outbox.Migrate(ctx, e.db))
		ends := e.endedPlacements(t, 10)

		runRelay := func(p *pm) (relay *outbox.Relay, stop func() error) {
			rctx, cancel := context.WithCancel(ctx)
			relay = outbox.NewRelay(e.store, e.db, p.Confirming(e.bus), outbox.WithLogger(testLogger()))
			done := make(chan error, 1)
			go func() { done <- relay.Run(rctx) }()
			return relay, func() error {
				cancel()
				select {
				case err := <-done:
					if rctx.Err() != nil && errors.Is(err, context.Canceled) {
						return nil
					}
					return err
				case <-time.After(waitFor):
					return errors.New("the relay did not stop")
				}
			}
		}
		p := e.start(t, nil)
		relay, stopRelay := runRelay(p)
		require.Eventually(t, func() bool { return recorded(t, p.ProcessManager, ends[len(ends)-1]) },
			waitFor, 5*time.Millisecond, "the relay delivered the first ends")

		// The process manager stops first (as when its router stops on
		// its own); the relay goes on, and the ends appended now reach
		// nobody.
		p.stop()
		more := e.endedPlacements(t, 5)
		require.Eventually(t, func() bool {
			st, err := relay.Status(ctx)
			require.NoError(t, err)
			return st.Retries > 0
		}, waitFor, 5*time.Millisecond, "the relay tried the new ends and was refused")
		require.NoError(t, stopRelay())
		for _, r := range more {
			require.False(t, recorded(t, p.ProcessManager, r))
		}
		cp, err := outbox.NewCheckpoints(e.db).Load(ctx, outbox.DefaultRelayName)
		require.NoError(t, err)
		require.True(t, cp.Before(more[0].Position), "checkpoint %v passed the first end nobody handled (%v)", cp, more[0].Position)

		// The next start publishes them again.
		q := e.start(t, nil)
		_, stopRelay = runRelay(q)
		t.Cleanup(func() { _ = stopRelay() })
		for _, r := range append(ends, more...) {
			require.Eventually(t, func() bool { return recorded(t, q.ProcessManager, r) }, waitFor, 5*time.Millisecond)
		}
	})
}

// delivering is a bus that hands the messages of a Publish to handled (as
// the router's middleware would) only where deliver says, and returns nil
// whatever it delivered, as gochannel does while a subscription closes.
type delivering struct {
	handled *handledLog
	deliver func(i int) bool
}

func (d delivering) Publish(_ string, msgs ...*message.Message) error {
	for i, m := range msgs {
		if d.deliver(i) {
			d.handled.add(m.UUID)
		}
	}
	return nil
}
func (delivering) Close() error { return nil }

// Every message of a Publish must have been handled, not only its last:
// gochannel may drop one as the subscription closes and still deliver a
// later one (which the process manager acks, were it an event it ignores).
func TestConfirmingChecksEveryMessageOfAPublish(t *testing.T) {
	tests := []struct {
		name    string
		deliver func(i int) bool
		ok      bool
	}{
		{"all handled", func(int) bool { return true }, true},
		{"none handled", func(int) bool { return false }, false},
		{"the first dropped, the rest handled", func(i int) bool { return i > 0 }, false},
		{"one in the middle dropped", func(i int) bool { return i != 50 }, false},
		{"the last dropped", func(i int) bool { return i < 99 }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h handledLog
			c := confirming{Publisher: delivering{handled: &h, deliver: tc.deliver}, handled: &h}
			msgs := make([]*message.Message, 100)
			for i := range msgs {
				msgs[i] = message.NewMessage(uuid.NewString(), nil)
			}
			err := c.Publish(bus.TopicEvents, msgs...)
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrNotHandled)
			// The retry republishes the same messages to nobody: still refused.
			c.Publisher = delivering{handled: &h, deliver: func(int) bool { return false }}
			require.ErrorIs(t, c.Publish(bus.TopicEvents, msgs...), ErrNotHandled)
		})
	}
}

// The log of handled messages is bounded, and keeps at least twice the
// largest Publish.
func TestHandledLogIsBounded(t *testing.T) {
	var h handledLog
	for i := range 3 * minHandledKept {
		h.add(fmt.Sprint(i))
	}
	require.Len(t, h.order, minHandledKept)
	require.Len(t, h.ids, minHandledKept)
	h.reserve(minHandledKept)
	for i := range 3 * minHandledKept {
		h.add(fmt.Sprint("b", i))
	}
	require.Len(t, h.ids, 2*minHandledKept)
	_, missing := h.unhandled([]*message.Message{message.NewMessage(fmt.Sprint("b", 3*minHandledKept-1), nil)})
	require.False(t, missing, "the newest is remembered")
	_, missing = h.unhandled([]*message.Message{message.NewMessage("b0", nil)})
	require.True(t, missing, "the oldest is forgotten")
}
