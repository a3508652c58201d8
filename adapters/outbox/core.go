package outbox

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/retry"
)

// Status describes a publisher.
type Status struct {
	// Name is the checkpoint name, Topic the topic published to.
	Name  string
	Topic string
	// Running reports whether Run is running.
	Running bool
	// Position is the position up to which everything was published: the
	// checkpoint Run loaded, then the last message published (Start
	// before the first Run).
	Position eventlog.Position
	// Checkpoint is the position last written to outbox_checkpoints.
	Checkpoint eventlog.Position
	// Head is the position of what there is to publish: the log's head
	// (Relay) or the access index's position (AccessChangedPublisher), read
	// when Status was called.
	Head eventlog.Position
	// Lag is Head.Commit - Position.Commit when Head is after Position, else
	// 0: on the SQL stores, whose positions are dense, the number of events
	// not yet published.
	Lag uint64
	// Published counts the messages published since the publisher was
	// made; Retries the failed attempts (publishing, reading the log,
	// writing the checkpoint).
	Published uint64
	Retries   uint64
	// LastError is the last failure (empty when none), at LastErrorAt. A
	// lost lease counts as one.
	LastError   string
	LastErrorAt time.Time
	// Lease is the owner the publisher takes the lease under (WithLease);
	// empty without a lease.
	Lease string
	// Holding reports whether the publisher holds the lease and publishes
	// (with a lease; false while it stands by, and without a lease).
	Holding bool
	// LeaseOwner and LeaseUntil are the lease of the checkpoint name as
	// this publisher last read or wrote it: its own owner and the end of
	// the lease it last wrote while it holds it, the holder it read while it
	// stands by (empty and the zero time when free or released). They are
	// not read afresh by Status.
	LeaseOwner string
	LeaseUntil time.Time
}

// core is what both publishers share: the publisher with retries, the
// batched checkpoint, the lease and the status.
type core struct {
	cfg     config
	pub     message.Publisher
	cps     *Checkpoints
	running atomic.Bool

	mu        sync.Mutex
	pos       eventlog.Position // published up to
	saved     eventlog.Position // written checkpoint
	pending   int               // messages published since the last save
	published uint64
	retries   uint64
	lastErr   string
	lastErrAt time.Time
	kick      chan struct{}
	// The lease (WithLease).
	holding    bool                    // holds it: publishes
	lose       context.CancelCauseFunc // ends the hold; nil when not holding
	leaseOwner string                  // as last read or written
	leaseUntil time.Time               // as last read or written
	pubSince   time.Time               // when the Publish call in progress began (zero: none)
}

func newCore(cfg config, cps *Checkpoints, pub message.Publisher) core {
	return core{cfg: cfg, pub: pub, cps: cps}
}

// minStandby bounds below how often a standby tries to take the lease.
const minStandby = 50 * time.Millisecond

// finalWrite bounds the last checkpoint write and the release of the lease
// when a hold ends (they outlive Run's context).
const finalWrite = 5 * time.Second

// run runs the publisher's loop, body, which publishes from the position
// it is given until its context ends (then it returns ctx.Err()) or it
// fails for good. Without a lease it loads the checkpoint and runs body
// once. With a lease it stands by until it takes the lease, loads the
// checkpoint and runs body under a context that ends when the lease is
// lost; then it stands by again. It returns ctx.Err() once ctx ends, or
// body's error, or ErrRunning.
func (c *core) run(ctx context.Context, body func(context.Context, eventlog.Position) error) error {
	if !c.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer c.running.Store(false)
	if !c.cfg.leased() {
		pos, stop, err := c.start(ctx)
		if err != nil {
			return err
		}
		defer stop()
		return body(ctx, pos)
	}
	for {
		if err := c.standby(ctx); err != nil {
			return err
		}
		hold, lose := context.WithCancelCause(ctx)
		c.mu.Lock()
		c.lose = lose
		c.mu.Unlock()
		pos, stop, err := c.start(hold)
		if err != nil {
			c.mu.Lock()
			c.lose = nil
			c.mu.Unlock()
			lose(nil)
			c.release(ctx)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.failed(err)
			c.cfg.logger.WarnContext(ctx, "outbox: reading the checkpoint failed; lease released, standing by", "error", err)
			if err := retry.Sleep(ctx, c.cfg.minBackoff); err != nil {
				return err
			}
			continue
		}
		err = body(hold, pos)
		stop()
		lose(nil)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if cause := context.Cause(hold); (err == nil || errors.Is(err, context.Canceled)) &&
			(errors.Is(cause, ErrLeaseLost) || errors.Is(cause, errLeaseExpired) || errors.Is(cause, errPublishStuck)) {
			continue // the hold ended, not the body: logged by loseLease
		}
		return err
	}
}

// standby takes the lease, trying every ttl/3 (at least minStandby), until
// it has it (nil) or ctx ends (ctx.Err()). Failures are retried.
func (c *core) standby(ctx context.Context) error {
	every := max(c.cfg.leaseTTL/3, minStandby)
	waiting := false
	for {
		now := c.cfg.clock()
		until := now.Add(c.cfg.leaseTTL)
		ok, err := c.cps.Acquire(ctx, c.cfg.name, c.cfg.leaseOwner, now, until)
		switch {
		case ctx.Err() != nil:
			if ok {
				c.release(ctx)
			}
			return ctx.Err()
		case err != nil:
			c.failed(err)
			c.cfg.logger.WarnContext(ctx, "outbox: taking the lease failed, retrying", "retry_in", every, "error", err)
		case ok:
			c.mu.Lock()
			c.leaseOwner, c.leaseUntil = c.cfg.leaseOwner, until
			c.mu.Unlock()
			c.cfg.logger.InfoContext(ctx, "outbox: lease taken, publishing", "owner", c.cfg.leaseOwner, "ttl", c.cfg.leaseTTL)
			return nil
		default:
			holder, hUntil, err := c.cps.Lease(ctx, c.cfg.name)
			if err == nil {
				c.mu.Lock()
				c.leaseOwner, c.leaseUntil = holder, hUntil
				c.mu.Unlock()
			}
			if !waiting {
				waiting = true
				c.cfg.logger.InfoContext(ctx, "outbox: the lease is held by another publisher, standing by",
					"owner", c.cfg.leaseOwner, "holder", holder, "until", hUntil, "retry_every", every)
			}
		}
		if err := retry.Sleep(ctx, every); err != nil {
			return err
		}
	}
}

// start loads the checkpoint and starts the checkpoint writer; stop (the
// returned function) ends it after a last write. With a lease, ctx is the
// hold's (run), the lease was just taken, and the writer renews it at least
// every ttl/3 and ends the hold (loseLease) when it is lost; stop then also
// releases the lease, unless it was lost.
func (c *core) start(ctx context.Context) (eventlog.Position, func(), error) {
	pos, err := c.cps.Load(ctx, c.cfg.name)
	if err != nil {
		return eventlog.Start, nil, err
	}
	leased := c.cfg.leased()
	c.mu.Lock()
	c.pos, c.saved, c.pending = pos, pos, 0
	c.kick = make(chan struct{}, 1)
	kick := c.kick
	c.holding = leased
	c.mu.Unlock()

	done := make(chan struct{})
	wctx, cancel := context.WithCancel(ctx)
	go func() {
		defer close(done)
		t := time.NewTicker(c.cfg.interval)
		defer t.Stop()
		var renewals <-chan time.Time
		if leased {
			r := time.NewTicker(max(c.cfg.leaseTTL/3, time.Millisecond))
			defer r.Stop()
			renewals = r.C
		}
		retry := false // the last renewal failed: try again at the next tick
		for {
			renew := retry
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			case <-kick:
			case <-renewals:
				renew = true
			}
			if !leased {
				c.flush(wctx, false)
				continue
			}
			// A Publish that has not returned for a whole lease (a
			// consumer that never acks, a bus that hangs) must not keep
			// the lease renewed: give it up so another replica publishes.
			if c.publishStuck() {
				c.loseLease(wctx, errPublishStuck)
				continue
			}
			// A write that hangs (the database unreachable) is given up
			// after ttl: it is retried on a fresh connection.
			expired := c.expired()
			fctx, fcancel := context.WithTimeout(wctx, c.cfg.leaseTTL)
			ok := c.flush(fctx, renew || expired)
			fcancel()
			retry = !ok
			if !ok && (expired || c.expired()) {
				c.loseLease(wctx, errLeaseExpired)
			}
		}
	}()
	return pos, func() {
		cancel()
		<-done
		// The last write outlives Run's context, bounded.
		fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), finalWrite)
		defer fcancel()
		if !leased {
			c.flush(fctx, false)
			return
		}
		c.mu.Lock()
		holding := c.lose != nil
		c.mu.Unlock()
		if holding {
			c.flush(fctx, false) // conditional: it fails if the lease was lost
		}
		c.mu.Lock()
		holding = c.lose != nil
		c.lose, c.holding = nil, false
		c.mu.Unlock()
		if holding {
			c.release(fctx)
		}
	}, nil
}

// release gives up the lease (conditional on holding it), bounded by
// finalWrite beyond ctx.
func (c *core) release(ctx context.Context) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalWrite)
	defer cancel()
	err := c.cps.Release(rctx, c.cfg.name, c.cfg.leaseOwner)
	switch {
	case err == nil:
		c.mu.Lock()
		c.leaseOwner, c.leaseUntil = "", time.Time{}
		c.mu.Unlock()
		c.cfg.logger.InfoContext(ctx, "outbox: lease released", "owner", c.cfg.leaseOwner)
	case errors.Is(err, ErrLeaseLost):
	default:
		c.failed(err)
		c.cfg.logger.WarnContext(ctx, "outbox: lease not released; it runs out by itself", "error", err)
	}
}

// expired reports whether the publisher holds the lease and its end, as
// last written, has come by its clock: it can no longer be sure it holds it.
func (c *core) expired() bool {
	c.mu.Lock()
	holding, until := c.holding, c.leaseUntil
	c.mu.Unlock()
	// By the wall clock, as the other replicas judge the lease in the
	// database (the monotonic clock stands still while a host sleeps).
	return holding && !c.cfg.clock().Round(0).Before(until.Round(0))
}

// publishStuck reports whether the publisher holds the lease and a Publish
// call has been running for a whole lease.
func (c *core) publishStuck() bool {
	c.mu.Lock()
	holding, since := c.holding, c.pubSince
	c.mu.Unlock()
	return holding && !since.IsZero() && c.cfg.clock().Sub(since) >= c.cfg.leaseTTL
}

// loseLease ends the hold because of cause (ErrLeaseLost, errLeaseExpired):
// publishing stops at once (the hold's context ends) and run stands by
// again. It does nothing when the hold already ended.
func (c *core) loseLease(ctx context.Context, cause error) {
	c.mu.Lock()
	lose := c.lose
	c.lose, c.holding = nil, false
	c.mu.Unlock()
	if lose == nil {
		return
	}
	lose(cause)
	c.failed(cause)
	c.cfg.logger.WarnContext(ctx, "outbox: lease lost, stopped publishing and standing by (the message in flight may be published again by the new holder)",
		"owner", c.cfg.leaseOwner, "error", cause)
}

// flush writes the checkpoint if messages were published since the last
// write. With a lease the write is conditional on holding it and renews it
// too; with renew set it renews the lease even when nothing is pending. A
// write that finds the lease lost ends the hold (loseLease). It reports
// whether what was due was written.
func (c *core) flush(ctx context.Context, renew bool) bool {
	c.mu.Lock()
	pos, saved, n, held := c.pos, c.saved, c.pending, c.leaseUntil
	c.mu.Unlock()
	leased := c.cfg.leased()
	if pos == saved && (!leased || !renew) {
		return true
	}
	var until time.Time
	var err error
	switch {
	case !leased:
		err = c.cps.Save(ctx, c.cfg.name, pos)
	case pos == saved:
		until = c.cfg.clock().Add(c.cfg.leaseTTL)
		err = c.cps.Renew(ctx, c.cfg.name, c.cfg.leaseOwner, until)
	default:
		now := c.cfg.clock()
		until = now.Add(c.cfg.leaseTTL)
		err = c.cps.SaveLeased(ctx, c.cfg.name, c.cfg.leaseOwner, pos, now, until)
	}
	switch {
	case errors.Is(err, ErrLeaseLost):
		c.loseLease(ctx, err)
		return false
	case err != nil:
		if !errors.Is(ctx.Err(), context.Canceled) { // not when Run ends
			c.failed(err)
			if pos == saved {
				c.cfg.logger.WarnContext(ctx, "outbox: lease not renewed, retrying", "until", held, "error", err)
			} else {
				c.cfg.logger.WarnContext(ctx, "outbox: checkpoint not written, retrying", "position", pos.String(), "error", err)
			}
		}
		return false
	}
	c.mu.Lock()
	c.saved = pos
	c.pending -= n
	if leased {
		c.leaseOwner, c.leaseUntil = c.cfg.leaseOwner, until
	}
	c.mu.Unlock()
	return true
}

// advance records that everything up to pos was published, n messages
// since the last call, and asks for a checkpoint write once a batch is
// pending.
func (c *core) advance(pos eventlog.Position, n int) {
	c.mu.Lock()
	if c.pos.Before(pos) {
		c.pos = pos
	}
	c.pending += n
	c.published += uint64(n)
	full := c.pending >= c.cfg.batch
	kick := c.kick
	c.mu.Unlock()
	if full {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
}

// publish publishes msgs in one call, retrying with backoff until it
// succeeds or ctx ends (then it returns ctx.Err()). Nothing is published
// once ctx has ended, nor, with a lease, once the lease ran out by the
// clock without being renewed (that ends the hold, hence ctx).
func (c *core) publish(ctx context.Context, msgs []*message.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, m := range msgs {
		m.SetContext(ctx)
	}
	return c.retry(ctx, "publish", func() error {
		if c.expired() {
			// Not renewed in time: another publisher may hold it now.
			c.loseLease(ctx, errLeaseExpired)
			return errLeaseExpired
		}
		c.mu.Lock()
		c.pubSince = c.cfg.clock()
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			c.pubSince = time.Time{}
			c.mu.Unlock()
		}()
		return c.pub.Publish(c.cfg.topic, msgs...)
	})
}

// retry runs f until it succeeds or ctx ends, waiting between attempts
// with exponential backoff.
func (c *core) retry(ctx context.Context, what string, f func() error) error {
	failures := 0
	err := retry.Forever(ctx, retry.Exponential(c.cfg.minBackoff, c.cfg.maxBackoff), f, func(err error, attempt int, wait time.Duration) {
		failures = attempt
		c.failed(err)
		c.cfg.logger.WarnContext(ctx, "outbox: "+what+" failed, retrying", "attempt", attempt, "retry_in", wait, "error", err)
	})
	if err == nil && failures > 0 {
		c.cfg.logger.InfoContext(ctx, "outbox: "+what+" succeeded after retries", "attempts", failures+1)
	}
	return err
}

func (c *core) failed(err error) {
	c.mu.Lock()
	c.retries++
	c.lastErr, c.lastErrAt = err.Error(), time.Now()
	c.mu.Unlock()
}

func (c *core) status(head eventlog.Position) Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Status{Name: c.cfg.name, Topic: c.cfg.topic, Running: c.running.Load(), Position: c.pos, Checkpoint: c.saved,
		Head: head, Published: c.published, Retries: c.retries, LastError: c.lastErr, LastErrorAt: c.lastErrAt,
		Lease: c.cfg.leaseOwner, Holding: c.holding, LeaseOwner: c.leaseOwner, LeaseUntil: c.leaseUntil}
	if c.pos.Before(head) {
		s.Lag = head.Commit - c.pos.Commit
	}
	return s
}
