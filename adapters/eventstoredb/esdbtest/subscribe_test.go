package esdbtest

import (
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestSubscribeToStream(t *testing.T) {
	tests := []struct {
		name        string
		from        esdb.StreamPosition
		wantCatchUp []int // indexes of the 3 existing events delivered before CaughtUp
	}{
		{name: "from start", from: esdb.Start{}, wantCatchUp: []int{0, 1, 2}},
		{name: "from a revision is exclusive", from: esdb.Revision(0), wantCatchUp: []int{1, 2}},
		{name: "from the last revision", from: esdb.Revision(2)},
		{name: "from end", from: esdb.End{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := Start(t)
			c := newClient(t, srv.URL())
			existing := []esdb.EventData{jsonEvent("E0", `{}`), jsonEvent("E1", `{}`), jsonEvent("E2", `{}`)}
			appendOK(t, c, "acc-1", esdb.NoStream{}, existing...)
			appendOK(t, c, "acc-2", esdb.NoStream{}, jsonEvent("Elsewhere", `{}`))

			sub, err := c.SubscribeToStream(ctxT(t), "acc-1", esdb.SubscribeToStreamOptions{From: tt.from})
			require.NoError(t, err)
			t.Cleanup(func() { _ = sub.Close() })

			got := recvUntil(t, sub, isKind("caughtup"))
			var want []esdb.EventData
			for _, i := range tt.wantCatchUp {
				want = append(want, existing[i])
			}
			require.Equal(t, dataIDs(want...), recordedIDs(eventsOf(got)), "catch-up: %v", got)

			live := []esdb.EventData{jsonEvent("L0", `{}`), jsonEvent("L1", `{}`)}
			appendOK(t, c, "acc-2", esdb.Any{}, jsonEvent("Elsewhere", `{}`))
			appendOK(t, c, "acc-1", esdb.Revision(2), live...)
			got = recvUntil(t, sub, func(e subEvent) bool { return e.kind == "event" && e.event.EventID == live[1].EventID })
			require.Equal(t, dataIDs(live...), recordedIDs(eventsOf(got)), "live: %v", got)
			require.Equal(t, uint64(4), eventsOf(got)[1].EventNumber)
		})
	}

	t.Run("a stream that does not exist yet", func(t *testing.T) {
		srv := Start(t)
		c := newClient(t, srv.URL())
		sub, err := c.SubscribeToStream(ctxT(t), "later", esdb.SubscribeToStreamOptions{From: esdb.Start{}})
		require.NoError(t, err)
		t.Cleanup(func() { _ = sub.Close() })
		require.Equal(t, "caughtup", next(sub).kind)
		e := jsonEvent("First", `{}`)
		appendOK(t, c, "later", esdb.NoStream{}, e)
		got := next(sub)
		require.Equal(t, "event", got.kind)
		require.Equal(t, e.EventID, got.event.EventID)
	})
}

func TestSubscribeToAll(t *testing.T) {
	tests := []struct {
		name string
		// from picks the start among the 5 records of the log (2 startup
		// system events, then U0..U2); want are the indexes delivered
		// before CaughtUp.
		from func(all []*esdb.ResolvedEvent) esdb.AllPosition
		want []int
	}{
		{name: "from start", from: func([]*esdb.ResolvedEvent) esdb.AllPosition { return esdb.Start{} }, want: []int{0, 1, 2, 3, 4}},
		{name: "from a position is exclusive", from: func(all []*esdb.ResolvedEvent) esdb.AllPosition { return all[2].OriginalEvent().Position }, want: []int{3, 4}},
		{name: "from the last position", from: func(all []*esdb.ResolvedEvent) esdb.AllPosition { return all[4].OriginalEvent().Position }},
		{name: "from end", from: func([]*esdb.ResolvedEvent) esdb.AllPosition { return esdb.End{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := Start(t)
			c := newClient(t, srv.URL())
			appendOK(t, c, "acc-1", esdb.Any{}, jsonEvent("U0", `{}`), jsonEvent("U1", `{}`), jsonEvent("U2", `{}`))
			all := readAll(t, c, esdb.ReadAllOptions{}, 100)
			require.Len(t, all, 5)

			sub, err := c.SubscribeToAll(ctxT(t), esdb.SubscribeToAllOptions{From: tt.from(all)})
			require.NoError(t, err)
			t.Cleanup(func() { _ = sub.Close() })
			got := recvUntil(t, sub, isKind("caughtup"))
			var want []*esdb.ResolvedEvent
			for _, i := range tt.want {
				want = append(want, all[i])
			}
			require.Equal(t, ids(want), recordedIDs(eventsOf(got)), "catch-up: %v", got)
			for _, e := range got {
				require.NotEqual(t, "checkpoint", e.kind, "no checkpoints without a filter")
			}

			live := jsonEvent("Live", `{}`)
			srv.AppendSystemEvent("$stats-x", "$statsCollected", []byte(`{}`))
			appendOK(t, c, "acc-2", esdb.Any{}, live)
			got = recvUntil(t, sub, func(e subEvent) bool { return e.kind == "event" && e.event.EventID == live.EventID })
			evs := eventsOf(got)
			require.Len(t, evs, 2, "the system event then the user event: %v", got)
			require.Equal(t, "$statsCollected", evs[0].EventType)
		})
	}
}

// TestSubscribeToAllFilteredCheckpoints follows one filtered subscription
// through catch-up and live, checking which events and checkpoints arrive.
func TestSubscribeToAllFilteredCheckpoints(t *testing.T) {
	srv := Start(t)
	c := newClient(t, srv.URL())
	var u []esdb.EventData
	for i := 0; i < 10; i++ {
		u = append(u, jsonEvent("AccountOpened", `{}`))
	}
	appendOK(t, c, "acc-1", esdb.Any{}, u...)
	all := readAll(t, c, esdb.ReadAllOptions{}, 100)
	require.Len(t, all, 12, "2 startup system events + 10")
	userPos := func(i int) esdb.Position { return all[2+i].OriginalEvent().Position }

	// A window of 4 considered events and a multiplier of 1: a checkpoint
	// every 4 events considered, matching or not.
	sub, err := c.SubscribeToAll(ctxT(t), esdb.SubscribeToAllOptions{
		From:               esdb.Start{},
		Filter:             esdb.ExcludeSystemEventsFilter(),
		MaxSearchWindow:    4,
		CheckpointInterval: 1,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	require.Eventually(t, func() bool { return srv.Subscriptions() == 1 }, testTimeout, 10_000_000)

	got := recvUntil(t, sub, isKind("caughtup"))
	// Page 1 considers the 2 system events and U0, U1; page 2 U2..U5; page 3
	// U6..U9; page 4 finds the end of the log and checkpoints at the page's
	// start, which is the post-position of U9 with prepare 0.
	endOfLog := esdb.Position{Commit: all[11].OriginalEvent().Position.Commit + recordSizeOf(all[11].OriginalEvent()), Prepare: 0}
	want := []string{
		ev(u[0]), ev(u[1]), cp(userPos(1)),
		ev(u[2]), ev(u[3]), ev(u[4]), ev(u[5]), cp(userPos(5)),
		ev(u[6]), ev(u[7]), ev(u[8]), ev(u[9]), cp(userPos(9)),
		cp(endOfLog), "caughtup",
	}
	require.Equal(t, want, describe(got))

	// Live: the system event is filtered out but counts towards the interval.
	l := []esdb.EventData{jsonEvent("Live", `{}`), jsonEvent("Live", `{}`), jsonEvent("Live", `{}`)}
	srv.AppendSystemEvent("$stats-x", "$statsCollected", []byte(`{}`))
	res := appendOK(t, c, "acc-2", esdb.Any{}, l...)
	got = recvUntil(t, sub, isKind("checkpoint"))
	require.Equal(t, []string{ev(l[0]), ev(l[1]), ev(l[2]), cp(esdb.Position{Commit: res.CommitPosition, Prepare: res.CommitPosition})}, describe(got))
}

// recordSizeOf recomputes the emulated size of a record from what the client
// sees (the test's own copy of the documented size rule).
func recordSizeOf(e *esdb.RecordedEvent) uint64 {
	return uint64(recordSize(e.StreamID, e.EventType, e.Data, e.UserMetadata))
}

func ev(e esdb.EventData) string { return "event:" + e.EventID.String() }

func cp(p esdb.Position) string {
	return (&subEvent{kind: "checkpoint", position: p}).String()
}

func describe(evs []subEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		switch e.kind {
		case "event":
			out[i] = "event:" + e.event.EventID.String()
		default:
			out[i] = e.String()
		}
	}
	return out
}

func TestSubscribeToAllFilters(t *testing.T) {
	srv := Start(t)
	c := newClient(t, srv.URL())
	appendOK(t, c, "account-1", esdb.Any{}, jsonEvent("AccountOpened", `{}`))
	appendOK(t, c, "child-1", esdb.Any{}, jsonEvent("ChildRegistered", `{}`))
	appendOK(t, c, "link-1", esdb.Any{}, jsonEvent("IdentityLinked", `{}`))
	srv.AppendSystemEvent("$stats-x", "$statsCollected", []byte(`{}`))

	tests := []struct {
		name   string
		filter *esdb.SubscriptionFilter
		want   []string // stream names delivered, in order
	}{
		{name: "exclude system events", filter: esdb.ExcludeSystemEventsFilter(), want: []string{"account-1", "child-1", "link-1"}},
		{name: "stream prefixes", filter: &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{"child-", "link-"}}, want: []string{"child-1", "link-1"}},
		{name: "event type prefix", filter: &esdb.SubscriptionFilter{Type: esdb.EventFilterType, Prefixes: []string{"Account"}}, want: []string{"account-1"}},
		{name: "stream regex", filter: &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Regex: "^(account|link)-"}, want: []string{"account-1", "link-1"}},
		{name: "event type regex is unanchored", filter: &esdb.SubscriptionFilter{Type: esdb.EventFilterType, Regex: "Registered"}, want: []string{"child-1"}},
		{name: "system streams only", filter: &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{"$"}}, want: []string{"$epoch-information", "$$$scavenges", "$stats-x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, err := c.SubscribeToAll(ctxT(t), esdb.SubscribeToAllOptions{From: esdb.Start{}, Filter: tt.filter})
			require.NoError(t, err)
			t.Cleanup(func() { _ = sub.Close() })
			got := eventsOf(recvUntil(t, sub, isKind("caughtup")))
			var streams []string
			for _, e := range got {
				streams = append(streams, e.StreamID)
			}
			require.Equal(t, tt.want, streams)
		})
	}
}

func TestDropSubscriptions(t *testing.T) {
	srv := Start(t)
	c := newClient(t, srv.URL())
	appendOK(t, c, "acc-1", esdb.Any{}, jsonEvent("E", `{}`))

	toAll, err := c.SubscribeToAll(ctxT(t), esdb.SubscribeToAllOptions{From: esdb.Start{}, Filter: esdb.ExcludeSystemEventsFilter()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = toAll.Close() })
	toStream, err := c.SubscribeToStream(ctxT(t), "acc-1", esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = toStream.Close() })
	recvUntil(t, toAll, isKind("caughtup"))
	recvUntil(t, toStream, isKind("caughtup"))
	require.Equal(t, 2, srv.Subscriptions())

	srv.DropSubscriptions()

	for _, sub := range []*esdb.Subscription{toAll, toStream} {
		got := recvUntil(t, sub, isKind("dropped"))
		dropped := got[len(got)-1]
		require.Equal(t, codes.Unavailable, status.Code(dropped.err), "dropped with %v", dropped.err)
	}
	require.Eventually(t, func() bool { return srv.Subscriptions() == 0 }, testTimeout, 10_000_000)

	// The client resubscribes from where it was.
	again, err := c.SubscribeToStream(ctxT(t), "acc-1", esdb.SubscribeToStreamOptions{From: esdb.Revision(0)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = again.Close() })
	require.Equal(t, "caughtup", next(again).kind)
	e := jsonEvent("After", `{}`)
	appendOK(t, c, "acc-1", esdb.Revision(0), e)
	got := next(again)
	require.Equal(t, e.EventID, got.event.EventID)
}
