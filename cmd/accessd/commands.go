package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/outbox"
	"github.com/accessledger/accessledger/adapters/personaldata"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/projections/ledger"
)

func runMigrate(ctx context.Context, args []string, env *environment) error {
	var cfg storeConfig
	fs := newFlagSet("migrate", env.stderr)
	cfg.register(fs)
	if err := cfg.parse(fs, args, env); err != nil {
		return err
	}
	log := cfg.logger(env)
	st, err := engine.OpenStores(ctx, &cfg.Config, log)
	if err != nil {
		return err
	}
	defer st.Close()
	s, err := st.Events.Status(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "migrated %s: %s events, head %s\n", s.Store, eventsText(s.Events), s.Head)
	if st.OwnsRead() {
		fmt.Fprintf(env.stdout, "migrated read store %s\n", st.Read)
	}
	return nil
}

func runStatus(ctx context.Context, args []string, env *environment) error {
	var cfg storeConfig
	fs := newFlagSet("status", env.stderr)
	cfg.register(fs)
	if err := cfg.parse(fs, args, env); err != nil {
		return err
	}
	log := cfg.logger(env)
	if url, _ := cfg.EventStoreURL(); cfg.ReadStore == "" && engine.IsEventStoreDB(url) {
		// No read store to report on: the event store alone.
		st, err := engine.OpenStore(ctx, &cfg.Config, log)
		if err != nil {
			return err
		}
		defer st.Close()
		return printStoreStatus(ctx, env, st)
	}
	st, err := engine.OpenStore(ctx, &cfg.Config, log)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := printStoreStatus(ctx, env, st); err != nil {
		return err
	}
	// The read store is read as it is, not migrated: status writes nothing
	// there (it may be a read-only replica).
	read := st.DB
	if cfg.ReadStore != "" {
		octx, cancel := context.WithTimeout(ctx, engine.OpenTimeout)
		defer cancel()
		db, err := sqldb.Open(octx, cfg.ReadStore)
		if err != nil {
			return fmt.Errorf("open read store: %w", err)
		}
		defer db.Close()
		read = db
	}
	printSchemaStatus(ctx, env, read)
	printOutboxStatus(ctx, env, outbox.NewCheckpoints(read), time.Now())
	printLedgerStatus(ctx, env, read)
	return nil
}

// printLedgerStatus reports the ledger's stored tree and newest published
// checkpoint (as the read store holds them; accessd ledger verify checks
// them).
func printLedgerStatus(ctx context.Context, env *environment, read bun.IDB) {
	size, err := ledger.NewTree(read).Size(ctx)
	if err != nil {
		fmt.Fprintln(env.stdout, "ledger: no tree in the read store yet (accessd serve builds it)")
		return
	}
	cps, err := ledger.StoredCheckpoints(ctx, read, 1)
	switch {
	case err != nil || len(cps) == 0:
		fmt.Fprintf(env.stdout, "ledger: tree of %d leaves, no checkpoint published yet\n", size)
	default:
		cp, perr := ledger.ParseCheckpointBody(ledgerNoteBody(cps[0].Note))
		if perr != nil {
			fmt.Fprintf(env.stdout, "ledger: tree of %d leaves, newest checkpoint unreadable: %v\n", size, perr)
			return
		}
		fmt.Fprintf(env.stdout, "ledger: tree of %d leaves, newest checkpoint of size %d signed at %s (accessd ledger verify checks it)\n",
			size, cp.Size, cps[0].At.Format(time.RFC3339))
	}
}

// ledgerNoteBody is a signed note's text before its signatures.
func ledgerNoteBody(note []byte) string {
	text, _, _ := strings.Cut(string(note), "\n\n")
	return text + "\n"
}

func printStoreStatus(ctx context.Context, env *environment, st *engine.Store) error {
	s, err := st.Status(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "store:  %s\nevents: %s\nhead:   %s\n", s.Store, eventsText(s.Events), s.Head)
	plain, total, err := personaldata.CountPlain(ctx, st.Log)
	if err != nil {
		return fmt.Errorf("count plain personal data: %w", err)
	}
	fmt.Fprintf(env.stdout, "personal data in plain text: %d of %d events%s\n", plain, total, plainHint(plain))
	return nil
}

// printOutboxStatus prints, for each outbox publisher, its checkpoint and
// which replica holds its lease (the one that publishes); a read store
// without the outbox table says so.
func printOutboxStatus(ctx context.Context, env *environment, cps *outbox.Checkpoints, now time.Time) {
	for _, name := range []string{outbox.DefaultRelayName, outbox.DefaultAccessName} {
		pos, err := cps.Load(ctx, name)
		var owner string
		var until time.Time
		if err == nil {
			owner, until, err = cps.Lease(ctx, name)
		}
		if err != nil {
			// A read store serve has not set up yet (or of an older
			// version): nothing to report, not a failure of status.
			fmt.Fprintf(env.stdout, "outbox %s: not set up in the read store (accessd migrate sets it up)\n", name)
			continue
		}
		fmt.Fprintf(env.stdout, "outbox %s: published up to %s, %s\n", name, pos, leaseText(owner, until, now))
	}
}

// leaseText describes an outbox lease as read at now.
func leaseText(owner string, until, now time.Time) string {
	switch {
	case owner == "":
		return "no replica publishing"
	case until.After(now):
		return fmt.Sprintf("published by %s (lease until %s)", owner, until.UTC().Format(time.RFC3339))
	default:
		return fmt.Sprintf("lease of %s ran out at %s: the next replica to try takes over", owner, until.UTC().Format(time.RFC3339))
	}
}

// runServe runs the engine until ctx ends (SIGINT or SIGTERM): the read
// models, the access index and the HTTP API.
func runServe(ctx context.Context, args []string, env *environment) error {
	var cfg storeConfig
	var sc serveConfig
	fs := newFlagSet("serve", env.stderr)
	cfg.register(fs)
	sc.register(fs)
	if err := cfg.parse(fs, args, env); err != nil {
		return err
	}
	if err := sc.check(); err != nil {
		return err
	}
	log := cfg.logger(env)
	return serve(ctx, &cfg, &sc, log, env)
}

// eventsText prints an event count, or "unknown".
func eventsText(n int64) string {
	if n < 0 {
		return "unknown (EventStoreDB positions are not counts)"
	}
	return fmt.Sprint(n)
}

// printSchemaStatus reports, for each component of the read store, how
// many of its migrations db has applied. It writes nothing.
func printSchemaStatus(ctx context.Context, env *environment, db *sqldb.DB) {
	for _, c := range engine.Components() {
		applied, total, err := c.Progress(ctx, db)
		switch {
		case err != nil:
			fmt.Fprintf(env.stdout, "schema %s: unreadable: %v\n", c.Name, err)
		case applied == total:
			fmt.Fprintf(env.stdout, "schema %s: %d of %d migrations applied\n", c.Name, applied, total)
		default:
			fmt.Fprintf(env.stdout, "schema %s: %d of %d migrations applied (accessd migrate applies the rest)\n", c.Name, applied, total)
		}
	}
}

// plainHint says what to do about events with plain personal data.
func plainHint(n int64) string {
	if n == 0 {
		return ""
	}
	return " (written before sealing was on: accessd reseal moves them into a new, sealed log; see docs/personal-data.md)"
}
