package accessindex_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accessindex"
	"github.com/accessledger/accessledger/projections/accessmodel"
)

// TestConcurrentReadersSeeConsistentAnswers runs readers against a writer
// (run it with -race). Every answer must be exactly the answer at the
// position it carries, computed by an independent fold of the same records:
// so the data and the position are read together.
func TestConcurrentReadersSeeConsistentAnswers(t *testing.T) {
	w := newWorld(t, 300)
	generate(w, 60)
	recs := w.take()
	pairs := w.pairs(true)
	decision := t0.AddDate(-2, 0, 0).Add(200 * day)

	// expected[n][i] is pair i's answer after n records.
	m := accessmodel.New()
	expected := make([][]domain.Access, len(recs)+1)
	answer := func(p accessmodel.Pair) domain.Access {
		f := m.Facts(p)
		if _, known := m.Account(p.Account); !known && len(f.Placements) == 0 && len(f.Grants) == 0 {
			return domain.Access{Reason: domain.ReasonNoRelationship}
		}
		return f.At(decision)
	}
	for n := 0; n <= len(recs); n++ {
		if n > 0 {
			_, err := m.Apply(recs[n-1])
			require.NoError(t, err)
		}
		expected[n] = make([]domain.Access, len(pairs))
		for i, p := range pairs {
			expected[n][i] = answer(p)
		}
	}

	ix := accessindex.New(accessindex.WithChangeBuffer(len(recs) * 10))
	var (
		done      atomic.Bool
		failures  atomic.Int64
		firstErr  atomic.Value
		checks    atomic.Int64
		positions atomic.Int64
		wg        sync.WaitGroup
	)
	fail := func(format string, args ...any) {
		if failures.Add(1) == 1 {
			firstErr.Store(fmt.Sprintf(format, args...))
		}
	}
	var started sync.WaitGroup
	started.Add(4)
	for r := range 4 {
		wg.Go(func() {
			var lastPos eventlog.Position
			seen := 0
			for i := r; !done.Load(); i++ {
				if i == r+1 {
					started.Done()
				}
				p := pairs[i%len(pairs)]
				got := ix.Check(p.Account, p.Child, domain.View, decision)
				checks.Add(1)
				want := expected[got.Position.Commit][i%len(pairs)]
				if got.Permissions != want.Permissions || got.Reason != want.Reason || !got.Until.Equal(want.Until) {
					fail("pair %v at %s: got %+v, want %+v", p, got.Position, got, want)
				}
				if got.Position.Before(lastPos) {
					fail("position went back from %s to %s", lastPos, got.Position)
				}
				if got.Position != lastPos {
					seen++
				}
				lastPos = got.Position
				switch i % 3 {
				case 0:
					es, pos := ix.ChildrenOf(p.Account, decision)
					if !slices.IsSortedFunc(es, func(a, b accessindex.Entry) int { return compareUUID(a.Child, b.Child) }) {
						fail("children of %s not sorted", p.Account)
					}
					for _, e := range es {
						j := slices.Index(pairs, accessmodel.Pair{Account: e.Account, Child: e.Child})
						if want := expected[pos.Commit][j]; e.Permissions != want.Permissions || e.Reason != want.Reason {
							fail("children of %s at %s: %+v, want %+v", p.Account, pos, e, want)
						}
					}
				case 1:
					es, pos := ix.ViewersOf(p.Child, decision)
					n := 0
					for j, q := range pairs {
						if q.Child == p.Child && expected[pos.Commit][j].Permissions != 0 {
							n++
						}
					}
					if len(es) != n {
						fail("viewers of %s at %s: %d, want %d", p.Child, pos, len(es), n)
					}
				case 2:
					// A batch: every answer is the one at the batch's
					// single position.
					items := make([]accessindex.CheckItem, 0, 40)
					for k := range 40 {
						q := pairs[(i+k*7)%len(pairs)]
						items = append(items, accessindex.CheckItem{Account: q.Account, Child: q.Child, Permission: domain.View})
					}
					as, pos := ix.CheckMany(items, decision, nil)
					for k, a := range as {
						want := expected[pos.Commit][(i+k*7)%len(pairs)]
						if a.Position != pos || a.Permissions != want.Permissions || a.Reason != want.Reason || !a.Until.Equal(want.Until) {
							fail("batch item %d at %s: got %+v, want %+v", k, pos, a, want)
						}
					}
				}
			}
			positions.Add(int64(seen))
		})
	}
	// A follower of the change feed sees every change once, in order.
	var followed []accessindex.Change
	wg.Go(func() {
		var pos eventlog.Position
		for {
			cs, next, wait, err := ix.Changes(pos)
			if err != nil {
				fail("changes: %v", err)
				return
			}
			followed = append(followed, cs...)
			pos = next
			if pos == last(w) {
				return
			}
			<-wait
		}
	})

	started.Wait() // every reader is reading
	for len(recs) > 0 {
		n := min(len(recs), 1+w.rng.IntN(8))
		require.NoError(t, ix.Apply(recs[:n]...))
		recs = recs[n:]
	}
	done.Store(true)
	wg.Wait()
	t.Logf("%d checks, readers saw %d positions", checks.Load(), positions.Load())
	require.Zero(t, failures.Load(), "first failure: %v", firstErr.Load())
	require.Positive(t, checks.Load())
	all, _, _, err := ix.Changes(eventlog.Start)
	require.NoError(t, err)
	require.Equal(t, all, followed)
	require.True(t, slices.IsSortedFunc(all, func(a, b accessindex.Change) int { return a.Position.Compare(b.Position) }))
}

func TestWaitFor(t *testing.T) {
	w := newWorld(t, 400)
	w.carer("a", t0)
	w.carer("b", t0)
	w.carer("c", t0)
	recs := w.take() // six records
	ix := accessindex.New()
	require.NoError(t, ix.Apply(recs[:4]...))
	ctx := t.Context()

	t.Run("applied already: at once", func(t *testing.T) {
		pos, err := ix.WaitFor(ctx, eventlog.At(3), 0)
		require.NoError(t, err)
		require.Equal(t, eventlog.At(4), pos)
	})

	t.Run("wakes on the apply that reaches the position", func(t *testing.T) {
		type result struct {
			pos eventlog.Position
			err error
		}
		done := make(chan result, 1)
		go func() {
			pos, err := ix.WaitFor(ctx, eventlog.At(6), time.Minute)
			done <- result{pos, err}
		}()
		require.NoError(t, ix.Apply(recs[4])) // not yet
		require.NoError(t, ix.Apply(recs[5]))
		select {
		case r := <-done:
			require.NoError(t, r.err)
			require.Equal(t, eventlog.At(6), r.pos, "it must not return before position 6")
		case <-time.After(10 * time.Second):
			t.Fatal("WaitFor did not wake")
		}
	})

	t.Run("times out stale", func(t *testing.T) {
		start := time.Now()
		pos, err := ix.WaitFor(ctx, eventlog.At(7), 30*time.Millisecond)
		require.ErrorIs(t, err, accessindex.ErrStale)
		require.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)
		require.Equal(t, eventlog.At(6), pos)
		require.ErrorContains(t, err, "at 6")
		require.ErrorContains(t, err, "for 7")
	})

	t.Run("no timeout: stale at once", func(t *testing.T) {
		_, err := ix.WaitFor(ctx, eventlog.At(7), 0)
		require.ErrorIs(t, err, accessindex.ErrStale)
	})

	t.Run("context done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		pos, err := ix.WaitFor(ctx, eventlog.At(7), time.Minute)
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, eventlog.At(6), pos)
	})
}

func TestChangesBuffer(t *testing.T) {
	w := newWorld(t, 500)
	parent := w.parent("parent", t0)
	child := w.child("C-1", "worker-ann", t0)
	ix := feed(t, w, accessindex.New(accessindex.WithChangeBuffer(3)))
	base := ix.Position()

	cs, pos, wait, err := ix.Changes(base)
	require.NoError(t, err)
	require.Empty(t, cs)
	require.Equal(t, base, pos)

	for i, perms := range []string{"view", "view,record", "view", "view,record", "view"} {
		w.grant(child, parent, perms, t0.Add(time.Duration(i+1)*day))
		feed(t, w, ix)
	}
	select {
	case <-wait:
	default:
		t.Fatal("the wait channel was not closed by the applies")
	}

	// Five changes, three kept.
	_, _, _, err = ix.Changes(base)
	require.ErrorIs(t, err, accessindex.ErrTooOld)
	_, _, _, err = ix.Changes(eventlog.At(base.Commit + 1))
	require.ErrorIs(t, err, accessindex.ErrTooOld)
	cs, pos, _, err = ix.Changes(eventlog.At(base.Commit + 2))
	require.NoError(t, err)
	require.Equal(t, last(w), pos)
	require.Len(t, cs, 3)
	for i, c := range cs {
		require.Equal(t, eventlog.At(base.Commit+3+uint64(i)), c.Position)
		require.Equal(t, parent, c.Account)
		require.Equal(t, child, c.Child)
		require.Equal(t, domain.ReasonGrant, c.Access.Reason)
		require.Equal(t, t0.Add(time.Duration(i+3)*day), c.At)
	}
	cs, _, _, err = ix.Changes(last(w))
	require.NoError(t, err)
	require.Empty(t, cs)
	require.Equal(t, 3, ix.Stats().Changes)
}

func TestChecksAllocateNothing(t *testing.T) {
	w := newWorld(t, 600)
	generate(w, 20)
	ix := feed(t, w, nil)
	pairs := w.pairs(true)
	at := t0.AddDate(-1, 0, 0)
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		p := pairs[i%len(pairs)]
		i++
		_ = ix.Check(p.Account, p.Child, domain.View, at)
		_ = ix.CheckCarer(p.Account, p.Account, domain.View, at)
	})
	require.Zero(t, allocs)

	items := make([]accessindex.CheckItem, len(pairs))
	for k, p := range pairs {
		items[k] = accessindex.CheckItem{Account: p.Account, Child: p.Child, Permission: domain.Record}
	}
	items[0].Carer = items[0].Account
	dst := make([]accessindex.ItemAnswer, 0, len(items))
	allocs = testing.AllocsPerRun(100, func() { dst, _ = ix.CheckMany(items, at, dst) })
	require.Zero(t, allocs, "CheckMany into a slice large enough")
}
