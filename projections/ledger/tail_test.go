package ledger_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/ledger"
)

// verifyTail runs VerifyTail after position after with every published
// checkpoint.
func (e *env) verifyTail(t *testing.T, after uint64) *ledger.Report {
	t.Helper()
	ctx := context.Background()
	cps, problems, err := ledger.LoadPublished(ctx, e.db, e.dir, e.key.Verifier, 0)
	require.NoError(t, err)
	require.Empty(t, problems)
	rep, err := ledger.VerifyTail(ctx, e.store, ledger.NewTree(e.db), eventlog.At(after), ledger.VerifyOptions{Checkpoints: cps, PageSize: 7})
	require.NoError(t, err)
	return rep
}

// TestRule_R23_VerifyTailNamesWhatVerifyNames: every tampering of the
// tail (the log after position 3 here, every tampering being at 6 or
// later) is reported by VerifyTail as Verify reports it, first bad kind and
// position, with and without published checkpoints; and a clean log's
// tail reads only the tail.
func TestRule_R23_VerifyTailNamesWhatVerifyNames(t *testing.T) {
	for _, published := range []bool{false, true} {
		name := "stored tree only"
		if published {
			name = "with checkpoints"
		}
		t.Run(name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
				for _, tc := range tamperings {
					t.Run(tc.name, func(t *testing.T) {
						e := newEnv(t, db)
						resetLog(t, e)
						e.appendEvents(t, 30)
						e.project(t)
						if published {
							l := e.ledger(t)
							_, err := l.Guard(context.Background(), e.store, ledger.VerifyOptions{})
							require.NoError(t, err)
							_, _, err = l.Publish(context.Background())
							require.NoError(t, err)
						}
						clean := e.verifyTail(t, 3)
						require.True(t, clean.OK, clean.Summary())
						require.EqualValues(t, 3, clean.FromLeaf)
						require.EqualValues(t, 27, clean.Events, "only the tail is read")

						tc.do(t, e)
						want := e.verify(t)
						got := e.verifyTail(t, 3)
						require.False(t, got.OK)
						wf, _ := want.FirstBad()
						gf, ok := got.FirstBad()
						require.True(t, ok)
						require.Equal(t, wf.Kind, gf.Kind, got.Summary())
						require.Equal(t, wf.Position, gf.Position, got.Summary())
						require.Equal(t, tc.kind, gf.Kind, got.Summary())
						require.Equal(t, eventlog.At(tc.pos), gf.Position, got.Summary())
					})
				}
			})
		})
	}
}

// TestRule_R23_GuardTailThenTheWholeLog: an event before the tail, changed
// while the engine was stopped, passes the tail's check (decisions may be
// served from what was checked when read, and from the tail), but the
// reads of the log's older records wait (ErrWhole); the check of the whole
// log then finds it and stops the ledger: Err is the mismatch, nothing is
// signed.
func TestRule_R23_GuardTailThenTheWholeLog(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		e.appendEvents(t, 30)
		e.project(t)
		l := e.ledger(t)
		_, err := l.Guard(ctx, e.store, ledger.VerifyOptions{})
		require.NoError(t, err)
		_, _, err = l.Publish(ctx)
		require.NoError(t, err)
		e.exec(t, "UPDATE events SET reason = 'moved by mistake' WHERE position = 6")

		l = e.ledger(t) // a new start
		require.ErrorIs(t, l.Err(), ledger.ErrNotVerified)
		rep, err := l.GuardTail(ctx, e.store, eventlog.At(20), ledger.VerifyOptions{})
		require.NoError(t, err)
		require.EqualValues(t, 20, rep.FromLeaf)
		require.EqualValues(t, 10, rep.Events)
		require.NoError(t, l.Err())
		require.False(t, l.Whole())
		require.ErrorIs(t, l.ErrWhole(), ledger.ErrNotWhole)
		require.ErrorIs(t, l.ErrWhole(), ledger.ErrNotVerified)

		rep, err = l.Guard(ctx, e.store, ledger.VerifyOptions{})
		require.ErrorIs(t, err, ledger.ErrMismatch)
		first, _ := rep.FirstBad()
		require.Equal(t, eventlog.At(6), first.Position)
		require.ErrorIs(t, l.Err(), ledger.ErrMismatch)
		require.ErrorIs(t, l.ErrWhole(), ledger.ErrMismatch)
		_, _, err = l.Publish(ctx)
		require.ErrorIs(t, err, ledger.ErrMismatch)

		// A tail from the start of the log is the whole check.
		l = e.ledger(t)
		_, err = l.GuardTail(ctx, e.store, eventlog.Start, ledger.VerifyOptions{})
		require.ErrorIs(t, err, ledger.ErrMismatch)
	})
}

// TestRule_R23_VerifyTailChecksTheTailAgainstTheCheckpoint: a log and tree
// rewritten together in the tail (the tree rebuilt from the edited log)
// agree with each other; the tail's check finds that the stored tree no
// longer gives the checkpoint's root and reports what a whole check
// reports. And a tail whose position the tree does not hold is checked
// whole.
func TestRule_R23_VerifyTailChecksTheTailAgainstTheCheckpoint(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		e.appendEvents(t, 40)
		e.project(t)
		l := e.ledger(t)
		_, err := l.Guard(ctx, e.store, ledger.VerifyOptions{})
		require.NoError(t, err)
		_, _, err = l.Publish(ctx)
		require.NoError(t, err)

		whole := e.verifyTail(t, 1000)
		require.True(t, whole.OK, whole.Summary())
		require.EqualValues(t, 0, whole.FromLeaf, "no leaf at 1000: the whole log is checked")
		require.EqualValues(t, 40, whole.Events)

		e.exec(t, `UPDATE events SET data = '{"n":25,"permissions":["view","record"]}' WHERE position = 36`)
		e.exec(t, "DELETE FROM ledger_checkpoints")
		require.NoError(t, projections.Rebuild(ctx, db.DB, e.store, ledger.New(), nil))
		rep := e.verifyTail(t, 30)
		require.False(t, rep.OK)
		kinds := map[ledger.Kind]bool{}
		for _, p := range rep.Problems {
			kinds[p.Kind] = true
		}
		require.True(t, kinds[ledger.KindCheckpoint], rep.Summary())
	})
}

// TestRule_R23_VerifyTailRehashesTheTailToTheCheckpointsRoot: an event of
// the tail and its leaf row changed together (the tree's interior hashes
// left alone, so the stored root still matches the checkpoint) agree with
// each other; re-hashing the tail onto the stored hashes before it does
// not give the checkpoint's root, and the tail's check says so.
func TestRule_R23_VerifyTailRehashesTheTailToTheCheckpointsRoot(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		e.appendEvents(t, 40)
		e.project(t)
		l := e.ledger(t)
		_, err := l.Guard(ctx, e.store, ledger.VerifyOptions{})
		require.NoError(t, err)
		_, _, err = l.Publish(ctx)
		require.NoError(t, err)

		e.exec(t, `UPDATE events SET reason = 'rewritten' WHERE position = 36`)
		recs, err := e.store.ReadAll(ctx, eventlog.At(35), 1)
		require.NoError(t, err)
		h := tlog.RecordHash(ledger.AppendLeafData(nil, recs[0]))
		e.exec(t, "UPDATE "+ledger.LeavesTable+"_g1 SET hash = ? WHERE leaf_index = 35", h[:])

		rep := e.verifyTail(t, 30)
		require.False(t, rep.OK)
		first, _ := rep.FirstBad()
		require.Equal(t, ledger.KindCheckpoint, first.Kind, rep.Summary())
		require.EqualValues(t, 30, rep.FromLeaf, "found by the tail's own check, not a whole one")
	})
}
