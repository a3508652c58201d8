package bench

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// spin hashes for d: a function a CPU profile must name. Each call hashes
// 256 KiB, so that the hashing (assembly, not instrumented) and not the
// loop around it takes the time, with the race detector too.
func spin(d time.Duration) {
	end := time.Now().Add(d)
	buf := make([]byte, 256<<10)
	for time.Now().Before(end) {
		sum := sha256.Sum256(buf)
		buf[0] = sum[0]
	}
}

func TestExplainProfileNamesWhereTheCPUWent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	out, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, pprof.StartCPUProfile(out))
	spin(400 * time.Millisecond)
	pprof.StopCPUProfile()
	require.NoError(t, out.Close())

	e, err := explainProfile(path)
	require.NoError(t, err)
	require.Equal(t, "cpu", e.Kind)
	require.Equal(t, path, e.Profile)
	require.Positive(t, e.Total)
	require.Positive(t, e.WallSeconds)
	require.NotEmpty(t, e.Flat)
	require.LessOrEqual(t, len(e.Flat), explainTop)
	var all []string
	for i, s := range e.Flat {
		all = append(all, s.Function)
		if i > 0 {
			require.LessOrEqual(t, s.Value, e.Flat[i-1].Value, "sorted, largest first")
		}
	}
	require.Contains(t, strings.Join(all, " "), "sha256", "the hashing is where the CPU went")
	for _, s := range e.Ours {
		require.True(t, strings.HasPrefix(s.Function, modulePrefix), s.Function)
		require.False(t, strings.HasPrefix(s.Function, benchPrefix), "the load tool's own functions explain nothing: %s", s.Function)
	}
	text := strings.Join(e.lines("  "), "\n")
	require.Contains(t, text, "CPU profile "+path)
	require.Contains(t, text, "top (flat): ")

	heap := filepath.Join(t.TempDir(), "heap.pprof")
	require.NoError(t, writeHeapProfile(heap))
	e, err = explainProfile(heap)
	require.NoError(t, err)
	require.Equal(t, "heap", e.Kind)
	require.Contains(t, strings.Join(e.lines(""), "\n"), "MiB in use")

	bad := filepath.Join(t.TempDir(), "bad.pprof")
	require.NoError(t, os.WriteFile(bad, []byte("not a profile"), 0o600))
	_, err = explainProfile(bad)
	require.Error(t, err)
}

func TestVerdict(t *testing.T) {
	yes, no := true, false
	fig := func(name string, met *bool) figure {
		return figure{Name: name, Store: "sqlite", Concurrency: 1, Seconds: 1, Count: 10, Unit: "events", PerSecond: 10,
			Target: "goal of " + name, Met: met}
	}
	for _, tc := range []struct {
		name    string
		figures []figure
		want    []string
		not     []string
	}{
		{"every goal met", func() []figure {
			var fs []figure
			for _, g := range goals {
				fs = append(fs, fig(strings.TrimSuffix(g.figure, ".")+map[bool]string{true: ".audit", false: ""}[strings.HasSuffix(g.figure, ".")], &yes))
			}
			return fs
		}(), []string{"Verdict: every goal met (10 figures with a target)."}, []string{"Missed:", "Not measured"}},
		{"one missed, explained", []figure{fig("start_to_ready", &yes), func() figure {
			f := fig("expiry", &no)
			f.Explained = &explanation{Profile: "p.pprof", Kind: "cpu", Total: 2, WallSeconds: 10, CPUShare: 0.2,
				Flat: []share{{Function: "syscall.Syscall", Value: 1, Percent: 50}},
				Ours: []share{{Function: modulePrefix + "adapters/sqlstore.(*Store).Append", Value: 1, Percent: 50}}}
			return f
		}()}, []string{"Missed:", "- expiry sqlite: ", "goal goal of expiry", "CPU profile p.pprof", "mostly waiting",
			"syscall.Syscall 50%", "adapters/sqlstore.(*Store).Append 50%", "Verdict: 1 of 2 figures with a target missed",
			"Not measured in this run: "}, []string{"every goal met"}},
		{"some not measured", []figure{fig("grants.http", &yes), fig("check.inprocess", nil)},
			[]string{"Verdict: every goal measured was met (1 figures with a target); not measured in this run: start to ready"},
			[]string{"Missed:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			(&benchReport{Figures: tc.figures}).printVerdict(&buf)
			for _, w := range tc.want {
				require.Contains(t, buf.String(), w)
			}
			for _, n := range tc.not {
				require.NotContains(t, buf.String(), n)
			}
		})
	}
}
