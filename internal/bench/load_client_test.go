package bench

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/internal/apitest"
	"github.com/accessledger/accessledger/internal/engine"
)

// runLoadArgs runs accessd load's RunLoad with args.
func runLoadArgs(ctx context.Context, args ...string) (string, string, error) {
	var cfg LoadConfig
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.Register(fs)
	if err := fs.Parse(args); err != nil {
		return "", "", err
	}
	var stdout, stderr lockedBuffer
	err := RunLoad(ctx, cfg, Env{Stdout: &stdout, Stderr: &stderr})
	return stdout.String(), stderr.String(), err
}

// TestLoadAgainstARunningAPI runs accessd load against the real HTTP API
// (internal/apitest) holding three placements: it finds the allowed pairs
// through the API, checks at each concurrency without an error, and
// writes every figure with the server's and its own CPU per check.
func TestLoadAgainstARunningAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := apitest.Start(t, nil)
	worker, err := client.New(srv.URL, srv.Token(t, domain.RoleWorker, "worker-ann"))
	require.NoError(t, err)
	service, err := client.New(srv.URL, srv.Token(t, domain.RoleService, "portal"))
	require.NoError(t, err)
	for i := range 3 {
		child, err := worker.RegisterChild(ctx, "LOAD-"+uuid.NewString()[:8])
		require.NoError(t, err)
		email := "carer-" + uuid.NewString()[:8] + "@example.org"
		inv, err := worker.Invite(ctx, email, api.AccountKindFosterCarer)
		require.NoError(t, err)
		_, err = service.Activate(ctx, inv.AccountID, "idp|"+uuid.NewString(), email)
		require.NoError(t, err, i)
		_, err = worker.StartPlacement(ctx, child.ChildID, inv.AccountID, time.Now().Add(-time.Hour))
		require.NoError(t, err)
	}
	srv.CaughtUp(t)

	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(srv.Token(t, domain.RoleService, "portal")+"\n"), 0o600))
	jsonFile := filepath.Join(t.TempDir(), "load.json")
	out, errOut, err := runLoadArgs(ctx, "--url", srv.URL, "--token-file", tokenFile, "--concurrency", "1,4",
		"--duration", "200ms", "--json", jsonFile)
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out, errOut)
	require.Contains(t, out, "accessd load: server "+srv.URL)
	require.Contains(t, errOut, "3 allowed")

	var rep benchReport
	raw, err := os.ReadFile(jsonFile)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &rep))
	require.Equal(t, srv.URL, rep.Conditions.Server)
	require.Len(t, rep.Figures, 2)
	for i, f := range rep.Figures {
		require.Equal(t, "check.http", f.Name)
		require.Equal(t, []int{1, 4}[i], f.Concurrency)
		require.Positive(t, f.Count)
		require.Zero(t, f.Errors, f.FirstError)
		require.Positive(t, f.Latency.P99)
		_, ok := f.Values.get("server_cpu_us_per_check")
		require.True(t, ok, "the server's CPU from its /metrics")
		c, ok := f.Values.get("client_cpu_us_per_check")
		require.True(t, ok)
		require.Positive(t, c)
	}

	// --rate: a constant pace, latency from when each check was due.
	_, errOut, err = runLoadArgs(ctx, "--url", srv.URL, "--token-file", tokenFile, "--concurrency", "2",
		"--duration", "300ms", "--rate", "200", "--json", jsonFile)
	require.NoError(t, err, errOut)
	raw, err = os.ReadFile(jsonFile)
	require.NoError(t, err)
	rep = benchReport{}
	require.NoError(t, json.Unmarshal(raw, &rep))
	require.Len(t, rep.Figures, 1)
	f := rep.Figures[0]
	require.InDelta(t, 60, f.Count, 1, "every check due in the 300 ms window at 200/s")
	require.Zero(t, f.Errors, f.FirstError)
	require.Contains(t, f.Note, "200 checks/s asked at a constant pace")
	for _, name := range []string{"rate_asked", "late_starts", "service_p99_us"} {
		_, ok := f.Values.get(name)
		require.True(t, ok, name)
	}

	// --concurrency 0: the pairs only, as paths for wrk.
	pathsFile := filepath.Join(t.TempDir(), "paths.txt")
	_, errOut, err = runLoadArgs(ctx, "--url", srv.URL, "--token-file", tokenFile, "--concurrency", "0", "--paths-out", pathsFile)
	require.NoError(t, err, errOut)
	raw, err = os.ReadFile(pathsFile)
	require.NoError(t, err)
	paths := strings.Split(strings.TrimSpace(string(raw)), "\n")
	require.Len(t, paths, 3+1000, "the allowed pairs and at least 1,000 random ones")
	for _, p := range paths {
		require.True(t, strings.HasPrefix(p, "/v1/check?account_id="), p)
	}
}

// TestLoadRefusesBadFlagsAndAnUnreadyServer: flag errors are usage errors;
// a server that is not there is named.
func TestLoadRefusesBadFlagsAndAnUnreadyServer(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--url", "127.0.0.1:8080", "--token", "t"},
		{"--token", ""},
		{"--token", "t", "--token-file", "f"},
		{"--token", "t", "--concurrency", "0"},
		{"--token", "t", "--duration", "0s"},
		{"--token", "t", "--accounts", "0"},
		{"--token", "t", "--rate", "-1"},
		{"--token", "t", "--rate", "NaN"},
		{"--token", "t", "--concurrency", "0"},
	} {
		_, _, err := runLoadArgs(context.Background(), args...)
		require.ErrorIs(t, err, engine.ErrUsage, "%q", args)
	}
	_, _, err := runLoadArgs(context.Background(), "--url", "http://127.0.0.1:1", "--token", "t")
	require.ErrorContains(t, err, "the server at http://127.0.0.1:1")
}
