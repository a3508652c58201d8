package outbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accessindex"
)

// ChangeFeed is the part of the access index the AccessChangedPublisher
// follows; *accessindex.Index satisfies it.
type ChangeFeed interface {
	// Changes returns the changes after `after`, in order, the position
	// they reach, and a channel closed when more records are applied. It
	// fails with accessindex.ErrTooOld when changes after `after` have left
	// the index's bounded buffer.
	Changes(after eventlog.Position) ([]accessindex.Change, eventlog.Position, <-chan struct{}, error)
	// Position returns the position of the last record applied.
	Position() eventlog.Position
}

// AccessChangedPublisher publishes an access.changed message
// (bus.EncodeAccessChanged) on bus.TopicAccess for every change of the
// access index's change feed: every change in who can see what, the same
// feed as GET /v1/watch. It follows the feed from its checkpoint (by
// default the row DefaultAccessName of outbox_checkpoints), publishing in
// feed order, at least once, with the same batching, retries and
// checkpointing as the Relay. The changes of one position (closing an
// account changes all its pairs) are never split across a checkpoint.
//
// # Falling behind the buffer
//
// The index keeps only its latest changes (accessindex.WithChangeBuffer).
// When the checkpoint is older than the oldest change it still holds, as
// after a long stop, or on a first start against a long log, the changes in
// between are lost: the publisher logs a warning, publishes an access.reset
// message (bus.EncodeAccessReset: after the checkpoint, resumed at the
// index's position), and carries on from the index's current position. A
// consumer that keeps a copy of who can see what then reads the full lists
// again from the API.
//
// It is safe for concurrent use; only one Run may run at a time.
type AccessChangedPublisher struct {
	feed ChangeFeed
	core
}

// NewAccessChangedPublisher returns a publisher that follows feed, keeps
// its checkpoint in db (the table Migrate creates) and publishes with pub.
func NewAccessChangedPublisher(feed ChangeFeed, db bun.IDB, pub message.Publisher, opts ...Option) *AccessChangedPublisher {
	return &AccessChangedPublisher{feed: feed,
		core: newCore(newConfig(DefaultAccessName, bus.TopicAccess, opts), NewCheckpoints(db), pub)}
}

// Run publishes until ctx ends, then writes the checkpoint a last time and
// returns ctx.Err(). It returns early only when the checkpoint cannot be
// read at the start (without a lease: with one, that and every other
// database failure is retried), when the change feed fails, or with
// ErrRunning.
//
// With WithLease, Run publishes only while it holds the lease of its
// checkpoint name and stands by otherwise (see "Lease" in the package
// documentation); when ctx ends it also releases the lease.
func (p *AccessChangedPublisher) Run(ctx context.Context) error {
	return p.run(ctx, p.publishFrom)
}

// publishFrom publishes the changes after pos until ctx ends, or the feed
// fails.
func (p *AccessChangedPublisher) publishFrom(ctx context.Context, pos eventlog.Position) error {
	p.cfg.logger.InfoContext(ctx, "outbox: access.changed publisher started", "after", pos.String())
	for {
		changes, reached, wait, err := p.feed.Changes(pos)
		switch {
		case errors.Is(err, accessindex.ErrTooOld):
			if err := p.reset(ctx, pos, reached, err); err != nil {
				return err
			}
			pos = reached
			continue
		case err != nil:
			return fmt.Errorf("outbox: access change feed: %w", err)
		}
		if err := p.send(ctx, changes, &pos); err != nil {
			return err
		}
		if pos.Before(reached) { // records that changed no pair
			pos = reached
			p.advance(pos, 0)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wait:
		}
	}
}

// send publishes changes in batches of about WithBatch messages that never
// split a position, advancing *pos after each.
func (p *AccessChangedPublisher) send(ctx context.Context, changes []accessindex.Change, pos *eventlog.Position) error {
	for i := 0; i < len(changes); {
		j := min(i+p.cfg.batch, len(changes))
		for j < len(changes) && changes[j].Position == changes[j-1].Position {
			j++
		}
		msgs := make([]*message.Message, 0, j-i)
		for _, c := range changes[i:j] {
			m, err := bus.EncodeAccessChanged(c)
			if err != nil {
				// The index never makes such a change; skipping it is
				// the lesser harm for an integration feed.
				p.cfg.logger.ErrorContext(ctx, "outbox: access change not published", "position", c.Position.String(), "error", err)
				continue
			}
			msgs = append(msgs, m)
		}
		if len(msgs) > 0 {
			if err := p.publish(ctx, msgs); err != nil {
				return err
			}
		}
		*pos = changes[j-1].Position
		p.advance(*pos, len(msgs))
		i = j
	}
	return nil
}

// reset publishes the access.reset message for the changes skipped after
// `after` up to `resumed`, and moves the checkpoint to resumed.
func (p *AccessChangedPublisher) reset(ctx context.Context, after, resumed eventlog.Position, cause error) error {
	p.cfg.logger.WarnContext(ctx, "outbox: access changes were lost (the checkpoint fell out of the access index's change buffer); publishing access.reset and resuming at the index's position",
		"after", after.String(), "resumed", resumed.String(), "error", cause)
	m, err := bus.EncodeAccessReset(after, resumed)
	if err != nil {
		return err
	}
	if err := p.publish(ctx, []*message.Message{m}); err != nil {
		return err
	}
	p.advance(resumed, 1)
	return nil
}

// Status reports the publisher's progress; Head is the index's position.
func (p *AccessChangedPublisher) Status() Status {
	return p.status(p.feed.Position())
}
