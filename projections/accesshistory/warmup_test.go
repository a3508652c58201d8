package accesshistory_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"pgregory.net/rapid"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/datagen"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/accesshistory"
	"github.com/accessledger/accessledger/projections/projtest"
)

// randomHistory draws a history through the domain aggregates: children,
// carers and members (some never activated), placements started and ended
// backdated or ahead, early grace ends, expiry records, grants (widened),
// revokes, closures and time moving on. Refused commands are skipped.
func randomHistory(t *rapid.T) *projtest.World {
	w := projtest.New(t.Fatalf)
	w.Policy.GracePeriod = time.Duration(rapid.IntRange(1, 10).Draw(t, "grace_days")) * day
	children := []uuid.UUID{w.RegisterChild()}
	carers := []uuid.UUID{w.Carer()}
	members := []uuid.UUID{w.Member()}
	type placed struct{ child, id uuid.UUID }
	var placements []placed
	pick := func(xs []uuid.UUID, label string) uuid.UUID {
		return xs[rapid.IntRange(0, len(xs)-1).Draw(t, label)]
	}
	offset := func(label string) time.Duration {
		return time.Duration(rapid.IntRange(-15*24, 15*24).Draw(t, label)) * time.Hour
	}
	for range rapid.IntRange(1, 50).Draw(t, "steps") {
		switch rapid.IntRange(0, 11).Draw(t, "action") {
		case 0:
			children = append(children, w.RegisterChild())
		case 1:
			if rapid.Bool().Draw(t, "activate") {
				carers = append(carers, w.Carer())
			} else {
				carers = append(carers, w.Invite(domain.KindFosterCarer))
			}
		case 2:
			if rapid.Bool().Draw(t, "activate") {
				members = append(members, w.Member())
			} else {
				members = append(members, w.Invite(domain.KindNetworkMember))
			}
		case 3, 4:
			c, k := pick(children, "child"), pick(carers, "carer")
			if id, err := w.TryPlace(c, k, w.Now.Add(offset("start"))); err == nil {
				placements = append(placements, placed{c, id})
			}
		case 5:
			if len(placements) > 0 {
				p := placements[rapid.IntRange(0, len(placements)-1).Draw(t, "placement")]
				_ = w.TryEnd(p.child, p.id, w.Now.Add(offset("end")))
			}
		case 6:
			if len(placements) > 0 {
				p := placements[rapid.IntRange(0, len(placements)-1).Draw(t, "placement")]
				if rapid.Bool().Draw(t, "early") {
					_ = w.TryEndGrace(p.child, p.id)
				} else {
					_ = w.Expire(p.child, p.id)
				}
			}
		case 7, 8:
			perms := []string{domain.PermView}
			if rapid.Bool().Draw(t, "record") {
				perms = append(perms, domain.PermRecord)
			}
			_ = w.TryGrant(pick(children, "child"), pick(members, "member"), perms...)
		case 9:
			_ = w.TryRevoke(pick(children, "child"), pick(members, "member"))
		case 10:
			if rapid.IntRange(0, 3).Draw(t, "close") == 0 {
				_ = w.TryClose(pick(append(slices.Clone(carers), members...), "account"))
			} else if k := pick(append(slices.Clone(carers), members...), "account"); w.Account(k).StatusAt(w.Now) == domain.StatusInvited {
				_ = w.TryActivate(k)
			}
		case 11:
			w.Advance(time.Duration(rapid.IntRange(1, 6*24).Draw(t, "hours")) * time.Hour)
		}
	}
	return w
}

// createTable creates the projection's table under the physical name of t.
func createTable(t require.TestingT, ctx context.Context, db *sqldb.DB, p *accesshistory.Projection, tables projections.Tables) {
	for _, tb := range p.Tables() {
		_, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+tables.Name(tb.Name))
		require.NoError(t, err)
		for _, stmt := range tb.Create(db.Dialect().Name(), tables.Name(tb.Name)) {
			_, err := db.ExecContext(ctx, stmt)
			require.NoError(t, err, stmt)
		}
	}
}

// applyAll applies recs through p in transactions of batch records.
func applyAll(t require.TestingT, ctx context.Context, db *sqldb.DB, p *accesshistory.Projection, tables projections.Tables, recs []eventlog.Record, batch int) {
	for i := 0; i < len(recs); i += batch {
		chunk := recs[i:min(i+batch, len(recs))]
		require.NoError(t, db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			return p.Apply(ctx, tx, tables, chunk)
		}))
		// Committed, as the runner says after each commit.
		p.Committed(chunk[len(chunk)-1].Position)
	}
}

// replayAll passes recs through p.Replay in slices of batch records.
func replayAll(t require.TestingT, p *accesshistory.Projection, recs []eventlog.Record, batch int) {
	for i := 0; i < len(recs); i += batch {
		require.NoError(t, p.Replay(recs[i:min(i+batch, len(recs))]))
	}
}

// dump returns every row of table, every column, in id order.
func dump(t require.TestingT, ctx context.Context, db *sqldb.DB, table string) [][]any {
	rows, err := db.DB.DB.QueryContext(ctx, "SELECT * FROM "+table+" ORDER BY id")
	require.NoError(t, err)
	defer func() { require.NoError(t, rows.Close()) }()
	cols, err := rows.Columns()
	require.NoError(t, err)
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				vals[i] = string(b)
			}
		}
		out = append(out, vals)
	}
	require.NoError(t, rows.Err())
	return out
}

// TestProperty_WarmUpFromTheTableEqualsOneRun: a projection that restarts
// at a checkpoint, loading its current rows from the table and passing the
// records up to it through the model only, writes exactly the rows (ids,
// intervals, events, recorded and superseded positions) that one
// uninterrupted run writes. Also when another runner had already written
// past the checkpoint (the runner then replays those records, which go
// through the whole fold), and whatever the batch sizes.
func TestProperty_WarmUpFromTheTableEqualsOneRun(t *testing.T) {
	for _, b := range sqltest.Backends() {
		if b.Name == "sqlite-file" {
			continue // the same SQL as sqlite-memory, with fsyncs
		}
		t.Run(b.Name, func(t *testing.T) {
			db := sqltest.Open(t, b.URL(t))
			ctx := context.Background()
			ref := projections.Tables{"access_history": "h_ref"}
			warm := projections.Tables{"access_history": "h_warm"}
			rapid.Check(t, func(rt *rapid.T) {
				w := randomHistory(rt)
				recs := w.Records
				batch := rapid.IntRange(1, 20).Draw(rt, "batch")
				k := rapid.IntRange(0, len(recs)).Draw(rt, "checkpoint")
				m := rapid.IntRange(k, len(recs)).Draw(rt, "written_by_another_runner")

				p := accesshistory.New()
				createTable(rt, ctx, db, p, ref)
				_, err := p.Load(ctx, db, ref, eventlog.Start)
				require.NoError(rt, err)
				applyAll(rt, ctx, db, p, ref, recs, batch)

				first := accesshistory.New()
				createTable(rt, ctx, db, first, warm)
				_, err = first.Load(ctx, db, warm, eventlog.Start)
				require.NoError(rt, err)
				applyAll(rt, ctx, db, first, warm, recs[:m], batch)

				at := eventlog.Start
				if k > 0 {
					at = recs[k-1].Position
				}
				again := accesshistory.New()
				warmup, err := again.Load(ctx, db, warm, at)
				require.NoError(rt, err)
				require.True(rt, warmup)
				replayAll(rt, again, recs[:k], rapid.IntRange(1, 20).Draw(rt, "warmup_batch"))
				replayAll(rt, again, recs[k:m], batch)
				applyAll(rt, ctx, db, again, warm, recs[m:], batch)

				require.Equal(rt, dump(rt, ctx, db, "h_ref"), dump(rt, ctx, db, "h_warm"),
					fmt.Sprintf("%d records, checkpoint %d, written %d", len(recs), k, m))
			})
		})
	}
}

// TestWarmUpRefusesATableAheadOfTheLog: when the table holds rows the
// replayed log did not make (the table belongs to a longer log), the first
// Apply fails with ErrOutOfSync instead of writing over them.
func TestWarmUpRefusesATableAheadOfTheLog(t *testing.T) {
	ctx := context.Background()
	db := sqltest.Open(t, sqltest.SQLiteMemory(t))
	tables := projections.Tables{"access_history": "h"}
	w := projtest.New(t.Fatalf)
	child, carer := w.RegisterChild(), w.Carer()
	w.Place(child, carer, w.Now)
	w.Advance(day)
	member := w.Member()
	w.Grant(child, member, domain.PermView)
	recs := w.Records

	p := accesshistory.New()
	createTable(t, ctx, db, p, tables)
	_, err := p.Load(ctx, db, tables, eventlog.Start)
	require.NoError(t, err)
	applyAll(t, ctx, db, p, tables, recs, 100)

	// Restart at a checkpoint before the grant, as if the log had lost it.
	cut := len(recs) - 1
	again := accesshistory.New()
	_, err = again.Load(ctx, db, tables, recs[cut-1].Position)
	require.NoError(t, err)
	replayAll(t, again, recs[:cut], 100)
	w.Advance(day)
	err = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		return again.Apply(ctx, tx, tables, []eventlog.Record{recs[cut]})
	})
	require.ErrorIs(t, err, accesshistory.ErrOutOfSync)
}

// BenchmarkWarmUp measures a restart of the projection at the head of a
// generated log (datagen.Small, about 10,000 events, in an SQLite file):
// Load and the warm-up Replay of the whole log. "rows-from-table" is the
// projection's warm-up (the current rows read from the table, the records
// through the model only); "full-fold" is the same log through the whole
// fold, what the warm-up cost before (Load at the start of the log).
func BenchmarkWarmUp(b *testing.B) {
	ctx := context.Background()
	db := sqltest.Open(b, sqltest.SQLiteFile(b))
	require.NoError(b, sqlstore.Migrate(ctx, db))
	s, err := sqlstore.New(ctx, db)
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, s.Close()) })
	_, err = datagen.Generate(ctx, datagen.Small, datagen.BatchSink(s.AppendBatch), datagen.Options{Seed: 3})
	require.NoError(b, err)
	recs, err := s.ReadAll(ctx, eventlog.Start, 0)
	require.NoError(b, err)
	head := recs[len(recs)-1].Position

	p := accesshistory.New()
	createTable(b, ctx, db, p, tables)
	_, err = p.Load(ctx, db, tables, eventlog.Start)
	require.NoError(b, err)
	applyAll(b, ctx, db, p, tables, recs, 500)

	// "from-snapshot": the fold, its rows and next id restored from a
	// snapshot taken 1,000 records before the head, and those 1,000
	// records through the whole fold (a start from snapshots, issue 18).
	dir := b.TempDir()
	scratch := projections.Tables{"access_history": "h_scratch"}
	q := accesshistory.New()
	createTable(b, ctx, db, q, scratch)
	_, err = q.Load(ctx, db, scratch, eventlog.Start)
	require.NoError(b, err)
	applyAll(b, ctx, db, q, scratch, recs[:len(recs)-1000], 500)
	_, err = q.WriteSnapshot(ctx, dir)
	require.NoError(b, err)
	quiet := accesshistory.WithSnapshots(accesshistory.SnapshotConfig{Dir: dir, Log: sliceLog(recs), Logger: slog.New(slog.DiscardHandler)})
	// "from-snapshot-at-head": the same at the head (a restart after a
	// snapshot of everything applied, as accessd bench measures it).
	headDir := b.TempDir()
	_, err = p.WriteSnapshot(ctx, headDir)
	require.NoError(b, err)
	atHead := accesshistory.WithSnapshots(accesshistory.SnapshotConfig{Dir: headDir, Log: sliceLog(recs), Logger: slog.New(slog.DiscardHandler)})

	for _, bc := range []struct {
		name string
		at   eventlog.Position
		opts []accesshistory.Option
	}{{"rows-from-table", head, nil}, {"full-fold", eventlog.Start, nil}, {"from-snapshot", head, []accesshistory.Option{quiet}},
		{"from-snapshot-at-head", head, []accesshistory.Option{atHead}}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p := accesshistory.New(bc.opts...)
				_, err := p.Load(ctx, db, tables, bc.at)
				require.NoError(b, err)
				from := upToPosition(recs, p.WarmStart())
				if bc.name == "from-snapshot" && from != len(recs)-1000 || bc.name == "from-snapshot-at-head" && from != len(recs) {
					b.Fatalf("the snapshot was not loaded: warm start %s", p.WarmStart())
				}
				replayAll(b, p, recs[from:], 5_000)
			}
			b.ReportMetric(float64(len(recs))*float64(b.N)/b.Elapsed().Seconds(), "records/s")
			if bc.name == "from-snapshot-at-head" {
				fi, err := os.Stat(filepath.Join(headDir, accesshistory.SnapshotFile))
				require.NoError(b, err)
				b.ReportMetric(float64(fi.Size()), "snapshot-bytes")
			}
		})
	}
}

// upToPosition returns how many of recs are at or before p.
func upToPosition(recs []eventlog.Record, p eventlog.Position) int {
	n := 0
	for n < len(recs) && !p.Before(recs[n].Position) {
		n++
	}
	return n
}
