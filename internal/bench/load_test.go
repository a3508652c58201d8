package bench

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFixedRateCountsTheScheduleAndItsQueue: at a constant pace every
// operation due in the window is made and counted, however slow the
// operations are, and a stall shows in the latency of every operation
// that was due during it (measured from when each was due), not only in
// the stalled one's, as a closed loop would report it.
func TestFixedRateCountsTheScheduleAndItsQueue(t *testing.T) {
	t.Parallel()
	const rate, warm, window = 1000.0, 50 * time.Millisecond, 300 * time.Millisecond
	for _, tc := range []struct {
		name        string
		concurrency int
		stall       time.Duration
	}{
		{"no stall, 2 clients", 2, 0},
		{"a stall of 60 ms, 1 client", 1, 60 * time.Millisecond},
		{"a stall of 60 ms, 4 clients", 4, 60 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var made, stalled atomic.Int64
			started := time.Now()
			r := fixedRate(context.Background(), tc.concurrency, rate, warm, window, func(context.Context, int) (string, error) {
				made.Add(1)
				// One stall, in the middle of the window, held by every
				// client at once (a server that stops answering).
				if tc.stall > 0 && time.Since(started) > warm+window/2 && stalled.CompareAndSwap(0, 1) {
					time.Sleep(tc.stall)
				}
				if tc.stall > 0 && stalled.Load() == 1 && time.Since(started) < warm+window/2+tc.stall {
					time.Sleep(time.Until(started.Add(warm + window/2 + tc.stall)))
				}
				return "", nil
			})
			require.InDelta(t, rate*window.Seconds(), float64(r.Count), 1, "every operation due in the window, no more")
			require.InDelta(t, rate*(window+warm).Seconds(), float64(made.Load()), 2, "the warm-up's are made, not counted")
			require.Zero(t, r.Errors)
			require.Len(t, r.Latencies, int(r.Count))
			require.Len(t, r.Service, int(r.Count))
			if tc.stall == 0 {
				return
			}
			// About stall×rate operations were due while the server
			// stalled; each waited for it from when it was due.
			var queued int
			for _, d := range r.Latencies {
				if d >= 10*time.Millisecond {
					queued++
				}
			}
			require.GreaterOrEqual(t, queued, 30, "operations due during the stall report its queue")
			require.GreaterOrEqual(t, r.Late, int64(30))
			require.GreaterOrEqual(t, r.Latencies[len(r.Latencies)-1], tc.stall/2)
		})
	}
}

// TestFixedRateStopsWithItsContextAndKeepsErrors: a cancelled load ends
// early with a window no longer than it ran; failures are counted and the
// first is kept.
func TestFixedRateStopsWithItsContextAndKeepsErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	r := fixedRate(ctx, 2, 500, 10*time.Millisecond, 10*time.Second, func(context.Context, int) (string, error) {
		return "", errors.New("refused")
	})
	require.Less(t, r.Window, time.Second)
	require.Positive(t, r.Count)
	require.Equal(t, r.Count, r.Errors)
	require.Equal(t, "refused", r.FirstError)
}
