package eventstoredb

import (
	"context"
	"errors"
	"fmt"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/retry"
)

// handlerError marks an error returned by Subscribe's handler, which ends
// the subscription instead of starting a new one.
type handlerError struct{ err error }

func (e handlerError) Error() string { return e.err.Error() }
func (e handlerError) Unwrap() error { return e.err }

// Subscribe implements eventlog.Store with a catch-up subscription to $all,
// filtered on the server to our streams. When the subscription drops (the
// server restarts, the leader changes, the connection breaks), Subscribe
// subscribes again from the last event it delivered or the last checkpoint
// the server sent, whichever is later, and never delivers an event twice or
// out of order. It gives up after the configured number of consecutive
// drops without receiving anything, returning the last error wrapped in
// ErrUnavailable.
func (s *Store) Subscribe(ctx context.Context, after eventlog.Position, handle func(context.Context, eventlog.Record) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	last := after   // the last event delivered, or after
	resume := after // where to subscribe from: last, or a later checkpoint
	waits := retry.Exponential(s.cfg.backoffMin, s.cfg.backoffMax)
	failures := 0
	for {
		progressed, err := s.subscribeOnce(ctx, &last, &resume, handle)
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		var he handlerError
		if errors.As(err, &he) {
			return he.err
		}
		if progressed {
			failures = 0
			waits.Reset()
		}
		failures++
		if failures > s.cfg.maxRetries {
			return fmt.Errorf("%w: subscription to $all dropped %d times in a row: %v", ErrUnavailable, failures, err)
		}
		wait := waits.Next()
		s.cfg.log.Warn("eventstoredb: subscription dropped; subscribing again",
			"from", resume.String(), "in", wait.String(), "attempt", failures, "err", err)
		if err := retry.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// subscribeOnce runs one subscription from *resume until it drops, moving
// *last and *resume forward; progressed reports whether the server sent
// anything (a confirmation is not enough).
func (s *Store) subscribeOnce(ctx context.Context, last, resume *eventlog.Position,
	handle func(context.Context, eventlog.Record) error) (progressed bool, err error) {
	var from esdb.AllPosition = esdb.Start{}
	if !resume.IsZero() {
		from = esdb.Position{Commit: resume.Commit, Prepare: resume.Prepare}
	}
	c, err := s.conn()
	if err != nil {
		return false, handlerError{err} // closed: nothing to retry
	}
	sub, err := c.SubscribeToAll(ctx, esdb.SubscribeToAllOptions{From: from, Filter: s.filter})
	s.renew(c, err)
	if err != nil {
		return false, s.wrap(ctx, "subscribe to $all", err)
	}
	defer func() { _ = sub.Close() }()
	for {
		ev := sub.Recv()
		switch {
		case ev.SubscriptionDropped != nil:
			return progressed, s.wrap(ctx, "subscription to $all", ev.SubscriptionDropped.Error)
		case ev.CheckPointReached != nil:
			progressed = true
			cp := eventlog.Position{Commit: ev.CheckPointReached.Commit, Prepare: ev.CheckPointReached.Prepare}
			if resume.Before(cp) {
				*resume = cp
			}
		case ev.EventAppeared != nil:
			progressed = true
			e := ev.EventAppeared.OriginalEvent()
			pos := eventlog.Position{Commit: e.Position.Commit, Prepare: e.Position.Prepare}
			if !last.Before(pos) || !resume.Before(pos) {
				continue // already delivered, or at the position we resumed from
			}
			stream, ok := s.ours(e.StreamID)
			if !ok {
				continue // the filter is a prefix; ours also checks the namespace
			}
			rec, err := s.record(ev.EventAppeared, stream)
			if err != nil {
				return progressed, handlerError{err}
			}
			if err := ctx.Err(); err != nil {
				return progressed, err // nothing is handed over once ctx is done
			}
			if err := handle(ctx, rec); err != nil {
				return progressed, handlerError{err}
			}
			*last, *resume = pos, pos
		}
	}
}
