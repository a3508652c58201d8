package importer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/memstore"
	"github.com/accessledger/accessledger/adapters/personaldata"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/cputime"
	"github.com/accessledger/accessledger/internal/datagen"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/internal/importer"
)

func TestDecodeLineNamesTheLineAndFieldNeverTheValue(t *testing.T) {
	for _, c := range []struct {
		name, line, want string
	}{
		{"not json", `secret@example.org`, `line 7: not a JSON object with a "kind"`},
		{"no kind", `{"reference":"NCC-SECRET"}`, `line 7: kind: want child, account, placement or grant`},
		{"unknown kind", `{"kind":"phone"}`, `line 7: kind: want`},
		{"unknown field", `{"kind":"child","reference":"NCC-SECRET","colour":"red"}`, `line 7: child: unknown field "colour"`},
		{"a value as a key", `{"kind":"child","reference":"NCC-SECRET","NCC-SECRET@x":1}`, `line 7: child: an unknown field`},
		{"bad date", `{"kind":"account","email":"a@b.org","account_kind":"parent","invited_at":"NCC-SECRET"}`, `line 7: account: invited_at: not an RFC 3339 time`},
		{"wrong type", `{"kind":"grant","child_reference":"NCC-SECRET","email":"a@b.org","relationship":"parent","permissions":"view","granted_at":"2019-01-01T00:00:00Z"}`, `line 7: grant: permissions: not a list`},
		{"missing", `{"kind":"placement","legacy_id":"P1","child_reference":"NCC-SECRET","carer_email":"a@b.org"}`, `line 7: placement: started_at: required`},
		{"trailing", `{"kind":"child","reference":"NCC-SECRET"} {}`, `line 7: not a JSON object`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := importer.DecodeLine(7, []byte(c.line))
			require.ErrorIs(t, err, importer.ErrBadLine)
			require.True(t, strings.HasPrefix(err.Error(), c.want), err.Error())
			require.NotContains(t, err.Error(), "SECRET")
			require.NotContains(t, err.Error(), "secret")
		})
	}
	r, err := importer.DecodeLine(1, []byte(`  `))
	require.NoError(t, err)
	require.Nil(t, r, "a blank line")
	r, err = importer.DecodeLine(2, []byte(`{"kind":"child","reference":"NCC-1","retain_until":"2090-01-01T00:00:00+01:00"}`))
	require.NoError(t, err)
	require.Equal(t, "NCC-1", r.Child.Reference)
	require.True(t, time.Date(2089, 12, 31, 23, 0, 0, 0, time.UTC).Equal(r.Child.RetainUntil.Time))
}

// FuzzDecodeLine: DecodeLine never panics; what it accepts has its kind's
// record and every required field; what it refuses is a *LineError
// naming the line.
func FuzzDecodeLine(f *testing.F) {
	for _, l := range lines(5) {
		f.Add([]byte(l))
	}
	f.Add([]byte(`{"kind":"child"}`))
	f.Add([]byte(`{"kind":"grant","permissions":[1]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := importer.DecodeLine(3, b)
		if err != nil {
			var le *importer.LineError
			require.True(t, errors.As(err, &le))
			require.Equal(t, 3, le.Line)
			require.True(t, strings.HasPrefix(err.Error(), "line 3: "))
			return
		}
		if r == nil {
			require.Empty(t, bytes.TrimSpace(b))
			return
		}
		n := 0
		for _, set := range []bool{r.Child != nil, r.Account != nil, r.Placement != nil, r.Grant != nil} {
			if set {
				n++
			}
		}
		require.Equal(t, 1, n, "one kind")
		switch {
		case r.Child != nil:
			require.NotEmpty(t, r.Child.Reference)
		case r.Account != nil:
			require.False(t, r.Account.InvitedAt.IsZero())
		case r.Placement != nil:
			require.False(t, r.Placement.StartedAt.IsZero())
		case r.Grant != nil:
			require.NotEmpty(t, r.Grant.Permissions)
		}
	})
}

// lines returns a legacy file of about n lines: per five lines a child, a
// foster carer, a network member, a placement (every other one ended) and
// a grant.
func lines(n int) []string { return datagen.ImportLines(n) }

func read(t testing.TB, ls []string) []*importer.Record {
	t.Helper()
	recs, err := importer.Read(strings.NewReader(strings.Join(ls, "\n")))
	require.NoError(t, err)
	return recs
}

func options(t testing.TB, ids *domain.KeyedIDs) importer.Options {
	t.Helper()
	actor, err := domain.ImportActor("")
	require.NoError(t, err)
	return importer.Options{Actor: actor, Now: time.Now(), CorrelationID: uuid.New(), IDs: ids}
}

func keyedIDs(t testing.TB) *domain.KeyedIDs {
	t.Helper()
	ids, err := domain.NewKeyedIDs(bytes.Repeat([]byte{7}, 32))
	require.NoError(t, err)
	return ids
}

func TestPrepareThenApplyOnAStoreWithoutBatches(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	ids := keyedIDs(t)
	recs := read(t, lines(50))
	plan, err := importer.Prepare(ctx, store, recs, options(t, ids))
	require.NoError(t, err)
	require.Equal(t, importer.Counts{New: 10}, *plan.Kinds[importer.KindChild])
	require.Equal(t, importer.Counts{New: 20}, *plan.Kinds[importer.KindAccount])
	res, err := plan.Apply(ctx, store, importer.ApplyOptions{Concurrency: 3})
	require.NoError(t, err)
	require.Equal(t, plan.Events, res.Events)
	head, err := store.Head(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(plan.Events), head.Commit)

	// The same file again: every record is there already.
	again, err := importer.Prepare(ctx, store, recs, options(t, ids))
	require.NoError(t, err)
	require.Zero(t, again.Events)
	require.Equal(t, importer.Counts{Present: 10}, *again.Kinds[importer.KindPlacement])

	// A line that contradicts the store is refused with the line's number.
	conflict := `{"kind":"child","reference":"NCC-0000003","worker_id":"worker-other"}`
	_, err = importer.Prepare(ctx, store, read(t, append(lines(5), conflict)), options(t, ids))
	require.ErrorIs(t, err, domain.ErrImportConflict)
	require.ErrorContains(t, err, "line 6: child: ")
}

// BenchmarkImport100k imports a 100,000-line file into a new deployment,
// personal data sealed, as accessd import does: on the embedded SQLite
// default (sqlite) and, with $ACCESSLEDGER_TEST_POSTGRES_DSN set, on
// PostgreSQL (postgres: a fresh schema holding the events, the keys and
// the read models). Then it prepares the same file again, which must
// append nothing. docs/performance.md has the figures. Run it with
// go test -run '^$' -bench Import100k -benchtime 1x ./internal/importer
// (IMPORT_LINES=N for another size, IMPORT_BATCH_EVENTS=N for another
// --batch-events). The CPU time it logs is the
// process's: on a shared machine it says what the wall time cannot.
func BenchmarkImport100k(b *testing.B) {
	n := 100_000
	if s := os.Getenv("IMPORT_LINES"); s != "" {
		_, _ = fmt.Sscan(s, &n)
	}
	var apply importer.ApplyOptions
	if s := os.Getenv("IMPORT_BATCH_EVENTS"); s != "" {
		_, _ = fmt.Sscan(s, &apply.BatchEvents)
	}
	ls := lines(n)
	for _, be := range []struct {
		name   string
		config func(b *testing.B, dir string) *engine.Config
	}{
		{"sqlite", func(_ *testing.B, dir string) *engine.Config { return &engine.Config{DataDir: dir} }},
		{"postgres", func(b *testing.B, dir string) *engine.Config {
			return &engine.Config{DataDir: dir, EventStore: sqltest.Postgres(b)}
		}},
	} {
		b.Run(be.name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				dir := b.TempDir()
				require.NoError(b, os.Chmod(dir, 0o700))
				ctx := context.Background()
				st, err := engine.OpenStores(ctx, be.config(b, dir), slog.New(slog.DiscardHandler))
				require.NoError(b, err)
				cpu0 := cputime.Process()
				b.StartTimer()
				start := time.Now()
				recs := read(b, ls)
				plan, err := importer.Prepare(ctx, st.Log, recs, options(b, st.IDs))
				require.NoError(b, err)
				checked := time.Since(start)
				res, err := plan.Apply(ctx, st.Log, apply)
				require.NoError(b, err)
				total := time.Since(start)
				b.StopTimer()
				cpu := cputime.Process() - cpu0
				b.ReportMetric(float64(res.Events)/total.Seconds(), "events/s")
				b.ReportMetric(cpu.Seconds(), "cpu-s")
				b.Logf("%d lines: read and checked in %s, %d events to %d streams in %d writes, total %s (%.0f events/s), CPU %s",
					n, checked.Round(time.Millisecond), res.Events, res.Streams, res.Writes, total.Round(time.Millisecond),
					float64(res.Events)/total.Seconds(), cpu.Round(time.Millisecond))
				// The same file again appends nothing.
				again0, cpu0 := time.Now(), cputime.Process()
				again, err := importer.Prepare(ctx, st.Log, read(b, ls), options(b, st.IDs))
				require.NoError(b, err)
				require.Zero(b, again.Events)
				b.Logf("re-run checked in %s, CPU %s, nothing to append", time.Since(again0).Round(time.Millisecond),
					(cputime.Process() - cpu0).Round(time.Millisecond))
				require.NoError(b, st.Close())
				b.StartTimer()
			}
		})
	}
}

// TestRule_R25_AnImportDecidesWithTheRecordedPolicy: on a store with a
// recorded policy, an imported placement's grace period is the one in
// force at its end, not the import's own default.
func TestRule_R25_AnImportDecidesWithTheRecordedPolicy(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	ids := keyedIDs(t)
	twoDays := 48 * time.Hour
	set := domain.NewPolicyHistory(domain.DefaultPolicy)
	events, err := set.SetPolicy(domain.System, domain.PolicyChange{GracePeriod: &twoDays}, "", time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	c := domain.Cause{Actor: domain.System, Reason: "initial policy", RecordedAt: time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)}
	d, err := c.EventData(uuid.New(), events[0])
	require.NoError(t, err)
	_, err = store.Append(ctx, domain.PolicyStream, eventlog.NoStream, []eventlog.EventData{d})
	require.NoError(t, err)

	plan, err := importer.Prepare(ctx, store, read(t, lines(5)), options(t, ids))
	require.NoError(t, err)
	_, err = plan.Apply(ctx, store, importer.ApplyOptions{})
	require.NoError(t, err)
	recs, err := store.ReadAll(ctx, eventlog.Start, 0)
	require.NoError(t, err)
	var ended *domain.PlacementEnded
	for _, r := range recs {
		env, err := domain.DecodeRecord(r)
		require.NoError(t, err)
		if e, ok := env.Event.(*domain.PlacementEnded); ok {
			ended = e
		}
	}
	require.NotNil(t, ended)
	require.Equal(t, twoDays, ended.GraceUntil.Sub(ended.EndedAt), "the recorded grace period, not the default 7 days")
}

// readerOnly hides the personal-data layer's ReadStreams: Prepare then
// reads the streams one by one.
type readerOnly struct{ importer.Reader }

// TestImportOnSQLStores runs the batch path (bulk keys, bulk reads,
// sealing ahead of the appends) on the SQL stores the engine opens.
func TestImportOnSQLStores(t *testing.T) {
	t.Parallel()
	for _, be := range []struct {
		name   string
		config func(t *testing.T, dir string) *engine.Config
	}{
		{"sqlite", func(_ *testing.T, dir string) *engine.Config { return &engine.Config{DataDir: dir} }},
		{"postgres", func(t *testing.T, dir string) *engine.Config {
			return &engine.Config{DataDir: dir, EventStore: sqltest.Postgres(t)}
		}},
	} {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			open := func(t *testing.T) *engine.Stores {
				dir := t.TempDir()
				require.NoError(t, os.Chmod(dir, 0o700))
				st, err := engine.OpenStores(t.Context(), be.config(t, dir), slog.New(slog.DiscardHandler))
				require.NoError(t, err)
				t.Cleanup(func() { require.NoError(t, st.Close()) })
				return st
			}
			head := func(t *testing.T, st *engine.Stores) uint64 {
				h, err := st.Log.Head(t.Context())
				require.NoError(t, err)
				return h.Commit
			}
			small := importer.ApplyOptions{BatchEvents: 37}

			t.Run("in batches, sealed, once", func(t *testing.T) {
				ctx := t.Context()
				st := open(t)
				half := lines(100)
				plan, err := importer.Prepare(ctx, st.Log, read(t, half), options(t, st.IDs))
				require.NoError(t, err)
				res, err := plan.Apply(ctx, st.Log, small)
				require.NoError(t, err)
				require.Equal(t, plan.Events, res.Events)
				require.Greater(t, res.Writes, 5, "many transactions")
				require.Equal(t, uint64(plan.Events), head(t, st))

				// The whole file on a store that holds half of it: bulk reads
				// and one-by-one reads plan the same.
				all := read(t, lines(200))
				opts := options(t, st.IDs)
				bulk, err := importer.Prepare(ctx, st.Log, all, opts)
				require.NoError(t, err)
				oneByOne, err := importer.Prepare(ctx, readerOnly{st.Log}, all, opts)
				require.NoError(t, err)
				require.Equal(t, oneByOne.Events, bulk.Events)
				require.Equal(t, oneByOne.Streams, bulk.Streams)
				require.Equal(t, oneByOne.Kinds, bulk.Kinds)
				require.Equal(t, importer.Counts{New: 20, Present: 20}, *bulk.Kinds[importer.KindChild])
				_, err = bulk.Apply(ctx, st.Log, small)
				require.NoError(t, err)

				again, err := importer.Prepare(ctx, st.Log, all, options(t, st.IDs))
				require.NoError(t, err)
				require.Zero(t, again.Events, "the same file again appends nothing")

				plain, total, err := personaldata.CountPlain(ctx, st.Events.Log)
				require.NoError(t, err)
				require.Equal(t, int64(head(t, st)), total)
				require.Zero(t, plain, "no personal value stored in plain text (R22)")
				keys, err := st.Read.NewSelect().Table("subject_keys").Count(ctx)
				require.NoError(t, err)
				require.Equal(t, int64(40+80), keys, "a key per child and per account")
			})

			t.Run("a bad line appends nothing", func(t *testing.T) {
				ctx := t.Context()
				st := open(t)
				_, err := importer.Prepare(ctx, st.Log, read(t, append(lines(50), `{"kind":"placement","legacy_id":"X","child_reference":"NCC-9999999","carer_email":"carer1@example.org","started_at":"2015-01-01T00:00:00Z"}`)), options(t, st.IDs))
				var le *importer.LineError
				require.ErrorAs(t, err, &le)
				require.Equal(t, 51, le.Line)
				require.Zero(t, head(t, st))
			})

			t.Run("a stream changed since the check stops the import; a re-run appends the rest", func(t *testing.T) {
				ctx := t.Context()
				st := open(t)
				all := lines(200)
				stale, err := importer.Prepare(ctx, st.Log, read(t, all), options(t, st.IDs))
				require.NoError(t, err)
				var children []string // of the second half: the stale plan's later child streams move on
				for _, l := range all[100:] {
					if strings.Contains(l, `"kind":"child"`) {
						children = append(children, l)
					}
				}
				first, err := importer.Prepare(ctx, st.Log, read(t, children), options(t, st.IDs))
				require.NoError(t, err)
				_, err = first.Apply(ctx, st.Log, small)
				require.NoError(t, err)

				res, err := stale.Apply(ctx, st.Log, small)
				require.ErrorIs(t, err, importer.ErrPartial)
				require.Positive(t, res.Events)
				require.Less(t, res.Events, stale.Events)

				rest, err := importer.Prepare(ctx, st.Log, read(t, all), options(t, st.IDs))
				require.NoError(t, err)
				_, err = rest.Apply(ctx, st.Log, small)
				require.NoError(t, err)
				again, err := importer.Prepare(ctx, st.Log, read(t, all), options(t, st.IDs))
				require.NoError(t, err)
				require.Zero(t, again.Events)
			})
		})
	}
}
