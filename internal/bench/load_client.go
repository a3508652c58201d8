package bench

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
	"github.com/accessledger/accessledger/internal/cputime"
	"github.com/accessledger/accessledger/internal/engine"
)

// LoadConfig holds the flags of accessd load: the load tool's HTTP check
// measurement as a client of its own, against a running accessd serve.
type LoadConfig struct {
	url         string
	token       string
	tokenFile   string
	concurrency string
	duration    time.Duration
	accounts    int
	seed        uint64
	jsonFile    string
	pathsOut    string
	rate        float64
}

// Register adds the flags of accessd load to fs.
func (c *LoadConfig) Register(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "base URL of the running accessd serve")
	fs.StringVar(&c.token, "token", "", "bearer token of role service (accessd token --role service); or --token-file")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding the bearer token (instead of --token)")
	fs.StringVar(&c.concurrency, "concurrency", "1,8,32", "concurrency levels, comma-separated; 0: collect the pairs only (with --paths-out)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured window of each load (after a warm-up of a quarter of it, at most 1s)")
	fs.IntVar(&c.accounts, "accounts", 2000, "active accounts whose children (GET /v1/accounts/{id}/children) give the allowed pairs")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the random pairs and of the clients' choices")
	fs.StringVar(&c.jsonFile, "json", "load.json", "file the figures are written to, as JSON")
	fs.Float64Var(&c.rate, "rate", 0, "checks per second at each concurrency, at a constant pace (an open loop: latency from when each check was due, as wrk2 measures); 0: each client sends its next check as soon as the last answered (a closed loop)")
	fs.StringVar(&c.pathsOut, "paths-out", "", "write the check requests' paths, one a line, to FILE (for wrk and internal/bench/wrk-check.lua)")
}

// loadRun is one accessd load.
type loadRun struct {
	cfg    LoadConfig
	conc   []int
	token  string
	http   *http.Client
	api    *client.Client
	env    Env
	report *benchReport
}

// RunLoad measures GET /v1/check on the accessd serve at --url from this
// process, closed-loop at each concurrency as accessd bench does in
// process: it collects allowed (account, child) pairs through the API
// (GET /v1/accounts, then each account's children), adds as many random
// pairs (mostly denied), then runs the loads. Each figure has the
// server's CPU time per check (process_cpu_seconds_total of its
// /metrics, before and after) and the client's own. It prints a table and
// writes the figures as JSON. Flag errors wrap engine.ErrUsage.
func RunLoad(ctx context.Context, cfg LoadConfig, env Env) error {
	l, err := newLoadRun(cfg, env)
	if err != nil {
		return err
	}
	if err := l.ready(ctx); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "load: collecting pairs from %d accounts' children at %s\n", cfg.accounts, cfg.url)
	start := time.Now()
	urls, allowed, err := l.pairs(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "load: %d pairs (%d allowed, %d random) in %s\n", len(urls), allowed, len(urls)-allowed,
		time.Since(start).Round(time.Millisecond))
	if cfg.pathsOut != "" {
		var b strings.Builder
		for _, u := range urls {
			b.WriteString(strings.TrimPrefix(u, cfg.url))
			b.WriteByte('\n')
		}
		if err := os.WriteFile(cfg.pathsOut, []byte(b.String()), 0o600); err != nil {
			return fmt.Errorf("--paths-out: %w", err)
		}
		fmt.Fprintf(env.Stderr, "load: the %d paths are in %s\n", len(urls), cfg.pathsOut)
	}
	if len(l.conc) == 0 {
		return nil
	}
	l.report.Conditions.Notes = append(l.report.Conditions.Notes,
		fmt.Sprintf("GET /v1/check of %d pairs: %d allowed (the children of %d active accounts), %d random", len(urls), allowed, cfg.accounts, len(urls)-allowed))
	warm := min(cfg.duration/4, time.Second)
	for _, conc := range l.conc {
		rngs := perWorkerRand(conc, cfg.seed)
		op := httpGet(l.http, l.token, func(w int) string { return urls[rngs[w].IntN(len(urls))] })
		serverBefore, serr := l.serverCPU(ctx)
		clientBefore := cputime.Process()
		var r loadResult
		if cfg.rate > 0 {
			r = fixedRate(ctx, conc, cfg.rate, warm, cfg.duration, op)
		} else {
			r = closedLoop(ctx, conc, warm, cfg.duration, op)
		}
		clientAfter := cputime.Process()
		serverAfter, serr2 := l.serverCPU(ctx)
		f := r.figure("check.http", "remote", "checks", conc)
		f.Note = "client (accessd load) in its own process, server at " + cfg.url
		if cfg.rate > 0 {
			f.Note += fmt.Sprintf("; %s checks/s asked at a constant pace, latency from when each was due", human(cfg.rate))
			s := summarize(r.Service)
			f.Values = append(f.Values, value{"rate_asked", cfg.rate}, value{"late_starts", float64(r.Late)},
				value{"service_p99_us", s.P99})
		}
		if r.Count > 0 {
			// The CPU times cover the warm-up too; per check over every
			// check made, warm-up included, the counts of which closedLoop
			// does not keep: scale by the measured share of the time.
			total := float64(r.Count) * (cfg.duration + warm).Seconds() / cfg.duration.Seconds()
			f.Values = append(f.Values, value{"client_cpu_us_per_check", (clientAfter - clientBefore).Seconds() * 1e6 / total})
			if serr == nil && serr2 == nil {
				f.Values = append(f.Values, value{"server_cpu_us_per_check", (serverAfter - serverBefore) * 1e6 / total})
			}
		}
		if conc == 8 {
			f.met(fmt.Sprintf("p99 < 1 ms and > %s/s", human(targetHTTPRate)),
				f.Count > 0 && f.Latency.P99 < targetHTTPP99 && f.PerSecond > targetHTTPRate && f.Errors == 0)
		}
		fmt.Fprintf(env.Stderr, "load: c=%d: %s\n", conc, f.text())
		l.report.Figures = append(l.report.Figures, f)
		if ctx.Err() != nil {
			break
		}
	}
	fmt.Fprintln(env.Stdout)
	l.report.printTable(env.Stdout)
	if err := l.report.writeJSON(cfg.jsonFile); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "\nfigures written to %s\n", cfg.jsonFile)
	for _, f := range l.report.Figures {
		if f.Errors > 0 {
			return fmt.Errorf("%d of %d checks failed at concurrency %d: %s", f.Errors, f.Count, f.Concurrency, f.FirstError)
		}
	}
	return ctx.Err()
}

// newLoadRun checks the flags and reads the token.
func newLoadRun(cfg LoadConfig, env Env) (*loadRun, error) {
	usage := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", engine.ErrUsage, fmt.Sprintf(format, args...))
	}
	if !strings.HasPrefix(cfg.url, "http://") && !strings.HasPrefix(cfg.url, "https://") {
		return nil, usage("--url %q: want http://HOST:PORT or https://…", cfg.url)
	}
	cfg.url = strings.TrimSuffix(cfg.url, "/")
	token := cfg.token
	switch {
	case token != "" && cfg.tokenFile != "":
		return nil, usage("give --token or --token-file, not both")
	case cfg.tokenFile != "":
		b, err := os.ReadFile(cfg.tokenFile)
		if err != nil {
			return nil, usage("--token-file: %v", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return nil, usage("no token: give --token or --token-file (accessd token --role service)")
	}
	var conc []int
	if cfg.concurrency == "0" {
		if cfg.pathsOut == "" {
			return nil, usage("--concurrency 0 collects the pairs only: give --paths-out")
		}
	}
	for _, s := range strings.Split(cfg.concurrency, ",") {
		if cfg.concurrency == "0" {
			break
		}
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 4096 {
			return nil, usage("--concurrency %q: want numbers from 1 to 4096", cfg.concurrency)
		}
		conc = append(conc, n)
	}
	if cfg.rate < 0 || cfg.rate > 1e7 || math.IsNaN(cfg.rate) {
		return nil, usage("--rate %v: want checks per second from 0 (a closed loop) to 10,000,000", cfg.rate)
	}
	if cfg.duration <= 0 {
		return nil, usage("--duration %s: want more than 0", cfg.duration)
	}
	if cfg.accounts < 1 {
		return nil, usage("--accounts %d: want at least 1", cfg.accounts)
	}
	if cfg.jsonFile == "" {
		return nil, usage("--json is empty")
	}
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: time.Minute, DisableCompression: true}}
	api, err := client.New(cfg.url, token, client.WithHTTPClient(hc))
	if err != nil {
		return nil, usage("--url: %v", err)
	}
	report := &benchReport{Conditions: benchConditions{Machine: machine(), GoVersion: runtime.Version(),
		Duration: cfg.duration.String(), Started: time.Now().UTC(), Server: cfg.url, Stores: map[string]storeInfo{}}}
	return &loadRun{cfg: cfg, conc: conc, token: token, http: hc, api: api, env: env, report: report}, nil
}

// ready requires GET /readyz to answer 200.
func (l *loadRun) ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.cfg.url+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := l.http.Do(req)
	if err != nil {
		return fmt.Errorf("the server at %s: %w", l.cfg.url, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the server at %s is not ready: GET /readyz answered %d", l.cfg.url, resp.StatusCode)
	}
	return nil
}

// pairs returns the check URLs, shuffled: the allowed pairs of up to
// --accounts active accounts, and as many random pairs (at least 1,000) of
// those accounts and the children seen, and how many are allowed.
func (l *loadRun) pairs(ctx context.Context) ([]string, int, error) {
	var accounts []uuid.UUID
	var after uuid.UUID
	for len(accounts) < l.cfg.accounts {
		page, err := l.api.Accounts(ctx, client.AccountFilter{Status: api.AccountStatusActive, After: after,
			Limit: min(l.cfg.accounts-len(accounts), 500)})
		if err != nil {
			return nil, 0, fmt.Errorf("list the accounts: %w", err)
		}
		for _, a := range page.Accounts {
			accounts = append(accounts, a.AccountID)
		}
		if page.Next == nil || len(page.Accounts) == 0 {
			break
		}
		after = *page.Next
	}
	if len(accounts) == 0 {
		return nil, 0, errors.New("the server has no active account: nothing to check (accessd generate writes a data set)")
	}
	var allowed [][2]uuid.UUID
	var children []uuid.UUID
	seen := map[uuid.UUID]bool{}
	for _, a := range accounts {
		ans, err := l.api.Children(ctx, a, time.Time{})
		if err != nil {
			return nil, 0, fmt.Errorf("the children of account %s: %w", a, err)
		}
		for _, c := range ans.Children {
			allowed = append(allowed, [2]uuid.UUID{a, c.ChildID})
			if !seen[c.ChildID] {
				seen[c.ChildID] = true
				children = append(children, c.ChildID)
			}
		}
	}
	if len(children) == 0 {
		return nil, 0, fmt.Errorf("none of %d active accounts may see a child: nothing to check", len(accounts))
	}
	rng := rand.New(rand.NewPCG(l.cfg.seed, 7))
	pairs := allowed
	for range max(len(allowed), 1000) {
		pairs = append(pairs, [2]uuid.UUID{accounts[rng.IntN(len(accounts))], children[rng.IntN(len(children))]})
	}
	rng.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
	urls := make([]string, len(pairs))
	for i, p := range pairs {
		urls[i] = l.cfg.url + "/v1/check?account_id=" + p[0].String() + "&child_id=" + p[1].String() + "&permission=view"
	}
	return urls, len(allowed), nil
}

// serverCPU reads the server's process_cpu_seconds_total from its
// /metrics.
func (l *loadRun) serverCPU(ctx context.Context) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.cfg.url+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := l.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_cpu_seconds_total "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no process_cpu_seconds_total in /metrics")
}
