package importer

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// Appender is where Apply appends: the event log through the personal-data
// layer (adapters/personaldata), which seals the personal values.
type Appender interface {
	Append(ctx context.Context, stream string, expected eventlog.ExpectedVersion, events []eventlog.EventData) (eventlog.AppendResult, error)
}

// sealer is the personal-data layer's bulk side: sealing without
// appending, and the store beneath it.
type sealer interface {
	Seal(ctx context.Context, stream string, events []eventlog.EventData) ([]eventlog.EventData, error)
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
// AppendBatch (SQL) it seals the events through log and writes them in
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

func (p *Plan) applyBatches(ctx context.Context, s sealer, b batchAppender, opts ApplyOptions, out *Applied, report func()) error {
	var batch []sqlstore.StreamAppend
	var streams []*stream
	n := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		res, err := b.AppendBatch(ctx, batch)
		if err != nil {
			return fmt.Errorf("importer: append %d events to %d streams: %w", n, len(batch), err)
		}
		for i, r := range res {
			if err := check(streams[i], r); err != nil {
				return err
			}
			out.Last = latest(out.Last, r.Position)
		}
		out.Events += n
		out.Streams += len(batch)
		out.Writes++
		report()
		batch, streams, n = batch[:0], streams[:0], 0
		return nil
	}
	for i, st := range p.appends {
		// The two phases are never in one transaction's middle: accounts
		// are appended before the children that name them.
		if i > 0 && p.appends[i-1].phase != st.phase {
			if err := flush(); err != nil {
				return err
			}
		}
		sealed, err := s.Seal(ctx, st.name, st.events)
		if err != nil {
			return fmt.Errorf("importer: seal the personal data of %s: %w", st.name, err)
		}
		batch = append(batch, sqlstore.StreamAppend{Stream: st.name, Expected: eventlog.Exactly(st.version), Events: sealed})
		streams = append(streams, st)
		n += len(sealed)
		if n >= opts.BatchEvents {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
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
