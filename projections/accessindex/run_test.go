package accessindex_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accessindex"
	"github.com/accessledger/accessledger/projections/accessmodel"
)

var _ accessindex.Follower = (eventlog.Store)(nil)

var quiet = accessindex.WithLogger(slog.New(slog.DiscardHandler))

func openStore(t testing.TB, db *sqldb.DB) *sqlstore.Store {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, sqlstore.Migrate(ctx, db))
	s, err := sqlstore.New(ctx, db)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// appendAll appends records to the store, one append per run of records of
// one stream, and checks the store gives them the world's positions.
func appendAll(t testing.TB, s eventlog.Store, recs []eventlog.Record) eventlog.Position {
	t.Helper()
	ctx := context.Background()
	var last eventlog.Position
	for len(recs) > 0 {
		n := 1
		for n < len(recs) && n < 500 && recs[n].Stream == recs[0].Stream {
			n++
		}
		evs := make([]eventlog.EventData, n)
		for i, r := range recs[:n] {
			evs[i] = eventlog.EventData{ID: r.ID, Type: r.Type, Data: r.Data, Meta: r.Meta}
		}
		res, err := s.Append(ctx, recs[0].Stream, eventlog.Any, evs)
		require.NoError(t, err)
		require.Equal(t, recs[n-1].Position, res.Position, "the store numbers records as the world does")
		last = res.Position
		recs = recs[n:]
	}
	return last
}

// start runs ix on log until the test ends, and returns the channel Run's
// result arrives on.
func start(t testing.TB, ctx context.Context, ix *accessindex.Index, log accessindex.Follower) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- ix.Run(ctx, log) }()
	return done
}

func waitReady(t testing.TB, ix *accessindex.Index, done <-chan error) {
	t.Helper()
	select {
	case <-ix.Ready():
	case err := <-done:
		t.Fatalf("Run returned before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the index did not get ready")
	}
}

func TestRunCatchesUpAndFollows(t *testing.T) {
	for _, be := range sqltest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			s := openStore(t, sqltest.Open(t, be.URL(t)))
			w := newWorld(t, 700)
			generate(w, 15)
			head := appendAll(t, s, w.take())
			require.Greater(t, head.Commit, uint64(100), "enough records for several pages")

			ctx, cancel := context.WithCancel(t.Context())
			ix := accessindex.New(accessindex.WithPageSize(40), quiet)
			require.False(t, ix.IsReady())
			done := start(t, ctx, ix, s)
			waitReady(t, ix, done)
			require.True(t, ix.IsReady())
			require.False(t, ix.Position().Before(head))
			require.ErrorIs(t, ix.Run(ctx, s), accessindex.ErrRunning)
			requireAgrees(t, ix, w, t0.AddDate(-1, 0, 0), t0)

			// Live: a new placement appended after the replay.
			carer := w.carer("live", t0)
			child := w.child("C-live", "worker-ann", t0)
			w.place(child, carer, t0.Add(time.Hour), t0.Add(time.Hour))
			pos := appendAll(t, s, w.take())
			got, err := ix.WaitFor(ctx, pos, 10*time.Second)
			require.NoError(t, err)
			require.Equal(t, pos, got)
			require.Equal(t, accessindex.Answer{Allowed: true, Permissions: domain.All, Reason: domain.ReasonPlacement, Position: pos},
				ix.Check(carer, child, domain.Record, t0.Add(day)))
			requireAgrees(t, ix, w, t0.Add(day))

			cancel()
			select {
			case err := <-done:
				require.ErrorIs(t, err, context.Canceled)
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after its context was cancelled")
			}
		})
	}
}

func TestRunOnAnEmptyLogIsReadyAtOnce(t *testing.T) {
	s := openStore(t, sqltest.Open(t, sqltest.SQLiteMemory(t)))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ix := accessindex.New(quiet)
	done := start(t, ctx, ix, s)
	waitReady(t, ix, done)
	require.Equal(t, eventlog.Start, ix.Position())
}

// fakeLog serves fixed records, for the failure paths.
type fakeLog struct {
	recs    []eventlog.Record
	headErr error
}

func (f *fakeLog) Head(context.Context) (eventlog.Position, error) {
	if f.headErr != nil {
		return eventlog.Start, f.headErr
	}
	return f.recs[len(f.recs)-1].Position, nil
}

func (f *fakeLog) ReadAll(_ context.Context, after eventlog.Position, limit int) ([]eventlog.Record, error) {
	var out []eventlog.Record
	for _, r := range f.recs {
		if after.Before(r.Position) && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *fakeLog) Subscribe(ctx context.Context, after eventlog.Position, handle func(context.Context, eventlog.Record) error) error {
	recs, _ := f.ReadAll(ctx, after, len(f.recs))
	for _, r := range recs {
		if err := handle(ctx, r); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

func TestRunStopsOnFailure(t *testing.T) {
	w := newWorld(t, 800)
	w.carer("a", t0)
	w.carer("b", t0)
	recs := w.take()

	t.Run("a record that cannot be applied", func(t *testing.T) {
		bad := append([]eventlog.Record(nil), recs...)
		bad[2].Data = []byte(`{"nonsense":true}`)
		ix := accessindex.New(accessindex.WithPageSize(2))
		err := ix.Run(t.Context(), &fakeLog{recs: bad})
		require.ErrorIs(t, err, accessmodel.ErrApply)
		require.Equal(t, eventlog.At(2), ix.Position())
		require.False(t, ix.IsReady())
	})

	t.Run("the log fails", func(t *testing.T) {
		boom := errors.New("boom")
		err := accessindex.New().Run(t.Context(), &fakeLog{recs: recs, headErr: boom})
		require.ErrorIs(t, err, boom)
	})
}
