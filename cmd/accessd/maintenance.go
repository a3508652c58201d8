package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/audit"
)

// runRebuild rebuilds one read model, or all of them, from the event log
// into fresh tables and swaps them in; queries (and a running engine) keep
// working meanwhile.
func runRebuild(ctx context.Context, args []string, env *environment) error {
	var cfg storeConfig
	var name string
	fs := newFlagSet("rebuild", env.stderr)
	cfg.register(fs)
	fs.StringVar(&name, "projection", "", "the read model to rebuild: "+strings.Join(readModelNames(), ", ")+" (default: all)")
	if err := cfg.parse(fs, args, env); err != nil {
		return err
	}
	if name != "" && !slices.Contains(readModelNames(), name) {
		return fmt.Errorf("%w: unknown projection %q: want one of %s", errUsage, name, strings.Join(readModelNames(), ", "))
	}
	log := cfg.logger(env)
	st, err := openStores(ctx, &cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, p := range readModels() {
		if name != "" && p.Name() != name {
			continue
		}
		report, finish := newProgress(env.stdout, isTerminal(env.stdout), "rebuild "+p.Name())
		err := projections.Rebuild(ctx, st.read.DB, st.events.log, p, report, projections.WithLogger(log))
		finish()
		if err != nil {
			return fmt.Errorf("rebuild %s: %w", p.Name(), err)
		}
		fmt.Fprintf(env.stdout, "rebuilt %s\n", p.Name())
	}
	return nil
}

// runAudit runs the audit subcommands: verify.
func runAudit(ctx context.Context, args []string, env *environment) error {
	if len(args) == 0 || args[0] != "verify" {
		return fmt.Errorf("%w: want accessd audit verify [flags]", errUsage)
	}
	var cfg storeConfig
	var anchor string
	fs := newFlagSet("audit verify", env.stderr)
	cfg.register(fs)
	fs.StringVar(&anchor, "anchor", "", "SEQ:HASH of an entry recorded earlier (e.g. the head printed by a previous verify); "+
		"detects a deleted tail or a rewritten trail")
	if err := cfg.parse(fs, args[1:], env); err != nil {
		return err
	}
	var opts audit.VerifyOptions
	if anchor != "" {
		a, err := parseAnchor(anchor)
		if err != nil {
			return fmt.Errorf("%w: --anchor: %v", errUsage, err)
		}
		opts.Anchor = &a
	}
	log := cfg.logger(env)
	e, err := openEngine(ctx, &cfg, log)
	if err != nil {
		return err
	}
	defer e.Close()
	// Bring the trail up to the head of the log first, so that verify
	// covers every event recorded so far.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.runner.Run(rctx) }()
	err = e.runner.WaitCaughtUp(ctx)
	cancel()
	<-done
	if err != nil {
		return err
	}
	res, err := audit.Verify(ctx, e.readDB, opts)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, audit.VerifyReport(res))
	if !res.OK {
		return errBroken
	}
	return nil
}

// errBroken ends accessd with exit code 1 after a report that already said
// what is wrong.
var errBroken = fmt.Errorf("audit trail broken")

func parseAnchor(s string) (audit.Anchor, error) {
	seq, hash, ok := strings.Cut(s, ":")
	if !ok {
		return audit.Anchor{}, fmt.Errorf("want SEQ:HASH, got %q", s)
	}
	var a audit.Anchor
	if _, err := fmt.Sscanf(seq, "%d", &a.Seq); err != nil || a.Seq < 1 {
		return audit.Anchor{}, fmt.Errorf("SEQ %q is not a positive number", seq)
	}
	a.Hash = hash
	return a, nil
}

// isTerminal reports whether w is a terminal (for a progress bar).
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
