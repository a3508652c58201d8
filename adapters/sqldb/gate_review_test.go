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
