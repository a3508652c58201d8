package bench

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/google/pprof/profile"
)

// modulePrefix is the prefix of this module's functions in a profile.
const modulePrefix = "github.com/accessledger/accessledger/"

// benchPrefix is the load tool's own package: its functions (the load
// loop, the clients) are on every stack of a measurement and explain
// nothing.
const benchPrefix = modulePrefix + "internal/bench."

// explainTop is how many functions an explanation names in each list.
const explainTop = 6

// explanation is what a profile of a missed target says: where the CPU
// (or the heap) went, so that the table names the cause, not only the
// figure. It is the profile's own summary, as go tool pprof -top would
// print it, and the file to read further.
type explanation struct {
	// Profile is the file the explanation was read from.
	Profile string `json:"profile"`
	// Kind is "cpu" or "heap".
	Kind string `json:"kind"`
	// Total is the CPU seconds sampled (cpu) or the bytes in use (heap).
	Total float64 `json:"total"`
	// WallSeconds is how long the CPU profile ran; CPUShare is Total over
	// it, in cores: a share well under one core means the measurement
	// mostly waited (disk, locks, the network), which a CPU profile does
	// not show.
	WallSeconds float64 `json:"wall_seconds,omitempty"`
	CPUShare    float64 `json:"cpu_share,omitempty"`
	// Flat are the functions that spent the most themselves; Ours are
	// this module's functions (the load tool's left out) with the most
	// below them (cumulative), which name the path that costs.
	Flat []share `json:"flat"`
	Ours []share `json:"ours"`
}

// share is one function's part of a profile's total.
type share struct {
	Function string  `json:"function"`
	Value    float64 `json:"value"` // seconds (cpu) or bytes (heap)
	Percent  float64 `json:"percent"`
}

// explainProfile reads the profile at path (a CPU profile written by
// runtime/pprof, or a heap profile) and summarizes it.
func explainProfile(path string) (*explanation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := profile.ParseData(data)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	idx, kind, scale := -1, "", 1.0
	for i, st := range p.SampleType {
		switch {
		case st.Type == "cpu" && st.Unit == "nanoseconds":
			idx, kind, scale = i, "cpu", 1e-9
		case st.Type == "inuse_space" && kind == "":
			idx, kind = i, "heap"
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("%s: neither a CPU nor a heap profile", path)
	}
	flat, cum := map[string]float64{}, map[string]float64{}
	var total float64
	for _, s := range p.Sample {
		v := float64(s.Value[idx]) * scale
		total += v
		seen := map[string]bool{}
		for i, loc := range s.Location {
			for j, line := range loc.Line {
				if line.Function == nil {
					continue
				}
				name := line.Function.Name
				if i == 0 && j == 0 {
					flat[name] += v
				}
				if !seen[name] {
					seen[name] = true
					cum[name] += v
				}
			}
		}
	}
	e := &explanation{Profile: path, Kind: kind, Total: total}
	if kind == "cpu" && p.DurationNanos > 0 {
		e.WallSeconds = float64(p.DurationNanos) / 1e9
		e.CPUShare = total / e.WallSeconds
	}
	e.Flat = topShares(flat, total, func(string) bool { return true })
	e.Ours = topShares(cum, total, func(name string) bool {
		return strings.HasPrefix(name, modulePrefix) && !strings.HasPrefix(name, benchPrefix)
	})
	return e, nil
}

// topShares returns the explainTop largest entries of m that keep allows.
func topShares(m map[string]float64, total float64, keep func(string) bool) []share {
	var out []share
	for name, v := range m {
		if keep(name) && v > 0 {
			pct := 0.0
			if total > 0 {
				pct = 100 * v / total
			}
			out = append(out, share{Function: name, Value: v, Percent: pct})
		}
	}
	slices.SortFunc(out, func(a, b share) int {
		if a.Value != b.Value {
			if a.Value > b.Value {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Function, b.Function)
	})
	return out[:min(len(out), explainTop)]
}

// shortName drops the module's path from a function's name.
func shortName(fn string) string {
	if s, ok := strings.CutPrefix(fn, modulePrefix); ok {
		return s
	}
	return fn
}

// lines prints the explanation in a few lines, indented by indent.
func (e *explanation) lines(indent string) []string {
	list := func(ss []share) string {
		parts := make([]string, 0, len(ss))
		for _, s := range ss {
			parts = append(parts, fmt.Sprintf("%s %.0f%%", shortName(s.Function), s.Percent))
		}
		if len(parts) == 0 {
			return "(none)"
		}
		return strings.Join(parts, ", ")
	}
	var out []string
	switch e.Kind {
	case "cpu":
		head := fmt.Sprintf("%sCPU profile %s: %.2f CPU s", indent, e.Profile, e.Total)
		if e.WallSeconds > 0 {
			head += fmt.Sprintf(" in %.2f s (%.2f cores)", e.WallSeconds, e.CPUShare)
			if e.CPUShare < 0.5 {
				head += ": mostly waiting (disk, locks, network), not computing"
			}
		}
		out = append(out, head)
	default:
		out = append(out, fmt.Sprintf("%sheap profile %s: %.1f MiB in use", indent, e.Profile, e.Total/(1<<20)))
	}
	out = append(out, indent+"  top (flat): "+list(e.Flat), indent+"  ours (cumulative): "+list(e.Ours))
	return out
}
