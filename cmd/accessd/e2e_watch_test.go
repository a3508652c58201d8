package main

// End-to-end tests of the watch stream and of accessctl against the real
// server.

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
)

// ---- the watch stream ----

// TestWatchStreamsAccessChangesAndEndsAtShutdown: the service's watch
// stream carries each access change with its position, over real HTTP;
// stopping the server ends an open stream and the server still exits 0.
func TestWatchStreamsAccessChangesAndEndsAtShutdown(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		child := w.registerChild()
		member := w.account(string(domain.KindNetworkMember))

		req, err := http.NewRequest("GET", s.url+"/v1/watch?after="+w.last.String(), nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+w.service.token)
		res, err := (&http.Client{}).Do(req) // no timeout: a stream
		require.NoError(t, err)
		defer res.Body.Close()
		require.Equal(t, 200, res.StatusCode)
		require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
		events := make(chan api.WatchEvent, 16)
		go func() {
			defer close(events)
			sc := bufio.NewScanner(res.Body)
			event := ""
			for sc.Scan() {
				line := sc.Text()
				switch {
				case strings.HasPrefix(line, "event: "):
					event = strings.TrimPrefix(line, "event: ")
				case strings.HasPrefix(line, "data: ") && event == "access":
					var e api.WatchEvent
					if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &e) == nil {
						events <- e
					}
				case line == "":
					event = ""
				}
			}
		}()
		next := func() api.WatchEvent {
			t.Helper()
			select {
			case e, ok := <-events:
				require.True(t, ok, "the stream ended")
				return e
			case <-time.After(e2eWait):
				t.Fatal("no event on the watch stream")
				return api.WatchEvent{}
			}
		}

		w.grant(w.worker, child, member.id, "network_member", []string{"view"}, "friend")
		e := next()
		require.Equal(t, member.id, text(e.AccountID))
		require.Equal(t, child, text(e.ChildID))
		require.Equal(t, []string{"view"}, strs(e.Permissions))
		require.Equal(t, api.ReasonGrant, e.Reason)
		require.Equal(t, w.last.String(), e.Position)
		w.cmd(w.worker, "POST", "/v1/children/"+child+"/grants/"+member.id+"/revoke", map[string]string{"reason": "ended"}, 200)
		e = next()
		require.Equal(t, "revoked", text(e.Reason))
		require.Empty(t, e.Permissions)
		require.Equal(t, w.last.String(), e.Position)

		// Shutting down with the stream open: the stream ends and the
		// server exits 0 (stop requires it).
		s.stop()
		select {
		case _, ok := <-events:
			require.False(t, ok, "no more events")
		case <-time.After(e2eWait):
			t.Fatal("the stream did not end at shutdown")
		}
	})
}

// ---- accessctl against the real server ----

// buildAccessctl builds cmd/accessctl into dir and returns its path.
func buildAccessctl(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		out, gerr := exec.Command("go", "env", "GOROOT").Output()
		require.NoError(t, gerr, "no go command on PATH")
		goBin = filepath.Join(strings.TrimSpace(string(out)), "bin", "go")
	}
	bin := filepath.Join(dir, "accessctl")
	cmd := exec.Command(goBin, "build", "-o", bin, "../accessctl")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build ../accessctl: %s", out)
	return bin
}

func TestAccessctlAgainstTheRealServer(t *testing.T) {
	t.Parallel()
	bin := buildAccessctl(t, t.TempDir())
	for _, b := range e2eBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, b.flags(t)...)
			w := newWorld(s)
			home := t.TempDir()
			ctl := func(c *e2eClient, args ...string) (int, map[string]any, string) {
				t.Helper()
				cmd := exec.Command(bin, args...)
				cmd.Env = []string{"ACCESSLEDGER_SERVER=" + s.url, "ACCESSLEDGER_TOKEN=" + c.token,
					"ACCESSLEDGER_OUTPUT=json", "HOME=" + home}
				var out, errb strings.Builder
				cmd.Stdout, cmd.Stderr = &out, &errb
				err := cmd.Run()
				code := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				} else {
					require.NoError(t, err)
				}
				var m map[string]any
				if out.Len() > 0 {
					require.NoError(t, json.Unmarshal([]byte(out.String()), &m), out.String())
					if p, ok := m["position"].(string); ok && c.role != domain.RoleAuditor && c.role != domain.RoleService {
						w.note(map[string]any{"position": p})
					}
				}
				return code, m, errb.String()
			}
			mustCtl := func(c *e2eClient, args ...string) map[string]any {
				t.Helper()
				code, m, errOut := ctl(c, args...)
				require.Equal(t, exitOK, code, "accessctl %v: %s", args, errOut)
				return m
			}

			email := "ctl-" + uuid.NewString()[:8] + "@example.org"
			carer := mustCtl(w.worker, "invite", "--email", email, "--kind", "foster_carer")["account_id"].(string)
			w.activate(e2eAccount{id: carer, email: email, subject: "idp|" + uuid.NewString()})
			child := mustCtl(w.worker, "register-child", "--reference", "CTL-1")["child_id"].(string)
			pl := mustCtl(w.worker, "place", "--child", child, "--carer", carer, "--started-at", rfc(now().Add(-day)))["placement_id"].(string)
			require.NotEmpty(t, pl)

			pos := w.last.String()
			m := mustCtl(w.service, "check", "--account", carer, "--child", child, "--permission", "record", "--min-position", pos)
			require.Equal(t, true, m["allowed"])
			require.Equal(t, "placement", m["reason"])
			stranger := mustCtl(w.worker, "invite", "--email", "stranger-"+email, "--kind", "network_member")
			pos = text(stranger["position"])
			code, m, _ := ctl(w.service, "check", "--account", text(stranger["account_id"]), "--child", child, "--permission", "view", "--min-position", pos)
			require.Equal(t, exitDeniedCtl, code, "denied: exit 3")
			require.Equal(t, false, m["allowed"])
			// An account never invited is not found: exit 1.
			code, _, _ = ctl(w.service, "check", "--account", uuid.NewString(), "--child", child, "--permission", "view", "--min-position", pos)
			require.Equal(t, 1, code, "not found: exit 1")

			// A refused command: exit 1 and the problem on stderr.
			code, _, errOut := ctl(s.as(domain.RoleWorker, "worker-eve"), "end-placement", "--child", child, "--placement", pl,
				"--ended-at", rfc(now()), "--reason", "r")
			require.Equal(t, exitError, code)
			require.Contains(t, errOut, "(code forbidden, status 403)")

			mustCtl(w.worker, "end-placement", "--child", child, "--placement", pl, "--ended-at", rfc(now()), "--reason", "moved")
			h := mustCtl(w.auditor, "history", "--child", child, "--min-position", w.last.String())
			ivs, _ := h["intervals"].([]any)
			require.NotEmpty(t, ivs)
			for _, iv := range ivs {
				require.Equal(t, carer, iv.(map[string]any)["account_id"])
			}
			v := mustCtl(w.auditor, "verify", "--min-position", w.last.String())
			require.Equal(t, true, v["ok"])
			require.EqualValues(t, s.head(), v["entries"])
		})
	}
}

// exitDeniedCtl is accessctl's exit code for a denied check.
const exitDeniedCtl = 3
