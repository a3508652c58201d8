package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/datagen"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/internal/progress"
)

// ErrStoreNotEmpty is returned by GenerateInto (wrapped) when the event
// store already holds events and GenerateConfig.Append is not set.
var ErrStoreNotEmpty = errors.New("the event store is not empty")

// GenerateConfig says how a data set is written.
type GenerateConfig struct {
	// Seed of the generator: the same scale and seed give the same events.
	Seed uint64
	// Append writes into a store that already holds events; appends
	// already stored exactly so are retries that write nothing.
	Append bool
	// Batch is the stream appends per transaction (SQL stores).
	Batch int
}

// Generated is the outcome of GenerateInto.
type Generated struct {
	Summary datagen.Summary
	Elapsed time.Duration
	// HeadBefore and HeadAfter are the log's head before and after.
	HeadBefore, HeadAfter eventlog.Position
}

// Rate is the events written per second.
func (g Generated) Rate() float64 {
	if g.Elapsed <= 0 {
		return 0
	}
	return float64(g.Summary.Events) / g.Elapsed.Seconds()
}

// expectedEvents is about how many events sc generates (about 100 per
// child, the calibration of the county and the nation), for the progress
// line's total.
func expectedEvents(sc datagen.Scale) uint64 { return uint64(sc.Children) * 100 }

// GenerateInto generates sc with gc.Seed into st, gc.Batch stream appends
// per AppendBatch transaction on a SQL store (one Append each on
// EventStoreDB), printing progress to out. It refuses a store that holds
// events unless gc.Append. observe, when not nil, sees every batch before
// it is written.
func GenerateInto(ctx context.Context, st *engine.Store, sc datagen.Scale, gc GenerateConfig, out io.Writer,
	log *slog.Logger, observe func([]datagen.Append)) (Generated, error) {
	head, err := st.Log.Head(ctx)
	if err != nil {
		return Generated{}, fmt.Errorf("read head of %s: %w", st.Name, err)
	}
	if !head.IsZero() && !gc.Append {
		return Generated{}, fmt.Errorf("%w: %s holds events up to %s; give --append to add a data set to it",
			ErrStoreNotEmpty, st.Name, head)
	}
	var sink datagen.Sink
	if bs, ok := st.Log.(*sqlstore.Store); ok {
		sink = datagen.BatchSink(bs.AppendBatch)
	} else {
		sink = datagen.StoreSink(st.Log)
		log.Info("generate: the store has no batch append; appending one stream append at a time", "store", st.Name)
	}
	if observe != nil {
		inner := sink
		sink = datagen.SinkFunc(func(ctx context.Context, batch []datagen.Append) error {
			observe(batch)
			return inner.Write(ctx, batch)
		})
	}
	report, finish := progress.New(out, progress.IsTerminal(out), fmt.Sprintf("generate %s", sc.Name))
	total := expectedEvents(sc)
	start := time.Now()
	sum, err := datagen.Generate(ctx, sc, sink, datagen.Options{Seed: gc.Seed, BatchAppends: gc.Batch,
		Progress: func(n int64) { report(uint64(n), max(total, uint64(n))) }})
	elapsed := time.Since(start)
	if err == nil {
		report(uint64(sum.Events), uint64(sum.Events))
	}
	finish()
	if err != nil {
		return Generated{}, fmt.Errorf("generate %s into %s: %w", sc.Name, st.Name, err)
	}
	if bs, ok := st.Log.(*sqlstore.Store); ok {
		if err := bs.Analyze(ctx); err != nil {
			log.Warn("generate: cannot gather the statistics of the events table", "store", st.Name, "error", err)
		}
	}
	after, err := st.Log.Head(ctx)
	if err != nil {
		return Generated{}, fmt.Errorf("read head of %s: %w", st.Name, err)
	}
	return Generated{Summary: sum, Elapsed: elapsed, HeadBefore: head, HeadAfter: after}, nil
}
