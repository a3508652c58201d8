package accessindex_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accessindex"
)

// runUntilReady runs ix on log until it is ready, stops it, and returns it.
func runUntilReady(t testing.TB, ix *accessindex.Index, log accessindex.Follower) *accessindex.Index {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := start(t, ctx, ix, log)
	waitReady(t, ix, done)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	return ix
}

// requireSameIndex fails unless a and b hold exactly the same state.
func requireSameIndex(t *testing.T, want, got *accessindex.Index) {
	t.Helper()
	w, g := want.DumpForTest(), got.DumpForTest()
	for i := range min(len(w), len(g)) {
		if w[i] != g[i] {
			t.Fatalf("indexes differ at line %d:\nwant %s\n got %s", i, w[i], g[i])
		}
	}
	require.Equal(t, len(w), len(g), "lines in the indexes' dumps")
}

// snapshotLog is a generated log in an in-memory SQLite store, split at
// cut: the snapshot is taken there and the rest is the tail.
type snapshotLog struct {
	w    *world
	recs []eventlog.Record
	cut  int
}

func newSnapshotLog(t *testing.T, seed uint64, children int) *snapshotLog {
	w := newWorld(t, seed)
	generate(w, children)
	recs := w.take()
	return &snapshotLog{w: w, recs: recs, cut: len(recs) * 7 / 10}
}

// store returns a new store holding recs.
func (l *snapshotLog) store(t *testing.T, recs []eventlog.Record) *sqlstore.Store {
	s := openStore(t, sqltest.Open(t, sqltest.SQLiteMemory(t)))
	if len(recs) > 0 {
		appendAll(t, s, recs)
	}
	return s
}

// TestSnapshotRoundTrip: an index loaded from a snapshot and run over the
// tail is exactly the index of a full replay (every map, the change buffer,
// the fold), and answers every pair as the world does; the snapshot's
// writer leaves no temporary file and makes the file 0600.
func TestSnapshotRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		children int
		cut      func(n int) int
		buffer   int
	}{
		{"seventy percent, then the tail", 120, func(n int) int { return n * 7 / 10 }, 0},
		{"snapshot at the head, no tail", 60, func(n int) int { return n }, 0},
		{"one record, then the rest", 30, func(int) int { return 1 }, 0},
		{"a change buffer that dropped changes", 80, func(n int) int { return n / 2 }, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newSnapshotLog(t, 900, tt.children)
			l.cut = tt.cut(len(l.recs))
			s := l.store(t, l.recs[:l.cut])
			opts := []accessindex.Option{quiet, accessindex.WithPageSize(97)}
			if tt.buffer > 0 {
				opts = append(opts, accessindex.WithChangeBuffer(tt.buffer))
			}
			dir := t.TempDir()
			first := runUntilReady(t, accessindex.New(opts...), s)
			info, err := first.WriteSnapshot(t.Context(), dir)
			require.NoError(t, err)
			require.Equal(t, l.recs[l.cut-1].Position, info.Position)
			require.Equal(t, uint64(l.cut), info.Applied)
			fi, err := os.Stat(filepath.Join(dir, accessindex.SnapshotFile))
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
			require.Equal(t, int64(info.Bytes), fi.Size())
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Len(t, entries, 1, "no temporary file left")

			if l.cut < len(l.recs) {
				appendAll(t, s, l.recs[l.cut:])
			}
			loaded := accessindex.New(opts...)
			got, err := loaded.LoadSnapshot(t.Context(), dir, s)
			require.NoError(t, err)
			require.Equal(t, info.Position, got.Position)
			require.Equal(t, info.Pairs, got.Pairs)
			require.Equal(t, info.Position, loaded.Position())
			runUntilReady(t, loaded, s)
			full := runUntilReady(t, accessindex.New(opts...), s)
			require.Equal(t, uint64(len(l.recs)), full.Stats().Applied)
			requireSameIndex(t, full, loaded)
			requireAgrees(t, loaded, l.w, t0.AddDate(-1, 0, 0), t0, t0.AddDate(1, 0, 0))

			_, err = loaded.LoadSnapshot(t.Context(), dir, s)
			require.ErrorIs(t, err, accessindex.ErrSnapshotNotFresh)
		})
	}
}

// rewrite returns data with its checksum recomputed after f changed it.
func rewrite(data []byte, f func([]byte) []byte) []byte {
	body := f(bytes.Clone(data[:len(data)-sha256.Size]))
	sum := sha256.Sum256(body)
	return append(body, sum[:]...)
}

// TestSnapshotIgnored: a snapshot that is corrupt, truncated, of another
// format version, ahead of the log or not matching it is ignored with a
// warning naming why, the index is left new, and Run replays the whole
// log into the same index as without a snapshot.
func TestSnapshotIgnored(t *testing.T) {
	l := newSnapshotLog(t, 901, 60)
	s := l.store(t, l.recs[:l.cut])
	dir := t.TempDir()
	_, err := runUntilReady(t, accessindex.New(quiet), s).WriteSnapshot(t.Context(), dir)
	require.NoError(t, err)
	good, err := os.ReadFile(filepath.Join(dir, accessindex.SnapshotFile))
	require.NoError(t, err)
	appendAll(t, s, l.recs[l.cut:])
	full := runUntilReady(t, accessindex.New(quiet), s)

	short := l.store(t, l.recs[:l.cut/2])
	other := newSnapshotLog(t, 902, 60)
	changed := l.store(t, other.recs)
	require.Greater(t, len(other.recs), l.cut, "the other log reaches the snapshot's position")

	tests := []struct {
		name string
		data []byte
		log  *sqlstore.Store
		want error
		warn string
	}{
		{"a byte flipped", func() []byte { b := bytes.Clone(good); b[len(b)/2] ^= 0x40; return b }(), s,
			accessindex.ErrSnapshotCorrupt, "checksum"},
		{"truncated", good[:len(good)*2/3], s, accessindex.ErrSnapshotCorrupt, "checksum"},
		{"empty", nil, s, accessindex.ErrSnapshotCorrupt, "not a snapshot"},
		{"not a snapshot", []byte(strings.Repeat("not a snapshot at all, ", 10)), s, accessindex.ErrSnapshotCorrupt, "not a snapshot"},
		{"an old format version", rewrite(good, func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[len(accessindex.SnapshotMagic):], accessindex.SnapshotVersion-1)
			return b
		}), s, accessindex.ErrSnapshotVersion, fmt.Sprintf("version %d, this build reads %d", accessindex.SnapshotVersion-1, accessindex.SnapshotVersion)},
		{"a payload that is not one", rewrite(good, func(b []byte) []byte {
			return append(b[:len(accessindex.SnapshotMagic)+4], "garbage"...)
		}), s, accessindex.ErrSnapshotCorrupt, "decode"},
		{"ahead of the log's head", good, short, accessindex.ErrSnapshotAhead, "ahead"},
		{"another record at its position", good, changed, accessindex.ErrSnapshotMismatch, "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, accessindex.SnapshotFile), tt.data, 0o600))
			var logs bytes.Buffer
			ix := accessindex.New(accessindex.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			_, err := ix.LoadSnapshot(t.Context(), dir, tt.log)
			require.ErrorIs(t, err, tt.want)
			require.Equal(t, eventlog.Start, ix.Position(), "the index stays new")

			_, ok := ix.StartFromSnapshot(t.Context(), dir, tt.log)
			require.False(t, ok)
			require.Contains(t, logs.String(), "level=WARN")
			require.Contains(t, logs.String(), "snapshot ignored; replaying the whole log")
			require.Contains(t, logs.String(), tt.warn)
			if tt.log == s {
				requireSameIndex(t, full, runUntilReady(t, ix, s))
			}
		})
	}

	t.Run("no snapshot", func(t *testing.T) {
		var logs bytes.Buffer
		ix := accessindex.New(accessindex.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		_, ok := ix.StartFromSnapshot(t.Context(), t.TempDir(), s)
		require.False(t, ok)
		require.Contains(t, logs.String(), "level=INFO")
		require.Contains(t, logs.String(), "no snapshot")
	})
}

// TestSnapshotCrashLeftovers: what a crash during a write can leave (a
// partial temporary file beside the previous snapshot) changes nothing: the
// previous snapshot loads, and the next write removes the leftover.
func TestSnapshotCrashLeftovers(t *testing.T) {
	l := newSnapshotLog(t, 903, 40)
	s := l.store(t, l.recs[:l.cut])
	dir := t.TempDir()
	ix := runUntilReady(t, accessindex.New(quiet), s)
	info, err := ix.WriteSnapshot(t.Context(), dir)
	require.NoError(t, err)
	good, err := os.ReadFile(filepath.Join(dir, accessindex.SnapshotFile))
	require.NoError(t, err)
	leftover := filepath.Join(dir, accessindex.SnapshotFile+".tmp-123456")
	require.NoError(t, os.WriteFile(leftover, good[:len(good)/3], 0o600))

	got, err := accessindex.New(quiet).LoadSnapshot(t.Context(), dir, s)
	require.NoError(t, err)
	require.Equal(t, info.Position, got.Position)

	_, err = ix.WriteSnapshot(t.Context(), dir)
	require.NoError(t, err)
	require.NoFileExists(t, leftover)

	require.NoError(t, accessindex.RemoveSnapshot(dir))
	require.NoFileExists(t, filepath.Join(dir, accessindex.SnapshotFile))
	require.NoError(t, accessindex.RemoveSnapshot(dir), "removing no snapshot is fine")
}

// TestSnapshotKilledWhileWriting kills (SIGKILL) a process that writes
// snapshots in a loop, at random moments: afterwards the directory holds no
// snapshot or a whole one, never a broken one.
func TestSnapshotKilledWhileWriting(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	for i := range 6 {
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestSnapshotWriterProcess$", "-test.v")
		cmd.Env = append(os.Environ(), "ACCESSINDEX_SNAPSHOT_WRITER_DIR="+dir)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		writing := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(stdout)
			first := true
			for sc.Scan() { // read to the end, so the child never blocks
				if first && strings.Contains(sc.Text(), "writing") {
					first = false
					close(writing)
				}
			}
		}()
		// Wait for the first write to start, then kill at a moment that
		// moves along the writes' cycle.
		select {
		case <-writing:
		case <-time.After(60 * time.Second):
			t.Fatal("the child never wrote")
		}
		time.Sleep(time.Duration(20+37*i) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()

		data, err := os.ReadFile(filepath.Join(dir, accessindex.SnapshotFile))
		if errors.Is(err, os.ErrNotExist) {
			t.Logf("kill %d: no snapshot yet", i)
			continue
		}
		require.NoError(t, err)
		pos, err := accessindex.DecodeSnapshot(data)
		require.NoError(t, err, "kill %d: the snapshot is whole", i)
		t.Logf("kill %d: snapshot at %s", i, pos)
	}
}

// TestSnapshotWriterProcess is TestSnapshotKilledWhileWriting's child: it
// applies a log in steps and writes a snapshot after each, forever.
func TestSnapshotWriterProcess(t *testing.T) {
	dir := os.Getenv("ACCESSINDEX_SNAPSHOT_WRITER_DIR")
	if dir == "" {
		t.Skip("run by TestSnapshotKilledWhileWriting")
	}
	w := newWorld(t, 904)
	generate(w, 400)
	recs := w.take()
	ix := accessindex.New(quiet)
	for i := 0; ; i++ {
		n := min(len(recs), 200)
		if n > 0 {
			require.NoError(t, ix.Apply(recs[:n]...))
			recs = recs[n:]
		}
		fmt.Println("writing", i)
		_, err := ix.WriteSnapshot(t.Context(), dir)
		require.NoError(t, err)
	}
}

// TestRunSnapshots: the writer writes at once after a full replay, again
// once Every records were applied, and removes the snapshot as soon as a
// child is erased (it may hold the child's reference).
func TestRunSnapshots(t *testing.T) {
	l := newSnapshotLog(t, 905, 30)
	s := l.store(t, l.recs)
	dir := t.TempDir()
	ix := accessindex.New(quiet)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := start(t, ctx, ix, s)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = ix.RunSnapshots(ctx, accessindex.SnapshotConfig{Dir: dir, Every: 5, Interval: time.Hour,
			Logger: slog.New(slog.DiscardHandler)})
	}()
	waitReady(t, ix, done)
	path := filepath.Join(dir, accessindex.SnapshotFile)
	snapshotAt := func() eventlog.Position {
		data, err := os.ReadFile(path)
		if err != nil {
			return eventlog.Start
		}
		pos, err := accessindex.DecodeSnapshot(data)
		require.NoError(t, err)
		return pos
	}
	head := ix.Position()
	require.Eventually(t, func() bool { return snapshotAt() == head }, 10*time.Second, 5*time.Millisecond,
		"a snapshot at once after the full replay")

	// Fewer than Every records: no new snapshot; then more: a new one.
	l.w.carer("more", t0) // an invitation and an activation
	appendAll(t, s, l.w.take())
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, head, snapshotAt())
	for i := range 2 {
		l.w.carer("even-more-"+strconv.Itoa(i), t0)
	}
	head = appendAll(t, s, l.w.take())
	require.Eventually(t, func() bool { return snapshotAt() == head }, 10*time.Second, 5*time.Millisecond)

	// An erasure removes it at once.
	var child *domain.Child
	for _, c := range l.w.children {
		child = c
		break
	}
	dpo := domain.Actor{ID: "dpo-dee", Role: domain.RoleDPO}
	evs, err := child.Erase(dpo, "a request under R22", t0)
	l.w.record(domain.ChildStream(child.ID()), dpo, t0, child.Apply, evs, err)
	appendAll(t, s, l.w.take())
	require.Eventually(t, func() bool {
		_, err := os.Stat(path)
		return errors.Is(err, os.ErrNotExist)
	}, 10*time.Second, 5*time.Millisecond, "the snapshot is removed after an erasure")

	cancel()
	wg.Wait()
	require.ErrorIs(t, <-done, context.Canceled)
}

func readSnapshot(dir string) ([]byte, error) {
	return os.ReadFile(filepath.Join(dir, accessindex.SnapshotFile))
}

// TestSnapshotHugeLengthIsCheap: a payload whose first message claims a
// gigabyte (with a valid checksum) fails at once, allocating nothing of
// that size.
func TestSnapshotHugeLengthIsCheap(t *testing.T) {
	body := append([]byte(accessindex.SnapshotMagic), 0, 0, 0, byte(accessindex.SnapshotVersion))
	body = append(body, 0xfc, 0x3f, 0xff, 0xff, 0xff, 1, 2, 3)
	sum := sha256.Sum256(body)
	data := append(body, sum[:]...)
	allocs := testing.AllocsPerRun(3, func() {
		_, err := accessindex.DecodeSnapshot(data)
		require.ErrorIs(t, err, accessindex.ErrSnapshotCorrupt)
	})
	require.Less(t, allocs, 20.0)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	_, _ = accessindex.DecodeSnapshot(data)
	runtime.ReadMemStats(&ms)
	require.Less(t, ms.TotalAlloc-before, uint64(1<<20))
}
