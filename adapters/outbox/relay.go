package outbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/retry"
)

// Log is the part of the event log the Relay follows; eventlog.Store
// satisfies it.
type Log interface {
	// Head returns the position of the last event in the log.
	Head(ctx context.Context) (eventlog.Position, error)
	// ReadAll returns up to limit events after `after`, in global order.
	ReadAll(ctx context.Context, after eventlog.Position, limit int) ([]eventlog.Record, error)
	// Subscribe calls handle for every event after `after`, in global
	// order, catching up and then following, until ctx is done or handle
	// fails.
	Subscribe(ctx context.Context, after eventlog.Position, handle func(context.Context, eventlog.Record) error) error
}

// ErrUnpublishable is returned (wrapped, with the event) by Relay.Run when
// an event of the log cannot be encoded as a message (bus.EncodeEvent):
// the relay stops rather than skip it. The SQL stores never hold such an
// event.
var ErrUnpublishable = errors.New("outbox: event cannot be published")

// Relay publishes every event of the log on bus.TopicEvents
// (bus.EncodeEvent), in log order, at least once, following the log from
// its checkpoint (see the package documentation for the guarantees).
//
// While catching up it reads the log in pages (WithPageSize) and publishes
// up to WithBatch events per Publish call; once caught up it follows the
// log with Subscribe and publishes each event as it comes. A failing
// Publish is retried with backoff and nothing after it is published
// meanwhile. Failures to read the log are retried the same way.
//
// A Relay is safe for concurrent use; only one Run may run at a time.
type Relay struct {
	log Log
	core
}

// NewRelay returns a Relay that reads log, keeps its checkpoint in db (the
// table Migrate creates) and publishes with pub.
func NewRelay(log Log, db bun.IDB, pub message.Publisher, opts ...Option) *Relay {
	return &Relay{log: log, core: newCore(newConfig(DefaultRelayName, bus.TopicEvents, opts), NewCheckpoints(db), pub)}
}

// Run publishes until ctx ends, then writes the checkpoint a last time and
// returns ctx.Err(). It returns early with an error only when the
// checkpoint cannot be read at the start (without a lease: with one, that
// and every other database failure is retried), with ErrUnpublishable, or
// with ErrRunning. On the gochannel bus Run returns once the message in
// flight has been handled (its Publish waits for the subscribers' ack).
//
// With WithLease, Run publishes only while it holds the lease of its
// checkpoint name and stands by otherwise (see "Lease" in the package
// documentation); when ctx ends it also releases the lease.
func (r *Relay) Run(ctx context.Context) error {
	return r.run(ctx, r.publishFrom)
}

// publishFrom publishes the log after pos until ctx ends, or fails with
// ErrUnpublishable.
func (r *Relay) publishFrom(ctx context.Context, pos eventlog.Position) error {
	if head, err := r.log.Head(ctx); err == nil && head.Before(pos) {
		r.cfg.logger.ErrorContext(ctx, "outbox: the checkpoint is after the log's head: nothing is published until the log reaches it (a new store? delete the checkpoint row to publish it from the start)",
			"checkpoint", pos.String(), "head", head.String())
	}
	r.cfg.logger.InfoContext(ctx, "outbox: relay started", "after", pos.String())
	for {
		err := r.follow(ctx, &pos)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrUnpublishable):
			r.cfg.logger.ErrorContext(ctx, "outbox: relay stopped", "error", err)
			return err
		}
		r.failed(err)
		r.cfg.logger.WarnContext(ctx, "outbox: reading the log failed, retrying", "after", pos.String(), "error", err)
		if err := retry.Sleep(ctx, r.cfg.minBackoff); err != nil {
			return err
		}
	}
}

// follow catches up from *pos with pages, then follows the log, advancing
// *pos past every event published. It returns the log's error, ctx's, or
// an ErrUnpublishable.
func (r *Relay) follow(ctx context.Context, pos *eventlog.Position) error {
	for {
		recs, err := r.log.ReadAll(ctx, *pos, r.cfg.pageSize)
		if err != nil {
			return err
		}
		for i := 0; i < len(recs); i += r.cfg.batch {
			if err := r.send(ctx, recs[i:min(i+r.cfg.batch, len(recs))], pos); err != nil {
				return err
			}
		}
		if len(recs) < r.cfg.pageSize {
			break
		}
	}
	return r.log.Subscribe(ctx, *pos, func(ctx context.Context, rec eventlog.Record) error {
		return r.send(ctx, []eventlog.Record{rec}, pos)
	})
}

// send publishes recs in one Publish call (retrying) and advances *pos.
func (r *Relay) send(ctx context.Context, recs []eventlog.Record, pos *eventlog.Position) error {
	msgs := make([]*message.Message, len(recs))
	for i, rec := range recs {
		m, err := bus.EncodeEvent(rec)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnpublishable, err)
		}
		msgs[i] = m
	}
	if err := r.publish(ctx, msgs); err != nil {
		return err
	}
	*pos = recs[len(recs)-1].Position
	r.advance(*pos, len(recs))
	return nil
}

// Status reports the relay's progress; Head and Lag come from the log's
// head, read now (on error the rest of the status is still returned).
func (r *Relay) Status(ctx context.Context) (Status, error) {
	head, err := r.log.Head(ctx)
	if err != nil {
		return r.status(eventlog.Start), fmt.Errorf("outbox: read the log's head: %w", err)
	}
	return r.status(head), nil
}
