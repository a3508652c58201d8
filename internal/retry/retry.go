// Package retry is the one retry policy of the engine's long-running
// loops (the projection runner, the outbox publishers, the event stores'
// subscriptions and LISTEN connection): waits that start at a minimum and
// double up to a maximum, reset once the loop makes progress, and a sleep
// that ends with its context. It is built on
// github.com/cenkalti/backoff/v5 (exponential, without jitter: the loops
// are few, and their logs name the wait).
//
// Commands retry differently (a few jittered attempts on a version
// conflict, commands.Service), and so do the process manager's deadlines
// (their next attempt is stored with them).
package retry

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Waits is a sequence of waits: Min, 2×Min, 4×Min, ... up to Max, and Max
// from then on. It is not safe for concurrent use; each loop has its own.
type Waits struct {
	b backoff.ExponentialBackOff
}

// Exponential returns the waits from min, doubling up to max. It panics
// unless 0 < min <= max.
func Exponential(min, max time.Duration) *Waits {
	if min <= 0 || max < min {
		panic("retry: Exponential needs 0 < min <= max")
	}
	w := &Waits{b: backoff.ExponentialBackOff{InitialInterval: min, Multiplier: 2, MaxInterval: max}}
	w.b.Reset()
	return w
}

// Next returns the next wait.
func (w *Waits) Next() time.Duration { return w.b.NextBackOff() }

// Reset starts the sequence again at Min (after progress).
func (w *Waits) Reset() { w.b.Reset() }

// Sleep waits d, or until ctx ends; it returns ctx.Err() when ctx ended
// first, else nil.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Forever runs f until it returns nil (then Forever returns nil) or ctx
// ends (then ctx.Err()), waiting w's next wait after each failure. failed,
// when not nil, is told each failure, its attempt (from 1) and the wait
// before the next one, before the wait. w is reset first.
func Forever(ctx context.Context, w *Waits, f func() error, failed func(err error, attempt int, wait time.Duration)) error {
	w.Reset()
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := w.Next()
		if failed != nil {
			failed(err, attempt, wait)
		}
		if err := Sleep(ctx, wait); err != nil {
			return err
		}
	}
}
