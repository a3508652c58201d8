package projections

import (
	"context"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// stagedPage is a page of the log as the rebuild's bulk loop takes it: its
// first bulk records are to be written in a transaction of their own (by
// staged.Write when the projection is a Stager, else by Apply), the rest
// belong to the swap's transaction.
type stagedPage struct {
	recs   []eventlog.Record
	bulk   int
	staged Staged
	err    error
}

// pageStager stages the pages of a pageReader one page ahead of the
// caller, in a goroutine of its own, when the projection is a Stager: while
// the caller writes one batch, the next is computed. The staging ends after
// a short page (fewer records than the page size) or an error. Call next
// until it returns such a page or none, and always stop; the projection may
// be used otherwise only once stop has returned.
type pageStager struct {
	pr     *pageReader
	pages  chan stagedPage
	cancel context.CancelFunc
	done   chan struct{}
}

// bulkOf is how many of a page of n records the rebuild applies in a
// transaction of its own: all of a full page (n == size), all but the last
// batch of a short one.
func bulkOf(n, size, batch int) int {
	if n < size {
		return max(n-batch, 0)
	}
	return n
}

// stagePages starts staging the pages of pr (which it then owns) for p (passing them through
// unstaged when p is not a Stager): size is the page size, batch the size
// of the swap's tail.
func stagePages(ctx context.Context, pr *pageReader, p Projection, size, batch int) *pageStager {
	ctx, cancel := context.WithCancel(ctx)
	ps := &pageStager{pr: pr, pages: make(chan stagedPage, 1), cancel: cancel, done: make(chan struct{})}
	st, _ := p.(Stager)
	go func() {
		defer close(ps.done)
		defer close(ps.pages)
		for {
			recs, err := pr.next()
			if recs == nil && err == nil {
				return
			}
			sp := stagedPage{recs: recs, err: err}
			if err == nil {
				sp.bulk = bulkOf(len(recs), size, batch)
				if st != nil && sp.bulk > 0 {
					sp.staged, sp.err = st.Stage(recs[:sp.bulk])
				}
			}
			select {
			case ps.pages <- sp:
			case <-ctx.Done():
				return
			}
			if sp.err != nil || len(recs) < size {
				return
			}
		}
	}()
	return ps
}

// next returns the next staged page; ok is false after the last one.
func (ps *pageStager) next() (stagedPage, bool) {
	sp, ok := <-ps.pages
	return sp, ok
}

// stop ends the staging and the reading, and waits for their goroutines.
func (ps *pageStager) stop() {
	ps.cancel()
	ps.pr.stop()
	<-ps.done
}
