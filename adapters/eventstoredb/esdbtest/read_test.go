package esdbtest

import (
	"strings"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func TestReadStream(t *testing.T) {
	srv := Start(t)
	c := newClient(t, srv.URL())
	var evs []esdb.EventData
	for i := 0; i < 5; i++ {
		evs = append(evs, jsonEvent("E", `{}`))
	}
	appendOK(t, c, "acc-1", esdb.NoStream{}, evs[:3]...)
	appendOK(t, c, "other", esdb.NoStream{}, jsonEvent("Other", `{}`))
	appendOK(t, c, "acc-1", esdb.Revision(2), evs[3:]...)

	tests := []struct {
		name  string
		opts  esdb.ReadStreamOptions
		count uint64
		want  []esdb.EventData
	}{
		{name: "forwards from start", opts: esdb.ReadStreamOptions{}, count: 100, want: evs},
		{name: "forwards with a count", opts: esdb.ReadStreamOptions{}, count: 2, want: evs[:2]},
		{name: "forwards from a revision, inclusive", opts: esdb.ReadStreamOptions{From: esdb.Revision(3)}, count: 100, want: evs[3:]},
		{name: "forwards past the end", opts: esdb.ReadStreamOptions{From: esdb.Revision(5)}, count: 100},
		{name: "forwards from end", opts: esdb.ReadStreamOptions{From: esdb.End{}}, count: 100},
		{name: "backwards from end", opts: esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, count: 100,
			want: []esdb.EventData{evs[4], evs[3], evs[2], evs[1], evs[0]}},
		{name: "backwards from a revision, inclusive, with a count", opts: esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.Revision(2)}, count: 2,
			want: []esdb.EventData{evs[2], evs[1]}},
		{name: "backwards from past the end", opts: esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.Revision(50)}, count: 1,
			want: []esdb.EventData{evs[4]}},
		{name: "backwards from start", opts: esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.Start{}}, count: 10,
			want: []esdb.EventData{evs[0]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readStream(t, c, "acc-1", tt.opts, tt.count)
			require.NoError(t, err)
			require.Equal(t, dataIDs(tt.want...), ids(got))
			for _, e := range got {
				require.Equal(t, "acc-1", e.OriginalEvent().StreamID)
				require.Equal(t, e.OriginalEvent().Position.Commit, *e.Commit, "stream reads carry the $all position (22.6+)")
			}
		})
	}

	t.Run("missing stream", func(t *testing.T) {
		for _, dir := range []esdb.Direction{esdb.Forwards, esdb.Backwards} {
			_, err := readStream(t, c, "nope-"+uuid.NewString(), esdb.ReadStreamOptions{Direction: dir}, 10)
			require.True(t, isNotFound(err), "want ErrorCodeResourceNotFound, got %v", err)
			require.ErrorContains(t, err, "is not found")
		}
	})
}

func TestReadAll(t *testing.T) {
	srv := Start(t)
	c := newClient(t, srv.URL())
	startup := readAll(t, c, esdb.ReadAllOptions{}, 100)
	require.Len(t, startup, 2, "a fresh node has written its own system events")
	for _, e := range startup {
		require.True(t, strings.HasPrefix(e.OriginalEvent().StreamID, "$"), e.OriginalEvent().StreamID)
		require.True(t, strings.HasPrefix(e.OriginalEvent().EventType, "$"), e.OriginalEvent().EventType)
		require.NotZero(t, e.OriginalEvent().Position.Commit)
	}

	u := []esdb.EventData{jsonEvent("U0", `{}`), jsonEvent("U1", `{}`), jsonEvent("U2", `{}`), jsonEvent("U3", `{}`)}
	appendOK(t, c, "acc-1", esdb.Any{}, u[0], u[1])
	srv.AppendSystemEvent("$stats-127.0.0.1:2113", "$statsCollected", []byte(`{"proc":1}`))
	appendOK(t, c, "acc-2", esdb.Any{}, u[2], u[3])
	require.Equal(t, 7, srv.Events())

	all := readAll(t, c, esdb.ReadAllOptions{}, 100)
	require.Len(t, all, 7)
	for i := 1; i < len(all); i++ {
		require.Greater(t, all[i].OriginalEvent().Position.Commit, all[i-1].OriginalEvent().Position.Commit)
		require.Equal(t, all[i].OriginalEvent().Position.Commit, all[i].OriginalEvent().Position.Prepare)
	}
	require.Equal(t, "$statsCollected", all[4].OriginalEvent().EventType)
	pos := func(i int) esdb.Position { return all[i].OriginalEvent().Position }

	tests := []struct {
		name  string
		opts  esdb.ReadAllOptions
		count uint64
		want  []int // indexes into all
	}{
		{name: "forwards from start with a count", count: 3, want: []int{0, 1, 2}},
		{name: "forwards from a position is inclusive", opts: esdb.ReadAllOptions{From: pos(3)}, count: 100, want: []int{3, 4, 5, 6}},
		{name: "forwards from a position between records starts at the next", opts: esdb.ReadAllOptions{From: esdb.Position{Commit: pos(3).Commit + 1, Prepare: pos(3).Commit + 1}}, count: 100, want: []int{4, 5, 6}},
		{name: "forwards from end", opts: esdb.ReadAllOptions{From: esdb.End{}}, count: 100},
		{name: "backwards from end", opts: esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, count: 3, want: []int{6, 5, 4}},
		{name: "backwards from a position is exclusive", opts: esdb.ReadAllOptions{Direction: esdb.Backwards, From: pos(3)}, count: 100, want: []int{2, 1, 0}},
		{name: "backwards from start", opts: esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.Start{}}, count: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readAll(t, c, tt.opts, tt.count)
			want := make([]*esdb.ResolvedEvent, len(tt.want))
			for i, j := range tt.want {
				want[i] = all[j]
			}
			require.Equal(t, ids(want), ids(got))
			for _, e := range got {
				require.NotNil(t, e.Commit)
				require.Equal(t, e.OriginalEvent().Position.Commit, *e.Commit)
			}
		})
	}
}

// TestPositionsAreByteOffsets checks that positions grow by the size of each
// record, so that a bigger event moves the log further.
func TestPositionsAreByteOffsets(t *testing.T) {
	srv := Start(t)
	c := newClient(t, srv.URL())
	small := appendOK(t, c, "acc-1", esdb.Any{}, jsonEvent("E", `{}`))
	big := appendOK(t, c, "acc-1", esdb.Any{}, esdb.EventData{EventType: "E", Data: make([]byte, 10_000)})
	after := appendOK(t, c, "acc-1", esdb.Any{}, jsonEvent("E", `{}`))
	require.Less(t, big.CommitPosition-small.CommitPosition, uint64(1000))
	require.Greater(t, after.CommitPosition-big.CommitPosition, uint64(10_000))
}
