package sqldb

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWriteGateStress (review): foreground and yielding writers, some
// giving up while queued or as they are handed the gate: never two holders
// at once, every writer that got the gate releases it, and the gate ends
// free with no waiter left.
func TestWriteGateStress(t *testing.T) {
	g := &writeGate{timeout: 10 * time.Second}
	var holders, got, gaveUp atomic.Int64
	var wg sync.WaitGroup
	for i := range 400 {
		wg.Go(func() {
			ctx := context.Background()
			if i%3 == 0 {
				ctx = Yielding(ctx)
			}
			var cancel context.CancelFunc = func() {}
			if i%5 == 0 {
				ctx, cancel = context.WithTimeout(ctx, time.Duration(rand.IntN(200))*time.Microsecond)
			}
			defer cancel()
			if err := g.acquire(ctx); err != nil {
				gaveUp.Add(1)
				return
			}
			got.Add(1)
			if n := holders.Add(1); n != 1 {
				t.Errorf("%d holders at once", n)
			}
			time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond)
			holders.Add(-1)
			g.release()
		})
	}
	wg.Wait()
	require.Equal(t, int64(400), got.Load()+gaveUp.Load())
	require.False(t, g.isHeld())
	g.mu.Lock()
	defer g.mu.Unlock()
	require.Empty(t, g.fg)
	require.Empty(t, g.yielding)
}

// TestWriteGateRunCountForgetsAWaiterThatLeft (review): the count of
// foreground hand-offs in a row (fgRun) is kept from a yielding writer
// that gave up (timed out or canceled) while the gate went idle, so the
// next yielding writer goes ahead of foreground ones after a shorter run
// than maxForegroundRun.
func TestWriteGateRunCountForgetsAWaiterThatLeft(t *testing.T) {
	ctx := context.Background()
	g := &writeGate{timeout: 10 * time.Second}
	queued := func(n int) {
		require.Eventually(t, func() bool {
			g.mu.Lock()
			defer g.mu.Unlock()
			return len(g.fg)+len(g.yielding) == n
		}, 5*time.Second, 100*time.Microsecond)
	}
	// A yielding writer waits while three foreground ones take the gate,
	// then gives up; the gate goes idle.
	require.NoError(t, g.acquire(ctx))
	yctx, cancel := context.WithCancel(Yielding(ctx))
	yerr := make(chan error, 1)
	go func() { yerr <- g.acquire(yctx) }()
	queued(1)
	for range 3 {
		got := make(chan struct{})
		go func() { require.NoError(t, g.acquire(ctx)); close(got) }()
		queued(2)
		g.release() // to the foreground writer
		<-got
	}
	cancel()
	require.ErrorIs(t, <-yerr, context.Canceled)
	g.release()
	require.False(t, g.isHeld())

	// Later: a yielding writer, then two foreground ones, queue behind a
	// holder. Both foreground writers should go first (a run of 2 < 4).
	require.NoError(t, g.acquire(ctx))
	var mu sync.Mutex
	var order []byte
	var wg sync.WaitGroup
	for i, kind := range []byte("yff") {
		wctx := ctx
		if kind == 'y' {
			wctx = Yielding(ctx)
		}
		wg.Go(func() {
			require.NoError(t, g.acquire(wctx))
			mu.Lock()
			order = append(order, kind)
			mu.Unlock()
			g.release()
		})
		queued(i + 1)
	}
	g.release()
	wg.Wait()
	require.Equal(t, "ffy", string(order))
}
