package dirlock

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestAcquireIsExclusive: a second Acquire of a held directory fails with
// ErrHeld, naming the file; after Release it succeeds; the file is 0600.
func TestAcquireIsExclusive(t *testing.T) {
	dir := t.TempDir()
	first, err := Acquire(dir)
	require.NoError(t, err)
	fi, err := os.Stat(filepath.Join(dir, FileName))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	_, err = Acquire(dir)
	require.ErrorIs(t, err, ErrHeld)
	require.ErrorContains(t, err, filepath.Join(dir, FileName))

	other, err := Acquire(t.TempDir())
	require.NoError(t, err, "another directory is another lock")
	require.NoError(t, other.Release())

	require.NoError(t, first.Release())
	require.NoError(t, first.Release(), "a second Release does nothing")
	again, err := Acquire(dir)
	require.NoError(t, err)
	require.NoError(t, again.Release())
}

// held keeps the helper process's lock reachable.
var held *Lock

// TestAProcessThatDiesReleasesTheLock: a lock held by a child process
// refuses this one while the child lives, and is free once it is killed.
func TestAProcessThatDiesReleasesTheLock(t *testing.T) {
	if os.Getenv("DIRLOCK_HOLD") != "" {
		l, err := Acquire(os.Getenv("DIRLOCK_HOLD"))
		if err != nil {
			os.Exit(3)
		}
		held = l // reachable: no finalizer closes its file
		_, _ = os.Stdout.WriteString("held\n")
		time.Sleep(time.Hour) // until killed (a sleeping timer: no deadlock exit)
		os.Exit(4)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestAProcessThatDiesReleasesTheLock$")
	cmd.Env = append(os.Environ(), "DIRLOCK_HOLD="+dir)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	buf := make([]byte, 5)
	_, err = io.ReadFull(out, buf)
	require.NoError(t, err)
	require.Equal(t, "held\n", string(buf))

	_, err = Acquire(dir)
	require.ErrorIs(t, err, ErrHeld)

	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	l, err := Acquire(dir)
	require.NoError(t, err, "the killed holder's lock is released")
	require.NoError(t, l.Release())
}
