package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/datagen"
)

// errStoreNotEmpty is returned by generate (wrapped) when the event store
// already holds events and --append was not given.
var errStoreNotEmpty = errors.New("the event store is not empty")

// generateConfig holds the flags of accessd generate besides the store's.
type generateConfig struct {
	scale  string
	seed   uint64
	append bool
	batch  int
}

func (c *generateConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.scale, "scale", "county", "data set: county (~1 M events), nation (~50 M events) or small (~10 k events)")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the generator: the same scale and seed give the same events")
	fs.BoolVar(&c.append, "append", false, "write into a store that already holds events; appends already stored exactly so "+
		"(the same scale and seed again) are retries that write nothing")
	fs.IntVar(&c.batch, "batch", datagen.DefaultBatchAppends, "stream appends per transaction (SQL stores)")
}

// runGenerate writes a generated data set (internal/datagen) into the
// event store: on the SQL stores many stream appends per transaction
// (sqlstore.AppendBatch), on EventStoreDB one append at a time. It refuses
// a store that already holds events unless --append is given.
func runGenerate(ctx context.Context, args []string, env *environment) error {
	var cfg storeConfig
	var gc generateConfig
	fs := newFlagSet("generate", env.stderr)
	cfg.register(fs)
	gc.register(fs)
	if err := cfg.parse(fs, args, env); err != nil {
		return err
	}
	sc, err := datagen.ScaleByName(gc.scale)
	if err != nil {
		return fmt.Errorf("%w: --scale: %v", errUsage, err)
	}
	if gc.batch < 1 {
		return fmt.Errorf("%w: --batch %d: want at least 1", errUsage, gc.batch)
	}
	log := cfg.logger(env)
	st, err := openStore(ctx, &cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	g, err := generateInto(ctx, st, sc, gc, env.stdout, log, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "generated %s (seed %d) into %s: %d events in %d appends (%d children, %d accounts; effective %s to %s) in %s: %.0f events/s\n",
		sc.Name, gc.seed, st.name, g.Summary.Events, g.Summary.Appends, g.Summary.Children, g.Summary.Accounts,
		g.Summary.From.Format(time.DateOnly), g.Summary.To.Format(time.DateOnly),
		g.Elapsed.Round(100*time.Millisecond), g.rate())
	if gc.append && st.db != nil {
		// The SQL store's positions are dense: the head moved by the
		// events written. Appends already stored exactly so (the same
		// data set again) are retries that write nothing.
		fmt.Fprintf(env.stdout, "%d of them new (the store held %d events before)\n",
			g.HeadAfter.Commit-g.HeadBefore.Commit, g.HeadBefore.Commit)
	}
	return nil
}

// generated is the outcome of generateInto.
type generated struct {
	Summary datagen.Summary
	Elapsed time.Duration
	// HeadBefore and HeadAfter are the log's head before and after.
	HeadBefore, HeadAfter eventlog.Position
}

// rate is the events written per second.
func (g generated) rate() float64 {
	if g.Elapsed <= 0 {
		return 0
	}
	return float64(g.Summary.Events) / g.Elapsed.Seconds()
}

// expectedEvents is about how many events sc generates (about 100 per
// child, the calibration of the county and the nation), for the progress
// line's total.
func expectedEvents(sc datagen.Scale) uint64 { return uint64(sc.Children) * 100 }

// generateInto generates sc with gc.seed into st, gc.batch stream appends
// per AppendBatch transaction on a SQL store (one Append each on
// EventStoreDB), printing progress to out. It refuses a store that holds
// events unless gc.append. observe, when not nil, sees every batch before
// it is written.
func generateInto(ctx context.Context, st *openedStore, sc datagen.Scale, gc generateConfig, out io.Writer,
	log *slog.Logger, observe func([]datagen.Append)) (generated, error) {
	head, err := st.log.Head(ctx)
	if err != nil {
		return generated{}, fmt.Errorf("read head of %s: %w", st.name, err)
	}
	if !head.IsZero() && !gc.append {
		return generated{}, fmt.Errorf("%w: %s holds events up to %s; give --append to add a data set to it",
			errStoreNotEmpty, st.name, head)
	}
	var sink datagen.Sink
	if bs, ok := st.log.(*sqlstore.Store); ok {
		sink = datagen.BatchSink(bs.AppendBatch)
	} else {
		sink = datagen.StoreSink(st.log)
		log.Info("generate: the store has no batch append; appending one stream append at a time", "store", st.name)
	}
	if observe != nil {
		inner := sink
		sink = datagen.SinkFunc(func(ctx context.Context, batch []datagen.Append) error {
			observe(batch)
			return inner.Write(ctx, batch)
		})
	}
	report, finish := newProgress(out, isTerminal(out), fmt.Sprintf("generate %s", sc.Name))
	total := expectedEvents(sc)
	start := time.Now()
	sum, err := datagen.Generate(ctx, sc, sink, datagen.Options{Seed: gc.seed, BatchAppends: gc.batch,
		Progress: func(n int64) { report(uint64(n), max(total, uint64(n))) }})
	elapsed := time.Since(start)
	if err == nil {
		report(uint64(sum.Events), uint64(sum.Events))
	}
	finish()
	if err != nil {
		return generated{}, fmt.Errorf("generate %s into %s: %w", sc.Name, st.name, err)
	}
	after, err := st.log.Head(ctx)
	if err != nil {
		return generated{}, fmt.Errorf("read head of %s: %w", st.name, err)
	}
	return generated{Summary: sum, Elapsed: elapsed, HeadBefore: head, HeadAfter: after}, nil
}
