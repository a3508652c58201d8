package importer

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/accessledger/accessledger/adapters/personaldata"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// Appender is where Apply appends: the event log through the personal-data
// layer (adapters/personaldata), which seals the personal values.
type Appender interface {
	Append(ctx context.Context, stream string, expected eventlog.ExpectedVersion, events []eventlog.EventData) (eventlog.AppendResult, error)
}

// sealer is the personal-data layer's bulk side: sealing many streams
// without appending (the subjects' keys got, and made, in bulk), and the
// store beneath it.
type sealer interface {
	SealStreams(ctx context.Context, streams []personaldata.StreamEvents) ([][]eventlog.EventData, error)
	Inner() eventlog.Store
}

// batchAppender is a store that appends to many streams in one transaction
// (the SQL store).
type batchAppender interface {
	AppendBatch(ctx context.Context, batch []sqlstore.StreamAppend) ([]eventlog.AppendResult, error)
}

// DefaultBatchEvents bounds the events of one transaction of Apply.
const DefaultBatchEvents = 2000

// DefaultConcurrency is the number of appends Apply runs at once on a
// store without batches.
const DefaultConcurrency = 8

// ApplyOptions are the settings of Apply.
type ApplyOptions struct {
	// BatchEvents bounds the events of one transaction (SQL stores).
	// Default DefaultBatchEvents.
	BatchEvents int
	// Concurrency is the number of appends at once on a store without
	// batches (EventStoreDB). Default DefaultConcurrency.
	Concurrency int
	// Progress, if set, is called with the events appended so far and
	// the plan's total.
	Progress func(done, total uint64)
}

// Applied is what Apply appended.
type Applied struct {
	Events, Streams, Writes int
	// Last is the position of the last event appended (Start when
	// nothing was).
	Last eventlog.Position
}

// ErrPartial is wrapped by Apply's error when some of the plan was
// appended before it failed: importing the same file again appends the
// rest.
var ErrPartial = errors.New("importer: the import stopped part way; run it again to append the rest")

// Apply appends the plan's events: every account and identity stream
// first, then the children's, each stream at the version the plan read
// (eventlog.Exactly), so that a stream another writer changed since is
// refused (eventlog.ErrConflict) rather than overwritten. On a store with
// AppendBatch (SQL) it seals the events through log a transaction at a
// time (personaldata.Store.SealStreams: the new subjects' keys made
// together), the next one while one is written, and writes them in
// transactions of up to BatchEvents events; on others it appends through
// log, Concurrency streams at once. Each transaction is all or nothing; a
// failure after some were written wraps ErrPartial (an import run again
// plans only what is missing, with the same event ids).
func (p *Plan) Apply(ctx context.Context, log Appender, opts ApplyOptions) (Applied, error) {
	if opts.BatchEvents <= 0 {
		opts.BatchEvents = DefaultBatchEvents
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	var out Applied
	total := uint64(p.Events)
	report := func() {
		if opts.Progress != nil {
			opts.Progress(uint64(out.Events), total)
		}
	}
	var err error
	if s, ok := log.(sealer); ok {
		if b, ok := s.Inner().(batchAppender); ok {
			err = p.applyBatches(ctx, s, b, opts, &out, report)
			return out, partial(out, err)
		}
	}
	for phase := range 2 {
		if err = p.applyConcurrently(ctx, log, phase, opts, &out, report); err != nil {
			break
		}
	}
	return out, partial(out, err)
}

func partial(out Applied, err error) error {
	if err != nil && out.Events > 0 {
		return fmt.Errorf("%w (%d of the plan's events appended): %w", ErrPartial, out.Events, err)
	}
	return err
}

// applyBatches seals and appends the plan a batch at a time: the keys of a
// batch's new subjects are made together (one transaction) while its
// events are sealed, then the batch is appended in one transaction. The
// next batch is sealed while one is appended (two cores busy, the order of
// appends unchanged); a failed append stops the sealing. Sealing ahead
// may make the keys of subjects whose events are then not appended: a key
// with no events is harmless, and a re-run uses it.
func (p *Plan) applyBatches(ctx context.Context, s sealer, b batchAppender, opts ApplyOptions, out *Applied, report func()) error {
	batches := p.batches(opts.BatchEvents)
	g, gctx := errgroup.WithContext(ctx)
	sealed := make(chan []sqlstore.StreamAppend, 1)
	g.Go(func() error {
		defer close(sealed)
		for _, streams := range batches {
			plain := make([]personaldata.StreamEvents, len(streams))
			for i, st := range streams {
				plain[i] = personaldata.StreamEvents{Stream: st.name, Events: st.events}
			}
			events, err := s.SealStreams(gctx, plain)
			if err != nil {
				return fmt.Errorf("importer: seal the personal data of %d streams: %w", len(streams), err)
			}
			batch := make([]sqlstore.StreamAppend, len(streams))
			for i, st := range streams {
				batch[i] = sqlstore.StreamAppend{Stream: st.name, Expected: eventlog.Exactly(st.version), Events: events[i]}
			}
			select {
			case sealed <- batch:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	g.Go(func() error {
		for i := 0; ; i++ {
			var batch []sqlstore.StreamAppend
			select {
			case b, ok := <-sealed:
				if !ok {
					return nil
				}
				batch = b
			case <-gctx.Done():
				return gctx.Err()
			}
			n := 0
			for _, a := range batch {
				n += len(a.Events)
			}
			res, err := b.AppendBatch(gctx, batch)
			if err != nil {
				return fmt.Errorf("importer: append %d events to %d streams: %w", n, len(batch), err)
			}
			for j, r := range res {
				if err := check(batches[i][j], r); err != nil {
					return err
				}
				out.Last = latest(out.Last, r.Position)
			}
			out.Events += n
			out.Streams += len(batch)
			out.Writes++
			report()
		}
	})
	return g.Wait()
}

// batches splits the plan's streams into the transactions of
// applyBatches: up to about max events each (a stream is never split), and
// never across the two phases, so that accounts are appended before the
// children that name them.
func (p *Plan) batches(maxEvents int) [][]*stream {
	var out [][]*stream
	var cur []*stream
	n := 0
	for i, st := range p.appends {
		if len(cur) > 0 && (n >= maxEvents || p.appends[i-1].phase != st.phase) {
			out = append(out, cur)
			cur, n = nil, 0
		}
		cur = append(cur, st)
		n += len(st.events)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

func (p *Plan) applyConcurrently(ctx context.Context, log Appender, phase int, opts ApplyOptions, out *Applied, report func()) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Concurrency)
	var mu sync.Mutex
	for _, st := range p.appends {
		if st.phase != phase {
			continue
		}
		g.Go(func() error {
			res, err := log.Append(gctx, st.name, eventlog.Exactly(st.version), st.events)
			if err != nil {
				return fmt.Errorf("importer: append %d events to %s: %w", len(st.events), st.name, err)
			}
			if err := check(st, res); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			out.Last = latest(out.Last, res.Position)
			out.Events += len(st.events)
			out.Streams++
			out.Writes++
			report()
			return nil
		})
	}
	return g.Wait()
}

// check requires the stream to be where the plan's events put it.
func check(st *stream, res eventlog.AppendResult) error {
	if want := st.version + uint64(len(st.events)); res.Version != want {
		return fmt.Errorf("importer: append to %s: the stream is at version %d, want %d", st.name, res.Version, want)
	}
	return nil
}

func latest(a, b eventlog.Position) eventlog.Position {
	if a.Before(b) {
		return b
	}
	return a
}
