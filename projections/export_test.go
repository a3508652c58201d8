package projections

import (
	"time"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// WithAfterApplyHook sets a function the runner calls inside each batch
// transaction after Projection.Apply and before the checkpoint update; an
// error it returns fails the batch (the transaction rolls back).
func WithAfterApplyHook(f func(projection string, recs []eventlog.Record) error) Option {
	return func(c *config) { c.afterApply = f }
}

// WithLeaseTiming sets how long a rebuild lease lasts and how often a
// waiting rebuild polls it.
func WithLeaseTiming(lease, poll time.Duration) Option {
	return func(c *config) { c.lease, c.leasePoll = lease, poll }
}

// WithSwapLockTimeout sets how long a rebuild's swap waits for the views on
// PostgreSQL before it retries.
func WithSwapLockTimeout(d time.Duration) Option {
	return func(c *config) { c.swapLockTimeout = d }
}
