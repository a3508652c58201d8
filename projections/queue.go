package projections

import (
	"context"
	"sync"
	"time"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// queue hands records from a subscription to the goroutine applying them,
// which takes whatever has arrived as one batch. It holds at most max
// records; push waits for room.
type queue struct {
	mu       sync.Mutex
	recs     []eventlog.Record
	max      int
	notEmpty chan struct{} // capacity 1: "records may be waiting"
	notFull  chan struct{} // capacity 1: "room may be free"
}

func newQueue(max int) *queue {
	return &queue{max: max, notEmpty: make(chan struct{}, 1), notFull: make(chan struct{}, 1)}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push appends rec, waiting while the queue is full; it fails only when ctx
// is done.
func (q *queue) push(ctx context.Context, rec eventlog.Record) error {
	for {
		q.mu.Lock()
		if len(q.recs) < q.max {
			q.recs = append(q.recs, rec)
			q.mu.Unlock()
			signal(q.notEmpty)
			return nil
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-q.notFull:
		}
	}
}

// take returns up to n records, waiting until there is at least one. It
// returns false when ctx is done, or when closed is closed and the queue is
// empty.
func (q *queue) take(ctx context.Context, n int, closed <-chan struct{}) ([]eventlog.Record, bool) {
	for {
		q.mu.Lock()
		if len(q.recs) > 0 {
			k := min(n, len(q.recs))
			out := make([]eventlog.Record, k)
			copy(out, q.recs)
			q.recs = append(q.recs[:0], q.recs[k:]...)
			left := len(q.recs)
			q.mu.Unlock()
			signal(q.notFull)
			if left > 0 {
				signal(q.notEmpty)
			}
			return out, true
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, false
		case <-q.notEmpty:
		case <-closed:
			q.mu.Lock()
			empty := len(q.recs) == 0
			q.mu.Unlock()
			if empty {
				return nil, false
			}
		}
	}
}

// first returns the oldest record waiting, if any.
func (q *queue) first() (eventlog.Record, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.recs) == 0 {
		return eventlog.Record{}, false
	}
	return q.recs[0], true
}

// linger adds to recs, a batch take returned with fewer than n records,
// the records that arrive within d (up to n in all): it waits until n are
// there, d has passed, ctx is done or closed is closed, then takes what
// has arrived. A runner following a busy log thus writes a batch every d
// instead of one per append.
func (q *queue) linger(ctx context.Context, recs []eventlog.Record, n int, d time.Duration, closed <-chan struct{}) []eventlog.Record {
	if d <= 0 || len(recs) >= n {
		return recs
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
wait:
	for {
		q.mu.Lock()
		enough := len(recs)+len(q.recs) >= n
		q.mu.Unlock()
		if enough {
			break
		}
		select {
		case <-q.notEmpty:
		case <-timer.C:
			break wait
		case <-ctx.Done():
			break wait
		case <-closed:
			break wait
		}
	}
	q.mu.Lock()
	k := min(n-len(recs), len(q.recs))
	recs = append(recs, q.recs[:k]...)
	q.recs = append(q.recs[:0], q.recs[k:]...)
	left := len(q.recs)
	q.mu.Unlock()
	if k > 0 {
		signal(q.notFull)
	}
	if left > 0 {
		signal(q.notEmpty)
	}
	return recs
}
