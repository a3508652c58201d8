// Package gcpolicy sets the Go garbage collector's policy of the engine's
// long-running process (accessd serve, and the engine accessd bench runs).
//
// The engine's heap is mostly long-lived: the access index, the access
// history's fold and the children's state kept between commands (about
// 300 MB at county size). With Go's default (GOGC=100) a collection starts
// each time the heap has grown by that much again, every few seconds under
// load, and each one marks the whole live heap: about half a second of a
// core on two cores, during which commands and checks share the CPU with
// the collector and help it mark (docs/performance.md). The policy here
// trades memory for fewer collections:
//
//   - GOGC 400 (DefaultPercent): a collection when the heap has grown by
//     four times the live heap, so about a quarter as many;
//   - a soft memory limit (GOMEMLIMIT) of three quarters of the memory the
//     process may use (DefaultLimitFraction of the cgroup's limit, or of
//     the machine's memory): as the heap nears it the collector runs more
//     often, so a large live heap (a nation's fold) never grows to five
//     times its size.
//
// Either is left as the operator set it: GOGC or GOMEMLIMIT in the
// environment wins (the Go runtime has applied it already).
package gcpolicy

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Defaults of the policy.
const (
	// DefaultPercent is GOGC when the environment does not set it.
	DefaultPercent = 400
	// DefaultLimitFraction is the share of the process's memory that the
	// soft memory limit is when the environment does not set GOMEMLIMIT.
	DefaultLimitFraction = 0.75
)

// Settings is the policy Apply put in place.
type Settings struct {
	// Percent is the GC percent in force (-1: off), and PercentFromEnv
	// whether GOGC set it.
	Percent        int
	PercentFromEnv bool
	// Limit is the soft memory limit in bytes in force (math.MaxInt64:
	// none), and LimitFromEnv whether GOMEMLIMIT set it. Memory is what
	// the limit was derived from (0 when GOMEMLIMIT set it, or when the
	// process's memory could not be read: then no limit is set).
	Limit        int64
	LimitFromEnv bool
	Memory       uint64
}

// Sources are where Apply reads the environment and the memory the
// process may use; tests replace them.
type Sources struct {
	// Getenv reads an environment variable ("" when unset).
	Getenv func(string) string
	// ReadFile reads a file (the cgroup's limit, /proc/meminfo).
	ReadFile func(string) ([]byte, error)
}

// System reads the process's environment and files.
var System = Sources{Getenv: os.Getenv, ReadFile: os.ReadFile}

// Apply puts the policy in place: DefaultPercent unless GOGC is set, and a
// soft memory limit of DefaultLimitFraction of Memory(src) unless
// GOMEMLIMIT is set. It returns the settings in force and an error only
// when the memory could not be read (the percent is set all the same, and
// no limit).
func Apply(src Sources) (Settings, error) {
	var s Settings
	if v := src.Getenv("GOGC"); v != "" {
		s.Percent, s.PercentFromEnv = debug.SetGCPercent(-1), true
		debug.SetGCPercent(s.Percent) // read back, unchanged
	} else {
		debug.SetGCPercent(DefaultPercent)
		s.Percent = DefaultPercent
	}
	if v := src.Getenv("GOMEMLIMIT"); v != "" {
		s.Limit, s.LimitFromEnv = debug.SetMemoryLimit(-1), true
		return s, nil
	}
	mem, err := Memory(src)
	if err != nil {
		s.Limit = debug.SetMemoryLimit(-1)
		return s, err
	}
	s.Memory = mem
	s.Limit = limitFor(mem)
	debug.SetMemoryLimit(s.Limit)
	return s, nil
}

// limitFor is the soft memory limit for a process that may use mem bytes.
func limitFor(mem uint64) int64 {
	l := float64(mem) * DefaultLimitFraction
	if l >= math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(l)
}

// Cgroup and /proc files Memory reads.
const (
	cgroupV2Max = "/sys/fs/cgroup/memory.max"
	cgroupV1Max = "/sys/fs/cgroup/memory/memory.limit_in_bytes"
	procMeminfo = "/proc/meminfo"
)

// cgroupV1Unlimited: cgroup v1 reports no limit as a page-rounded
// MaxInt64; any value above the machine's memory means none.
const cgroupV1Unlimited = 1 << 62

// Memory returns the memory the process may use: its cgroup's limit (v2,
// then v1) when it has one below the machine's memory, else the machine's
// memory (MemTotal in /proc/meminfo).
func Memory(src Sources) (uint64, error) {
	total, err := memTotal(src)
	if err != nil {
		return 0, err
	}
	for _, path := range []string{cgroupV2Max, cgroupV1Max} {
		b, err := src.ReadFile(path)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 || n >= cgroupV1Unlimited {
			continue
		}
		return min(n, total), nil
	}
	return total, nil
}

// memTotal reads MemTotal from /proc/meminfo.
func memTotal(src Sources) (uint64, error) {
	b, err := src.ReadFile(procMeminfo)
	if err != nil {
		return 0, fmt.Errorf("gcpolicy: read the machine's memory: %w", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kib, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil || kib == 0 {
				return 0, fmt.Errorf("gcpolicy: %s: MemTotal %q", procMeminfo, f[1])
			}
			return kib * 1024, nil
		}
	}
	return 0, errors.New("gcpolicy: " + procMeminfo + " has no MemTotal")
}

// String describes the settings for a log line.
func (s Settings) String() string {
	pct := strconv.Itoa(s.Percent)
	if s.Percent < 0 {
		pct = "off"
	}
	if s.PercentFromEnv {
		pct += " (GOGC)"
	}
	limit := "none"
	if s.Limit != math.MaxInt64 {
		limit = fmt.Sprintf("%d MiB", s.Limit>>20)
	}
	switch {
	case s.LimitFromEnv:
		limit += " (GOMEMLIMIT)"
	case s.Memory > 0:
		limit += fmt.Sprintf(" (%.0f%% of %d MiB)", DefaultLimitFraction*100, s.Memory>>20)
	}
	return "GOGC " + pct + ", memory limit " + limit
}
