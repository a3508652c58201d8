package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
)

// TestRestartFromKeptSnapshot: serve writes the command service's
// kept-state snapshot next to the index's (mode 0600), at its interval
// and at its stop; a restart loads it before taking commands, and the
// commands on the restored child decide as before; a corrupt one is
// ignored with a warning, the children are then kept from one pass over
// the log (the warm-up), and the commands still decide.
func TestRestartFromKeptSnapshot(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--snapshot-interval", "1s")
	w := newWorld(s)
	child := w.registerChild()
	carer := w.account(string(domain.KindFosterCarer))
	w.place(child, carer.id, now().Add(-day))
	path := filepath.Join(s.dir, commands.KeptSnapshotFile)
	require.Eventually(t, func() bool { _, err := os.Stat(path); return err == nil }, e2eWait, 20*time.Millisecond,
		"the kept-state snapshot written at its interval")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	s.restart()
	require.Eventually(t, func() bool { return strings.Contains(s.logs.String(), "kept state loaded from its snapshot") },
		e2eWait, 10*time.Millisecond)
	other := w.account(string(domain.KindFosterCarer))
	w.place(child, other.id, now().Add(-time.Hour))
	requireAccess(t, w.check(other.id, child, "record"), true, "placement")

	s.stop() // its stop writes the snapshot once more: corrupt that one
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	data[len(data)/2] ^= 0xff
	require.NoError(t, os.WriteFile(path, data, 0o600))
	s.start()
	require.Eventually(t, func() bool { return strings.Contains(s.logs.String(), "kept-state snapshot ignored") },
		e2eWait, 10*time.Millisecond)
	require.Contains(t, s.logs.String(), "checksum")
	// Without a usable snapshot the child is kept from the log, once ready.
	require.Eventually(t, func() bool {
		return strings.Contains(s.logs.String(), `msg="commands: kept children warmed up from the log" children=1 `)
	}, e2eWait, 10*time.Millisecond, "the warm-up")
	third := w.account(string(domain.KindFosterCarer))
	w.place(child, third.id, now().Add(-time.Minute))
	requireAccess(t, w.check(third.id, child, "record"), true, "placement")
}
