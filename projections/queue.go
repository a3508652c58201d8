package projections

import (
	"context"
	"sync"

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
