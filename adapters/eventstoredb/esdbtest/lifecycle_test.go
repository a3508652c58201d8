package esdbtest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestStopRestartKeepsData(t *testing.T) {
	srv := Start(t)
	url := srv.URL()
	c := newClient(t, url)
	written := []esdb.EventData{jsonEvent("A", `{}`), jsonEvent("B", `{}`)}
	appendOK(t, c, "acc-1", esdb.NoStream{}, written...)
	sub, err := c.SubscribeToAll(ctxT(t), esdb.SubscribeToAllOptions{From: esdb.End{}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	require.Equal(t, "caughtup", next(sub).kind)
	events := srv.Events()

	srv.Stop()

	dropped := next(sub)
	require.Equal(t, "dropped", dropped.kind)
	require.Equal(t, codes.Unavailable, status.Code(dropped.err), "%v", dropped.err)
	require.Eventually(t, func() bool { return srv.Subscriptions() == 0 }, testTimeout, 10_000_000)
	down := newClient(t, url)
	_, err = down.AppendToStream(ctxT(t), "acc-1", esdb.AppendToStreamOptions{}, jsonEvent("C", `{}`))
	var esErr *esdb.Error
	require.ErrorAs(t, err, &esErr)
	require.Equal(t, esdb.ErrorUnavailable, esErr.Code(), "%v", err)
	srv.Stop() // idempotent

	srv.Restart(t)

	require.Equal(t, url, srv.URL(), "same port")
	require.Equal(t, events, srv.Events())
	got, err := readStream(t, c, "acc-1", esdb.ReadStreamOptions{}, 10)
	require.NoError(t, err, "the client that made no call during the outage reconnects by itself")
	require.Equal(t, dataIDs(written...), ids(got))
	res := appendOK(t, newClient(t, srv.URL()), "acc-1", esdb.Revision(1), jsonEvent("C", `{}`))
	require.Equal(t, uint64(2), res.NextExpectedVersion)
}

// TestConcurrentAppenders appends from many goroutines, some blindly, some
// with optimistic concurrency, while a subscription follows $all.
func TestConcurrentAppenders(t *testing.T) {
	srv := Start(t)
	c := newClient(t, srv.URL())
	const (
		writers   = 8
		perWriter = 25
		streamsN  = 4
	)
	sub, err := c.SubscribeToAll(ctxT(t), esdb.SubscribeToAllOptions{From: esdb.Start{}, Filter: esdb.ExcludeSystemEventsFilter()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				stream := fmt.Sprintf("acc-%d", (w+i)%streamsN)
				e := jsonEvent("Tick", fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
				if err := appendOnce(c, stream, e, w%2 == 0); err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	all := readAll(t, c, esdb.ReadAllOptions{}, 10_000)
	require.Len(t, all, 2+writers*perWriter)
	seen := map[uuid.UUID]bool{}
	revs := map[string][]uint64{}
	for i, e := range all {
		r := e.OriginalEvent()
		if i > 0 {
			require.Greater(t, r.Position.Commit, all[i-1].OriginalEvent().Position.Commit, "$all is totally ordered")
		}
		require.False(t, seen[r.EventID], "each event once")
		seen[r.EventID] = true
		revs[r.StreamID] = append(revs[r.StreamID], r.EventNumber)
	}
	total := 0
	for s := 0; s < streamsN; s++ {
		got := revs[fmt.Sprintf("acc-%d", s)]
		for i, rev := range got {
			require.Equal(t, uint64(i), rev, "revisions are gapless and in $all order")
		}
		total += len(got)
	}
	require.Equal(t, writers*perWriter, total)

	var live []*esdb.RecordedEvent
	for len(live) < writers*perWriter {
		ev := next(sub)
		require.NotEqual(t, "dropped", ev.kind, "%v", ev.err)
		if ev.kind == "event" {
			live = append(live, ev.event)
		}
	}
	require.Equal(t, ids(all[2:]), recordedIDs(live), "the subscription sees $all's order")
}

// appendOnce writes e once: blindly with "any", or read-then-write with the
// exact revision, retrying on a wrong expected version.
func appendOnce(c *esdb.Client, stream string, e esdb.EventData, optimistic bool) error {
	ctx, cancel := contextWithTimeout()
	defer cancel()
	if !optimistic {
		_, err := c.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, e)
		return err
	}
	for attempt := 0; attempt < 1000; attempt++ {
		var exp esdb.ExpectedRevision = esdb.NoStream{}
		rs, err := c.ReadStream(ctx, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
		if err != nil {
			return err
		}
		last, err := collect(rs)
		var esErr *esdb.Error
		switch {
		case errors.As(err, &esErr) && esErr.Code() == esdb.ErrorCodeResourceNotFound:
		case err != nil:
			return err
		default:
			exp = esdb.Revision(last[0].OriginalEvent().EventNumber)
		}
		_, err = c.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, e)
		if errors.As(err, &esErr) && esErr.Code() == esdb.ErrorCodeWrongExpectedVersion {
			continue
		}
		return err
	}
	return fmt.Errorf("no luck appending to %s", stream)
}
