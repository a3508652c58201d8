package accessctl

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWatchEnds: an interrupted watch exits 0; one whose position is gone
// says what to do; a wrong token is reported by the first request, not
// retried forever.
func TestWatchEnds(t *testing.T) {
	policy := reply{body: `{"grace_period":604800,"invitation_ttl":1209600,"session_idle_timeout":900,"session_warning_after":600,"position":"24"}`}
	t.Run("interrupted", func(t *testing.T) {
		f := newFakeServer(t, testToken, func(r seenRequest) reply {
			if r.Path == "/v1/watch" {
				return reply{block: true}
			}
			return policy
		})
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		var stdout, stderr bytes.Buffer
		env := envFor(f)
		code := run(ctx, []string{"watch"}, &stdout, &stderr, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		require.Equal(t, exitOK, code, stderr.String())
		require.Empty(t, stderr.String())
		require.Equal(t, "POSITION ", stdout.String()[:9], "the header line, then nothing")
	})
	t.Run("gone", func(t *testing.T) {
		f := newFakeServer(t, testToken, func(r seenRequest) reply {
			if r.Path == "/v1/watch" {
				return reply{status: 410, body: `{"title":"Conflict","status":410,"detail":"the changes after this position are no longer kept","code":"conflict"}`}
			}
			return policy
		})
		res := runCLI(t, envFor(f), "watch", "--after", "3")
		require.Equal(t, exitError, res.code)
		require.Equal(t, "accessctl: the server no longer keeps the changes after position 3: "+
			"read again the lists you keep (children, viewers), then watch without --after (from now on)\n", res.stderr)
	})
	t.Run("wrong token", func(t *testing.T) {
		f := newFakeServer(t, "another-token", nil)
		res := runCLI(t, envFor(f), "watch")
		require.Equal(t, exitError, res.code)
		require.Contains(t, res.stderr, "Unauthenticated")
		require.Len(t, f.refusals(), 1, "one request, refused")
	})
}
