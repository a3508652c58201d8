package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// Group commit: an append joins its Store's queue (on SQLite, the queue
// of every Store of the process on the file), and one
// writer goroutine commits the appends waiting, all of them in one
// transaction with one fsync, through appendBatchTx (each append decided
// as Append decides it, seeing the ones before it). An append that the
// batch refuses (a conflict, an event id stored otherwise) gets its own
// error and the others are written without it. Concurrent commands thus
// share fsyncs, and on PostgreSQL one hold of the counter row, instead of
// queueing for one each; a lone append is written at once. The writer runs while appends wait and then ends; no
// caller is held to write the others' appends, and every caller can leave
// when its context ends.

// Bounds of one group: appends, and events over all of them.
const (
	maxGroupAppends = 128
	maxGroupEvents  = 4096
)

// pendingAppend is an append waiting in the group queue. It holds copies
// of the caller's events: the writer may still use them after the caller
// has stopped waiting.
type pendingAppend struct {
	ctx  context.Context // the caller's: an append whose caller gave up before it was taken is not written
	a    StreamAppend
	rows []eventRow
	done chan appendOutcome
}

type appendOutcome struct {
	res eventlog.AppendResult
	err error
}

// groupQueue is the appends of a SQLite database waiting to be written,
// and whether a writer goroutine is taking them.
type groupQueue struct {
	mu      sync.Mutex
	waiting []*pendingAppend
	writing bool
	// groups counts the groups committed or refused (tests read it).
	groups atomic.Int64
}

// groupAppend writes the append through the group queue and returns its
// own outcome. An append whose ctx has ended before the writer takes it is
// not written (its error is ctx's); once taken it is written even if ctx
// ends meanwhile, and a caller that stopped waiting gets ctx's error, an
// unknown outcome, which a retry with the same event ids settles
// (idempotency on event ids).
func (s *Store) groupAppend(ctx context.Context, stream string, expected eventlog.ExpectedVersion, events []eventlog.EventData, rows []eventRow) (eventlog.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return eventlog.AppendResult{}, err // nothing written
	}
	own := make([]eventlog.EventData, len(events))
	for i, e := range events {
		e.Data = append([]byte(nil), e.Data...)
		own[i] = e
		rows[i].Data = json.RawMessage(e.Data)
	}
	p := &pendingAppend{ctx: ctx, a: StreamAppend{Stream: stream, Expected: expected, Events: own}, rows: rows, done: make(chan appendOutcome, 1)}
	q := &s.shared.group
	q.mu.Lock()
	q.waiting = append(q.waiting, p)
	start := !q.writing
	q.writing = true
	q.mu.Unlock()
	if start {
		go s.writeGroups()
	}
	select {
	case o := <-p.done:
		return o.res, o.err
	case <-ctx.Done():
		select {
		case o := <-p.done: // answered meanwhile: the outcome, whatever ctx says
			return o.res, o.err
		default:
		}
		return eventlog.AppendResult{}, fmt.Errorf("%w (the append may still be written: retrying with the same event ids is safe)", ctx.Err())
	}
}

// writeGroups is the writer goroutine: it commits the queued appends, a
// group at a time, until none is waiting, and ends.
func (s *Store) writeGroups() {
	q := &s.shared.group
	for {
		q.mu.Lock()
		n, events := 0, 0
		for n < len(q.waiting) && n < maxGroupAppends && (n == 0 || events+len(q.waiting[n].rows) <= maxGroupEvents) {
			events += len(q.waiting[n].rows)
			n++
		}
		taken := q.waiting[:n:n]
		q.waiting = q.waiting[n:]
		if n == 0 {
			q.writing = false
			q.waiting = nil
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		group := make([]*pendingAppend, 0, len(taken))
		for _, p := range taken {
			if err := p.ctx.Err(); err != nil {
				p.done <- appendOutcome{err: err} // given up before it was taken: nothing written
				continue
			}
			group = append(group, p)
		}
		if len(group) > 0 {
			s.writeGroup(group)
		}
	}
}

// writeGroup commits group in one transaction. An append the batch
// refuses is answered with its error and left out, and the rest is tried
// again; any other failure answers every append of the group with it. A
// panic (a bug) answers the group with an error, is logged, and leaves the
// writer running for the appends still waiting.
func (s *Store) writeGroup(group []*pendingAppend) {
	// AppendBatch's bulk writes take turns with the groups.
	s.shared.appendSem <- struct{}{}
	defer func() { <-s.shared.appendSem }()
	answered := false
	defer func() {
		if r := recover(); r != nil {
			s.cfg.logger.Error("sqlstore: group commit panicked", "panic", fmt.Sprint(r), "appends", len(group))
			if !answered {
				for _, p := range group {
					p.done <- appendOutcome{err: fmt.Errorf("sqlstore: group commit: panic: %v", r)}
				}
			}
		}
	}()
	ctx := context.Background() // other callers' appends: none of their contexts may end them
	for len(group) > 0 {
		batch := make([]StreamAppend, len(group))
		rows := make([][]eventRow, len(group))
		total := 0
		for i, p := range group {
			batch[i] = p.a
			// appendBatchTx numbers the rows it inserts; a failed try must
			// not leave numbers behind in the next one.
			rows[i] = append([]eventRow(nil), p.rows...)
			total += len(p.rows)
		}
		s.shared.group.groups.Add(1)
		res, wrote, err := s.appendBatchTx(ctx, batch, rows, total)
		var be *BatchError
		switch {
		case err == nil:
			if wrote {
				s.shared.wake.broadcast()
			}
			answered = true
			for i, p := range group {
				p.done <- appendOutcome{res: res[i]}
			}
			return
		case errors.As(err, &be) && be.Index >= 0 && be.Index < len(group):
			group[be.Index].done <- appendOutcome{err: be.Err}
			group = append(group[:be.Index:be.Index], group[be.Index+1:]...)
		default:
			answered = true
			for _, p := range group {
				p.done <- appendOutcome{err: err}
			}
			return
		}
	}
}
