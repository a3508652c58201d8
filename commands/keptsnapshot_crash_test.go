package commands_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/datagen"
)

// openSQLite opens (and migrates) the SQLite event store at url.
func openSQLite(t testing.TB, url string) *sqlstore.Store {
	t.Helper()
	ctx := context.Background()
	db := sqltest.Open(t, url)
	require.NoError(t, sqlstore.Migrate(ctx, db))
	st, err := sqlstore.New(ctx, db)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// childrenOf returns the children whose streams log holds.
func childrenOf(t testing.TB, st eventlog.Store) []uuid.UUID {
	t.Helper()
	recs, err := st.ReadAll(context.Background(), eventlog.Start, 0)
	require.NoError(t, err)
	var out []uuid.UUID
	for _, r := range recs {
		if r.Version == 1 && strings.HasPrefix(r.Stream, domain.ChildStreamPrefix) {
			out = append(out, uuid.MustParse(strings.TrimPrefix(r.Stream, domain.ChildStreamPrefix)))
		}
	}
	return out
}

// TestKeptSnapshotWriterProcess is the child process of
// TestKeptSnapshotKilledWhileWriting: commands on every child of the
// store, over and over, with a kept-state snapshot written after every
// change, until it is killed.
func TestKeptSnapshotWriterProcess(t *testing.T) {
	url, dir := os.Getenv("COMMANDS_KEPT_SNAPSHOT_DB"), os.Getenv("COMMANDS_KEPT_SNAPSHOT_DIR")
	if url == "" {
		t.Skip("the child process of TestKeptSnapshotKilledWhileWriting")
	}
	st := openSQLite(t, url)
	children := childrenOf(t, st)
	svc, err := commands.New(st, &recordingRefusals{}, commands.Config{Logger: slog.New(slog.NewTextHandler(os.Stdout, nil)),
		KeptSnapshots: commands.KeptSnapshotConfig{Dir: dir, Every: 1, Interval: 10 * time.Millisecond}})
	require.NoError(t, err)
	ctx := context.Background()
	go func() { _ = svc.RunKeptSnapshots(ctx) }()
	manager := domain.Actor{ID: "manager-1", Role: domain.RoleManager}
	for i := 0; ; i++ {
		for _, c := range children {
			_, _ = svc.AllocateWorker(ctx, as(manager), commands.AllocateWorker{ChildID: c, WorkerID: fmt.Sprintf("worker-%d", i%7)})
		}
	}
}

// TestKeptSnapshotKilledWhileWriting kills (SIGKILL) a process that runs
// commands on a generated log (datagen.Small) and writes its kept-state
// snapshot after every change, at moments that move along its run; the
// snapshot left is absent or whole and loads: every state restored is the
// fold of its stream up to its version, a command on it decides on the
// events after, and the next write clears the crash's leftovers.
func TestKeptSnapshotKilledWhileWriting(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	ctx := context.Background()
	url := sqltest.SQLiteFile(t)
	st := openSQLite(t, url)
	_, err := datagen.Generate(ctx, datagen.Small, datagen.BatchSink(st.AppendBatch), datagen.Options{Seed: 5})
	require.NoError(t, err)
	children := childrenOf(t, st)
	require.NotEmpty(t, children)
	e := &env{store: st, refusals: &recordingRefusals{}, clock: &fakeClock{now: time.Now()}}
	loadedOnce := false
	for i := range 4 {
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestKeptSnapshotWriterProcess$", "-test.v")
		cmd.Env = append(os.Environ(), "COMMANDS_KEPT_SNAPSHOT_DB="+url, "COMMANDS_KEPT_SNAPSHOT_DIR="+dir)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		writing := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(stdout)
			first := true
			for sc.Scan() {
				if first && strings.Contains(sc.Text(), "kept-state snapshot written") {
					first = false
					close(writing)
				}
			}
		}()
		select {
		case <-writing:
		case <-time.After(120 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatal("the child never wrote a snapshot")
		}
		time.Sleep(time.Duration(5+40*i) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()

		svc, _, out := restarted(t, e, dir)
		info, err := svc.LoadKeptSnapshot(ctx, st)
		if errors.Is(err, os.ErrNotExist) {
			t.Logf("kill %d: no snapshot left", i)
			continue
		}
		require.NoError(t, err, "kill %d: the snapshot left is whole", i)
		loadedOnce = true
		t.Logf("kill %d: snapshot of %d children, %d accounts, %d bytes", i, info.Children, info.Accounts, info.Bytes)
		restored := 0
		for _, c := range children {
			kept, ok := svc.KeptChild(c)
			if !ok {
				continue
			}
			restored++
			sameAggregate(t, freshChildAt(t, e, c, kept.Version()), kept, childWhole)
		}
		require.Equal(t, info.Children, restored)
		c := children[i%len(children)]
		_, err = svc.AllocateWorker(ctx, as(domain.Actor{ID: "manager-2", Role: domain.RoleManager}),
			commands.AllocateWorker{ChildID: c, WorkerID: fmt.Sprintf("after-kill-%d", i)})
		require.NoError(t, err, out.String())
		kept, ok := svc.KeptChild(c)
		require.True(t, ok)
		sameAggregate(t, freshChildAt(t, e, c, kept.Version()), kept, childWhole)
		require.Equal(t, uint64(len(e.stream(t, domain.ChildStream(c))))-1, kept.Version())
		_, err = svc.WriteKeptSnapshot(ctx)
		require.NoError(t, err)
		leftovers, err := filepath.Glob(filepath.Join(dir, commands.KeptSnapshotFile+".tmp-*"))
		require.NoError(t, err)
		require.Empty(t, leftovers)
	}
	require.True(t, loadedOnce, "some kill left a snapshot to load")
}
