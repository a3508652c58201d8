package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain/eventlog"
)

func groupEvent() eventlog.EventData {
	return eventlog.EventData{ID: uuid.New(), Type: "t", Data: []byte(`{"k":"v"}`),
		Meta: eventlog.Meta{ActorID: "a", ActorRole: "r", EffectiveAt: time.Now()}}
}

// TestGroupCommit: concurrent appends on an SQLite file are committed in
// groups, each append with the outcome Append alone would have had: the
// appends to streams of their own all written, of the racers creating one
// stream exactly one, the others refused with a conflict and nothing of
// theirs stored, the positions dense and each stream's versions in order.
func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	db := sqltest.Open(t, sqltest.SQLiteFile(t))
	require.NoError(t, Migrate(ctx, db))
	s, err := New(ctx, db)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })

	const writers, each, racers = 12, 15, 8
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			stream := fmt.Sprintf("own-%d", w)
			for i := range each {
				n := 1 + i%3
				events := make([]eventlog.EventData, n)
				for j := range events {
					events[j] = groupEvent()
				}
				_, err := s.Append(ctx, stream, eventlog.Any, events)
				errs <- err
			}
		})
	}
	won := make(chan uuid.UUID, racers)
	lost := make(chan error, racers)
	for range racers {
		wg.Go(func() {
			e := groupEvent()
			_, err := s.Append(ctx, "contested", eventlog.NoStream, []eventlog.EventData{e})
			if err == nil {
				won <- e.ID
				return
			}
			lost <- err
		})
	}
	wg.Wait()
	close(errs)
	close(won)
	close(lost)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, won, 1, "exactly one racer creates the stream")
	for err := range lost {
		require.True(t, errors.Is(err, eventlog.ErrConflict), "%v", err)
	}

	recs, err := s.ReadAll(ctx, eventlog.Start, 0)
	require.NoError(t, err)
	versions := map[string]uint64{}
	own := 0
	for i, r := range recs {
		require.Equal(t, uint64(i+1), r.Position.Commit, "positions dense, in order")
		versions[r.Stream]++
		require.Equal(t, versions[r.Stream], r.Version, "%s's versions in order", r.Stream)
		if r.Stream != "contested" {
			own++
		}
	}
	require.Equal(t, writers*(each/3)*(1+2+3), own, "every append to its own stream written (1, 2, 3 events in turn)")
	require.EqualValues(t, 1, versions["contested"])
	require.Equal(t, (<-won), recs[slicesIndex(recs, "contested")].ID)
	appends := int64(writers*each + racers)
	groups := s.shared.group.groups.Load()
	require.Less(t, groups, appends, "concurrent appends shared transactions (%d groups for %d appends)", groups, appends)
	t.Logf("%d appends in %d groups", appends, groups)

	// An append whose context has ended writes nothing.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Append(cctx, "late", eventlog.Any, []eventlog.EventData{groupEvent()})
	require.ErrorIs(t, err, context.Canceled)
	after, err := s.ReadAll(ctx, eventlog.Start, 0)
	require.NoError(t, err)
	require.Len(t, after, len(recs), "nothing written")
}

func slicesIndex(recs []eventlog.Record, stream string) int {
	for i, r := range recs {
		if r.Stream == stream {
			return i
		}
	}
	return -1
}

// TestGroupCommitCallerLeavesOnItsContext: while another transaction holds
// the file, an append's caller leaves when its context ends (the writer
// goroutine, not the caller, waits for the lock), and the append, taken
// already, is written once the lock is free: an unknown outcome that a
// retry with the same event id settles.
func TestGroupCommitCallerLeavesOnItsContext(t *testing.T) {
	ctx := context.Background()
	db := sqltest.Open(t, sqltest.SQLiteFile(t))
	require.NoError(t, Migrate(ctx, db))
	s, err := New(ctx, db)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })

	hold, err := db.BeginTx(ctx, nil) // holds the write gate
	require.NoError(t, err)
	e := groupEvent()
	actx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := s.Append(actx, "held", eventlog.NoStream, []eventlog.EventData{e})
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(5 * time.Second):
		t.Fatal("the caller waited for the lock beyond its context")
	}
	require.NoError(t, hold.Rollback())

	// The retry with the same event id settles it: written once.
	res, err := s.Append(ctx, "held", eventlog.NoStream, []eventlog.EventData{e})
	require.NoError(t, err)
	require.EqualValues(t, 1, res.Version)
	recs, err := s.ReadStream(ctx, "held", 1, 0)
	require.NoError(t, err)
	require.Len(t, recs, 1)
}
