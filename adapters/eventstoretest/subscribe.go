// Subscriptions: catching up, then following without polling; how they end.

package eventstoretest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// subscription runs Subscribe in a goroutine and delivers its events.
type subscription struct {
	recs   chan eventlog.Record
	cancel context.CancelFunc
	done   chan error
}

func subscribe(t *testing.T, s eventlog.Store, after eventlog.Position) *subscription {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	sub := &subscription{recs: make(chan eventlog.Record, 1<<16), cancel: cancel, done: make(chan error, 1)}
	go func() {
		sub.done <- s.Subscribe(ctx, after, func(ctx context.Context, rec eventlog.Record) error {
			select {
			case sub.recs <- rec:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-sub.done: //nolint:errcheck // the subscription ended; its error is the test's subject elsewhere
		case <-time.After(receiveTimeout):
			t.Errorf("Subscribe did not return after its context was canceled")
		}
	})
	return sub
}

func testSubscribeCatchUpThenLive(t *testing.T, newStore func(t *testing.T) eventlog.Store) {
	s := newStore(t)
	past := events(5, "past")
	mustAppend(t, s, "a", eventlog.NoStream, past[:3]...)
	mustAppend(t, s, "b", eventlog.NoStream, past[3:]...)

	var inFlight, overlapped atomic.Int32
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	got := make(chan eventlog.Record, 100)
	done := make(chan error, 1)
	go func() {
		done <- s.Subscribe(ctx, eventlog.Start, func(ctx context.Context, rec eventlog.Record) error {
			if inFlight.Add(1) > 1 {
				overlapped.Store(1)
			}
			defer inFlight.Add(-1)
			time.Sleep(time.Millisecond)
			got <- rec
			return nil
		})
	}()
	sub := &subscription{recs: got, cancel: cancel, done: done}

	caught := sub.next(t, 5)
	require.Equal(t, eventIDs(past), ids(caught))
	requireOrdered(t, caught)
	for i := range caught {
		requireEvent(t, past[i], caught[i])
	}
	sub.requireQuiet(t)

	live := events(4, "live")
	mustAppend(t, s, "a", eventlog.Exactly(3), live[:1]...)
	mustAppend(t, s, "c", eventlog.NoStream, live[1:3]...)
	mustAppend(t, s, "b", eventlog.Any, live[3:]...)
	followed := sub.next(t, 4)
	require.Equal(t, eventIDs(live), ids(followed))
	for i := range followed {
		requireEvent(t, live[i], followed[i])
	}
	all := readAll(t, s)
	require.Equal(t, ids(all), ids(append(caught, followed...)))
	for i, rec := range append(caught, followed...) {
		require.Equal(t, all[i].Position, rec.Position)
		require.Equal(t, all[i].Stream, rec.Stream)
		require.Equal(t, all[i].Version, rec.Version)
	}
	require.Zero(t, overlapped.Load(), "handle is called from one goroutine at a time")

	err := sub.stop(t)
	require.ErrorIs(t, err, context.Canceled)
}

func testSubscribeFromMiddle(t *testing.T, newStore func(t *testing.T) eventlog.Store) {
	s := newStore(t)
	for i := range 6 {
		mustAppend(t, s, fmt.Sprintf("s%d", i%3), eventlog.Any, events(2, "a")...)
	}
	all := readAll(t, s)
	require.Len(t, all, 12)

	sub := subscribe(t, s, all[6].Position)
	require.Equal(t, ids(all[7:]), ids(sub.next(t, 5)))
	sub.requireQuiet(t)

	atEnd := subscribe(t, s, all[11].Position)
	atEnd.requireQuiet(t)
	more := events(1, "b")
	mustAppend(t, s, "s0", eventlog.Any, more...)
	require.Equal(t, eventIDs(more), ids(atEnd.next(t, 1)))
	require.Equal(t, eventIDs(more), ids(sub.next(t, 1)))
}

func testSubscribeContextError(t *testing.T, newStore func(t *testing.T) eventlog.Store) {
	s := newStore(t)
	mustAppend(t, s, "s", eventlog.NoStream, events(3, "a")...)
	noop := func(context.Context, eventlog.Record) error { return nil }

	t.Run("canceled while waiting", func(t *testing.T) {
		sub := subscribe(t, s, eventlog.Start)
		sub.next(t, 3)
		require.ErrorIs(t, sub.stop(t), context.Canceled)
	})
	t.Run("deadline while waiting", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		err := s.Subscribe(ctx, eventlog.Start, noop)
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("already canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		calls := 0
		err := s.Subscribe(ctx, eventlog.Start, func(context.Context, eventlog.Record) error { calls++; return nil })
		require.ErrorIs(t, err, context.Canceled)
		require.Zero(t, calls, "handle is not called after ctx is done")
	})
	t.Run("canceled by the handler", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		calls := 0
		err := s.Subscribe(ctx, eventlog.Start, func(context.Context, eventlog.Record) error {
			calls++
			cancel()
			return nil
		})
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, 1, calls, "no event is handed over after ctx is done")
	})
}

func testSubscribeHandlerError(t *testing.T, newStore func(t *testing.T) eventlog.Store) {
	s := newStore(t)
	mustAppend(t, s, "s", eventlog.NoStream, events(5, "a")...)
	errStop := errors.New("handler refuses")
	var calls []eventlog.Position
	err := s.Subscribe(t.Context(), eventlog.Start, func(_ context.Context, rec eventlog.Record) error {
		calls = append(calls, rec.Position)
		if len(calls) == 3 {
			return fmt.Errorf("event %s: %w", rec.ID, errStop)
		}
		return nil
	})
	require.ErrorIs(t, err, errStop)
	require.Len(t, calls, 3, "handle is not called after it failed")

	t.Run("while following", func(t *testing.T) {
		h := head(t, s)
		done := make(chan error, 1)
		go func() {
			done <- s.Subscribe(t.Context(), h, func(context.Context, eventlog.Record) error { return errStop })
		}()
		time.Sleep(50 * time.Millisecond)
		mustAppend(t, s, "s", eventlog.Any, events(1, "b")...)
		select {
		case err := <-done:
			require.ErrorIs(t, err, errStop)
		case <-time.After(receiveTimeout):
			require.FailNow(t, "Subscribe did not return the handler's error")
		}
	})
}

func testSubscribeWakesPromptly(t *testing.T, newStore func(t *testing.T) eventlog.Store) {
	s := newStore(t)
	sub := subscribe(t, s, eventlog.Start)
	sub.requireQuiet(t)

	var worst time.Duration
	for i := range 5 {
		// Let the subscriber settle into its wait before appending.
		time.Sleep(time.Duration(30+20*i) * time.Millisecond)
		e := event("wake")
		mustAppend(t, s, "wake", eventlog.Any, e)
		// Measured from the append's return, as WakeLatency states: the
		// append's own cost (fsync, a loaded CI machine) is not the wake-up's.
		returned := time.Now()
		got := sub.next(t, 1)
		latency := time.Since(returned)
		require.Equal(t, e.ID, got[0].ID)
		worst = max(worst, latency)
		require.Less(t, latency, WakeLatency, "append %d reached the subscriber after %s: appends must wake subscribers", i, latency)
	}
	t.Logf("worst append-to-delivery latency %s", worst)
}
