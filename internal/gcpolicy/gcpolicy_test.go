package gcpolicy

import (
	"errors"
	"io/fs"
	"math"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

const meminfo = "MemTotal:       24000000 kB\nMemFree:        1000 kB\n"

// fakeSources serves env and files from maps.
func fakeSources(env, files map[string]string) Sources {
	return Sources{
		Getenv: func(k string) string { return env[k] },
		ReadFile: func(p string) ([]byte, error) {
			if v, ok := files[p]; ok {
				return []byte(v), nil
			}
			return nil, fs.ErrNotExist
		},
	}
}

// restoreGC puts the runtime's settings back after a test.
func restoreGC(t *testing.T) {
	pct := debug.SetGCPercent(100)
	debug.SetGCPercent(pct)
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(pct)
		debug.SetMemoryLimit(limit)
	})
}

func TestMemory(t *testing.T) {
	const total = 24000000 * 1024
	tests := []struct {
		name  string
		files map[string]string
		want  uint64
		err   bool
	}{
		{"machine only", map[string]string{procMeminfo: meminfo}, total, false},
		{"cgroup v2 limit", map[string]string{procMeminfo: meminfo, cgroupV2Max: "4294967296\n"}, 4 << 30, false},
		{"cgroup v2 no limit", map[string]string{procMeminfo: meminfo, cgroupV2Max: "max\n"}, total, false},
		{"cgroup v2 limit above the machine", map[string]string{procMeminfo: meminfo, cgroupV2Max: "99999999999999\n"}, total, false},
		{"cgroup v1 limit", map[string]string{procMeminfo: meminfo, cgroupV1Max: "2147483648"}, 2 << 30, false},
		{"cgroup v1 unlimited", map[string]string{procMeminfo: meminfo, cgroupV1Max: "9223372036854771712"}, total, false},
		{"cgroup garbage", map[string]string{procMeminfo: meminfo, cgroupV2Max: "lots"}, total, false},
		{"no meminfo", map[string]string{cgroupV2Max: "4294967296"}, 0, true},
		{"meminfo without MemTotal", map[string]string{procMeminfo: "MemFree: 1 kB\n"}, 0, true},
		{"meminfo garbage", map[string]string{procMeminfo: "MemTotal: x kB\n"}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Memory(fakeSources(nil, tt.files))
			if tt.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestApply(t *testing.T) {
	files := map[string]string{procMeminfo: meminfo, cgroupV2Max: "8589934592\n"}
	tests := []struct {
		name      string
		env       map[string]string
		files     map[string]string
		runtime   func() // what the Go runtime made of the environment
		want      Settings
		wantError bool
	}{
		{"defaults", nil, files, nil,
			Settings{Percent: DefaultPercent, Limit: 6 << 30, Memory: 8 << 30}, false},
		{"GOGC set", map[string]string{"GOGC": "150"}, files, func() { debug.SetGCPercent(150) },
			Settings{Percent: 150, PercentFromEnv: true, Limit: 6 << 30, Memory: 8 << 30}, false},
		{"GOGC off", map[string]string{"GOGC": "off"}, files, func() { debug.SetGCPercent(-1) },
			Settings{Percent: -1, PercentFromEnv: true, Limit: 6 << 30, Memory: 8 << 30}, false},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "1GiB"}, files, func() { debug.SetMemoryLimit(1 << 30) },
			Settings{Percent: DefaultPercent, Limit: 1 << 30, LimitFromEnv: true}, false},
		{"memory unreadable", nil, map[string]string{}, func() { debug.SetMemoryLimit(math.MaxInt64) },
			Settings{Percent: DefaultPercent, Limit: math.MaxInt64}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			restoreGC(t)
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
			if tt.runtime != nil {
				tt.runtime()
			}
			got, err := Apply(fakeSources(tt.env, tt.files))
			if tt.wantError {
				require.Error(t, err)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tt.want, got)
			// What Apply reports is what the runtime has.
			pct := debug.SetGCPercent(0)
			debug.SetGCPercent(pct)
			require.Equal(t, tt.want.Percent, pct)
			require.Equal(t, tt.want.Limit, debug.SetMemoryLimit(-1))
		})
	}
}

func TestSettingsString(t *testing.T) {
	tests := []struct {
		s    Settings
		want string
	}{
		{Settings{Percent: 400, Limit: 6 << 30, Memory: 8 << 30}, "GOGC 400, memory limit 6144 MiB (75% of 8192 MiB)"},
		{Settings{Percent: -1, PercentFromEnv: true, Limit: 1 << 30, LimitFromEnv: true}, "GOGC off (GOGC), memory limit 1024 MiB (GOMEMLIMIT)"},
		{Settings{Percent: 400, Limit: math.MaxInt64}, "GOGC 400, memory limit none"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, tt.s.String())
	}
}

func TestSystemReadsThisMachine(t *testing.T) {
	mem, err := Memory(System)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skip("no /proc/meminfo here")
	}
	require.NoError(t, err)
	require.Greater(t, mem, uint64(64<<20))
}
