package ledger_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/ledger"
)

// tamperings are the four ways of changing a stored log (and a deleted
// tail), each with the kind Verify must report and the position it must
// name first.
var tamperings = []struct {
	name string
	do   func(t *testing.T, e *env)
	kind ledger.Kind
	pos  uint64
}{
	{"edit reason", func(t *testing.T, e *env) {
		e.exec(t, "UPDATE events SET reason = 'moved by mistake' WHERE position = 6")
	}, ledger.KindEdited, 6},
	{"edit data and actor", func(t *testing.T, e *env) {
		e.exec(t, `UPDATE events SET data = '{"n":5,"permissions":["view","record"]}', actor_id = 'worker-bob' WHERE position = 6`)
	}, ledger.KindEdited, 6},
	{"edit recorded time", func(t *testing.T, e *env) {
		if e.db.IsPostgres() {
			e.exec(t, "UPDATE events SET recorded_at = recorded_at + interval '1 second' WHERE position = 9")
		} else {
			e.exec(t, "UPDATE events SET recorded_at = '2020-01-01 00:00:00+00:00' WHERE position = 9")
		}
	}, ledger.KindEdited, 9},
	{"delete", func(t *testing.T, e *env) {
		e.exec(t, "DELETE FROM events WHERE position = 6")
	}, ledger.KindMissing, 6},
	{"insert", func(t *testing.T, e *env) {
		e.exec(t, "UPDATE events SET position = position + 1000 WHERE position >= 6")
		e.exec(t, `INSERT INTO events (position, event_id, stream, stream_version, type, data, actor_id, actor_role, reason,
			effective_at, recorded_at, correlation_id, causation_id)
			SELECT 6, ?, 'forged-stream', 1, type, data, actor_id, actor_role, reason, effective_at, recorded_at, correlation_id, causation_id
			FROM events WHERE position = 1006`, uuid.NewString())
	}, ledger.KindInserted, 6},
	{"swap two", func(t *testing.T, e *env) {
		e.exec(t, "UPDATE events SET position = 100000 WHERE position = 6")
		e.exec(t, "UPDATE events SET position = 6 WHERE position = 7")
		e.exec(t, "UPDATE events SET position = 7 WHERE position = 100000")
	}, ledger.KindMissing, 6},
	{"move later", func(t *testing.T, e *env) {
		e.exec(t, "UPDATE events SET position = 100000 WHERE position = 6")
	}, ledger.KindMissing, 6},
	{"renumber", func(t *testing.T, e *env) {
		e.exec(t, "UPDATE events SET position = position + 1000 WHERE position >= 12")
	}, ledger.KindMoved, 12},
	{"delete the newest", func(t *testing.T, e *env) {
		e.exec(t, "DELETE FROM events WHERE position = 30")
	}, ledger.KindTruncated, 30},
}

func TestRule_R23_VerifyNamesTheFirstBadPosition(t *testing.T) {
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
							_, fresh, err := l.Publish(context.Background())
							require.NoError(t, err)
							require.True(t, fresh)
						}
						require.True(t, e.verify(t).OK)

						tc.do(t, e)
						rep := e.verify(t)
						require.False(t, rep.OK)
						first, ok := rep.FirstBad()
						require.True(t, ok)
						require.Equal(t, tc.kind, first.Kind, rep.Summary())
						require.True(t, first.HasPosition, rep.Summary())
						require.Equal(t, eventlog.At(tc.pos), first.Position, rep.Summary())
						require.Contains(t, rep.Summary(), "FAILED: ")

						// The engine's guard refuses to sign after it.
						l := e.ledger(t)
						_, err := l.Guard(context.Background(), e.store, ledger.VerifyOptions{})
						require.ErrorIs(t, err, ledger.ErrMismatch)
						_, _, err = l.Publish(context.Background())
						require.ErrorIs(t, err, ledger.ErrMismatch)
					})
				}
			})
		})
	}
}

// resetLog empties the log and the ledger's tables, so that subtests can
// share one database.
func resetLog(t *testing.T, e *env) {
	t.Helper()
	ctx := context.Background()
	for _, q := range []string{"DELETE FROM events", "UPDATE events_head SET position = 0", "DELETE FROM ledger_checkpoints",
		"DELETE FROM projection_checkpoints"} {
		_, err := e.db.ExecContext(ctx, q)
		require.NoError(t, err, q)
	}
	for _, v := range []string{ledger.LeavesTable, ledger.NodesTable} {
		_, _ = e.db.ExecContext(ctx, "DELETE FROM "+v+"_g1")
	}
}

// TestRule_R23_RewrittenLogAndTreeAreCaughtByACheckpoint: someone with write access
// to the database edits an event and rebuilds every read model (the tree
// included) from the edited log; only the published checkpoint file tells.
func TestRule_R23_RewrittenLogAndTreeAreCaughtByACheckpoint(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		e.appendEvents(t, 20)
		e.project(t)
		l := e.ledger(t)
		_, err := l.Guard(ctx, e.store, ledger.VerifyOptions{})
		require.NoError(t, err)
		_, _, err = l.Publish(ctx)
		require.NoError(t, err)
		e.appendEvents(t, 20)
		e.project(t)
		cp, fresh, err := l.Publish(ctx)
		require.NoError(t, err)
		require.True(t, fresh)
		require.EqualValues(t, 40, cp.Size)

		e.exec(t, `UPDATE events SET data = '{"n":25,"permissions":["view","record"]}' WHERE position = 26`)
		e.exec(t, "DELETE FROM ledger_checkpoints") // the database's copies go too
		// A rebuild of the tree that does not know the checkpoint builds the
		// forged tree without complaint...
		require.NoError(t, projections.Rebuild(ctx, db.DB, e.store, ledger.New(), nil))
		rep := e.verify(t)
		require.False(t, rep.OK)
		kinds := map[ledger.Kind]bool{}
		for _, p := range rep.Problems {
			kinds[p.Kind] = true
		}
		require.True(t, kinds[ledger.KindTree], rep.Summary())
		require.True(t, kinds[ledger.KindCheckpoint], rep.Summary())
		first, _ := rep.FirstBad()
		require.Contains(t, first.Detail, "after position 20 and at or before position 40", rep.Summary())

		// ...but one given the last published checkpoint refuses, and the
		// tables stay as they were.
		published, _ := l.Latest()
		err = projections.Rebuild(ctx, db.DB, e.store, ledger.New(ledger.WithCheckpoint(published.Checkpoint)), nil)
		require.ErrorIs(t, err, ledger.ErrMismatch)
	})
}

// TestDamagedLeafRowIsTheTreesProblem: a leaf row of the ledger changed
// (not the log) is told apart through the checkpoint's root: a problem of
// the tree, which a rebuild of the tree repairs, not of the log.
func TestDamagedLeafRowIsTheTreesProblem(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		e.appendEvents(t, 12)
		e.project(t)
		l := e.ledger(t)
		_, err := l.Guard(ctx, e.store, ledger.VerifyOptions{})
		require.NoError(t, err)
		_, _, err = l.Publish(ctx)
		require.NoError(t, err)
		zero := make([]byte, 32)
		e.exec(t, "UPDATE "+ledger.LeavesTable+"_g1 SET hash = ? WHERE leaf_index = 6", zero)
		rep := e.verify(t)
		require.False(t, rep.OK)
		require.Len(t, rep.Problems, 1, rep.Summary())
		require.Equal(t, ledger.KindTree, rep.Problems[0].Kind, rep.Summary())
		require.Contains(t, rep.Problems[0].Detail, "row of leaf 6")
		require.EqualValues(t, 12, rep.Events, "the whole log was read and agrees")

		require.NoError(t, projections.Rebuild(ctx, db.DB, e.store, ledger.New(ledger.WithCheckpoint(mustLatest(t, l))), nil))
		require.True(t, e.verify(t).OK)
	})
}

func mustLatest(t *testing.T, l *ledger.Ledger) ledger.Checkpoint {
	t.Helper()
	s, ok := l.Latest()
	require.True(t, ok)
	return s.Checkpoint
}
