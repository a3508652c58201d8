package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// benchReport is what accessd bench writes to --json: the conditions of the
// run and every figure measured.
type benchReport struct {
	Conditions benchConditions `json:"conditions"`
	Figures    []figure        `json:"figures"`
	// Errors lists the measurements that failed (the others were kept).
	Errors []string `json:"errors,omitempty"`
}

// benchConditions are the conditions every figure was measured in.
type benchConditions struct {
	Machine   machineInfo          `json:"machine"`
	GoVersion string               `json:"go_version"`
	Scale     string               `json:"scale"`
	Seed      uint64               `json:"seed"`
	Events    int64                `json:"events"`
	Duration  string               `json:"duration"` // of each load measurement
	Started   time.Time            `json:"started"`
	Stores    map[string]storeInfo `json:"stores"`
	// Disk is the fsync latency of the work directory's file system (the
	// SQLite files'), measured at the start of the run.
	Disk diskInfo `json:"disk"`
	// GC is the garbage collector's policy of the process, the engine's
	// (gcpolicy: accessd serve applies the same).
	GC string `json:"gc"`
	// Server is the URL accessd load measured (no data set, no store of
	// its own).
	Server string   `json:"server,omitempty"`
	Notes  []string `json:"notes"`
}

// diskInfo is the latency of writing 4 KiB and fsyncing it, the cost every
// commit with fsync pays at least once.
type diskInfo struct {
	Path        string  `json:"path"`
	Probes      int     `json:"probes"`
	FsyncP50Ms  float64 `json:"fsync_p50_ms"`
	FsyncP99Ms  float64 `json:"fsync_p99_ms"`
	FsyncMeanMs float64 `json:"fsync_mean_ms"`
}

// probeFsync writes and fsyncs 4 KiB n times in a file in dir and returns
// the latencies.
func probeFsync(dir string, n int) (diskInfo, error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return diskInfo{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, 4096)
	lat := make([]time.Duration, 0, n)
	for i := range n {
		t0 := time.Now()
		if _, err := f.WriteAt(block, int64(i%64)*4096); err != nil {
			return diskInfo{}, err
		}
		if err := f.Sync(); err != nil {
			return diskInfo{}, err
		}
		lat = append(lat, time.Since(t0))
	}
	l := summarize(lat)
	return diskInfo{Path: dir, Probes: n, FsyncP50Ms: l.P50 / 1000, FsyncP99Ms: l.P99 / 1000, FsyncMeanMs: l.Mean / 1000}, nil
}

// machineInfo describes the machine.
type machineInfo struct {
	CPUs     int    `json:"cpus"`
	GOOS     string `json:"goos"`
	GOARCH   string `json:"goarch"`
	CPUModel string `json:"cpu_model"`
}

// storeInfo describes a store a run measured.
type storeInfo struct {
	URL   string `json:"url"` // without secrets
	Fsync string `json:"fsync"`
}

// figure is one measured figure.
type figure struct {
	// Name is the measurement: commands, rebuild.<read model>,
	// index.replay, check.inprocess, check.http, query.<name>, expiry,
	// start_to_ready, generate.
	Name string `json:"name"`
	// Store is sqlite, postgres, or memory for the in-process measurements
	// on the access index.
	Store       string  `json:"store"`
	Fsync       string  `json:"fsync,omitempty"`
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"`
	// Count is how many operations (Unit) the measurement made; Errors how
	// many of them failed.
	Count  int64  `json:"count"`
	Errors int64  `json:"errors"`
	Unit   string `json:"unit"`
	// PerSecond is Count/Seconds.
	PerSecond float64   `json:"per_second"`
	Latency   *latency  `json:"latency,omitempty"`
	ByKind    []byKind  `json:"by_kind,omitempty"`
	Values    valueList `json:"values,omitempty"`
	// FirstError is the first failure's message, if any failed.
	FirstError string `json:"first_error,omitempty"`
	Target     string `json:"target,omitempty"`
	Met        *bool  `json:"met,omitempty"`
	Note       string `json:"note,omitempty"`
	// Profile is the profile of the measurement when its target was
	// missed, and Explained what it says.
	Profile   string       `json:"profile,omitempty"`
	Explained *explanation `json:"explanation,omitempty"`
}

// byKind is one kind's share of a measurement (one command of the mix).
type byKind struct {
	Kind    string  `json:"kind"`
	Count   int64   `json:"count"`
	Errors  int64   `json:"errors"`
	Latency latency `json:"latency"`
}

// value is one named figure of a measurement besides the standard ones.
type value struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

// valueList is a measurement's other figures, in the order measured.
type valueList []value

func (v valueList) get(name string) (float64, bool) {
	for _, x := range v {
		if x.Name == name {
			return x.Value, true
		}
	}
	return 0, false
}

// latency summarizes latencies, in microseconds.
type latency struct {
	Samples int64   `json:"samples"`
	Mean    float64 `json:"mean_us"`
	P50     float64 `json:"p50_us"`
	P90     float64 `json:"p90_us"`
	P99     float64 `json:"p99_us"`
	P999    float64 `json:"p999_us"`
	Max     float64 `json:"max_us"`
}

// summarize sorts d and returns its percentiles (nearest rank).
func summarize(d []time.Duration) latency {
	if len(d) == 0 {
		return latency{}
	}
	slices.Sort(d)
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	us := func(x time.Duration) float64 { return float64(x) / float64(time.Microsecond) }
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(d))+0.999999) - 1
		return d[min(max(i, 0), len(d)-1)]
	}
	return latency{Samples: int64(len(d)), Mean: us(sum) / float64(len(d)), P50: us(rank(0.50)), P90: us(rank(0.90)),
		P99: us(rank(0.99)), P999: us(rank(0.999)), Max: us(d[len(d)-1])}
}

// met records whether a target is met.
func (f *figure) met(target string, ok bool) {
	f.Target, f.Met = target, &ok
}

// machine describes this machine.
func machine() machineInfo {
	return machineInfo{CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUModel: cpuModel()}
}

// cpuModel reads the CPU's model name from /proc/cpuinfo ("unknown"
// elsewhere).
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// writeJSON writes the report to path.
func (r *benchReport) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// printTable prints the figures as a table with the targets.
func (r *benchReport) printTable(w io.Writer) {
	c := r.Conditions
	if c.Server != "" {
		fmt.Fprintf(w, "accessd load: server %s; this client: %d CPUs (%s), %s/%s, %s; %s per load measurement\n",
			c.Server, c.Machine.CPUs, c.Machine.CPUModel, c.Machine.GOOS, c.Machine.GOARCH, c.GoVersion, c.Duration)
	} else {
		fmt.Fprintf(w, "accessd bench: scale %s, seed %d, %d events; %d CPUs (%s), %s/%s, %s; %s per load measurement\n",
			c.Scale, c.Seed, c.Events, c.Machine.CPUs, c.Machine.CPUModel, c.Machine.GOOS, c.Machine.GOARCH, c.GoVersion, c.Duration)
	}
	if c.Server != "" {
		for _, n := range c.Notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	if c.Disk.Probes > 0 {
		fmt.Fprintf(w, "  disk: write 4 KiB + fsync p50 %.2f ms, p99 %.2f ms (%s)\n", c.Disk.FsyncP50Ms, c.Disk.FsyncP99Ms, c.Disk.Path)
	}
	for _, name := range sortedKeys(c.Stores) {
		s := c.Stores[name]
		fmt.Fprintf(w, "  %s: %s, fsync: %s\n", name, s.URL, s.Fsync)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "measurement\tstore\tconc\tfigure\ttarget\tmet?\t")
	for _, f := range r.Figures {
		conc := "-"
		if f.Concurrency > 0 {
			conc = fmt.Sprint(f.Concurrency)
		}
		met := "-"
		if f.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*f.Met]
		}
		target := f.Target
		if target == "" {
			target = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", f.Name, f.Store, conc, f.text(), target, met)
	}
	_ = tw.Flush()
	r.printVerdict(w)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "FAILED: %s\n", e)
	}
}

// text is the figure's cell in the table.
func (f figure) text() string {
	var parts []string
	switch f.Name {
	case "check.inprocess":
		ns, _ := f.Values.get("ns_per_op")
		allocs, _ := f.Values.get("allocs_per_op")
		parts = append(parts, fmt.Sprintf("%.0f ns/op, %.0f allocs/op", ns, allocs))
	case "index.memory":
		b, _ := f.Values.get("heap_bytes_per_pair")
		pairs, _ := f.Values.get("pairs")
		mb, _ := f.Values.get("heap_mib")
		parts = append(parts, fmt.Sprintf("%.0f B/pair (%.0f pairs, %.0f MiB)", b, pairs, mb))
	case "start_to_ready", "start_to_ready.snapshot", "ledger.whole_after_ready":
		parts = append(parts, fmt.Sprintf("%.2f s", f.Seconds))
	case "snapshot.write":
		bytes, _ := f.Values.get("bytes")
		perPair, _ := f.Values.get("bytes_per_pair")
		capture, _ := f.Values.get("capture_ms")
		parts = append(parts, fmt.Sprintf("%.2f s, %.0f bytes (%.0f B/pair), applier held %.0f ms", f.Seconds, bytes, perPair, capture))
	case "snapshot.write.history":
		bytes, _ := f.Values.get("bytes")
		capture, _ := f.Values.get("capture_ms")
		parts = append(parts, fmt.Sprintf("%.2f s, %.0f bytes, fold held %.0f ms", f.Seconds, bytes, capture))
	case "snapshot.write.kept", "snapshot.load.kept":
		bytes, _ := f.Values.get("bytes")
		parts = append(parts, fmt.Sprintf("%d children in %.3f s, %.0f bytes", f.Count, f.Seconds, bytes))
	case "expiry":
		parts = append(parts, fmt.Sprintf("%d expiries in %.2f s (%s/s)", f.Count, f.Seconds, human(f.PerSecond)))
	default:
		if f.PerSecond > 0 {
			parts = append(parts, fmt.Sprintf("%s %s/s", human(f.PerSecond), f.Unit))
		}
	}
	if l := f.Latency; l != nil && l.Samples > 0 {
		if f.Name == "check.inprocess" {
			parts = append(parts, fmt.Sprintf("p50 %s p99 %s", micros(l.P50), micros(l.P99)))
		} else {
			parts = append(parts, fmt.Sprintf("p50 %s p90 %s p99 %s p99.9 %s", micros(l.P50), micros(l.P90), micros(l.P99), micros(l.P999)))
		}
	}
	if f.Errors > 0 {
		parts = append(parts, fmt.Sprintf("%d errors", f.Errors))
	}
	return strings.Join(parts, "; ")
}

// human prints n with thousands separators, no decimals.
func human(n float64) string {
	s := fmt.Sprintf("%.0f", n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// micros prints a latency given in microseconds with a fitting unit.
func micros(us float64) string {
	switch {
	case us < 10:
		return fmt.Sprintf("%.2fµs", us)
	case us < 1000:
		return fmt.Sprintf("%.0fµs", us)
	default:
		return fmt.Sprintf("%.2fms", us/1000)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// goals are the Performance issue's goals, by the figure that measures
// each: the verdict names those a run did not measure.
var goals = []struct{ figure, goal string }{
	{"start_to_ready.snapshot", "start to ready < 2 s (from snapshots)"},
	{"expiry", "10,000 expiries falling due at once in < 5 s"},
	{"rebuild.", "rebuild of every SQL read model ≥ 150,000 events/s"},
	{"commands", "command p99 < 10 ms with the whole engine, fsync on"},
	{"check.inprocess", "check in process p99 < 2 µs, 0 allocs"},
	{"check.http", "HTTP checks > 20,000/s at concurrency 8"},
	{"check.http.external", "HTTP check p99 < 1 ms at 20,000 checks/s from 8 connections, load from a separate process"},
	{"grants.http", "single grant commands over HTTP, one client: ≥ 500/s, p99 < 10 ms"},
	{"index.memory", "access index ≤ 256 B per (account, child) pair"},
	{"bulk.import", "loading relationships in bulk ≥ 45,000 events/s"},
}

// printVerdict ends the table with the verdict: every goal met, or each
// one missed with its figure and what its profile says, and the goals the
// run did not measure.
func (r *benchReport) printVerdict(w io.Writer) {
	var missed, met int
	measured := map[string]bool{}
	for _, f := range r.Figures {
		if f.Met == nil {
			continue
		}
		for _, g := range goals {
			if f.Name == g.figure || (strings.HasSuffix(g.figure, ".") && strings.HasPrefix(f.Name, g.figure)) {
				measured[g.figure] = true
			}
		}
		if *f.Met {
			met++
			continue
		}
		if missed == 0 {
			fmt.Fprintln(w, "\nMissed:")
		}
		missed++
		conc := ""
		if f.Concurrency > 1 {
			conc = fmt.Sprintf(" c=%d", f.Concurrency)
		}
		fmt.Fprintf(w, "- %s %s%s: %s; goal %s\n", f.Name, f.Store, conc, f.text(), f.Target)
		if f.Explained != nil {
			for _, l := range f.Explained.lines("    ") {
				fmt.Fprintln(w, l)
			}
		} else if f.Profile != "" {
			fmt.Fprintf(w, "    profile %s\n", f.Profile)
		}
	}
	var unmeasured []string
	for _, g := range goals {
		if !measured[g.figure] {
			unmeasured = append(unmeasured, g.goal)
		}
	}
	fmt.Fprintln(w)
	switch {
	case missed == 0 && len(unmeasured) == 0:
		fmt.Fprintf(w, "Verdict: every goal met (%d figures with a target).\n", met)
	case missed == 0:
		fmt.Fprintf(w, "Verdict: every goal measured was met (%d figures with a target); not measured in this run: %s.\n",
			met, strings.Join(unmeasured, "; "))
	default:
		fmt.Fprintf(w, "Verdict: %d of %d figures with a target missed their goal (listed above with their profiles).\n", missed, missed+met)
		if len(unmeasured) > 0 {
			fmt.Fprintf(w, "Not measured in this run: %s.\n", strings.Join(unmeasured, "; "))
		}
	}
}
