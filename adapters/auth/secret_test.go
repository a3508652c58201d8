package auth_test

import (
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/domain"
)

func skipOnWindows(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes are not enforced on Windows")
	}
}

func TestLoadOrCreateSecretCreatesThenReuses(t *testing.T) {
	skipOnWindows(t)
	dir := filepath.Join(t.TempDir(), "data") // missing: created
	s1, err := auth.LoadOrCreateSecret(dir)
	require.NoError(t, err)
	require.Len(t, s1, auth.MinSecretBytes)

	path := filepath.Join(dir, auth.SecretFileName)
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o600), info.Mode().Perm())
	dinfo, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o700), dinfo.Mode().Perm())

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, hex.EncodeToString(s1)+"\n", string(raw))

	s2, err := auth.LoadOrCreateSecret(dir)
	require.NoError(t, err)
	require.Equal(t, s1, s2, "the second start reuses the secret")

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file is left behind")

	// A token minted with it verifies with it.
	tok, err := auth.Mint(s1, auth.Claims{Subject: "w", Role: domain.RoleWorker, TTL: time.Hour}, time.Now())
	require.NoError(t, err)
	v, err := auth.NewVerifier(s2, "", "", nil)
	require.NoError(t, err)
	_, err = v.Verify(tok)
	require.NoError(t, err)
}

func TestLoadOrCreateSecretIsRandom(t *testing.T) {
	a, err := auth.LoadOrCreateSecret(t.TempDir())
	require.NoError(t, err)
	b, err := auth.LoadOrCreateSecret(t.TempDir())
	require.NoError(t, err)
	require.NotEqual(t, a, b)
}

func TestLoadOrCreateSecretConcurrentCreationYieldsOneSecret(t *testing.T) {
	for round := range 20 {
		dir := t.TempDir()
		const n = 8
		secrets := make([][]byte, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				secrets[i], errs[i] = auth.LoadOrCreateSecret(dir)
			})
		}
		close(start)
		wg.Wait()
		for i := range n {
			require.NoError(t, errs[i], "round %d goroutine %d", round, i)
			require.Equal(t, secrets[0], secrets[i], "round %d goroutine %d", round, i)
		}
		onDisk, err := auth.LoadSecretFile(filepath.Join(dir, auth.SecretFileName))
		require.NoError(t, err)
		require.Equal(t, secrets[0], onDisk)
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Len(t, entries, 1, "no temporary file is left behind")
	}
}

func TestSecretFileRefusals(t *testing.T) {
	skipOnWindows(t)
	good := strings.Repeat("ab", auth.MinSecretBytes)
	tests := []struct {
		name    string
		content string
		mode    fs.FileMode
		want    string
	}{
		{"group readable", good, 0o640, "chmod 600"},
		{"world readable", good, 0o644, "chmod 600"},
		{"group writable", good, 0o620, "chmod 600"},
		{"others executable", good, 0o601, "chmod 600"},
		{"short", strings.Repeat("ab", auth.MinSecretBytes-1), 0o600, "holds 31 bytes of secret, need at least 32"},
		{"empty", "", 0o600, "holds 0 bytes"},
		{"not hex", strings.Repeat("zz", auth.MinSecretBytes), 0o600, "does not hold hex"},
		{"odd hex", good + "a", 0o600, "does not hold hex"},
		{"too large", strings.Repeat("ab", 4096), 0o600, "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, auth.SecretFileName)
			require.NoError(t, os.WriteFile(path, []byte(tc.content), 0o600))
			require.NoError(t, os.Chmod(path, tc.mode))

			_, err := auth.LoadSecretFile(path)
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), good, "the secret never appears in an error")

			_, err = auth.LoadOrCreateSecret(dir)
			require.ErrorContains(t, err, tc.want, "an existing bad file is refused, never replaced")
			after, rerr := os.ReadFile(path)
			require.NoError(t, rerr)
			require.Equal(t, tc.content, string(after))
		})
	}
}

func TestLoadSecretFileAccepts(t *testing.T) {
	skipOnWindows(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	want := []byte(strings.Repeat("\x01\xfe", 24)) // 48 bytes: longer secrets are fine
	require.NoError(t, os.WriteFile(path, []byte("  "+strings.ToUpper(hex.EncodeToString(want))+"\r\n"), 0o600))
	got, err := auth.LoadSecretFile(path)
	require.NoError(t, err)
	require.Equal(t, want, got)

	require.NoError(t, os.Chmod(path, 0o400))
	got, err = auth.LoadSecretFile(path)
	require.NoError(t, err, "read-only for the owner is fine")
	require.Equal(t, want, got)
}

func TestLoadSecretFileMissingAndNotRegular(t *testing.T) {
	dir := t.TempDir()
	_, err := auth.LoadSecretFile(filepath.Join(dir, "nope"))
	require.ErrorIs(t, err, fs.ErrNotExist)

	_, err = auth.LoadSecretFile(dir)
	require.ErrorContains(t, err, "not a regular file")

	_, err = auth.LoadOrCreateSecret("")
	require.Error(t, err)
}
