package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/internal/retry"
)

func TestExponential(t *testing.T) {
	for _, tc := range []struct {
		name     string
		min, max time.Duration
		want     []time.Duration
	}{
		{"doubles up to the maximum", 100 * time.Millisecond, time.Second,
			[]time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}},
		{"min equals max", time.Second, time.Second, []time.Duration{time.Second, time.Second}},
		{"not a power of two apart", 3 * time.Millisecond, 10 * time.Millisecond,
			[]time.Duration{3 * time.Millisecond, 6 * time.Millisecond, 10 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := retry.Exponential(tc.min, tc.max)
			for i, want := range tc.want {
				require.InDelta(t, want, w.Next(), float64(time.Microsecond), "wait %d", i)
			}
			w.Reset()
			require.InDelta(t, tc.min, w.Next(), float64(time.Microsecond), "after Reset")
		})
	}
	require.Panics(t, func() { retry.Exponential(0, time.Second) })
	require.Panics(t, func() { retry.Exponential(time.Second, time.Millisecond) })
}

func TestForever(t *testing.T) {
	ctx := context.Background()
	var attempts []int
	calls := 0
	err := retry.Forever(ctx, retry.Exponential(time.Millisecond, 2*time.Millisecond), func() error {
		if calls++; calls < 4 {
			return errors.New("not yet")
		}
		return nil
	}, func(err error, attempt int, wait time.Duration) {
		require.EqualError(t, err, "not yet")
		require.Positive(t, wait)
		attempts = append(attempts, attempt)
	})
	require.NoError(t, err)
	require.Equal(t, []int{1, 2, 3}, attempts)

	cctx, cancel := context.WithCancel(ctx)
	start := time.Now()
	err = retry.Forever(cctx, retry.Exponential(time.Hour, time.Hour), func() error { return errors.New("down") },
		func(error, int, time.Duration) { cancel() })
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, time.Since(start), time.Minute, "a cancelled context ends the wait")
}

func TestSleep(t *testing.T) {
	require.NoError(t, retry.Sleep(context.Background(), time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, retry.Sleep(ctx, time.Hour), context.Canceled)
}
