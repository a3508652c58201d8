package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/projections/accessindex"
)

// TestRestartFromSnapshot: serve writes the access index's snapshot into
// its data directory (mode 0600) once ready; a restart loads it and replays
// only the log after it, with the same answers; a corrupt snapshot is
// ignored with a warning and the whole log replayed, with the same
// answers; with --snapshot-every 0 nothing is loaded or written.
func TestRestartFromSnapshot(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--snapshot-interval", "1s")
	w := newWorld(s)
	child := w.registerChild()
	carer := w.account(string(domain.KindFosterCarer))
	w.place(child, carer.id, now().Add(-day))
	path := filepath.Join(s.dir, accessindex.SnapshotFile)
	require.Eventually(t, func() bool {
		data, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pos, err := accessindex.DecodeSnapshot(data)
		return err == nil && pos.Commit == s.head()
	}, e2eWait, 20*time.Millisecond, "a snapshot at the head")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	other := w.account(string(domain.KindFosterCarer)) // the tail
	w.place(child, other.id, now().Add(-time.Hour))
	before := []e2eCheck{w.check(carer.id, child, "record"), w.check(other.id, child, "record")}
	requireAccess(t, before[1], true, "placement")

	same := func(what string) {
		t.Helper()
		after := []e2eCheck{w.check(carer.id, child, "record"), w.check(other.id, child, "record")}
		for i := range before {
			require.Equal(t, before[i].Allowed, after[i].Allowed, what)
			require.Equal(t, text(before[i].Reason), text(after[i].Reason), what)
			require.Equal(t, before[i].Position, after[i].Position, what)
		}
	}
	s.restart()
	require.Contains(t, s.logs.String(), "access index loaded from its snapshot")
	same("after a restart from the snapshot")

	// Corrupt it while the server is stopped: a running server writes a
	// fresh snapshot every second and on its way out, over the damage.
	s.stop()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	data[len(data)/2] ^= 0xff
	require.NoError(t, os.WriteFile(path, data, 0o600))
	s.start()
	logs := s.logs.String()
	require.Contains(t, logs, "level=WARN")
	require.Contains(t, logs, "access index snapshot ignored; replaying the whole log")
	require.Contains(t, logs, "checksum")
	same("after a restart with a corrupt snapshot")

	s.stop()
	require.NoError(t, os.Remove(path))
	s.flags = append(s.flags, "--snapshot-every", "0")
	s.start()
	require.NotContains(t, s.logs.String(), "snapshot")
	same("after a restart with snapshots off")
	time.Sleep(1500 * time.Millisecond)
	require.NoFileExists(t, path)
	require.False(t, strings.Contains(s.logs.String(), "snapshot written"))
}
