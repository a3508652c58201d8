package ledger_test

import (
	"context"
	"testing"

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
