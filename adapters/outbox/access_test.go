package outbox_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/bus/bustest"
	"github.com/accessledger/accessledger/adapters/outbox"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accessindex"
)

// runIndex feeds a real access index from the store until the test ends.
func runIndex(t *testing.T, ctx context.Context, e env, opts ...accessindex.Option) *accessindex.Index {
	t.Helper()
	ix := accessindex.New(opts...)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ix.Run(ctx, e.store)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ix
}

func waitIndex(t *testing.T, ix *accessindex.Index, pos eventlog.Position) {
	t.Helper()
	require.Eventually(t, func() bool { return !ix.Position().Before(pos) }, timeout, time.Millisecond)
}

// checkChanges checks that msgs hold every change of want, in order (first
// deliveries), each decoding to the change, and returns the duplicates.
func checkChanges(t *testing.T, want []accessindex.Change, msgs []*message.Message) int {
	t.Helper()
	var got []*message.Message
	seen := map[string]bool{}
	for _, m := range msgs {
		if m.Metadata.Get(bus.MetaName) != bus.MessageAccessChanged || seen[m.UUID] {
			continue
		}
		seen[m.UUID] = true
		got = append(got, m)
	}
	require.Len(t, got, len(want))
	for i, c := range want {
		require.Equal(t, bus.AccessChangedUUID(c.Position, c.Account, c.Child).String(), got[i].UUID, "change %d in feed order", i)
		back, err := bus.DecodeAccessChanged(got[i])
		require.NoError(t, err)
		c.At = c.At.UTC()
		c.Access.ExpiresAt = time.Time{} // not in access.changed: the checks carry it (R19)
		if !c.Access.Until.IsZero() {
			c.Access.Until = c.Access.Until.UTC()
		}
		require.Equal(t, c, back)
	}
	return len(msgs) - len(got)
}

// Every change of the feed is published, in order; a publisher stopped
// mid-way and started again continues from its checkpoint without a gap.
func TestAccessChangedPublisher(t *testing.T) {
	recs := bustest.History(t, 300)
	forEach(t, func(t *testing.T, e env, cfg bus.Config) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		pub, sub := bustest.Open(t, cfg)
		topic := bustest.Topic(t, bus.TopicAccess)
		col := bustest.Collect(t, ctx, sub, topic)
		ix := runIndex(t, ctx, e)
		opts := []outbox.Option{outbox.WithTopic(topic), outbox.WithBatch(20, time.Hour)}

		require.NoError(t, bustest.AppendAll(ctx, e.store, recs[:150]))
		waitIndex(t, ix, recs[149].Position)

		// Killed after some 40 changes.
		ctx1, kill := context.WithCancel(ctx)
		rec1 := &recordingPublisher{inner: pub, after: 40, cancel: kill}
		p := outbox.NewAccessChangedPublisher(ix, e.db, rec1, opts...)
		require.ErrorIs(t, p.Run(ctx1), context.Canceled)
		cp, err := outbox.NewCheckpoints(e.db).Load(ctx, outbox.DefaultAccessName)
		require.NoError(t, err)
		require.False(t, cp.IsZero())
		published := map[string]bool{}
		for _, id := range rec1.published() {
			published[id] = true
		}
		all, _, _, err := ix.Changes(eventlog.Start)
		require.NoError(t, err)
		require.Less(t, len(published), len(all), "killed mid-way")
		for _, c := range all {
			if !cp.Before(c.Position) {
				require.True(t, published[bus.AccessChangedUUID(c.Position, c.Account, c.Child).String()],
					"the checkpoint %s never passes a change not published (%s)", cp, c.Position)
			}
		}

		// Started again, following new records too.
		p = outbox.NewAccessChangedPublisher(ix, e.db, pub, outbox.WithTopic(topic), outbox.WithBatch(20, 20*time.Millisecond))
		run(t, ctx, p)
		require.NoError(t, bustest.AppendAll(ctx, e.store, recs[150:]))
		head := recs[len(recs)-1].Position
		waitIndex(t, ix, head)
		want, reached, _, err := ix.Changes(eventlog.Start)
		require.NoError(t, err)
		require.Equal(t, head, reached)

		msgs := col.UniqueUUIDs(t, timeout, len(want))
		dups := checkChanges(t, want, msgs)
		t.Logf("%d changes, %d duplicates", len(want), dups)
		require.Eventually(t, func() bool {
			st := p.Status()
			return st.Checkpoint == head && st.Lag == 0 && st.Running
		}, 10*time.Second, time.Millisecond)
	})
}

// A checkpoint older than the index's change buffer: the publisher says so
// with an access.reset message and carries on from the index's position.
func TestAccessChangedPublisherFallsBehind(t *testing.T) {
	recs := bustest.History(t, 200)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	e := openEnv(t, stores[0].url(t))
	pub, sub := bustest.Open(t, bustest.Config(t, bus.KindGoChannel))
	topic := bustest.Topic(t, bus.TopicAccess)
	col := bustest.Collect(t, ctx, sub, topic)
	ix := runIndex(t, ctx, e, accessindex.WithChangeBuffer(10))

	require.NoError(t, bustest.AppendAll(ctx, e.store, recs[:150]))
	waitIndex(t, ix, recs[149].Position)
	cps := outbox.NewCheckpoints(e.db)
	require.NoError(t, cps.Save(ctx, outbox.DefaultAccessName, eventlog.At(3)))

	p := outbox.NewAccessChangedPublisher(ix, e.db, pub, outbox.WithTopic(topic))
	run(t, ctx, p)
	msgs := col.WaitN(t, timeout, 1)
	require.Equal(t, bus.MessageAccessReset, msgs[0].Metadata.Get(bus.MetaName))
	var reset bus.AccessReset
	require.NoError(t, json.Unmarshal(msgs[0].Payload, &reset))
	require.Equal(t, "3", reset.After)
	require.Equal(t, recs[149].Position.String(), reset.Resumed)

	// What comes after is published. (A second index, with the default
	// buffer, tells what the changes are.)
	full := runIndex(t, ctx, e)
	for _, r := range recs[150:170] {
		require.NoError(t, bustest.AppendAll(ctx, e.store, []eventlog.Record{r}))
		require.Eventually(t, func() bool { return !p.Status().Position.Before(r.Position) }, timeout, time.Millisecond,
			"one record at a time, so that the publisher keeps up with the small buffer")
	}
	waitIndex(t, full, recs[169].Position)
	want, _, _, err := full.Changes(recs[149].Position)
	require.NoError(t, err)
	require.NotEmpty(t, want)
	msgs = col.UniqueUUIDs(t, timeout, len(want)+1)
	checkChanges(t, want, msgs[1:])
	require.Eventually(t, func() bool {
		cp, err := cps.Load(ctx, outbox.DefaultAccessName)
		return err == nil && cp == recs[169].Position
	}, 10*time.Second, 5*time.Millisecond)
}
