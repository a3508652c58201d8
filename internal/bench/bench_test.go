package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/internal/datagen"
	"github.com/accessledger/accessledger/internal/dirlock"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/internal/syncbuf"
)

// TestBenchSmallEndToEnd runs accessd bench on the small data set, on SQLite
// and (when ACCESSLEDGER_TEST_POSTGRES_DSN is set) PostgreSQL, and checks
// that the JSON holds every figure of every store with sane values. It
// keeps the load tool working; the figures themselves are not judged.
func TestBenchSmallEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the load tool end to end")
	}
	if raceEnabled {
		// About 90 s of the race pass's CPU on SQLite and PostgreSQL for no
		// race the other tests do not look for: the engine it drives is
		// the one the end-to-end tests of cmd/accessd run under the
		// detector, and the load client's loop is TestLoadAgainstARunningAPI's.
		t.Skip("the load tool end to end: runs without the race detector (make test's RACE_SKIPPED)")
	}
	t.Parallel() // it checks the report's shape, not its figures: the others may run beside it
	// 92 s on a quiet 2-CPU machine under the race detector; the deadline
	// leaves room for a loaded one (it judges the report, not the speed).
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	env := map[string]string{}
	stores := []string{"sqlite"}
	if dsn := os.Getenv(testPostgresEnv); dsn != "" {
		env[testPostgresEnv] = dsn
		stores = append(stores, "postgres")
	}
	dir := t.TempDir()
	jsonFile := filepath.Join(dir, "bench.json")
	const expiries, importLines = 20, 500
	accessd := buildAccessd(t, dir)
	args := []string{"--scale", "small", "--seed", "2", "--duration", "200ms", "--expiries", fmt.Sprint(expiries),
		"--import-lines", fmt.Sprint(importLines), "--load-exec", accessd,
		"--work-dir", filepath.Join(dir, "work"), "--json", jsonFile}
	out, errOut, err := runArgs(ctx, env, args...)
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out, errOut)
	require.Contains(t, out, "measurement")
	require.Contains(t, out, "met?")
	require.Contains(t, out, "Verdict: ")

	var rep benchReport
	raw, err := os.ReadFile(jsonFile)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &rep))

	c := rep.Conditions
	require.Equal(t, runtime.NumCPU(), c.Machine.CPUs)
	require.NotEmpty(t, c.Machine.CPUModel)
	require.Equal(t, runtime.Version(), c.GoVersion)
	require.Equal(t, "small", c.Scale)
	require.EqualValues(t, 2, c.Seed)
	require.Greater(t, c.Events, int64(1000))
	require.Equal(t, "200ms", c.Duration)
	require.Empty(t, rep.Errors)
	require.Len(t, c.Stores, len(stores))
	require.Contains(t, c.Stores["sqlite"].Fsync, "synchronous=FULL")

	byName := map[string][]figure{}
	for _, f := range rep.Figures {
		byName[f.Name+"/"+f.Store] = append(byName[f.Name+"/"+f.Store], f)
	}
	one := func(t *testing.T, name, store string) figure {
		t.Helper()
		fs := byName[name+"/"+store]
		require.Len(t, fs, 1, "%s on %s", name, store)
		return fs[0]
	}
	saneLatency := func(t *testing.T, f figure) {
		t.Helper()
		l := f.Latency
		require.NotNil(t, l, f.Name)
		require.Positive(t, l.Samples, f.Name)
		require.Positive(t, l.P50, f.Name)
		require.True(t, l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max, "%s: %+v", f.Name, *l)
	}
	saneLoad := func(t *testing.T, f figure, conc int) {
		t.Helper()
		require.Equal(t, conc, f.Concurrency, f.Name)
		require.Positive(t, f.Count, f.Name)
		require.Zero(t, f.Errors, "%s c=%d: %s", f.Name, conc, f.FirstError)
		require.InDelta(t, float64(f.Count)/f.Seconds, f.PerSecond, 1e-6*f.PerSecond, f.Name)
		saneLatency(t, f)
		require.Equal(t, f.Count, f.Latency.Samples, "every operation timed: %s", f.Name)
	}

	for _, store := range stores {
		t.Run(store, func(t *testing.T) {
			if store == "postgres" {
				require.Contains(t, c.Stores[store].Fsync, "fsync=")
			}
			g := one(t, "generate", store)
			require.Equal(t, c.Events, g.Count)
			require.Positive(t, g.PerSecond)
			require.Equal(t, c.Stores[store].Fsync, g.Fsync)

			for _, model := range engine.ReadModelNames() {
				f := one(t, "rebuild."+model, store)
				require.Equal(t, c.Events, f.Count, model)
				require.Positive(t, f.PerSecond, model)
				require.NotNil(t, f.Met, "the rebuild target is every store's")
			}

			f := one(t, "index.replay", store)
			require.Equal(t, c.Events, f.Count)
			applied, ok := f.Values.get("records_applied")
			require.True(t, ok)
			require.EqualValues(t, c.Events, applied)

			f = one(t, "index.memory", store)
			pairs, _ := f.Values.get("pairs")
			perPair, _ := f.Values.get("heap_bytes_per_pair")
			require.Positive(t, pairs)
			require.Equal(t, int64(pairs), f.Count)
			require.True(t, perPair > 10 && perPair < 1<<20, "heap per pair %.0f B", perPair)
			require.NotNil(t, f.Met)
			if !*f.Met {
				require.NotNil(t, f.Explained, "a missed target is explained from the index's heap profile")
				require.Equal(t, "heap", f.Explained.Kind)
			}

			f = one(t, "bulk.import", store)
			lines, _ := f.Values.get("lines")
			require.EqualValues(t, importLines, lines)
			require.Equal(t, int64(2*importLines), f.Count, "two events a line (datagen.ImportLines)")
			require.Positive(t, f.PerSecond)
			require.NotNil(t, f.Met)

			f = one(t, "start_to_ready", store)
			require.True(t, f.Seconds > 0 && f.Seconds < 60, "%.2f s", f.Seconds)
			require.Nil(t, f.Met, "a first start replays the whole log: the goal is the start from a snapshot's")
			f = one(t, "start_to_ready.snapshot", store)
			require.True(t, f.Seconds > 0 && f.Seconds < 60, "%.2f s", f.Seconds)
			require.NotNil(t, f.Met)
			f = one(t, "snapshot.write", store)
			perPair, _ = f.Values.get("bytes_per_pair")
			require.True(t, perPair > 10 && perPair < 1<<20, "snapshot bytes per pair %.0f", perPair)
			kw, kl := one(t, "snapshot.write.kept", store), one(t, "snapshot.load.kept", store)
			require.Positive(t, kw.Count, "the warm-up kept the children, the snapshot holds them")
			require.Equal(t, kw.Count, kl.Count, "the restart restored them")

			fs := byName["check.http/"+store]
			require.Len(t, fs, 3)
			for i, conc := range []int{1, 8, 32} {
				saneLoad(t, fs[i], conc)
				require.Equal(t, conc == 8, fs[i].Met != nil)
			}
			f = one(t, "check.http.external", store)
			require.Equal(t, 8, f.Concurrency)
			require.Positive(t, f.Count)
			require.Zero(t, f.Errors, f.FirstError)
			require.NotNil(t, f.Met)
			if !*f.Met {
				require.NotNil(t, f.Explained, "a missed target is explained from the engine's profile")
				require.Equal(t, "cpu", f.Explained.Kind)
			}
			asked, ok := f.Values.get("rate_asked")
			require.True(t, ok, "the judged load runs at a constant pace")
			require.EqualValues(t, targetHTTPRate, asked)
			f = one(t, "check.http.external.closed", store)
			require.Equal(t, 8, f.Concurrency)
			require.Positive(t, f.Count)
			require.Zero(t, f.Errors, f.FirstError)
			require.Nil(t, f.Met, "the closed loop is for information")
			_, ok = f.Values.get("rate_asked")
			require.False(t, ok)

			f = one(t, "grants.http", store)
			saneLoad(t, f, 1)
			require.Equal(t, []string{kindGrant}, []string{f.ByKind[0].Kind})
			require.NotNil(t, f.Met)
			for _, q := range []string{"query.viewers", "query.children", "query.child_history_at", "query.account_history_at"} {
				saneLoad(t, one(t, q, store), 1)
			}

			f = one(t, "expiry", store)
			require.EqualValues(t, expiries, f.Count)
			require.Zero(t, f.Errors, f.FirstError)
			require.Positive(t, f.Seconds)
			fired, _ := f.Values.get("fired")
			require.GreaterOrEqual(t, fired, float64(expiries), "every deadline fired by the process manager")

			fs = byName["commands/"+store]
			require.Len(t, fs, 2)
			for i, conc := range []int{1, 8} {
				saneLoad(t, fs[i], conc)
				require.NotNil(t, fs[i].Met)
				require.Equal(t, c.Stores[store].Fsync, fs[i].Fsync)
				var kinds []string
				for _, k := range fs[i].ByKind {
					kinds = append(kinds, k.Kind)
				}
				require.Subset(t, []string{kindGrant, kindRevoke, kindPlace, kindEnd}, kinds)
				require.NotEmpty(t, kinds)
			}
		})
	}

	// The in-process check runs on each store's index; the sample triples'
	// answers (the generator's, from the domain policy) must match.
	fs := byName["check.inprocess/memory"]
	require.Len(t, fs, len(stores))
	for _, f := range fs {
		require.Zero(t, f.Errors, "sample answers differ from the index's: %s", f.FirstError)
		ns, _ := f.Values.get("ns_per_op")
		allocs, ok := f.Values.get("allocs_per_op")
		require.True(t, ok)
		require.Positive(t, ns)
		require.Zero(t, allocs, "Index.Check allocates")
		saneLatency(t, f)
	}

	// A second run reuses the cached SQLite data set.
	out, errOut, err = runArgs(ctx, nil, "--scale", "small", "--seed", "2", "--duration", "50ms",
		"--stores", "sqlite", "--only", "startup,check", "--work-dir", filepath.Join(dir, "work"), "--json", jsonFile)
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out, errOut)
	require.Contains(t, errOut, "using the cached data set")
	raw, err = os.ReadFile(jsonFile)
	require.NoError(t, err)
	rep = benchReport{}
	require.NoError(t, json.Unmarshal(raw, &rep))
	var names []string
	for _, f := range rep.Figures {
		names = append(names, f.Name)
	}
	require.Equal(t, []string{"start_to_ready", "snapshot.write", "snapshot.write.history", "snapshot.write.kept", "snapshot.load.kept",
		"start_to_ready.snapshot", "ledger.whole_after_ready", "check.inprocess"}, names)
}

func TestSummarizePercentiles(t *testing.T) {
	d := make([]time.Duration, 0, 1000)
	for i := 1000; i >= 1; i-- { // unsorted on purpose
		d = append(d, time.Duration(i)*time.Microsecond)
	}
	l := summarize(d)
	require.EqualValues(t, 1000, l.Samples)
	require.InDelta(t, 500.5, l.Mean, 1e-9)
	require.Equal(t, latency{Samples: 1000, Mean: l.Mean, P50: 500, P90: 900, P99: 990, P999: 999, Max: 1000}, l)
	require.Equal(t, latency{}, summarize(nil))
}

func TestBenchClockFiresWhenAdvancedPastADeadline(t *testing.T) {
	var c benchClock
	start := c.Now()
	due := c.At(start.Add(time.Hour))
	past := c.At(start.Add(-time.Second))
	select {
	case <-past:
	case <-time.After(10 * time.Second):
		t.Fatal("a time already reached did not fire")
	}
	select {
	case <-due:
		t.Fatal("fired an hour early")
	default:
	}
	c.Advance(2 * time.Hour)
	select {
	case at := <-due:
		require.False(t, at.Before(start.Add(time.Hour)))
	case <-time.After(10 * time.Second):
		t.Fatal("did not fire once the clock passed the deadline")
	}
	require.True(t, c.Now().Sub(start) >= 2*time.Hour)
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Empty(t, c.waiters)
}

func TestHumanNumbers(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567", -20000: "-20,000"} {
		require.Equal(t, want, human(in), "%v", in)
	}
	require.True(t, strings.HasSuffix(micros(1500), "ms"))
	require.True(t, strings.HasSuffix(micros(1.5), "µs"))
}

func TestGCDuringCountsCollections(t *testing.T) {
	d := gcDuring(func() {
		runtime.GC()
		runtime.GC()
	})
	require.GreaterOrEqual(t, d.cycles, uint32(2))
	require.Positive(t, d.pause)
	require.Positive(t, d.maxStop)
	require.LessOrEqual(t, d.maxStop, d.pause)
	v := d.values()
	cycles, ok := v.get("gc_cycles")
	require.True(t, ok)
	require.EqualValues(t, d.cycles, cycles)
}

func TestBenchReportsAStoreItCannotReach(t *testing.T) {
	t.Parallel()
	jsonFile := filepath.Join(t.TempDir(), "b.json")
	out, errOut, err := runArgs(context.Background(), nil, "--scale", "small", "--stores", "postgres",
		"--postgres", "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=5", "--json", jsonFile)
	require.Error(t, err, "stdout:\n%s\nstderr:\n%s", out, errOut)
	require.Contains(t, err.Error(), "failed: 1 (the figures measured are in")
	raw, err := os.ReadFile(jsonFile)
	require.NoError(t, err)
	var rep benchReport
	require.NoError(t, json.Unmarshal(raw, &rep))
	require.Len(t, rep.Errors, 1)
	require.True(t, strings.HasPrefix(rep.Errors[0], "postgres: run: load the data set"), rep.Errors[0])
	require.Empty(t, rep.Figures)
	require.Positive(t, rep.Conditions.Disk.Probes, "the conditions are written with the failure")
	require.True(t, strings.HasPrefix(rep.Conditions.GC, "GOGC "), "the garbage collector's policy is among the conditions: %q", rep.Conditions.GC)
}

// TestBenchDataCacheKey: a cached description is used only for the same
// format, generator version, scale and seed.
func TestBenchDataCacheKey(t *testing.T) {
	base := benchData{Format: benchDataFormat, Generator: datagen.Version, Scale: datagen.Small.Name, Seed: 7}
	for _, tc := range []struct {
		name  string
		edit  func(*benchData)
		reuse bool
	}{
		{"same", func(*benchData) {}, true},
		{"older generator", func(d *benchData) { d.Generator = datagen.Version - 1 }, false},
		{"other format", func(d *benchData) { d.Format = benchDataFormat + 1 }, false},
		{"other scale", func(d *benchData) { d.Scale = datagen.County.Name }, false},
		{"other seed", func(d *benchData) { d.Seed = 8 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := base
			tc.edit(&d)
			path := filepath.Join(t.TempDir(), "small-seed7.json")
			require.NoError(t, d.save(path))
			got, err := loadBenchData(path, datagen.Small, 7)
			require.NoError(t, err)
			if tc.reuse {
				require.Equal(t, &d, got)
			} else {
				require.Nil(t, got)
			}
		})
	}
}

// buildAccessd builds cmd/accessd into dir, for the measurement from a
// separate process.
func buildAccessd(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "accessd")
	out, err := exec.Command("go", "build", "-o", path, "github.com/accessledger/accessledger/cmd/accessd").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return path
}

// runArgs runs the bench with args as accessd bench would, the
// environment read from env; it returns standard output and error.
func runArgs(ctx context.Context, env map[string]string, args ...string) (string, string, error) {
	var cfg Config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.Register(fs)
	if err := fs.Parse(args); err != nil {
		return "", "", err
	}
	var stdout, stderr lockedBuffer
	err := Run(ctx, cfg, Env{Lookup: func(k string) (string, bool) { v, ok := env[k]; return v, ok }, Stdout: &stdout, Stderr: &stderr})
	return stdout.String(), stderr.String(), err
}

// lockedBuffer is a bytes.Buffer safe for concurrent writes.
type lockedBuffer = syncbuf.Buffer

// TestBenchRefusesAWorkDirInUse: a second bench on a --work-dir another
// holds exits at once, naming the directory, and writes nothing there.
func TestBenchRefusesAWorkDirInUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lock, err := dirlock.Acquire(dir)
	require.NoError(t, err)
	defer func() { require.NoError(t, lock.Release()) }()
	before, err := os.ReadDir(dir)
	require.NoError(t, err)
	jsonFile := filepath.Join(t.TempDir(), "b.json")
	_, _, err = runArgs(context.Background(), nil, "--scale", "small", "--stores", "sqlite", "--work-dir", dir, "--json", jsonFile)
	require.ErrorIs(t, err, ErrWorkDirInUse)
	require.Contains(t, err.Error(), "in use by another accessd bench")
	require.Contains(t, err.Error(), dir)
	after, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Equal(t, before, after, "nothing written in the directory in use")
	require.NoFileExists(t, jsonFile)
}
