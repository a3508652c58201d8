package projections

import (
	"context"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// replayPageSize is how many records the warm-up reads per ReadAll: more
// than a batch, since no transaction holds them.
const replayPageSize = 5_000

// pageReader reads the log ahead, one page at a time, in a goroutine of
// its own: while the caller folds one page, the next is read, so a replay
// keeps two cores busy instead of one. Create it with readPages; call next
// until it returns no records or an error, and always stop.
type pageReader struct {
	pages  chan pageResult
	cancel context.CancelFunc
	done   chan struct{}
}

type pageResult struct {
	recs []eventlog.Record
	err  error
}

// readPages starts reading log after `after` in pages of size, until a
// page ends at or after `to` or is short.
func readPages(ctx context.Context, log Log, after, to eventlog.Position, size int) *pageReader {
	ctx, cancel := context.WithCancel(ctx)
	pr := &pageReader{pages: make(chan pageResult, 1), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(pr.done)
		defer close(pr.pages)
		for {
			recs, err := log.ReadAll(ctx, after, size)
			select {
			case pr.pages <- pageResult{recs, err}:
			case <-ctx.Done():
				return
			}
			if err != nil || len(recs) < size || !recs[len(recs)-1].Position.Before(to) {
				return
			}
			after = recs[len(recs)-1].Position
		}
	}()
	return pr
}

// next returns the next page; none (nil, nil) after the last one.
func (pr *pageReader) next() ([]eventlog.Record, error) {
	p, ok := <-pr.pages
	if !ok {
		return nil, nil
	}
	return p.recs, p.err
}

// stop ends the reading and waits for its goroutine.
func (pr *pageReader) stop() {
	pr.cancel()
	<-pr.done
}
