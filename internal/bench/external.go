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
// token, as an operator would run it against accessd serve. The engine's
// CPU profile covers the load; the figure is the client's.
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
	tokenFile, out := filepath.Join(dir, "token"), filepath.Join(dir, "load.json")
	if err := os.WriteFile(tokenFile, []byte(be.tokens[domain.RoleService]), 0o600); err != nil {
		return err
	}
	args := []string{"load", "--url", be.url, "--token-file", tokenFile, "--concurrency", "8",
		"--duration", b.cfg.duration.String(), "--seed", fmt.Sprint(b.cfg.seed), "--json", out}
	var stderr strings.Builder
	err = b.profiled("http-check-external", store, func() error {
		cmd := exec.CommandContext(ctx, exe, args...)
		cmd.Stderr = &stderr
		return cmd.Run()
	})
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", exe, strings.Join(args[:1], " "), err, truncate(strings.TrimSpace(stderr.String()), 2000))
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		return err
	}
	var rep benchReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		return fmt.Errorf("read accessd load's figures: %w", err)
	}
	found := false
	for _, f := range rep.Figures {
		if f.Name != "check.http" || f.Concurrency != 8 {
			continue
		}
		found = true
		f.Name, f.Store, f.Target, f.Met = "check.http.external", store, "", nil
		f.Note = "accessd load in a process of its own on the same machine (client and server share its CPUs)"
		f.met("p99 < 1 ms", f.Count > 0 && f.Errors == 0 && f.Latency != nil && f.Latency.P99 < targetHTTPP99)
		b.add(f)
	}
	if !found {
		return fmt.Errorf("accessd load wrote no figure at concurrency 8 to %s", out)
	}
	return nil
}
