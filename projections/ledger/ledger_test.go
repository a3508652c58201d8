package ledger_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/projections/ledger"
)

func TestTreeMatchesTlogAndProves(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		e.appendEvents(t, 37)
		e.project(t)
		tree := ledger.NewTree(db)
		size, err := tree.Size(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 37, size)

		// Every size's root is the root tlog computes from the records alone.
		var all []tlog.Hash
		for i, rec := range e.recs {
			hs, err := tlog.StoredHashes(int64(i), ledger.LeafData(rec), tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
				out := make([]tlog.Hash, len(idx))
				for j, x := range idx {
					out[j] = all[x]
				}
				return out, nil
			}))
			require.NoError(t, err)
			all = append(all, hs...)
		}
		mem := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(idx))
			for j, x := range idx {
				out[j] = all[x]
			}
			return out, nil
		})
		for n := int64(1); n <= size; n++ {
			want, err := tlog.TreeHash(n, mem)
			require.NoError(t, err)
			got, err := tree.Root(ctx, n)
			require.NoError(t, err)
			require.Equal(t, want, got, "size %d", n)
		}

		// Proofs check with tlog's verifiers and the roots alone.
		root37, _ := tree.Root(ctx, 37)
		for i, rec := range e.recs {
			p, err := tree.ProveInclusion(ctx, int64(i), 37)
			require.NoError(t, err)
			require.NoError(t, tlog.CheckRecord(p, 37, root37, int64(i), ledger.LeafHash(rec)))
			require.Error(t, tlog.CheckRecord(p, 37, root37, int64(i), ledger.LeafHash(e.recs[(i+1)%len(e.recs)])))
		}
		for from := int64(1); from <= 37; from++ {
			rootFrom, _ := tree.Root(ctx, from)
			p, err := tree.ProveConsistency(ctx, from, 37)
			require.NoError(t, err)
			require.NoError(t, tlog.CheckTree(p, 37, root37, from, rootFrom))
		}
		leaf, err := tree.LeafAt(ctx, e.recs[5].Position)
		require.NoError(t, err)
		require.EqualValues(t, 5, leaf.Index)
		require.Equal(t, e.recs[5].ID, leaf.EventID)

		rep := e.verify(t)
		require.True(t, rep.OK, rep.Summary())
		require.Equal(t, root37, rep.Root)
	})
}

func TestLeafRoundTrip(t *testing.T) {
	e := newEnv(t, openMemory(t))
	e.appendEvents(t, 3)
	for _, rec := range e.recs {
		l, err := ledger.DecodeLeaf(ledger.LeafData(rec))
		require.NoError(t, err)
		require.Equal(t, ledger.LeafOf(rec), l)
		require.Equal(t, ledger.LeafHash(rec), l.Hash())
	}
	_, err := ledger.DecodeLeaf([]byte("nonsense"))
	require.ErrorIs(t, err, ledger.ErrBadLeaf)
}

func TestCheckpointsOfAnotherKeyAndPartialFilesAreProblems(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, openMemory(t))
	e.appendEvents(t, 5)
	e.project(t)
	l := e.ledger(t)
	_, err := l.Guard(ctx, e.store, ledger.VerifyOptions{})
	require.NoError(t, err)
	signed, fresh, err := l.Publish(ctx)
	require.NoError(t, err)
	require.True(t, fresh)
	info, err := os.Stat(signed.Source)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), info.Mode().Perm())
	entries, err := os.ReadDir(e.dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file is left behind")

	other, _, err := ledger.LoadOrCreateKey(filepath.Join(t.TempDir(), ledger.KeyFileName))
	require.NoError(t, err)
	cps, problems, err := ledger.LoadPublished(ctx, e.db, e.dir, other.Verifier, 0)
	require.NoError(t, err)
	require.Empty(t, cps)
	require.Len(t, problems, 2, "the file and the database's copy")
	require.Contains(t, problems[0].Detail, "every replica must sign with the same key")

	// A truncated copy (a crash of a copy tool, an edit) does not open.
	require.NoError(t, os.WriteFile(filepath.Join(e.dir, "checkpoint-000000000099.note"), signed.Note[:20], 0o644))
	_, problems, err = ledger.LoadPublished(ctx, e.db, e.dir, e.key.Verifier, 0)
	require.NoError(t, err)
	require.Len(t, problems, 1)
	require.Equal(t, ledger.KindSignature, problems[0].Kind)
}

// TestPublishNeverBlocksErr: the state the API reads on every request is
// never held up by a publish in progress (a slow sink, a slow database).
func TestPublishNeverBlocksErr(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, openMemory(t))
	e.appendEvents(t, 3)
	e.project(t)
	l := e.ledger(t)
	_, err := l.Guard(ctx, e.store, ledger.VerifyOptions{})
	require.NoError(t, err)
	block := make(chan struct{})
	entered := make(chan struct{})
	l.AddSink(sinkFunc(func(context.Context, ledger.Checkpoint, []byte) error {
		close(entered)
		<-block
		return nil
	}))
	done := make(chan error, 1)
	go func() { _, _, err := l.Publish(ctx); done <- err }()
	<-entered
	start := time.Now()
	require.NoError(t, l.Err())
	_, ok := l.Latest()
	require.True(t, ok)
	require.Less(t, time.Since(start), 100*time.Millisecond)
	close(block)
	require.NoError(t, <-done)
}

type sinkFunc func(context.Context, ledger.Checkpoint, []byte) error

func (f sinkFunc) PublishCheckpoint(ctx context.Context, cp ledger.Checkpoint, signed []byte) error {
	return f(ctx, cp, signed)
}

// TestPublishStoresTheCheckpointBeforeItsFile: the checkpoint's row is
// committed (with fsync) before its file is written, so that the tree it
// signs, which the read models' runner writes without fsync
// (sqldb.DB.Unsynced, the same file), is durable before any copy of the
// checkpoint is: a power loss can never leave a published checkpoint
// ahead of the stored tree (which the next start would take for deleted
// leaves). Shown with a checkpoint directory that cannot be made: the
// publish fails, and the row is there; a later publish writes the file.
func TestPublishStoresTheCheckpointBeforeItsFile(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		resetLog(t, e)
		e.appendEvents(t, 9)
		e.project(t)
		dir := filepath.Join(t.TempDir(), "checkpoints")
		l, err := ledger.NewLedger(ledger.Config{DB: db, Key: e.key, Dir: dir, Every: 1, Instance: "test"})
		require.NoError(t, err)
		_, err = l.Guard(ctx, e.store, ledger.VerifyOptions{})
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(dir, nil, 0o600)) // a file where the directory should be
		_, _, err = l.Publish(ctx)
		require.Error(t, err, "the directory cannot be made")
		stored, err := ledger.StoredCheckpoints(ctx, db, 1)
		require.NoError(t, err)
		require.Len(t, stored, 1, "the row was committed before the file was tried")
		require.Contains(t, string(stored[0].Note), "\n9\n", "the checkpoint of the tree's 9 leaves")

		// The same checkpoint, published again once the directory can be
		// made: the row is kept, the file written.
		require.NoError(t, os.Remove(dir))
		s, fresh, err := l.Publish(ctx)
		require.NoError(t, err)
		require.True(t, fresh)
		require.EqualValues(t, 9, s.Size)
		require.Equal(t, dir, filepath.Dir(s.Source))
		stored, err = ledger.StoredCheckpoints(ctx, db, 0)
		require.NoError(t, err)
		require.Len(t, stored, 1)
		_, err = os.Stat(s.Source)
		require.NoError(t, err)
	})
}
