package browsertest

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// skipRecorder is a testing.TB that records Skip and Fatal instead of
// acting on them.
type skipRecorder struct {
	testing.TB
	skipped, fatal string
}

func (r *skipRecorder) Helper() {}

func (r *skipRecorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *skipRecorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestChromiumPath(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "chromium")
	for _, tt := range []struct {
		name, env, fallback string
		want, skip, fatal   string
	}{
		{name: "unset, installed: the default", fallback: "/bin/sh", want: "/bin/sh"},
		{name: "unset, not installed: skips and says how to install it", fallback: missing, skip: "apt-get install chromium"},
		{name: "blank is unset", env: "  ", fallback: missing, skip: "set " + ChromiumEnv},
		{name: "set: that one, whatever is installed", env: "/bin/sh", fallback: missing, want: "/bin/sh"},
		{name: "set to a name: looked up in PATH", env: "sh", fallback: missing, want: "/bin/sh"},
		{name: "set to nothing executable: fails, never skips", env: missing, fallback: "/bin/sh", fatal: "names no executable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(ChromiumEnv, tt.env)
			r := &skipRecorder{TB: t}
			var got string
			done := make(chan struct{})
			go func() {
				defer close(done)
				got = chromiumPath(r, tt.fallback)
			}()
			<-done
			if tt.want != "" {
				gotReal, err := filepath.EvalSymlinks(got)
				require.NoError(t, err)
				wantReal, err := filepath.EvalSymlinks(tt.want)
				require.NoError(t, err)
				require.Equal(t, wantReal, gotReal)
			}
			require.Contains(t, r.skipped, tt.skip)
			require.Contains(t, r.fatal, tt.fatal)
			if tt.skip == "" {
				require.Empty(t, r.skipped)
			}
			if tt.fatal == "" {
				require.Empty(t, r.fatal)
			}
		})
	}
}
