package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/accessledger/accessledger/adapters/keystore"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/internal/progress"
	"github.com/accessledger/accessledger/internal/reseal"
	"github.com/accessledger/accessledger/projections/ledger"
)

// errResealFailed ends accessd reseal with exit code 1 after a verdict
// that already said what is wrong.
var errResealFailed = errors.New("reseal failed")

// resealTo holds the destination's flags of accessd reseal.
type resealTo struct {
	dataDir, eventStore, readStore, masterKey, ledgerKey, checkpointDir string
}

func (c *resealTo) register(fs *flag.FlagSet) {
	fs.StringVar(&c.dataDir, "to-data-dir", "", "the destination's data directory (required; created mode 0700 if missing): "+
		"it receives the new log's files, as --data-dir holds the source's")
	fs.StringVar(&c.eventStore, "to-event-store", "", "the destination's event store URL: an empty store, or one an interrupted reseal of the same source "+
		"left (it is resumed) (default: sqlite file "+engine.DefaultDBName+" in --to-data-dir)")
	fs.StringVar(&c.readStore, "to-read-store", "", "the destination's read store URL (default: the destination event store's database; "+
		"required with EventStoreDB)")
	fs.StringVar(&c.masterKey, "to-master-key", "", "the destination's master key file: the source's key is copied there when it is missing, "+
		"else it must hold the source's key (default: "+keystore.MasterKeyFileName+" in --to-data-dir)")
	fs.StringVar(&c.ledgerKey, "to-ledger-key", "", "the new log's ledger signing key, created when missing; never the source's "+
		"(default: "+ledger.KeyFileName+" in --to-data-dir)")
	fs.StringVar(&c.checkpointDir, "to-checkpoint-dir", "", "where the new log's checkpoints are written (default: checkpoints in --to-data-dir)")
}

func (c *resealTo) config() *engine.Config {
	return &engine.Config{DataDir: c.dataDir, EventStore: c.eventStore, ReadStore: c.readStore,
		MasterKey: c.masterKey, LedgerKey: c.ledgerKey, CheckpointDir: c.checkpointDir}
}

// runReseal copies the event log of the deployment the store flags name
// into a new one (--to-data-dir and the --to- flags) whose personal data
// is sealed, and verifies both (internal/reseal). It prints progress, a
// summary and the checks, and always ends with a verdict line: "OK: ..."
// (exit 0) or "FAILED: ..." (exit 1).
func runReseal(ctx context.Context, args []string, env *environment) error {
	var cfg storeConfig
	var to resealTo
	var files multiFlag
	fs := newFlagSet("reseal", env.stderr)
	cfg.register(fs)
	to.register(fs)
	fs.Var(&files, "checkpoint", "a checkpoint FILE of the source kept outside it (repeatable): its log must agree with it")
	if err := cfg.parse(fs, args, env); err != nil {
		return err
	}
	if strings.TrimSpace(to.dataDir) == "" {
		return fmt.Errorf("%w: --to-data-dir is required: the new deployment's data directory", errUsage)
	}
	dst := to.config()
	if err := reseal.CheckDistinct(&cfg.Config, dst); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := reseal.CheckSourceExists(&cfg.Config); err != nil {
		return fmt.Errorf("%w: %v (give the deployment's --data-dir or --event-store)", errUsage, err)
	}
	log := cfg.logger(env)
	out := env.stdout
	failed := func(format string, args ...any) error {
		fmt.Fprintf(out, "FAILED: "+format+"\n", args...)
		return errResealFailed
	}
	if err := dst.CheckPrivate(); err != nil {
		return failed("the destination's data directory: %v", err)
	}
	src, err := engine.OpenStores(ctx, &cfg.Config, log)
	if err != nil {
		return failed("the source could not be opened: %v", err)
	}
	defer src.Close()
	notes, err := reseal.PrepareSecrets(&cfg.Config, dst)
	if err != nil {
		return failed("%v", err)
	}
	dstStores, err := engine.OpenStores(ctx, dst, log)
	if err != nil {
		return failed("the destination could not be opened: %v", err)
	}
	defer dstStores.Close()
	fmt.Fprintf(out, "source:      %s\ndestination: %s\n", src.Events.Name, dstStores.Events.Name)
	for _, n := range notes {
		fmt.Fprintln(out, n)
	}
	rep, err := reseal.Run(ctx, reseal.Deployment{Config: &cfg.Config, Stores: src}, reseal.Deployment{Config: dst, Stores: dstStores},
		reseal.Options{Checkpoints: files, Progress: out, Terminal: progress.IsTerminal(out), Logger: log})
	printResealReport(out, rep)
	if err != nil {
		return failed("%v", err)
	}
	if c, bad := rep.Failed(); bad {
		return failed("%s: %s", c.Name, c.Detail)
	}
	if !rep.OK() {
		return failed("not every check ran")
	}
	fmt.Fprintf(out, "OK: %s holds the source's %d events with their personal data sealed, and both verify; "+
		"start the engine on --data-dir %s (and the same --to- settings) and archive the source (docs/operations.md)\n",
		dstStores.Events.Name, rep.Copy.Total, dst.DataDir)
	return nil
}

// printResealReport prints the summary and the checks of rep.
func printResealReport(w io.Writer, rep *reseal.Report) {
	if rep == nil {
		return
	}
	c := rep.Copy
	fmt.Fprintf(w, "personal data in plain text in the source: %d events\n", rep.SourcePlain)
	if c.Total > 0 || c.Verified > 0 || c.Copied > 0 {
		fmt.Fprintf(w, "events copied:     %d of %d in %d writes (%d found copied by an earlier run)\n", c.Copied, c.Total, c.Writes, c.Verified)
		fmt.Fprintf(w, "subjects keyed:    %d\n", c.SubjectsKeyed)
		fmt.Fprintf(w, "erased subjects:   %d (stand-ins, no key)\n", c.ErasedSubjects)
		fmt.Fprintf(w, "identity streams:  %d renamed to keyed names, %d keyed already, %d kept (their subject reads as erased)\n",
			c.IdentityRenamed, c.IdentityKeyed, c.IdentityKept)
	}
	if rep.SourceLedger != nil && rep.DestinationLedger != nil {
		fmt.Fprintf(w, "ledger:            the source's root %s and the destination's root %s, at size %d\n",
			rep.SourceLedger.Root, rep.DestinationLedger.Root, rep.DestinationLedger.Events)
	}
	if rep.PublicKey != "" {
		fmt.Fprintf(w, "new ledger key:    %s (give it to the auditors)\n", rep.PublicKey)
	}
	rate := ""
	if c.Elapsed > 0 && c.Copied > 0 {
		rate = fmt.Sprintf(", the copy %s at %.0f events/s", c.Elapsed.Round(time.Millisecond), float64(c.Copied)/c.Elapsed.Seconds())
	}
	fmt.Fprintf(w, "time:              %s%s\n", rep.Elapsed.Round(time.Millisecond), rate)
	for _, ch := range rep.Checks {
		mark := "ok    "
		if !ch.OK {
			mark = "FAILED"
		}
		fmt.Fprintf(w, "%s %s: %s\n", mark, ch.Name, ch.Detail)
	}
}
