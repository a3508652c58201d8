package accessindex

import (
	"github.com/prometheus/client_golang/prometheus"

	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// Follower is the part of the event log the index reads: eventlog.Store
// satisfies it.
type Follower interface {
	// Head returns the position of the last event in the log.
	Head(ctx context.Context) (eventlog.Position, error)
	// ReadAll returns up to limit events after `after`, in global order.
	ReadAll(ctx context.Context, after eventlog.Position, limit int) ([]eventlog.Record, error)
	// Subscribe calls handle for every event after `after`, in global
	// order, catching up and then following, until ctx is done or handle
	// fails.
	Subscribe(ctx context.Context, after eventlog.Position, handle func(context.Context, eventlog.Record) error) error
}

// ErrStale is returned (wrapped, with the positions) by WaitFor when the
// index has not applied the position asked for within the timeout. The API
// answers it with 503 and the problem code "stale".
var ErrStale = errors.New("accessindex: index has not reached the requested position")

// ErrRunning is returned by Run when another Run of the same index has not
// returned.
var ErrRunning = errors.New("accessindex: already running")

// Run feeds the index from log until ctx is done or the index fails: it
// reads the head, replays every record after the index's position with
// ReadAll pages (WithPageSize, DefaultPageSize), reading the next page while
// it applies one, and then follows the log with Subscribe. Ready is closed as
// soon as the index has applied the head it read at the start.
//
// Run returns ctx.Err() when ctx is done, the error of Apply when a record
// cannot be applied (the index then stops; see Apply), or the log's error.
// Only one Run of an index may be running at a time (else ErrRunning), and
// nobody else may call Apply meanwhile.
func (ix *Index) Run(ctx context.Context, log Follower) error {
	if !ix.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer ix.running.Store(false)

	head, err := log.Head(ctx)
	if err != nil {
		return fmt.Errorf("accessindex: read the log's head: %w", err)
	}
	ix.setTarget(head)

	started := time.Now()
	from := ix.Position()
	replayed, err := ix.replay(ctx, log, from)
	if err != nil {
		return err
	}
	st := ix.Stats()
	ix.cfg.logger.InfoContext(ctx, "access index replayed the event log",
		slog.String("from", from.String()), slog.String("position", st.Position.String()),
		slog.Int("records", replayed), slog.Int("pairs", st.Pairs), slog.Duration("elapsed", time.Since(started)))

	err = log.Subscribe(ctx, ix.Position(), func(_ context.Context, rec eventlog.Record) error {
		return ix.Apply(rec)
	})
	switch stop := ix.stopErr(); {
	case err == nil:
		return nil
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return ctx.Err()
	case stop != nil && errors.Is(err, stop):
		return err // Apply's error, as Apply returned it
	}
	return fmt.Errorf("accessindex: follow the log after %s: %w", ix.Position(), err)
}

// page is one ReadAll page of the replay, or the error that ended it.
type page struct {
	recs []eventlog.Record
	err  error
}

// replay applies every record after `after` with ReadAll pages until a
// short page, and returns how many it applied. The next page is read while
// the current one is applied (the read and the fold each keep a core
// busy); at most one page waits.
func (ix *Index) replay(ctx context.Context, log Follower, after eventlog.Position) (int, error) {
	rctx, cancel := context.WithCancel(ctx)
	pages := make(chan page, 1)
	done := make(chan struct{})
	defer func() {
		cancel()
		<-done
	}()
	go func() {
		defer close(done)
		defer close(pages)
		size := ix.cfg.pageSize
		for {
			recs, err := log.ReadAll(rctx, after, size)
			if err != nil {
				err = fmt.Errorf("accessindex: replay after %s: %w", after, err)
			}
			select {
			case pages <- page{recs: recs, err: err}:
			case <-rctx.Done():
				return
			}
			if err != nil || len(recs) < size {
				return
			}
			after = recs[len(recs)-1].Position
		}
	}()
	var n int
	for p := range pages {
		if p.err != nil {
			return n, p.err
		}
		if err := ix.Apply(p.recs...); err != nil {
			return n, err
		}
		n += len(p.recs)
	}
	return n, ctx.Err()
}

// stopErr returns the error that stopped the index, if any.
func (ix *Index) stopErr() error {
	ix.applyMu.Lock()
	defer ix.applyMu.Unlock()
	return ix.err
}

// setTarget sets the position at which the index is ready.
func (ix *Index) setTarget(head eventlog.Position) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.targetSet {
		return
	}
	ix.target, ix.targetSet = head, true
	if !ix.isReady && !ix.pos.Before(head) {
		ix.isReady = true
		close(ix.ready)
	}
}

// Ready returns a channel closed once Run has brought the index up to the
// head the log had when Run started (readiness: the replay is done). It
// stays closed afterwards.
func (ix *Index) Ready() <-chan struct{} { return ix.ready }

// IsReady reports whether Ready is closed.
func (ix *Index) IsReady() bool {
	select {
	case <-ix.ready:
		return true
	default:
		return false
	}
}

// WaitFor returns as soon as the index has applied position min (a
// consistency token), with the index's position. It waits at most timeout,
// without polling (Apply wakes it), then fails with ErrStale (wrapped, with
// the positions); timeout <= 0 does not wait. When ctx is done first it
// returns ctx.Err(). The position returned is the index's position when it
// returned, also on error.
func (ix *Index) WaitFor(ctx context.Context, min eventlog.Position, timeout time.Duration) (eventlog.Position, error) {
	pos, wake := ix.positionAndWake()
	if !pos.Before(min) {
		return pos, nil
	}
	stale := func(pos eventlog.Position) error {
		return fmt.Errorf("%w: at %s, waited %s for %s", ErrStale, pos, timeout, min)
	}
	if timeout <= 0 {
		return pos, stale(pos)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case <-wake:
			if pos, wake = ix.positionAndWake(); !pos.Before(min) {
				return pos, nil
			}
		case <-timer.C:
			pos, _ = ix.positionAndWake()
			if !pos.Before(min) {
				return pos, nil
			}
			return pos, stale(pos)
		case <-ctx.Done():
			pos, _ = ix.positionAndWake()
			return pos, ctx.Err()
		}
	}
}

func (ix *Index) positionAndWake() (eventlog.Position, <-chan struct{}) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.pos, ix.notify
}

// PositionGauge returns a Prometheus gauge of the commit position of the
// last event ix applied (accessledger_index_position), read at each
// scrape.
func PositionGauge(ix interface{ Position() eventlog.Position }) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "accessledger_index_position",
		Help: "Commit position of the last event the in-memory access index applied.",
	}, func() float64 { return float64(ix.Position().Commit) })
}
