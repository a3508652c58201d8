package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/internal/engine"
)

// token runs accessd token's command function and returns what run would
// print and the exit code run would map its error to.
func token(t *testing.T, lookup func(string) (string, bool), args ...string) (int, string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := runToken(context.Background(), args, &environment{stdout: &out, stderr: &errb, lookup: lookup})
	code := exitOK
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		code = exitUsage
	default:
		code = exitError
	}
	return code, out.String(), errb.String(), err
}

func verifierFor(t *testing.T, dir, issuer, audience string, now time.Time) *auth.Verifier {
	t.Helper()
	secret, err := auth.LoadSecretFile(filepath.Join(dir, auth.SecretFileName))
	require.NoError(t, err)
	v, err := auth.NewVerifier(secret, issuer, audience, func() time.Time { return now })
	require.NoError(t, err)
	return v
}

func TestTokenVerifiesWithTheDataDirectorySecret(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	before := time.Now()
	code, out, errOut, err := token(t, noEnv, "--data-dir", dir, "--role", "worker", "--sub", "w-1")
	require.NoError(t, err)
	require.Equal(t, exitOK, code, errOut)
	require.True(t, strings.HasSuffix(out, "\n"))
	tok := strings.TrimSuffix(out, "\n")
	require.NotContains(t, tok, "\n", "only the token is printed")
	require.Empty(t, errOut)

	info, err := os.Stat(filepath.Join(dir, auth.SecretFileName))
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o600), info.Mode().Perm())

	actor, err := verifierFor(t, dir, "", "", before).Verify(tok)
	require.NoError(t, err)
	require.Equal(t, domain.Actor{ID: "w-1", Role: domain.RoleWorker}, actor)

	// The default ttl is one hour.
	_, err = verifierFor(t, dir, "", "", before.Add(59*time.Minute)).Verify(tok)
	require.NoError(t, err)
	_, err = verifierFor(t, dir, "", "", time.Now().Add(time.Hour+auth.Leeway+time.Second)).Verify(tok)
	require.ErrorContains(t, err, "token expired")

	// A second token reuses the secret: both verify with one verifier.
	code, out2, errOut, err := token(t, noEnv, "--data-dir", dir, "--role", "auditor", "--sub", "a-1", "--ttl", "10m")
	require.NoError(t, err)
	require.Equal(t, exitOK, code, errOut)
	v := verifierFor(t, dir, "", "", before)
	actor, err = v.Verify(strings.TrimSpace(out2))
	require.NoError(t, err)
	require.Equal(t, domain.Actor{ID: "a-1", Role: domain.RoleAuditor}, actor)
	_, err = v.Verify(tok)
	require.NoError(t, err)
	_, err = verifierFor(t, dir, "", "", time.Now().Add(10*time.Minute+auth.Leeway+time.Second)).Verify(strings.TrimSpace(out2))
	require.ErrorContains(t, err, "token expired", "--ttl sets the expiry")
}

func TestTokenIssuerAudienceAndEnvironment(t *testing.T) {
	dir := t.TempDir()
	env := envOf(map[string]string{
		"ACCESSLEDGER_DATA_DIR": dir, "ACCESSLEDGER_ROLE": "service", "ACCESSLEDGER_SUB": "portal-backend",
		"ACCESSLEDGER_ISSUER": "accessledger", "ACCESSLEDGER_AUDIENCE": "api",
	})
	code, out, errOut, err := token(t, env, "--ttl", "5m")
	require.NoError(t, err)
	require.Equal(t, exitOK, code, errOut)
	actor, err := verifierFor(t, dir, "accessledger", "api", time.Now()).Verify(strings.TrimSpace(out))
	require.NoError(t, err)
	require.Equal(t, domain.Actor{ID: "portal-backend", Role: domain.RoleService}, actor)
	_, err = verifierFor(t, dir, "someone-else", "", time.Now()).Verify(strings.TrimSpace(out))
	require.ErrorContains(t, err, "wrong issuer")
}

func TestTokenWorksBeforeAndAfterTheStoreExists(t *testing.T) {
	// make run first: the data directory holds the store, no secret yet.
	dir := t.TempDir()
	code, _, errOut := runCmd(t, context.Background(), noEnv, "migrate", "--data-dir", dir)
	require.Equal(t, exitOK, code, errOut)
	code, out, errOut, err := token(t, noEnv, "--data-dir", dir, "--role", "manager", "--sub", "m-1")
	require.NoError(t, err)
	require.Equal(t, exitOK, code, errOut)
	_, err = verifierFor(t, dir, "", "", time.Now()).Verify(strings.TrimSpace(out))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(dir, engine.DefaultDBName))
}

func TestTokenUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no role", []string{"--sub", "w"}, "--role is required"},
		{"unknown role", []string{"--role", "admin", "--sub", "w"}, `--role "admin"`},
		{"system role", []string{"--role", "system", "--sub", "w"}, `--role "system"`},
		{"no sub", []string{"--role", "worker"}, "--sub is required"},
		{"blank sub", []string{"--role", "worker", "--sub", "  "}, "--sub: subject missing or blank"},
		{"sub too long", []string{"--role", "worker", "--sub", strings.Repeat("s", auth.MaxSubjectBytes+1)}, "--sub: subject longer"},
		{"sub with a newline", []string{"--role", "worker", "--sub", "a\nb"}, "control character"},
		{"zero ttl", []string{"--role", "worker", "--sub", "w", "--ttl", "0s"}, "--ttl 0s: must be at least 1s"},
		{"negative ttl", []string{"--role", "worker", "--sub", "w", "--ttl", "-1h"}, "--ttl -1h0m0s"},
		{"sub-second ttl", []string{"--role", "worker", "--sub", "w", "--ttl", "500ms"}, "must be at least 1s"},
		{"unparsable ttl", []string{"--role", "worker", "--sub", "w", "--ttl", "forever"}, "invalid value"},
		{"a century", []string{"--role", "worker", "--sub", "w", "--ttl", "876000h"}, "a worker token lives at most 24h0m0s"},
		{"a worker for a day and a second", []string{"--role", "worker", "--sub", "w", "--ttl", "24h0m1s"}, "lives at most 24h0m0s"},
		{"a dpo for two days", []string{"--role", "dpo", "--sub", "d", "--ttl", "48h"}, "a dpo token lives at most 24h0m0s"},
		{"the service for a century", []string{"--role", "service", "--sub", "s", "--ttl", "876000h"}, "a service token lives at most 2160h0m0s"},
		{"the service for 91 days", []string{"--role", "service", "--sub", "s", "--ttl", "2184h"}, "lives at most 2160h0m0s"},
		{"sub with a bidi control", []string{"--role", "worker", "--sub", "w\u202e1"}, "--sub: subject contains an invisible or bidirectional formatting character (U+202E)"},
		{"sub with a zero-width space", []string{"--role", "worker", "--sub", "w\u200b1"}, "U+200B"},
		{"sub with a space", []string{"--role", "worker", "--sub", "worker ann"}, "--sub: subject contains a space"},
		{"empty data dir", []string{"--role", "worker", "--sub", "w", "--data-dir", ""}, "--data-dir is empty"},
		{"stray argument", []string{"--role", "worker", "--sub", "w", "extra"}, `unexpected argument "extra"`},
		{"unknown flag", []string{"--role", "worker", "--sub", "w", "--nope"}, "flag provided but not defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"--data-dir", dir}, tc.args...)
			code, out, _, err := token(t, noEnv, args...)
			require.Equal(t, exitUsage, code, "err=%v", err)
			require.ErrorContains(t, err, tc.want)
			require.Empty(t, out)
			require.NoFileExists(t, filepath.Join(dir, auth.SecretFileName), "a refused command creates no secret")
		})
	}
	// A bad value from the environment is a usage error too.
	code, _, _, err := token(t, envOf(map[string]string{"ACCESSLEDGER_TTL": "soon"}), "--data-dir", t.TempDir(), "--role", "worker", "--sub", "w")
	require.Equal(t, exitUsage, code)
	require.ErrorContains(t, err, "ACCESSLEDGER_TTL")
}

func TestTokenRefusesAnExposedSecret(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes are not enforced on Windows")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, auth.SecretFileName)
	require.NoError(t, os.WriteFile(path, []byte(strings.Repeat("ab", 32)), 0o600))
	require.NoError(t, os.Chmod(path, 0o644))
	code, out, _, err := token(t, noEnv, "--data-dir", dir, "--role", "worker", "--sub", "w")
	require.Equal(t, exitError, code)
	require.ErrorContains(t, err, "chmod 600")
	require.Empty(t, out)
}

func TestTokenHelp(t *testing.T) {
	code, _, errOut, _ := token(t, noEnv, "-h")
	require.Equal(t, exitOK, code)
	for _, f := range []string{"-data-dir", "-role", "-sub", "-ttl", "-issuer", "-audience"} {
		require.Contains(t, errOut, f)
	}
}

// TestTokenTTLCaps: --ttl is capped by the role (auth.MaxTTL): a day for
// people, 90 days for the service; a longer one is a usage error (exit 2,
// above), the longest allowed verifies.
func TestTokenTTLCaps(t *testing.T) {
	require.Equal(t, 2, exitUsage)
	for _, tc := range []struct {
		role string
		ttl  string
		life time.Duration
	}{
		{"worker", "24h", 24 * time.Hour},
		{"auditor", "24h", 24 * time.Hour},
		{"service", "2160h", 90 * 24 * time.Hour},
	} {
		t.Run(tc.role, func(t *testing.T) {
			dir := t.TempDir()
			before := time.Now()
			code, out, errOut, err := token(t, noEnv, "--data-dir", dir, "--role", tc.role, "--sub", "auth0|5f7c8ec7", "--ttl", tc.ttl)
			require.NoError(t, err)
			require.Equal(t, exitOK, code, errOut)
			_, err = verifierFor(t, dir, "", "", before).Verify(strings.TrimSpace(out))
			require.NoError(t, err)
			_, err = verifierFor(t, dir, "", "", time.Now().Add(tc.life+auth.Leeway+time.Second)).Verify(strings.TrimSpace(out))
			require.ErrorContains(t, err, "token expired")
		})
	}
}
