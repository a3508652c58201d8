package projections

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// DefaultBatchSize is how many events the runner reads and applies per
// transaction unless WithBatchSize says otherwise.
const DefaultBatchSize = 500

// DefaultRebuildBatchSize is how many events a rebuild applies per
// transaction unless WithRebuildBatchSize (or WithBatchSize) says otherwise.
// A rebuild records no progress until its swap, so a large batch costs
// nothing in safety and saves a commit (an fsync on SQLite) every
// DefaultBatchSize events.
const DefaultRebuildBatchSize = 10_000

// Option configures a Runner or a Rebuild.
type Option func(*config)

type config struct {
	logger *slog.Logger
	batch  int
	// rebuildBatch is the batch of a rebuild; 0 until an option sets it,
	// then newConfig makes it batch when WithBatchSize was given, else
	// DefaultRebuildBatchSize.
	rebuildBatch int
	batchSet     bool
	clock        func() time.Time
	minBackoff   time.Duration
	maxBackoff   time.Duration
	// lease is how long a rebuild lease lasts without renewal; leasePoll how
	// often a rebuild waiting for another one checks the lease.
	lease     time.Duration
	leasePoll time.Duration
	// swapLockTimeout bounds how long a rebuild's swap waits for the views
	// on PostgreSQL before it lets queries through and tries again.
	swapLockTimeout time.Duration
	// afterApply, for tests, runs inside the batch transaction after
	// Projection.Apply and before the checkpoint update; an error fails the
	// batch.
	afterApply func(projection string, recs []eventlog.Record) error
	// logs are the logs of the projections that do not read the runner's.
	logs map[string]Log
	// linger is how long a runner following the log waits for more
	// events after the first of a batch (WithLinger).
	linger time.Duration
}

// WithLogFor makes the projection named name read log instead of the
// runner's: the ledger reads the events as stored (sealed), the read
// models through the layer that opens them (adapters/personaldata). Both
// logs must hold the same events at the same positions.
func WithLogFor(name string, log Log) Option {
	return func(c *config) {
		if c.logs == nil {
			c.logs = map[string]Log{}
		}
		c.logs[name] = log
	}
}

// WithLogger sets the logger; the default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithLinger makes a runner that follows the log wait, after an event
// arrives, up to d for more (until a batch is full) before it writes them
// in one transaction: on a busy log each read model then writes a batch
// every d instead of a transaction per append, taking the database's
// writer and the CPU from the commands less often, for read models up to
// d later. 0 (the default) writes whatever has arrived at once. A rebuild
// and the catch-up are not affected. d must not be negative.
func WithLinger(d time.Duration) Option { return func(c *config) { c.linger = d } }

// WithBatchSize sets the most events applied in one transaction (default
// DefaultBatchSize); it sets the batch of rebuilds too, unless
// WithRebuildBatchSize is given.
func WithBatchSize(n int) Option { return func(c *config) { c.batch, c.batchSet = n, true } }

// WithRebuildBatchSize sets the most events a rebuild applies in one
// transaction before its final one (default DefaultRebuildBatchSize, or the
// size WithBatchSize set).
func WithRebuildBatchSize(n int) Option { return func(c *config) { c.rebuildBatch = n } }

// WithClock sets the clock used for checkpoint timestamps, lag and rebuild
// leases; the default is time.Now.
func WithClock(now func() time.Time) Option { return func(c *config) { c.clock = now } }

// WithRetryBackoff sets how long a projection waits before retrying after a
// failure: min at first, doubling up to max, back to min once a batch
// succeeds. The defaults are 100 ms and 30 s.
func WithRetryBackoff(min, max time.Duration) Option {
	return func(c *config) { c.minBackoff, c.maxBackoff = min, max }
}

func newConfig(opts []Option) (config, error) {
	c := config{
		logger:     slog.Default(),
		batch:      DefaultBatchSize,
		clock:      time.Now,
		minBackoff: 100 * time.Millisecond,
		maxBackoff: 30 * time.Second,
		lease:      30 * time.Second,
		leasePoll:  time.Second,

		swapLockTimeout: 2 * time.Second,
	}
	for _, o := range opts {
		o(&c)
	}
	var problems []error
	if c.logger == nil {
		problems = append(problems, errors.New("logger is nil"))
	}
	if c.batch <= 0 {
		problems = append(problems, fmt.Errorf("batch size %d is not positive", c.batch))
	}
	switch {
	case c.rebuildBatch < 0:
		problems = append(problems, fmt.Errorf("rebuild batch size %d is not positive", c.rebuildBatch))
	case c.rebuildBatch == 0 && c.batchSet:
		c.rebuildBatch = c.batch
	case c.rebuildBatch == 0:
		c.rebuildBatch = DefaultRebuildBatchSize
	}
	if c.clock == nil {
		problems = append(problems, errors.New("clock is nil"))
	}
	if c.linger < 0 {
		problems = append(problems, fmt.Errorf("linger %s is negative", c.linger))
	}
	if c.minBackoff <= 0 || c.maxBackoff < c.minBackoff {
		problems = append(problems, fmt.Errorf("retry backoff %s..%s is not a positive range", c.minBackoff, c.maxBackoff))
	}
	if c.lease <= 0 || c.leasePoll <= 0 || c.swapLockTimeout <= 0 {
		problems = append(problems, errors.New("lease timing is not positive"))
	}
	if err := errors.Join(problems...); err != nil {
		return config{}, fmt.Errorf("projections: invalid options: %w", err)
	}
	return c, nil
}
