package ledger_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/ledger"
)

// Every set-up below happens inside the benchmark functions, so that a
// plain go test (no -bench) pays nothing for them.

// benchLogSize is the log of BenchmarkVerify and BenchmarkInclusionProof:
// appended and projected in a few seconds on an SQLite file.
const benchLogSize = 20_000

// benchRecord returns a stored event shaped like the engine's (a grant:
// a child's stream, ids in the data, the full meta), at position seq.
func benchRecord(seq uint64) eventlog.Record {
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	child, account := uuid.New(), uuid.New()
	return eventlog.Record{
		ID: uuid.New(), Stream: "child-" + child.String(), Version: seq%7 + 1, Position: eventlog.At(seq),
		Type: "access.granted.v1",
		Data: []byte(fmt.Sprintf(`{"child_id":%q,"account_id":%q,"permissions":["view","contact"],"until":null}`, child, account)),
		Meta: eventlog.Meta{ActorID: "worker-" + account.String()[:8], ActorRole: "worker", Reason: "placement review",
			EffectiveAt: t0.Add(time.Duration(seq) * time.Minute), RecordedAt: t0.Add(time.Duration(seq)*time.Minute + 123456789),
			CorrelationID: uuid.New(), CausationID: uuid.New()},
	}
}

// BenchmarkLeafHash measures hashing one event into its leaf: the
// canonical encoding (LeafData, a new slice each time; AppendLeafData into
// a reused buffer, as the projection does) and tlog.RecordHash.
func BenchmarkLeafHash(b *testing.B) {
	rec := benchRecord(42)
	b.Logf("leaf encoding of %d bytes", len(ledger.LeafData(rec)))
	var sink tlog.Hash
	b.Run("LeafData", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sink = tlog.RecordHash(ledger.LeafData(rec))
		}
	})
	b.Run("AppendLeafData", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = ledger.AppendLeafData(buf[:0], rec)
			sink = tlog.RecordHash(buf)
		}
	})
	_ = sink
}

// BenchmarkProjectionApply measures the ledger projection applying
// batches of 500 records (one leaf row each and their interior hashes),
// each batch in its own transaction as the runner does, on an SQLite file
// (fsync on every commit) and on PostgreSQL when
// ACCESSLEDGER_TEST_POSTGRES_DSN is set. The tree grows over the run.
// ns/op is per batch; events/s the throughput.
func BenchmarkProjectionApply(b *testing.B) {
	const batch = 500
	backends := []sqltest.Backend{{Name: "sqlite-file", URL: sqltest.SQLiteFile}, {Name: "postgres", URL: sqltest.Postgres}}
	for _, be := range backends {
		b.Run(be.Name, func(b *testing.B) {
			ctx := context.Background()
			db := sqltest.Open(b, be.URL(b))
			p := ledger.New()
			tables := projections.Tables{}
			for _, tb := range p.Tables() {
				tables[tb.Name] = tb.Name + "_g1"
				for _, stmt := range tb.Create(db.Dialect().Name(), tables.Name(tb.Name)) {
					_, err := db.ExecContext(ctx, stmt)
					require.NoError(b, err, stmt)
				}
			}
			_, err := p.Load(ctx, db, tables, eventlog.Start)
			require.NoError(b, err)
			// A pool of records; each batch takes 500 of them and gives
			// them the next positions of the log.
			pool := make([]eventlog.Record, 4*batch)
			for i := range pool {
				pool[i] = benchRecord(uint64(i + 1))
			}
			recs := make([]eventlog.Record, batch)
			seq := uint64(0)
			b.ReportAllocs()
			for b.Loop() {
				for i := range recs {
					seq++
					recs[i] = pool[seq%uint64(len(pool))]
					recs[i].Position = eventlog.At(seq)
				}
				if err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
					return p.Apply(ctx, tx, tables, recs)
				}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// ledgerLog is a log of n events on the SQLite file store and the ledger
// projection caught up with it.
type ledgerLog struct {
	db    *sqldb.DB
	store *sqlstore.Store
	key   *ledger.Key
	dir   string
}

func newLedgerLog(b *testing.B, n int) *ledgerLog {
	b.Helper()
	ctx := context.Background()
	started := time.Now()
	db := sqltest.Open(b, sqltest.SQLiteFile(b))
	require.NoError(b, sqlstore.Migrate(ctx, db))
	pg, lite := projections.Migrations()
	require.NoError(b, sqldb.Migrate(ctx, db, projections.Component, pg, lite))
	pg, lite = ledger.Migrations()
	require.NoError(b, sqldb.Migrate(ctx, db, ledger.Component, pg, lite))
	s, err := sqlstore.New(ctx, db, sqlstore.WithRecheckInterval(time.Hour))
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, s.Close()) })
	dir := b.TempDir()
	key, _, err := ledger.LoadOrCreateKey(filepath.Join(dir, ledger.KeyFileName))
	require.NoError(b, err)

	// Appended 100 events at a time over 64 streams.
	for i := 0; i < n; i += 100 {
		evs := make([]eventlog.EventData, min(100, n-i))
		for j := range evs {
			r := benchRecord(uint64(i + j + 1))
			evs[j] = eventlog.EventData{ID: r.ID, Type: r.Type, Data: r.Data, Meta: r.Meta}
		}
		_, err := s.Append(ctx, fmt.Sprint("child-", (i/100)%64), eventlog.Any, evs)
		require.NoError(b, err)
	}

	// The projection, run by a runner until it has caught up.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r, err := projections.NewRunner(db.DB, s, []projections.Projection{ledger.New()},
		projections.WithRetryBackoff(time.Millisecond, 10*time.Millisecond))
	require.NoError(b, err)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	require.NoError(b, r.WaitCaughtUp(rctx))
	cancel()
	require.NoError(b, <-done)
	size, err := ledger.NewTree(db).Size(ctx)
	require.NoError(b, err)
	require.EqualValues(b, n, size)
	b.Logf("set-up: %d events appended and projected in %s", n, time.Since(started).Round(time.Millisecond))
	return &ledgerLog{db: db, store: s, key: key, dir: filepath.Join(dir, "checkpoints")}
}

// BenchmarkVerify measures ledger.Verify (the engine's check of the whole
// log) over a log of benchLogSize events on an SQLite file: every event
// re-read, re-hashed and compared with the stored tree, and the tree with a
// signed checkpoint of the whole log; and ledger.VerifyTail of its last
// benchTail events (the start-up check after a start from snapshots). ns/op
// is per verification.
func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	l := newLedgerLog(b, benchLogSize)
	led, err := ledger.NewLedger(ledger.Config{DB: l.db, Key: l.key, Dir: l.dir, Every: 1, Instance: "bench",
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(b, err)
	_, err = led.Guard(ctx, l.store, ledger.VerifyOptions{})
	require.NoError(b, err)
	_, _, err = led.Publish(ctx)
	require.NoError(b, err)
	cps, problems, err := ledger.LoadPublished(ctx, l.db, l.dir, l.key.Verifier, 0)
	require.NoError(b, err)
	require.Empty(b, problems)
	require.NotEmpty(b, cps)
	tree := ledger.NewTree(l.db)
	// "whole": the check of the whole log (the start-up check before issue
	// 18, and the background check now); "tail": VerifyTail of the last
	// benchTail events, the start-up check after a start from snapshots.
	recs, err := l.store.ReadAll(ctx, eventlog.Start, 0)
	require.NoError(b, err)
	after := recs[len(recs)-benchTail-1].Position
	for _, bc := range []struct {
		name   string
		events int64
		verify func() (*ledger.Report, error)
	}{
		{"whole", benchLogSize, func() (*ledger.Report, error) {
			return ledger.Verify(ctx, l.store, tree, ledger.VerifyOptions{Checkpoints: cps})
		}},
		{"tail", benchTail, func() (*ledger.Report, error) {
			return ledger.VerifyTail(ctx, l.store, tree, after, ledger.VerifyOptions{Checkpoints: cps})
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rep, err := bc.verify()
				if err != nil {
					b.Fatal(err)
				}
				if !rep.OK || rep.Events != bc.events {
					b.Fatalf("verify: %s", rep.Summary())
				}
			}
			b.ReportMetric(float64(b.N)*float64(bc.events)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// benchTail is the tail BenchmarkVerify/tail checks: about what a start
// from snapshots written every 100,000 events reads on average, scaled to
// the benchmark's log.
const benchTail = 1000

// BenchmarkInclusionProof measures Tree.ProveInclusion of a random leaf in
// the whole stored tree of benchLogSize leaves (SQLite file): the proof's
// hashes read from the ledger's tables.
func BenchmarkInclusionProof(b *testing.B) {
	ctx := context.Background()
	l := newLedgerLog(b, benchLogSize)
	tree := ledger.NewTree(l.db)
	root, err := tree.Root(ctx, benchLogSize)
	require.NoError(b, err)
	rng := rand.New(rand.NewPCG(1, 2))
	// One proof checked, so the benchmark measures proofs that hold.
	p, err := tree.ProveInclusion(ctx, 12345, benchLogSize)
	require.NoError(b, err)
	leaf, err := tree.Leaf(ctx, 12345)
	require.NoError(b, err)
	require.NoError(b, tlog.CheckRecord(p, benchLogSize, root, 12345, leaf.Hash))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tree.ProveInclusion(ctx, rng.Int64N(benchLogSize), benchLogSize); err != nil {
			b.Fatal(err)
		}
	}
}
