package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/internal/progress"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/audit"
	"github.com/accessledger/accessledger/projections/ledger"
)

// runRebuild rebuilds one read model, or all of them, from the event log
// into fresh tables and swaps them in; queries (and a running engine) keep
// working meanwhile.
func runRebuild(ctx context.Context, args []string, env *environment) error {
	var cfg storeConfig
	var name string
	fs := newFlagSet("rebuild", env.stderr)
	cfg.register(fs)
	fs.StringVar(&name, "projection", "", "the read model to rebuild: "+strings.Join(engine.ReadModelNames(), ", ")+" (default: all)")
	if err := cfg.parse(fs, args, env); err != nil {
		return err
	}
	if name != "" && !slices.Contains(engine.ReadModelNames(), name) {
		return fmt.Errorf("%w: unknown projection %q: want one of %s", errUsage, name, strings.Join(engine.ReadModelNames(), ", "))
	}
	log := cfg.logger(env)
	st, err := engine.OpenStores(ctx, &cfg.Config, log)
	if err != nil {
		return err
	}
	defer st.Close()
	latest, err := engine.CheckBeforeRebuild(ctx, &cfg.Config, st)
	if err != nil {
		return err
	}
	var lopts []ledger.Option
	if latest != nil {
		lopts = append(lopts, ledger.WithCheckpoint(*latest))
	}
	for _, p := range engine.ReadModels(lopts...) {
		if name != "" && p.Name() != name {
			continue
		}
		report, finish := progress.New(env.stdout, progress.IsTerminal(env.stdout), "rebuild "+p.Name())
		err := projections.Rebuild(ctx, st.Read.DB, st.LogFor(p.Name()), p, report, projections.WithLogger(log))
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
	e, err := engine.Open(ctx, &cfg.Config, engine.Options{ReadOnlyKey: true}, log)
	if err != nil {
		return err
	}
	defer e.Close()
	// Bring the trail up to the head of the log first, so that verify
	// covers every event recorded so far; a projection that fails (a
	// damaged store, a log that ends before the trail) ends verify with a
	// verdict instead of a retry loop.
	if err := catchUp(ctx, e.Runner, e.Stores.Log); err != nil {
		if ctx.Err() != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "FAILED: the audit trail could not be brought up to date with the event log: %v\n", err)
		return errBroken
	}
	// The trail is only as good as the log it was derived from: check the
	// log against the ledger first.
	verifier, err := engine.OptionalVerifier(&cfg.Config)
	if err != nil {
		fmt.Fprintf(env.stdout, "FAILED: %v\n", err)
		return errBroken
	}
	lrep, err := engine.VerifyStores(ctx, &cfg.Config, e.Stores, nil, verifier)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "FAILED: the event log could not be checked against the ledger: %v\n", err)
		return errBroken
	}
	res, err := audit.Verify(ctx, e.ReadDB, opts)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "FAILED: the audit trail could not be read: %v\n", err)
		return errBroken
	}
	fmt.Fprintln(env.stdout, audit.VerifyReport(res))
	if !lrep.OK {
		first, _ := lrep.FirstBad()
		fmt.Fprintf(env.stdout, "FAILED: the event log the trail was derived from disagrees with the ledger: %s "+
			"(accessd ledger verify tells more)\n", first)
		return errBroken
	}
	if !res.OK {
		return errBroken
	}
	// The log is authentic: every entry's copy of its event must be the
	// event (a chain re-computed after an edit passes the chain check).
	m, n, err := audit.CompareWithLog(ctx, e.ReadDB, e.Stores.Events.Log, 0)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "FAILED: the audit trail could not be compared with the event log: %v\n", err)
		return errBroken
	}
	if m != nil {
		fmt.Fprintf(env.stdout, "FAILED: the audit trail differs from the event log at %s; the chain was recomputed after an edit "+
			"(accessd rebuild --projection audit restores it from the log)\n", m)
		return errBroken
	}
	fmt.Fprintf(env.stdout, "OK: the audit trail's %d entries match the event log, which agrees with the ledger\n", n)
	return nil
}

// catchUpPoll is how often catchUp looks at the projections' state.
const catchUpPoll = 100 * time.Millisecond

// catchUp runs the projections until every one has caught up with the log,
// and fails at the first error one of them reports (the runner itself would
// retry it forever), or when one has applied more of the log than the log
// now holds (events deleted from its end: nothing would ever catch up).
func catchUp(ctx context.Context, r *projections.Runner, log interface {
	Head(context.Context) (eventlog.Position, error)
	ReadAll(context.Context, eventlog.Position, int) ([]eventlog.Record, error)
}) error {
	head, err := log.Head(ctx)
	if err != nil {
		return fmt.Errorf("read the log's head: %w", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() { cancel(); <-done }() //nolint:errcheck // Run returns nil once cancelled
	caught := make(chan error, 1)
	go func() { caught <- r.WaitCaughtUp(rctx) }()
	tick := time.NewTicker(catchUpPoll)
	defer tick.Stop()
	last := map[string]eventlog.Position{}
	for {
		select {
		case err := <-caught:
			return err
		case err := <-done:
			done <- err
			if err == nil {
				err = errors.New("the projection runner stopped")
			}
			return err
		case <-tick.C:
			for _, s := range r.Status() {
				if s.LastError != nil {
					return fmt.Errorf("projection %s at position %s: %w", s.Name, s.Position, s.LastError)
				}
				if head.Before(s.Position) {
					return fmt.Errorf("projection %s has applied the log up to position %s, but the log ends at %s: "+
						"events were deleted from its end (accessd ledger verify names them)", s.Name, s.Position, head)
				}
				if p, seen := last[s.Name]; !s.CaughtUp && seen && p == s.Position && s.Position.Before(head) {
					// No progress: is there anything left to read?
					next, err := log.ReadAll(ctx, s.Position, 1)
					if err != nil {
						return fmt.Errorf("read the log after position %s: %w", s.Position, err)
					}
					if len(next) == 0 {
						return fmt.Errorf("the log's head is position %s, but no event after position %s can be read: "+
							"events were deleted from its end (accessd ledger verify names them)", head, s.Position)
					}
				}
				last[s.Name] = s.Position
			}
		}
	}
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
