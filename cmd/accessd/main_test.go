package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/internal/engine"
)

func noEnv(string) (string, bool) { return "", false }

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func runCmd(t *testing.T, ctx context.Context, lookup func(string) (string, bool), args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(ctx, args, &out, &errb, lookup)
	return code, out.String(), errb.String()
}

func TestRunUsage(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{"no command", nil, exitUsage, "Usage: accessd COMMAND", ""},
		{"help", []string{"help"}, exitOK, "serve", ""},
		{"unknown command", []string{"frobnicate"}, exitUsage, "", `unknown command "frobnicate"`},
		{"unknown flag", []string{"status", "--nope"}, exitUsage, "", "flag provided but not defined: -nope"},
		{"stray argument", []string{"status", "extra"}, exitUsage, "", `unexpected argument "extra"`},
		{"bad log level", []string{"status", "--log-level", "loud"}, exitUsage, "", "--log-level"},
		{"bad log format", []string{"status", "--log-format", "xml"}, exitUsage, "", "--log-format"},
		{"empty data dir", []string{"status", "--data-dir", ""}, exitUsage, "", "--data-dir is empty"},
		{"unsupported store", []string{"status", "--event-store", "mysql://x"}, exitError, "", "unsupported database url"},
		{"command help", []string{"status", "-h"}, exitOK, "", "-event-store"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, context.Background(), noEnv, tc.args...)
			require.Equal(t, tc.code, code, "stdout=%s stderr=%s", out, errOut)
			require.Contains(t, out, tc.inStdout)
			require.Contains(t, errOut, tc.inStderr)
		})
	}
}

func TestMigrateAndStatusOnTheEmbeddedDefault(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "nested", "data")
	code, out, errOut := runCmd(t, context.Background(), noEnv, "migrate", "--data-dir", dir)
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "migrated sqlite:"+filepath.Join(dir, engine.DefaultDBName))
	require.FileExists(t, filepath.Join(dir, engine.DefaultDBName))

	// The environment names the data directory when the flag is absent.
	code, out, errOut = runCmd(t, context.Background(), envOf(map[string]string{"ACCESSLEDGER_DATA_DIR": dir}), "status")
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "events: 0")
	require.Contains(t, out, filepath.Join(dir, engine.DefaultDBName))
	require.Contains(t, out, "outbox events: published up to 0, no replica publishing\n")
	require.Contains(t, out, "outbox access.changed: published up to 0, no replica publishing\n")

	// migrate prepared every table of the read store serve needs.
	db := sqltest.Open(t, "sqlite:"+filepath.Join(dir, engine.DefaultDBName))
	for _, table := range []string{"projection_checkpoints", "security_log", "idempotency_keys", "outbox_checkpoints", "deadlines"} {
		var n int
		require.NoError(t, db.QueryRowContext(context.Background(),
			"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", table).Scan(&n))
		require.Equal(t, 1, n, "table %s", table)
	}
}

// TestStatusNamesTheOutboxPublisher: status reports each outbox
// publisher's checkpoint and the replica holding its lease.
func TestStatusNamesTheOutboxPublisher(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		owner string
		until time.Time
		want  string
	}{
		{"", time.Time{}, "no replica publishing"},
		{"api-a", now.Add(10 * time.Second), "published by api-a (lease until 2026-11-26T09:00:10Z)"},
		{"api-a", now.Add(-time.Second), "lease of api-a ran out at 2026-11-26T08:59:59Z: the next replica to try takes over"},
	} {
		require.Equal(t, tc.want, leaseText(tc.owner, tc.until, now))
	}
}

func TestFlagWinsOverEnvironment(t *testing.T) {
	flagDir, envDir := t.TempDir(), t.TempDir()
	code, out, errOut := runCmd(t, context.Background(), envOf(map[string]string{"ACCESSLEDGER_DATA_DIR": envDir}),
		"status", "--data-dir", flagDir)
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, flagDir)
	require.Contains(t, out, "outbox events: not set up in the read store", "status does not migrate the read store")
	require.NoFileExists(t, filepath.Join(envDir, engine.DefaultDBName))
}

func TestBadEnvironmentValueIsAUsageError(t *testing.T) {
	code, _, errOut := runCmd(t, context.Background(), envOf(map[string]string{"ACCESSLEDGER_LOG_FORMAT": "xml"}),
		"status", "--data-dir", t.TempDir())
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "--log-format")
}

func TestServeStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	dir := privateDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var out, errb syncBuffer
	go func() {
		done <- run(ctx, []string{"serve", "--data-dir", dir, "--addr", "127.0.0.1:0"}, &out, &errb, noEnv)
	}()
	require.Eventually(t, func() bool { return strings.Contains(errb.String(), "ready: read models and access index caught up") }, 30*time.Second, 10*time.Millisecond, "%s", &errb)
	cancel()
	select {
	case code := <-done:
		require.Equal(t, exitOK, code, errb.String())
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop after cancellation")
	}
	require.Contains(t, errb.String(), "shutting down")
}

// TestServeRefusesADataDirectoryOthersCanRead: the data directory holds
// the SQLite files, the signing secret and keys; serve refuses one that
// group or others can access, with exit code 2, before it creates
// anything in it.
func TestServeRefusesADataDirectoryOthersCanRead(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("POSIX modes")
	}
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	code, _, errOut := runCmd(t, context.Background(), noEnv, "serve", "--data-dir", dir, "--addr", "127.0.0.1:0")
	require.Equal(t, exitUsage, code, errOut)
	require.Contains(t, errOut, "group or others can access")
	require.Contains(t, errOut, "chmod 700")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "nothing was created")
}

// TestServeRefusesADataDirectoryInUse: a second serve on the data
// directory of a running one exits with code 1, saying the directory is in
// use, and changes nothing; the first goes on answering. Once the first
// stops, the directory can be served again.
func TestServeRefusesADataDirectoryInUse(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	w := newWorld(s)
	child := w.registerChild()
	carer := w.account("foster_carer")
	head := s.head()

	// Were the directory not locked, this serve would run until the
	// context ends, and exit 0.
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	code, _, errOut := runCmd(t, ctx, noEnv, "serve", "--data-dir", s.dir, "--addr", "127.0.0.1:0")
	require.Equal(t, exitError, code, errOut)
	require.Contains(t, errOut, "in use by another accessd serve")
	require.Contains(t, errOut, filepath.Join(s.dir, "accessd.lock"))
	require.Equal(t, head, s.head(), "the refused serve appended nothing")
	require.False(t, w.check(carer.id, child, "record").Allowed, "the first serve still answers")

	s.restart()
	require.Equal(t, head, s.head())
}
