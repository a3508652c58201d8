package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/accessledger/accessledger/domain"
)

// loadExecutable is the accessd binary whose load command measures HTTP
// checks from a separate process: --load-exec, or this program when its
// name starts with accessd (a test binary does not). It returns "" (with
// the reason) when there is none.
func (b *bencher) loadExecutable() (string, string) {
	switch b.cfg.loadExec {
	case "none":
		return "", "--load-exec none"
	case "":
		self, err := os.Executable()
		if err != nil {
			return "", fmt.Sprintf("this program's path: %v", err)
		}
		if name := filepath.Base(self); !strings.HasPrefix(name, "accessd") {
			return "", fmt.Sprintf("this program (%s) is not accessd: give --load-exec PATH", name)
		}
		return self, ""
	default:
		return b.cfg.loadExec, ""
	}
}

// externalChecks measures GET /v1/check at concurrency 8 from a separate
// process: accessd load, run against the bench's engine with a service
// token, as an operator would run it against accessd serve. It runs it
// twice: first at a constant pace of targetHTTPRate checks/s (the throughput
// goal; latency from when each check was due, so a server that falls
// behind cannot hide it), the figure the p99 goal is judged on
// (check.http.external), and as a closed loop (check.http.external.closed:
// each client sends its next check as soon as the last answered, so the
// machine's two cores are saturated by the client and the server
// together, and the tail is the scheduler's). The engine's CPU profile
// covers the first load; the figures are the client's.
func (b *bencher) externalChecks(ctx context.Context, be *benchEngine, store string) error {
	exe, why := b.loadExecutable()
	if exe == "" {
		fmt.Fprintf(b.progress, "bench: check.http.external %s: not measured: %s\n", store, why)
		return nil
	}
	dir, err := os.MkdirTemp(b.workDir, "load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(be.tokens[domain.RoleService]), 0o600); err != nil {
		return err
	}
	run := func(name, out string, extra ...string) (figure, error) {
		args := append([]string{"load", "--url", be.url, "--token-file", tokenFile, "--concurrency", "8",
			"--duration", b.cfg.duration.String(), "--seed", fmt.Sprint(b.cfg.seed), "--json", out}, extra...)
		var stderr strings.Builder
		cmd := exec.CommandContext(ctx, exe, args...)
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return figure{}, fmt.Errorf("%s %s: %w: %s", exe, strings.Join(args, " "), err, truncate(strings.TrimSpace(stderr.String()), 2000))
		}
		raw, err := os.ReadFile(out)
		if err != nil {
			return figure{}, err
		}
		var rep benchReport
		if err := json.Unmarshal(raw, &rep); err != nil {
			return figure{}, fmt.Errorf("read accessd load's figures: %w", err)
		}
		for _, f := range rep.Figures {
			if f.Name == "check.http" && f.Concurrency == 8 {
				f.Name, f.Store, f.Target, f.Met = name, store, "", nil
				return f, nil
			}
		}
		return figure{}, fmt.Errorf("accessd load wrote no figure at concurrency 8 to %s", out)
	}
	var paced figure
	err = b.profiled("http-check-external", store, func() error {
		var err error
		paced, err = run("check.http.external", filepath.Join(dir, "paced.json"), "--rate", fmt.Sprint(targetHTTPRate))
		return err
	})
	if err != nil {
		return err
	}
	paced.Note = fmt.Sprintf("accessd load in a process of its own on the same machine (client and server share its CPUs), "+
		"%s checks/s at a constant pace, latency from when each check was due", human(targetHTTPRate))
	paced.met(fmt.Sprintf("p99 < 1 ms at %s/s", human(targetHTTPRate)),
		paced.Count > 0 && paced.Errors == 0 && paced.Latency != nil && paced.Latency.P99 < targetHTTPP99)
	b.add(paced)
	closed, err := run("check.http.external.closed", filepath.Join(dir, "closed.json"))
	if err != nil {
		return err
	}
	closed.Note = "accessd load in a process of its own, each client sending its next check as soon as the last answered: " +
		"client and server saturate the machine's CPUs together"
	b.add(closed)
	return nil
}
