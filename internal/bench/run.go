// Package bench is the load tool behind accessd bench and accessd
// generate: it generates a data set into a store, starts the engine on it
// as accessd serve does, and measures rebuilds, start-up, checks, queries,
// expiries and commands (docs/performance.md).
package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/accessledger/accessledger/adapters/keystore"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/internal/datagen"
	"github.com/accessledger/accessledger/internal/dirlock"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/internal/gcpolicy"
	"github.com/accessledger/accessledger/projections/accessindex"
)

// testPostgresEnv is the environment variable --postgres defaults to, the
// one the tests read (adapters/sqldb/sqltest).
const testPostgresEnv = "ACCESSLEDGER_TEST_POSTGRES_DSN"

// benchMeasurements are the measurements --only chooses from, in the
// order they run.
var benchMeasurements = []string{"rebuild", "bulk", "index", "startup", "check", "http", "queries", "expiry", "commands", "grants"}

// Config holds the flags of accessd bench.
type Config struct {
	scale       string
	seed        uint64
	stores      string
	postgres    string
	only        string
	duration    time.Duration
	jsonFile    string
	workDir     string
	cpuProfile  string
	memProfile  string
	traceFile   string
	expiries    int
	queryConc   string
	keep        bool
	logLevel    string
	importLines int
	loadExec    string
	kept        int
	linger      time.Duration
}

// Register adds the flags of accessd bench to fs.
func (c *Config) Register(fs *flag.FlagSet) {
	fs.StringVar(&c.scale, "scale", "county", "data set: county, nation or small")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the data set")
	fs.StringVar(&c.stores, "stores", "", "stores to measure, comma-separated: sqlite, postgres "+
		"(default: sqlite, and postgres when --postgres is set)")
	fs.StringVar(&c.postgres, "postgres", "", "PostgreSQL database the bench creates a schema in (default: $"+testPostgresEnv+")")
	fs.StringVar(&c.only, "only", "", "measurements to run, comma-separated: "+strings.Join(benchMeasurements, ", ")+" (default: all)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured window of each load (after a warm-up of a quarter of it, at most 1s)")
	fs.StringVar(&c.jsonFile, "json", "bench.json", "file the figures are written to, as JSON")
	fs.StringVar(&c.workDir, "work-dir", "", "directory of the cached SQLite data sets, kept between runs (default: a temporary directory, removed)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", autoProfile, "write a CPU profile of each measurement to FILE-<store>-<measurement>.pprof; "+
		"a missed target is explained from its profile (auto: bench-profiles/cpu.pprof beside --json; none: no profiles)")
	fs.StringVar(&c.memProfile, "memprofile", "", "write a heap profile of the engine, once ready, to FILE-<store>.pprof")
	fs.StringVar(&c.traceFile, "trace", "", "write a runtime execution trace of each measurement to FILE-<store>-<measurement>.trace "+
		"(go tool trace; -pprof=sched, sync or syscall shows where latency waits)")
	fs.IntVar(&c.expiries, "expiries", targetExpiries, "deadlines falling due at once in the expiry measurement")
	fs.IntVar(&c.kept, "kept-children", commands.DefaultKeptChildren, "children whose state the command service keeps between commands (commands.Config.KeptChildren)")
	fs.DurationVar(&c.linger, "projection-linger", engine.DefaultProjectionLinger, "how long the read models wait for more events before a write (accessd serve's --projection-linger)")
	fs.StringVar(&c.queryConc, "query-concurrency", "1", "concurrency levels of the list and history queries, comma-separated")
	fs.BoolVar(&c.keep, "keep", false, "keep the PostgreSQL schema of the run (its name is printed)")
	fs.StringVar(&c.logLevel, "log-level", "warn", "log level of the engine: debug, info, warn or error")
	fs.IntVar(&c.importLines, "import-lines", 0, "lines of the file the bulk measurement imports (default: 100,000 for county and nation, 5,000 for small)")
	fs.StringVar(&c.loadExec, "load-exec", "", "accessd binary whose load command measures HTTP checks from a separate process "+
		"(default: this program when it is accessd; \"none\": skip that measurement)")
}

// autoProfile is --cpuprofile's default: bench-profiles/cpu.pprof in the
// directory of --json, one file per measurement.
const autoProfile = "auto"

// bencher runs one accessd bench.
type bencher struct {
	cfg       Config
	sc        datagen.Scale
	only      map[string]bool
	queryConc []int
	workDir   string
	log       *slog.Logger
	// progress receives progress lines and the figures as they come
	// (standard error); the table goes to standard output.
	progress io.Writer
	report   *benchReport
	fsync    map[string]string
	// lastProfile is the CPU profile of the measurement that ran last,
	// until its figures are added: a missed target is explained from it.
	lastProfile string
}

// Env is what a run reads and writes besides its flags.
type Env struct {
	// Lookup reads the environment ($ACCESSLEDGER_TEST_POSTGRES_DSN).
	Lookup func(string) (string, bool)
	// Stdout receives the table; Stderr the progress and the logs.
	Stdout, Stderr io.Writer
}

// ErrWorkDirInUse is returned (wrapped) by Run when another bench holds
// the --work-dir.
var ErrWorkDirInUse = errors.New("bench: work directory in use")

// Run measures the engine on a generated data set and prints a table of
// the figures with the Performance issue's targets; it writes the same
// figures, with their conditions, as JSON. Flag errors wrap
// engine.ErrUsage.
func Run(ctx context.Context, cfg Config, env Env) error {
	b, err := newBencher(cfg, env)
	if err != nil {
		return err
	}
	if b.workDir == "" {
		dir, err := os.MkdirTemp("", "accessd-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		b.workDir = dir
	} else if err := os.MkdirAll(b.workDir, 0o700); err != nil {
		return fmt.Errorf("create --work-dir: %w", err)
	}
	// One bench per work directory: two would generate, rebuild and remove
	// the same cached files under each other (a run failed with "no such
	// table: events" when another removed its store).
	lock, err := dirlock.Acquire(b.workDir)
	if errors.Is(err, dirlock.ErrHeld) {
		return fmt.Errorf("%w: --work-dir %s is in use by another accessd bench (%s in it is locked): wait for it to end, or give this one another --work-dir",
			ErrWorkDirInUse, b.workDir, dirlock.FileName)
	}
	if err != nil {
		return err
	}
	defer func() { _ = lock.Release() }()
	// The engine's garbage collector policy, as accessd serve sets it.
	gc, err := gcpolicy.Apply(gcpolicy.System)
	if err != nil {
		b.log.Warn("bench: no memory limit for the garbage collector", "error", err)
	}
	b.report.Conditions.GC = gc.String()
	fmt.Fprintf(b.progress, "bench: garbage collector: %s\n", gc)
	disk, err := probeFsync(b.workDir, 200)
	if err != nil {
		return fmt.Errorf("probe the disk: %w", err)
	}
	b.report.Conditions.Disk = disk
	fmt.Fprintf(b.progress, "bench: disk: write 4 KiB + fsync p50 %.2f ms, p99 %.2f ms\n", disk.FsyncP50Ms, disk.FsyncP99Ms)
	for _, store := range strings.Split(b.cfg.stores, ",") {
		if err := b.runStore(ctx, store); err != nil {
			b.fail(store, "run", err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	fmt.Fprintln(env.Stdout)
	b.report.printTable(env.Stdout)
	if err := b.report.writeJSON(cfg.jsonFile); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "\nfigures written to %s\n", cfg.jsonFile)
	if n := len(b.report.Errors); n > 0 {
		return fmt.Errorf("failed: %d (the figures measured are in %s): %s", n, cfg.jsonFile, strings.Join(b.report.Errors, "; "))
	}
	return nil
}

// newBencher checks the flags (and fills their defaults) and returns the
// bencher.
func newBencher(cfg Config, env Env) (*bencher, error) {
	sc, err := datagen.ScaleByName(cfg.scale)
	if err != nil {
		return nil, fmt.Errorf("%w: --scale: %v", engine.ErrUsage, err)
	}
	if cfg.postgres == "" {
		if env.Lookup != nil {
			cfg.postgres, _ = env.Lookup(testPostgresEnv)
		}
	}
	if cfg.stores == "" {
		cfg.stores = "sqlite"
		if cfg.postgres != "" {
			cfg.stores += ",postgres"
		}
	}
	for _, s := range strings.Split(cfg.stores, ",") {
		switch s {
		case "sqlite":
		case "postgres":
			if cfg.postgres == "" {
				return nil, fmt.Errorf("%w: --stores postgres needs --postgres URL (or $%s)", engine.ErrUsage, testPostgresEnv)
			}
		default:
			return nil, fmt.Errorf("%w: --stores: unknown store %q: want sqlite or postgres", engine.ErrUsage, s)
		}
	}
	only := map[string]bool{}
	if cfg.only != "" {
		for _, m := range strings.Split(cfg.only, ",") {
			if !slices.Contains(benchMeasurements, m) {
				return nil, fmt.Errorf("%w: --only: unknown measurement %q: want %s", engine.ErrUsage, m, strings.Join(benchMeasurements, ", "))
			}
			only[m] = true
		}
	}
	if cfg.duration <= 0 {
		return nil, fmt.Errorf("%w: --duration %s: want more than 0", engine.ErrUsage, cfg.duration)
	}
	if cfg.expiries < 1 {
		return nil, fmt.Errorf("%w: --expiries %d: want at least 1", engine.ErrUsage, cfg.expiries)
	}
	if cfg.kept < 1 {
		return nil, fmt.Errorf("%w: --kept-children %d: want at least 1", engine.ErrUsage, cfg.kept)
	}
	if cfg.linger < 0 || cfg.linger > time.Second {
		return nil, fmt.Errorf("%w: --projection-linger %s: want 0 to 1s", engine.ErrUsage, cfg.linger)
	}
	var queryConc []int
	for _, s := range strings.Split(cfg.queryConc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%w: --query-concurrency %q: want positive numbers", engine.ErrUsage, cfg.queryConc)
		}
		queryConc = append(queryConc, n)
	}
	if cfg.jsonFile == "" {
		return nil, fmt.Errorf("%w: --json is empty", engine.ErrUsage)
	}
	switch cfg.cpuProfile {
	case autoProfile:
		cfg.cpuProfile = filepath.Join(filepath.Dir(cfg.jsonFile), "bench-profiles", "cpu.pprof")
	case "none":
		cfg.cpuProfile = ""
	}
	if cfg.importLines < 0 {
		return nil, fmt.Errorf("%w: --import-lines %d: want 0 (the scale's default) or more", engine.ErrUsage, cfg.importLines)
	}
	if cfg.importLines == 0 {
		cfg.importLines = 100_000
		if sc.Name == "small" {
			cfg.importLines = 5_000
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", engine.ErrUsage, cfg.logLevel)
	}
	return &bencher{cfg: cfg, sc: sc, only: only, queryConc: queryConc, workDir: cfg.workDir,
		log: slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level})), progress: env.Stderr, fsync: map[string]string{},
		report: &benchReport{Conditions: benchConditions{Machine: machine(), GoVersion: runtime.Version(),
			Scale: sc.Name, Seed: cfg.seed, Duration: cfg.duration.String(), Started: time.Now().UTC().Truncate(time.Second),
			Stores: map[string]storeInfo{},
			Notes: []string{
				"the load generator, the HTTP server and the engine share this machine's CPUs",
				"commands run through commands.Service (as serve wires it) without HTTP; checks and queries through the HTTP API",
				"the relays of a long-running engine are at the head of the log: the bench starts them there",
			}}}}, nil
}

// want reports whether measurement m is to run.
func (b *bencher) want(m string) bool { return len(b.only) == 0 || b.only[m] }

// add records a figure and prints it as it comes.
func (b *bencher) add(f figure) {
	if f.Met != nil && !*f.Met && f.Explained == nil {
		if f.Profile == "" {
			f.Profile = b.lastProfile
		}
		if f.Profile != "" {
			e, err := explainProfile(f.Profile)
			if err != nil {
				b.log.Warn("bench: explain a missed target", "measurement", f.Name, "err", err)
			}
			f.Explained = e
		}
	}
	b.report.Figures = append(b.report.Figures, f)
	met := ""
	if f.Met != nil {
		met = map[bool]string{true: "  [target met]", false: "  [target MISSED: " + f.Target + "]"}[*f.Met]
	}
	conc := ""
	if f.Concurrency > 1 {
		conc = fmt.Sprintf(" c=%d", f.Concurrency)
	}
	fmt.Fprintf(b.progress, "bench: %s %s%s: %s%s\n", f.Name, f.Store, conc, f.text(), met)
	if f.FirstError != "" {
		fmt.Fprintf(b.progress, "bench:   first error: %s\n", f.FirstError)
	}
	if f.Explained != nil {
		for _, l := range f.Explained.lines("bench:   ") {
			fmt.Fprintln(b.progress, l)
		}
	}
}

// fail records a measurement that failed; the run goes on.
func (b *bencher) fail(store, what string, err error) {
	msg := fmt.Sprintf("%s: %s: %v", store, what, err)
	b.report.Errors = append(b.report.Errors, msg)
	fmt.Fprintf(b.progress, "bench: FAILED %s\n", msg)
}

// profiled runs f, under a CPU profile when --cpuprofile is given and an
// execution trace when --trace is.
func (b *bencher) profiled(what, store string, f func() error) error {
	b.lastProfile = ""
	if b.cfg.traceFile != "" {
		inner := f
		f = func() error { return b.traced(what, store, inner) }
	}
	if b.cfg.cpuProfile == "" {
		return f()
	}
	path := b.profilePath("cpu", store, what)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b.lastProfile = path
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := pprof.StartCPUProfile(out); err != nil {
		return err
	}
	defer pprof.StopCPUProfile()
	return f()
}

// traced runs f under a runtime execution trace written beside --trace,
// named for the store and measurement.
func (b *bencher) traced(what, store string, f func() error) error {
	ext := filepath.Ext(b.cfg.traceFile)
	path := strings.TrimSuffix(b.cfg.traceFile, ext) + "-" + store + "-" + what + ext
	if ext == "" {
		path += ".trace"
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := trace.Start(out); err != nil {
		return err
	}
	defer trace.Stop()
	return f()
}

// profilePath is the file of the profile of kind ("cpu" or "heap") of a
// measurement: beside --cpuprofile, named for the store and measurement.
func (b *bencher) profilePath(kind, store, what string) string {
	base := b.cfg.cpuProfile
	if kind == "heap" {
		base = filepath.Join(filepath.Dir(base), "heap.pprof")
	}
	ext := filepath.Ext(base)
	path := strings.TrimSuffix(base, ext) + "-" + store + "-" + what + ext
	if ext == "" {
		path += ".pprof"
	}
	return path
}

// heapProfile writes a heap profile when --memprofile is given.
func (b *bencher) heapProfile(store string) error {
	if b.cfg.memProfile == "" {
		return nil
	}
	ext := filepath.Ext(b.cfg.memProfile)
	if ext == "" {
		ext = ".pprof"
	}
	return writeHeapProfile(strings.TrimSuffix(b.cfg.memProfile, filepath.Ext(b.cfg.memProfile)) + "-" + store + ext)
}

// writeHeapProfile writes a heap profile (after a collection) to path.
func writeHeapProfile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(out); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// runStore measures one store: it loads the data set, then runs the
// measurements asked for.
func (b *bencher) runStore(ctx context.Context, store string) error {
	var ds *dataset
	var err error
	if store == "postgres" {
		ds, err = b.postgresData(ctx)
	} else {
		ds, err = b.sqliteData(ctx)
	}
	if err != nil {
		return fmt.Errorf("load the data set: %w", err)
	}
	defer ds.cleanup()
	b.report.Conditions.Events = ds.data.Summary.Events
	if err := b.storeFacts(ctx, ds); err != nil {
		return err
	}
	if b.want("rebuild") && !ds.built {
		if err := b.rebuildCopy(ctx, ds); err != nil {
			b.fail(store, "rebuild", err)
		}
	}
	if b.want("bulk") && ctx.Err() == nil {
		if err := b.bulkImport(ctx, store); err != nil {
			b.fail(store, "bulk", err)
		}
	}
	if b.want("index") && ctx.Err() == nil {
		if err := b.indexReplay(ctx, ds); err != nil {
			b.fail(store, "index", err)
		}
	}
	engineWanted := false
	for _, m := range []string{"startup", "check", "http", "queries", "expiry", "commands", "grants"} {
		engineWanted = engineWanted || b.want(m)
	}
	if !engineWanted || ctx.Err() != nil {
		return ctx.Err()
	}
	var be *benchEngine
	var took time.Duration
	err = b.profiled("startup", store, func() error {
		var err error
		be, took, err = b.startEngine(ctx, ds)
		return err
	})
	if err != nil {
		return fmt.Errorf("start the engine: %w", err)
	}
	f := figure{Name: "start_to_ready", Store: store, Fsync: b.fsync[store], Concurrency: 1, Seconds: took.Seconds(),
		Count: ds.data.Summary.Events, Unit: "events", PerSecond: float64(ds.data.Summary.Events) / took.Seconds(),
		Note: "engine.Open and Run until the read models and the index have caught up, as serve (read models already built)"}
	// A first start replays the whole log (no snapshot yet): the goal is
	// judged on start_to_ready.snapshot.
	b.add(f)
	if (b.want("expiry") || b.want("commands") || b.want("grants")) && ctx.Err() == nil {
		if err := b.childKeys(ctx, be); err != nil {
			return fmt.Errorf("the children's keys: %w", err)
		}
	}
	if b.want("startup") && ctx.Err() == nil {
		// The same start from a snapshot of the index at the head.
		next, err := b.startFromSnapshot(ctx, ds, be, store)
		if err != nil {
			b.fail(store, "start_to_ready.snapshot", err)
		}
		if next != nil {
			be = next
		}
	}
	defer func() {
		if err := be.stop(); err != nil {
			b.fail(store, "stop the engine", err)
		}
	}()
	if err := b.heapProfile(store); err != nil {
		b.fail(store, "heap profile", err)
	}
	var pairs []checkPair
	if b.want("check") || b.want("http") || b.want("queries") {
		pairs = checkPairs(be.e.Index, ds.data, time.Now())
	}
	if b.want("check") && ctx.Err() == nil {
		b.checkInProcess(be.e.Index, pairs, store)
	}
	if b.want("http") && ctx.Err() == nil {
		b.httpChecks(ctx, be, pairs, store)
		if err := b.externalChecks(ctx, be, store); err != nil {
			b.fail(store, "http from a separate process", err)
		}
	}
	if b.want("queries") && ctx.Err() == nil {
		b.queries(ctx, be, pairs, store)
	}
	// The expiry measurement moves the commands' clock on by the grace
	// period; the command mix runs after it, so that the deadlines its
	// placement ends set never fall due during the run.
	if b.want("expiry") && ctx.Err() == nil {
		if err := b.expiries(ctx, be, store, b.cfg.expiries); err != nil {
			b.fail(store, "expiry", err)
		}
	}
	if b.want("commands") && ctx.Err() == nil {
		if err := b.commandMix(ctx, be, store); err != nil {
			b.fail(store, "commands", err)
		}
	}
	// Last: its grants stay in the store.
	if b.want("grants") && ctx.Err() == nil {
		if err := b.grantsOverHTTP(ctx, be, store); err != nil {
			b.fail(store, "grants", err)
		}
	}
	return ctx.Err()
}

// storeFacts records the store's URL and durability settings.
func (b *bencher) storeFacts(ctx context.Context, ds *dataset) error {
	db, err := sqldb.Open(ctx, ds.url)
	if err != nil {
		return err
	}
	defer db.Close()
	var fsync string
	if db.IsSQLite() {
		var mode, journal string
		if err := db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&mode); err != nil {
			return err
		}
		if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&journal); err != nil {
			return err
		}
		names := map[string]string{"0": "OFF", "1": "NORMAL", "2": "FULL", "3": "EXTRA"}
		fsync = fmt.Sprintf("synchronous=%s, journal_mode=%s", names[mode], journal)
	} else {
		var on, commit string
		if err := db.QueryRowContext(ctx, "SHOW fsync").Scan(&on); err != nil {
			return err
		}
		if err := db.QueryRowContext(ctx, "SHOW synchronous_commit").Scan(&commit); err != nil {
			return err
		}
		fsync = fmt.Sprintf("fsync=%s, synchronous_commit=%s", on, commit)
	}
	b.fsync[ds.store] = fsync
	b.report.Conditions.Stores[ds.store] = storeInfo{URL: redactURL(ds.url), Fsync: fsync}
	for i := range b.report.Figures {
		if f := &b.report.Figures[i]; f.Store == ds.store && f.Fsync == "" && f.Name != "index.memory" {
			f.Fsync = fsync
		}
	}
	return nil
}

// startFromSnapshot writes a snapshot of be's index (at the head: figure
// snapshot.write, with its size per pair) and of its access history's fold
// (figure snapshot.write.history) into a directory of its own (not
// the data set's cache), stops be, and starts the engine again from the
// snapshot (figure start_to_ready.snapshot). It returns the new engine,
// or nil (be still running) when the snapshot could not be written, or
// when the new engine did not start (be then stopped).
func (b *bencher) startFromSnapshot(ctx context.Context, ds *dataset, be *benchEngine, store string) (*benchEngine, error) {
	dir, err := os.MkdirTemp("", "accessbench-snapshot-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	info, err := be.e.Index.WriteSnapshot(ctx, dir)
	if err != nil {
		return nil, err
	}
	w := figure{Name: "snapshot.write", Store: store, Concurrency: 1, Seconds: info.Elapsed.Seconds(), Count: int64(info.Pairs),
		Unit: "pairs", PerSecond: float64(info.Pairs) / info.Elapsed.Seconds(),
		Note: "accessindex.WriteSnapshot of the engine's index at the head (encode, write, fsync, rename); capture_ms: the applier held while the state is copied"}
	w.Values = append(w.Values, value{Name: "bytes", Value: float64(info.Bytes)},
		value{Name: "bytes_per_pair", Value: float64(info.Bytes) / float64(max(info.Pairs, 1))},
		value{Name: "capture_ms", Value: float64(info.Capture.Microseconds()) / 1000})
	b.add(w)
	hinfo, err := be.e.History.WriteSnapshot(ctx, dir)
	if err != nil {
		return nil, err
	}
	hw := figure{Name: "snapshot.write.history", Store: store, Concurrency: 1, Seconds: hinfo.Elapsed.Seconds(), Count: int64(hinfo.Pairs),
		Unit: "pairs", PerSecond: float64(hinfo.Pairs) / max(hinfo.Elapsed.Seconds(), 1e-9),
		Note: "accesshistory.WriteSnapshot of the access history's fold at the head (encode, write, fsync, rename); capture_ms: the fold held while it is copied"}
	hw.Values = append(hw.Values, value{Name: "bytes", Value: float64(hinfo.Bytes)},
		value{Name: "capture_ms", Value: float64(hinfo.Capture.Microseconds()) / 1000})
	b.add(hw)
	// The command service's kept state, once the warm-up from the log
	// has kept the children.
	select {
	case <-be.warmDone:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	kinfo, err := be.cmds.WriteKeptSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	kw := figure{Name: "snapshot.write.kept", Store: store, Concurrency: 1, Seconds: kinfo.Elapsed.Seconds(), Count: int64(kinfo.Children),
		Unit: "children", PerSecond: float64(kinfo.Children) / max(kinfo.Elapsed.Seconds(), 1e-9),
		Note: "commands.Service.WriteKeptSnapshot of the children the warm-up kept (encode, write, fsync, rename); capture_ms: the caches held while their entries are copied"}
	kw.Values = append(kw.Values, value{Name: "bytes", Value: float64(kinfo.Bytes)},
		value{Name: "accounts", Value: float64(kinfo.Accounts)},
		value{Name: "capture_ms", Value: float64(kinfo.Capture.Microseconds()) / 1000})
	b.add(kw)
	if err := be.stop(); err != nil {
		return nil, fmt.Errorf("stop the engine: %w", err)
	}
	// Every and Interval large: no snapshot is written while measuring.
	var next *benchEngine
	var took time.Duration
	err = b.profiled("startup-snapshot", store, func() error {
		var err error
		next, took, err = b.startEngineWith(ctx, ds, accessindex.SnapshotConfig{Dir: dir, Every: 1 << 62, Interval: 24 * time.Hour})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("start the engine from the snapshot: %w", err)
	}
	kl := figure{Name: "snapshot.load.kept", Store: store, Concurrency: 1, Seconds: next.kept.Elapsed.Seconds(), Count: int64(next.kept.Children),
		Unit: "children", PerSecond: float64(next.kept.Children) / max(next.kept.Elapsed.Seconds(), 1e-9),
		Note: "commands.Service.StartFromKeptSnapshot at the restart (read, decode, check against the log, restore; before the engine runs)"}
	kl.Values = append(kl.Values, value{Name: "bytes", Value: float64(next.kept.Bytes)}, value{Name: "accounts", Value: float64(next.kept.Accounts)})
	b.add(kl)
	f := figure{Name: "start_to_ready.snapshot", Store: store, Fsync: b.fsync[store], Concurrency: 1, Seconds: took.Seconds(),
		Count: ds.data.Summary.Events, Unit: "events", PerSecond: float64(ds.data.Summary.Events) / took.Seconds(),
		Note: "as start_to_ready, the access index and the access history's fold loaded from their snapshots at the head (no tail); the ledger checks the log's tail before ready"}
	f.met(fmt.Sprintf("< %.0f s", targetStartSeconds), took.Seconds() < targetStartSeconds)
	b.add(f)
	// The ledger verified the log's tail before ready; the whole log is
	// re-hashed in the background, and the commands wait for it.
	started := time.Now()
	if err := next.e.WaitWhole(ctx); err != nil {
		return next, err
	}
	wf := figure{Name: "ledger.whole_after_ready", Store: store, Concurrency: 1, Seconds: time.Since(started).Seconds(),
		Count: ds.data.Summary.Events, Unit: "events", PerSecond: float64(ds.data.Summary.Events) / max(time.Since(started).Seconds(), 1e-9),
		Note: "after start_to_ready.snapshot: until the ledger's background check of the whole stored log has passed (commands and reads of the log's streams wait for it)"}
	b.add(wf)
	return next, nil
}

// childKeys gives every sampled child its data key (R22), as the child's
// registration through the API, or an import, would have made it: the
// generator writes the data set's events unsealed, straight into the log,
// so without this the first command on each child in a measurement would
// also create and store its key (a write with its own fsync, and two
// reads), which no child registered through the API ever pays at a grant.
// Not measured; the keys live in the run's copy of the data set.
func (b *bencher) childKeys(ctx context.Context, be *benchEngine) error {
	subjects := make([]keystore.Subject, len(be.data.Children))
	for i, c := range be.data.Children {
		subjects[i] = keystore.ChildSubject(c.ID)
	}
	start := time.Now()
	if _, err := be.e.Stores.Keys.KeyAll(ctx, subjects); err != nil {
		return err
	}
	fmt.Fprintf(b.progress, "bench: the %d sampled children's data keys made in %s (not measured)\n", len(subjects), time.Since(start).Round(time.Millisecond))
	return nil
}
