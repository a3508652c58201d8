package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/accesshistory"
	"github.com/accessledger/accessledger/projections/accessindex"
	"github.com/accessledger/accessledger/projections/accounts"
	"github.com/accessledger/accessledger/projections/audit"
	"github.com/accessledger/accessledger/projections/ledger"
)

// ReadModels returns fresh instances of every SQL read model, in the order
// the runner reports them; opts configure the ledger's tree (the last
// published checkpoint it must agree with).
func ReadModels(opts ...ledger.Option) []projections.Projection {
	return []projections.Projection{accesshistory.New(), audit.New(), accounts.New(), ledger.New(opts...)}
}

// ReadModelNames lists the names accepted by rebuild --projection.
func ReadModelNames() []string {
	var names []string
	for _, p := range ReadModels() {
		names = append(names, p.Name())
	}
	return names
}

// Engine is the running engine: the event store, the read models kept by
// the projection runner, and the in-memory access index.
type Engine struct {
	log    *slog.Logger
	Stores *Stores
	// ReadDB is the read store (Stores.Read).
	ReadDB *sqldb.DB
	// UnsyncedDB is the read store's pool whose commits do not wait for
	// fsync (sqldb.DB.Unsynced: ReadDB itself on PostgreSQL): the read
	// models write through it, which the log can always redo, and the
	// idempotency keys when the read store is the log's own database
	// (keysDB). Closed with ReadDB.
	UnsyncedDB *sqldb.DB
	Runner     *projections.Runner
	Index      *accessindex.Index
	// History is the access history's projection (run by Runner); with
	// Options.Snapshot.Dir set its fold starts from its snapshot.
	History *accesshistory.Projection
	// Ledger signs checkpoints of the tree and guards the start: the
	// engine is ready only once the log agrees with what was published.
	// Nil when Options.ReadOnlyKey is set and there is no key.
	Ledger *ledger.Ledger
	// verified is closed once the start-up check found the log's tail
	// (the records this start reads) agreeing with the stored tree and the
	// published checkpoints; whole once the whole stored log does.
	verified, whole chan struct{}
	// snapshot configures the index's snapshots (Options.Snapshot).
	snapshot accessindex.SnapshotConfig
}

// Options are the settings of the engine's ledger.
type Options struct {
	// ReadOnlyKey: never create the ledger's key (a check on a copy, a
	// key kept elsewhere): without one the engine has no ledger.
	ReadOnlyKey bool
	// Instance names this replica in the read store (the ledger's
	// publisher lease).
	Instance string
	// CheckpointInterval and CheckpointEvery: when a grown tree is signed.
	CheckpointInterval time.Duration
	CheckpointEvery    int64
	// Snapshot configures the snapshots of the access index and of the
	// access history's fold (issue 18): at start Run loads Snapshot.Dir's
	// snapshots, when they are valid, and replays only the log after them;
	// while running it writes new ones in the background
	// (accessindex.RunSnapshots, accesshistory.RunSnapshots). An empty Dir
	// turns snapshots off: every start replays the whole log.
	Snapshot accessindex.SnapshotConfig
	// ProjectionLinger is how long the read models' runner, following the
	// log, waits for more events after one arrives before it writes them
	// in one transaction (projections.WithLinger): 0 writes each at once.
	ProjectionLinger time.Duration
}

// DefaultProjectionLinger is accessd serve's --projection-linger.
const DefaultProjectionLinger = 10 * time.Millisecond

// Open opens the stores, applies every migration and builds the
// projections; Run starts them. The read models live in --read-store, or
// in the event store's database when that is SQL.
//
// The ledger's key is created in the data directory on first start; the
// tree's projection is given the newest published checkpoint, so that no
// build of the tree (a rebuild at start included) agrees with a changed log.
func Open(ctx context.Context, cfg *Config, opts Options, log *slog.Logger) (*Engine, error) {
	st, err := OpenStores(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	l, latest, err := openLedger(ctx, cfg, st, opts, log)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	var lopts []ledger.Option
	if latest != nil {
		lopts = append(lopts, ledger.WithCheckpoint(*latest))
	}
	// The read models keep their checkpoints in their own transactions, so
	// a power loss that takes their last commits (not fsynced) makes them
	// replay those events again; their writes then hold the file's one
	// writer for a write, not for an fsync, which the commands wait for.
	unsynced, err := st.Read.Unsynced(ctx)
	if err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("open the read store's unsynced pool: %w", err)
	}
	snap := opts.Snapshot
	if snap.Logger == nil {
		snap.Logger = log
	}
	var hopts []accesshistory.Option
	if snap.Dir != "" {
		hopts = append(hopts, accesshistory.WithSnapshots(accesshistory.SnapshotConfig{Dir: snap.Dir, Log: st.Log,
			Every: snap.Every, Interval: snap.Interval, Logger: snap.Logger}))
	}
	history := accesshistory.New(hopts...)
	models := ReadModels(lopts...)
	models[0] = history
	runner, err := projections.NewRunner(unsynced.DB, st.Log, models, projections.WithLogger(log),
		projections.WithLinger(opts.ProjectionLinger),
		// The ledger hashes the events as stored, and the audit trail names
		// their leaves and keeps them as stored (sealed): both read the
		// stored log.
		projections.WithLogFor(ledger.Name, st.Events.Log), projections.WithLogFor(audit.Name, st.Events.Log))
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	return &Engine{log: log, Stores: st, ReadDB: st.Read, UnsyncedDB: unsynced, Runner: runner, Ledger: l, History: history,
		verified: make(chan struct{}), whole: make(chan struct{}),
		Index: accessindex.New(accessindex.WithLogger(log)), snapshot: snap}, nil
}

func (e *Engine) Close() error { return e.Stores.Close() }

// KeptSnapshots is the command service's kept-state snapshot settings
// (commands.Config.KeptSnapshots) that go with the engine's snapshots
// (Options.Snapshot): the same directory and interval, the service's
// default count of changes; off when the engine's snapshots are. The
// service that serves commands loads it (StartFromKeptSnapshot, on
// Stores.Log) before it takes commands and writes it in the background
// (RunKeptSnapshots): accessd serve does.
func (e *Engine) KeptSnapshots() commands.KeptSnapshotConfig {
	if e.snapshot.Dir == "" {
		return commands.KeptSnapshotConfig{}
	}
	return commands.KeptSnapshotConfig{Dir: e.snapshot.Dir, Interval: e.snapshot.Interval}
}

// WarmUpKept fills cmds' kept children from one pass over the log
// (commands.Service.WarmUp), for a start that loaded no kept-state
// snapshot: once ready is closed (the engine is ready: the start's own
// replay is done) and the ledger has verified the whole log (as the
// commands' reads wait for). It logs what it kept, or why it stopped, and
// returns when done or when ctx ends.
func (e *Engine) WarmUpKept(ctx context.Context, cmds *commands.Service, ready <-chan struct{}) {
	select {
	case <-ctx.Done():
		return
	case <-ready:
	}
	_ = e.AfterVerified(ctx, func(ctx context.Context) error {
		info, err := cmds.WarmUp(ctx, e.Stores.Log)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			e.log.WarnContext(ctx, "commands: warm-up of the kept children failed; commands read whole streams until they keep them",
				slog.String("error", err.Error()))
		default:
			e.log.InfoContext(ctx, "commands: kept children warmed up from the log", slog.Int("children", info.Children),
				slog.Int("records", info.Records), slog.Duration("busy", info.Busy), slog.Duration("elapsed", info.Elapsed))
		}
		return nil
	})
}

// keysDB is the pool the idempotency keys are written through: the
// unsynced one when the read store is the event store's own database (an
// append's fsync then makes every key written before it durable, which
// the keys' durability rests on: adapters/idempotency, "Durability"), the
// read store itself when it is a database of its own (--read-store),
// whose commits no append's fsync covers.
func (e *Engine) keysDB() *sqldb.DB {
	if e.Stores.OwnsRead() {
		return e.ReadDB
	}
	return e.UnsyncedDB
}

// startGCPercent is the garbage collector's target while the engine
// replays the log at start (GOGC; the default is 100): the replay builds a
// large heap that lives on, so collecting it as often as the default asks
// is wasted work. It measured about a fifth off start to ready on the
// county data set (docs/performance.md); the default returns once ready.
const startGCPercent = 400

// Run runs the projections and the index until ctx ends. ready is called
// once when every read model and the index have caught up with the log.
func (e *Engine) Run(ctx context.Context, ready func()) error {
	prev := debug.SetGCPercent(startGCPercent)
	if prev < 0 || prev > startGCPercent {
		debug.SetGCPercent(prev) // GC off or a higher target: the operator's choice stands
	}
	var restore sync.Once
	restoreGC := func() {
		restore.Do(func() {
			if prev >= 0 && prev <= startGCPercent {
				debug.SetGCPercent(prev)
			}
		})
	}
	defer restoreGC()
	// Before the runner starts: where the read models will read the log
	// from (the ledger's start-up check covers it).
	models := eventlog.Start
	if e.snapshot.Dir != "" {
		models = e.readModelsStart(ctx)
	}
	g, gctx := errgroup.WithContext(ctx)
	// The read models' batches yield to the commands' writes at SQLite's
	// write gate (sqldb.Yielding): they catch up a batch later, and a
	// command no longer queues behind the batches its own append woke.
	g.Go(func() error { return e.Runner.Run(sqldb.Yielding(gctx)) })
	indexFrom := make(chan eventlog.Position, 1)
	g.Go(func() error {
		from := eventlog.Start
		if e.snapshot.Dir != "" {
			// A snapshot that does not load is logged (warn) and the whole
			// log replayed.
			if info, ok := e.Index.StartFromSnapshot(gctx, e.snapshot.Dir, e.Stores.Log); ok {
				from = info.Position
			}
		}
		indexFrom <- from
		err := e.Index.Run(gctx, e.Stores.Log)
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("access index: %w", err)
	})
	if e.snapshot.Dir != "" {
		g.Go(func() error { return e.Index.RunSnapshots(gctx, e.snapshot) })
		g.Go(func() error { return e.History.RunSnapshots(gctx) })
	}
	g.Go(func() error { return e.guardAndPublish(gctx, indexFrom, models) })
	g.Go(func() error {
		select {
		case <-gctx.Done():
			return nil
		case <-e.Index.Ready():
		}
		if err := e.Runner.WaitCaughtUp(gctx); err != nil {
			return nil
		}
		select {
		case <-gctx.Done():
			return nil
		case <-e.verified:
		}
		restoreGC()
		if ready != nil {
			ready()
		}
		return nil
	})
	return g.Wait()
}

// AfterVerified runs f once the ledger has verified the whole stored log
// (the messaging: the process manager appends expiries decided from the
// log, the relays publish it), or returns nil when ctx ends first. After a
// start from snapshots that is after ready: the start verifies only the
// log's tail, and the whole log in the background (docs/ledger.md).
func (e *Engine) AfterVerified(ctx context.Context, f func(context.Context) error) error {
	if err := e.WaitWhole(ctx); err != nil {
		return nil
	}
	return f(ctx)
}

// WaitWhole waits until the ledger has verified the whole stored log (at
// once without a ledger), or returns ctx's error.
func (e *Engine) WaitWhole(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-e.whole:
		return nil
	}
}

// LogStatus logs every projection's state.
func (e *Engine) LogStatus() {
	for _, s := range e.Runner.Status() {
		attrs := []any{"projection", s.Name, "position", s.Position.String(), "caught_up", s.CaughtUp,
			"lag", s.Lag.Round(time.Millisecond).String()}
		if s.LastError != nil {
			attrs = append(attrs, "last_error", s.LastError.Error())
		}
		e.log.Info("projection", attrs...)
	}
	st := e.Index.Stats()
	e.log.Info("access index", "position", st.Position.String(), "pairs", st.Pairs, "accounts", st.Accounts, "children", st.Children)
}
