package datagen_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/datagen"
	"github.com/accessledger/accessledger/projections/accessindex"
)

func openStore(t testing.TB, url string) *sqlstore.Store {
	t.Helper()
	db := sqltest.Open(t, url)
	return newStore(t, db)
}

func newStore(t testing.TB, db *sqldb.DB) *sqlstore.Store {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, sqlstore.Migrate(ctx, db))
	s, err := sqlstore.New(ctx, db)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// TestSmallEndToEnd writes the small history into an SQLite file (and
// PostgreSQL, when sqltest.PostgresEnv is set) through
// AppendBatch (every append's expected version checked by the store),
// replays it into the access index, which must reach ready without an
// apply error, and checks every sample against the index and against the
// aggregates loaded back from the store.
func TestSmallEndToEnd(t *testing.T) {
	if raceEnabled {
		t.Skip("writes and replays the small data set (one writer): runs without the race detector (make test's RACE_SKIPPED)")
	}
	for _, be := range sqltest.Backends() {
		if be.Name == "sqlite-memory" {
			continue // the file is the embedded default
		}
		t.Run(be.Name, func(t *testing.T) { testSmallEndToEnd(t, be.URL(t)) })
	}
}

func testSmallEndToEnd(t *testing.T, url string) {
	ctx := t.Context()
	s := openStore(t, url)
	sum := generate(t, datagen.Small, datagen.BatchSink(s.AppendBatch), datagen.Options{Seed: 11})
	head, err := s.Head(ctx)
	require.NoError(t, err)
	require.Equal(t, eventlog.At(uint64(sum.Events)), head, "every event stored")
	require.Greater(t, sum.Events, int64(5_000))

	ix := accessindex.New(accessindex.WithLogger(slog.New(slog.DiscardHandler)))
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ix.Run(rctx, s) }()
	select {
	case <-ix.Ready():
	case err := <-done:
		t.Fatalf("the index stopped before it was ready: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the index did not get ready")
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled, "no apply error")
	st := ix.Stats()
	require.Equal(t, uint64(sum.Events), st.Applied)
	require.Equal(t, sum.Accounts, st.Accounts, "every account invited")

	smp := sum.Samples
	require.Len(t, smp.Children, datagen.Small.Children, "a small history has fewer children than the sample size")
	require.NotEmpty(t, smp.Accounts)
	require.Len(t, smp.CanSee, datagen.SampleSize)
	require.Len(t, smp.CannotSee, datagen.SampleSize)

	// Against the aggregates, folded from the stored log: the policy.
	children, accounts := map[uuid.UUID]*domain.Child{}, map[uuid.UUID]*domain.Account{}
	recs, err := s.ReadAll(ctx, eventlog.Start, 0)
	require.NoError(t, err)
	for _, r := range recs {
		env, err := domain.DecodeRecord(r)
		require.NoError(t, err)
		switch {
		case strings.HasPrefix(r.Stream, domain.ChildStreamPrefix):
			id := uuid.MustParse(strings.TrimPrefix(r.Stream, domain.ChildStreamPrefix))
			if children[id] == nil {
				children[id] = domain.NewChild(id)
			}
			require.NoError(t, children[id].Apply(env.Event))
		case strings.HasPrefix(r.Stream, domain.AccountStreamPrefix):
			id := uuid.MustParse(strings.TrimPrefix(r.Stream, domain.AccountStreamPrefix))
			if accounts[id] == nil {
				accounts[id] = domain.NewAccount(id)
			}
			require.NoError(t, accounts[id].Apply(env.Event))
		}
	}
	load := func(child, account uuid.UUID) (*domain.Child, *domain.Account) {
		require.NotNil(t, children[child], "child %s stored", child)
		require.NotNil(t, accounts[account], "account %s stored", account)
		return children[child], accounts[account]
	}
	reasons := map[domain.Reason]int{}
	for _, tc := range []struct {
		name    string
		triples []datagen.Triple
		allowed bool
	}{{"can see", smp.CanSee, true}, {"cannot see", smp.CannotSee, false}} {
		for _, tr := range tc.triples {
			what := fmt.Sprintf("%s: account %s on child %s at %s", tc.name, tr.Account, tr.Child, tr.At)
			c, a := load(tr.Child, tr.Account)
			want := c.Access(a, tr.At)
			require.Equal(t, tc.allowed, want.Allows(domain.View), what)
			require.Equal(t, tr.Reason, want.Reason, what)
			got := ix.Check(tr.Account, tr.Child, domain.View, tr.At)
			require.Equal(t, tc.allowed, got.Allowed, what)
			require.Equal(t, tr.Reason, got.Reason, what)
			reasons[tr.Reason]++
		}
	}
	t.Logf("sample reasons: %v", reasons)
	for _, r := range []domain.Reason{domain.ReasonPlacement, domain.ReasonGracePeriod, domain.ReasonGrant,
		domain.ReasonNoRelationship, domain.ReasonGraceExpired, domain.ReasonRevoked} {
		require.Positive(t, reasons[r], "samples answered %s", r)
	}
	for _, acct := range smp.Accounts {
		entries, _ := ix.ChildrenOf(acct, smp.At)
		require.NotEmpty(t, entries, "account %s sees a child at the end", acct)
	}
	for _, child := range smp.Children {
		require.True(t, children[child] != nil && children[child].Registered(), "child %s registered", child)
	}
}

// TestStoreSinkAndBatchSinkWriteTheSameLog: one Append per stream append
// and AppendBatch give the same log.
func TestStoreSinkAndBatchSinkWriteTheSameLog(t *testing.T) {
	one := openStore(t, sqltest.SQLiteMemory(t))
	bulk := openStore(t, sqltest.SQLiteMemory(t))
	sc := datagen.Small
	sc.Children, sc.Carers, sc.Members = 12, 4, 24
	sumOne := generate(t, sc, datagen.StoreSink(one), datagen.Options{Seed: 3})
	sumBulk := generate(t, sc, datagen.BatchSink(bulk.AppendBatch), datagen.Options{Seed: 3, BatchAppends: 200})
	require.Equal(t, sumOne, sumBulk)
	a, err := one.ReadAll(t.Context(), eventlog.Start, 0)
	require.NoError(t, err)
	b, err := bulk.ReadAll(t.Context(), eventlog.Start, 0)
	require.NoError(t, err)
	require.Len(t, a, int(sumOne.Events))
	require.Equal(t, a, b)
}

// BenchmarkCountyIntoStore generates the county into a discarding sink, an
// SQLite file and PostgreSQL (when sqltest.PostgresEnv is set), through
// AppendBatch. It runs only with ACCESSLEDGER_BENCH_COUNTY=1: each op is a
// million events. events/s is the whole run's rate.
func BenchmarkCountyIntoStore(b *testing.B) {
	if os.Getenv("ACCESSLEDGER_BENCH_COUNTY") != "1" {
		b.Skip("set ACCESSLEDGER_BENCH_COUNTY=1 to generate the county (a million events per op)")
	}
	sinks := []struct {
		name string
		sink func(b *testing.B) datagen.Sink
	}{
		{"discard", func(*testing.B) datagen.Sink { return discard }},
		{"sqlite-file", func(b *testing.B) datagen.Sink {
			return datagen.BatchSink(openStore(b, "sqlite:"+filepath.Join(b.TempDir(), "county.db")).AppendBatch)
		}},
		{"postgres", func(b *testing.B) datagen.Sink {
			return datagen.BatchSink(openStore(b, sqltest.Postgres(b)).AppendBatch)
		}},
	}
	for _, sk := range sinks {
		b.Run(sk.name, func(b *testing.B) {
			var events int64
			for b.Loop() {
				b.StopTimer()
				sink := sk.sink(b)
				b.StartTimer()
				sum, err := datagen.Generate(context.Background(), datagen.County, sink, datagen.Options{Seed: 1})
				if err != nil {
					b.Fatal(err)
				}
				events += sum.Events
			}
			b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
