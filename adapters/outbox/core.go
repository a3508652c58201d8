package outbox

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/accessledger/accessledger/domain/eventlog"
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
	// LastError is the last failure (empty when none), at LastErrorAt.
	LastError   string
	LastErrorAt time.Time
}

// core is what both publishers share: the publisher with retries, the
// batched checkpoint and the status.
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
}

func newCore(cfg config, cps *Checkpoints, pub message.Publisher) core {
	return core{cfg: cfg, pub: pub, cps: cps}
}

// start loads the checkpoint and starts the checkpoint writer; stop (the
// returned function) ends it after a last write.
func (c *core) start(ctx context.Context) (eventlog.Position, func(), error) {
	pos, err := c.cps.Load(ctx, c.cfg.name)
	if err != nil {
		return eventlog.Start, nil, err
	}
	c.mu.Lock()
	c.pos, c.saved, c.pending = pos, pos, 0
	c.kick = make(chan struct{}, 1)
	kick := c.kick
	c.mu.Unlock()

	done := make(chan struct{})
	wctx, cancel := context.WithCancel(ctx)
	go func() {
		defer close(done)
		t := time.NewTicker(c.cfg.interval)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			case <-kick:
			}
			c.flush(wctx)
		}
	}()
	return pos, func() {
		cancel()
		<-done
		// The last write outlives Run's context, bounded.
		fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer fcancel()
		c.flush(fctx)
	}, nil
}

// flush writes the checkpoint if messages were published since the last
// write.
func (c *core) flush(ctx context.Context) {
	c.mu.Lock()
	pos, saved, n := c.pos, c.saved, c.pending
	c.mu.Unlock()
	if pos == saved {
		return
	}
	if err := c.cps.Save(ctx, c.cfg.name, pos); err != nil {
		if ctx.Err() == nil {
			c.failed(err)
			c.cfg.logger.WarnContext(ctx, "outbox: checkpoint not written, retrying", "position", pos.String(), "error", err)
		}
		return
	}
	c.mu.Lock()
	c.saved = pos
	c.pending -= n
	c.mu.Unlock()
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
// once ctx has ended.
func (c *core) publish(ctx context.Context, msgs []*message.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, m := range msgs {
		m.SetContext(ctx)
	}
	return c.retry(ctx, "publish", func() error { return c.pub.Publish(c.cfg.topic, msgs...) })
}

// retry runs f until it succeeds or ctx ends, waiting between attempts
// with exponential backoff.
func (c *core) retry(ctx context.Context, what string, f func() error) error {
	wait := c.cfg.minBackoff
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil {
			if attempt > 1 {
				c.cfg.logger.InfoContext(ctx, "outbox: "+what+" succeeded after retries", "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.failed(err)
		c.cfg.logger.WarnContext(ctx, "outbox: "+what+" failed, retrying", "attempt", attempt, "retry_in", wait, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, c.cfg.maxBackoff)
	}
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
		Head: head, Published: c.published, Retries: c.retries, LastError: c.lastErr, LastErrorAt: c.lastErrAt}
	if c.pos.Before(head) {
		s.Lag = head.Commit - c.pos.Commit
	}
	return s
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
