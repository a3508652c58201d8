package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/accessledger/accessledger/internal/bench"
	"github.com/accessledger/accessledger/internal/datagen"
	"github.com/accessledger/accessledger/internal/engine"
)

// generateConfig holds the flags of accessd generate besides the store's.
type generateConfig struct {
	scale string
	bench.GenerateConfig
}

func (c *generateConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.scale, "scale", "county", "data set: county (~1 M events), nation (~50 M events) or small (~10 k events)")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the generator: the same scale and seed give the same events")
	fs.BoolVar(&c.Append, "append", false, "write into a store that already holds events; appends already stored exactly so "+
		"(the same scale and seed again) are retries that write nothing")
	fs.IntVar(&c.Batch, "batch", datagen.DefaultBatchAppends, "stream appends per transaction (SQL stores)")
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
	if gc.Batch < 1 {
		return fmt.Errorf("%w: --batch %d: want at least 1", errUsage, gc.Batch)
	}
	log := cfg.logger(env)
	st, err := engine.OpenStore(ctx, &cfg.Config, log)
	if err != nil {
		return err
	}
	defer st.Close()
	g, err := bench.GenerateInto(ctx, st, sc, gc.GenerateConfig, env.stdout, log, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "generated %s (seed %d) into %s: %d events in %d appends (%d children, %d accounts; effective %s to %s) in %s: %.0f events/s\n",
		sc.Name, gc.Seed, st.Name, g.Summary.Events, g.Summary.Appends, g.Summary.Children, g.Summary.Accounts,
		g.Summary.From.Format(time.DateOnly), g.Summary.To.Format(time.DateOnly),
		g.Elapsed.Round(100*time.Millisecond), g.Rate())
	if gc.Append && st.DB != nil {
		// The SQL store's positions are dense: the head moved by the
		// events written. Appends already stored exactly so (the same
		// data set again) are retries that write nothing.
		fmt.Fprintf(env.stdout, "%d of them new (the store held %d events before)\n",
			g.HeadAfter.Commit-g.HeadBefore.Commit, g.HeadBefore.Commit)
	}
	return nil
}

// runLoad measures a running accessd serve from this process (the load
// tool's client on its own: internal/bench.RunLoad).
func runLoad(ctx context.Context, args []string, env *environment) error {
	var cfg bench.LoadConfig
	fs := newFlagSet("load", env.stderr)
	cfg.Register(fs)
	if err := parseFlags(fs, args, env.lookup); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return bench.RunLoad(ctx, cfg, bench.Env{Lookup: env.lookup, Stdout: env.stdout, Stderr: env.stderr})
}

// runBench measures the engine on a generated data set (internal/bench).
func runBench(ctx context.Context, args []string, env *environment) error {
	var cfg bench.Config
	fs := newFlagSet("bench", env.stderr)
	cfg.Register(fs)
	if err := parseFlags(fs, args, env.lookup); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return bench.Run(ctx, cfg, bench.Env{Lookup: env.lookup, Stdout: env.stdout, Stderr: env.stderr})
}
