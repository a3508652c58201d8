package projections

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain/eventlog"
)

func recAt(p uint64) eventlog.Record { return eventlog.Record{Position: eventlog.At(p)} }

func positions(recs []eventlog.Record) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Position.Commit
	}
	return out
}

// TestQueueLinger: linger adds what arrives within its time, up to the
// batch; it returns at once when the batch is full, at its time when not,
// and when the subscription ends; without a linger it adds nothing.
func TestQueueLinger(t *testing.T) {
	tests := []struct {
		name     string
		linger   time.Duration
		batch    int
		waiting  []uint64 // in the queue when linger is called
		later    []uint64 // pushed 20 ms into the linger
		close    bool     // the subscription ends 20 ms into the linger
		want     []uint64
		wantLeft []uint64
		atMost   time.Duration
		atLeast  time.Duration
	}{
		{name: "no linger", linger: 0, batch: 10, waiting: []uint64{2, 3}, want: []uint64{1}, wantLeft: []uint64{2, 3}, atMost: 100 * time.Millisecond},
		{name: "adds what waits and what arrives", linger: 150 * time.Millisecond, batch: 10, waiting: []uint64{2}, later: []uint64{3, 4},
			want: []uint64{1, 2, 3, 4}, atLeast: 140 * time.Millisecond},
		{name: "returns once the batch is full", linger: 10 * time.Second, batch: 3, later: []uint64{2, 3, 4},
			want: []uint64{1, 2, 3}, wantLeft: []uint64{4}, atMost: 5 * time.Second},
		{name: "full already", linger: 10 * time.Second, batch: 2, waiting: []uint64{2, 3},
			want: []uint64{1, 2}, wantLeft: []uint64{3}, atMost: time.Second},
		{name: "the subscription ends", linger: 10 * time.Second, batch: 10, waiting: []uint64{2}, close: true,
			want: []uint64{1, 2}, atMost: 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			q := newQueue(100)
			for _, p := range tt.waiting {
				require.NoError(t, q.push(ctx, recAt(p)))
			}
			closed := make(chan struct{})
			go func() {
				time.Sleep(20 * time.Millisecond)
				for _, p := range tt.later {
					_ = q.push(ctx, recAt(p))
				}
				if tt.close {
					close(closed)
				}
			}()
			start := time.Now()
			got := q.linger(ctx, []eventlog.Record{recAt(1)}, tt.batch, tt.linger, closed)
			took := time.Since(start)
			require.Equal(t, tt.want, positions(got))
			if tt.atMost > 0 {
				require.Less(t, took, tt.atMost)
			}
			require.GreaterOrEqual(t, took, tt.atLeast)
			time.Sleep(30 * time.Millisecond) // the later pushes are in
			left, _ := func() ([]eventlog.Record, bool) {
				q.mu.Lock()
				defer q.mu.Unlock()
				return append([]eventlog.Record(nil), q.recs...), true
			}()
			require.Equal(t, len(tt.wantLeft), len(left), "left %v", positions(left))
			if len(tt.wantLeft) > 0 {
				require.Equal(t, tt.wantLeft, positions(left))
			}
		})
	}
}

// TestQueueLingerStopsWithTheContext: a cancelled context ends the wait.
func TestQueueLingerStopsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	q := newQueue(10)
	go func() {
		time.Sleep(20 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	got := q.linger(ctx, []eventlog.Record{recAt(1)}, 10, 10*time.Second, nil)
	require.Equal(t, []uint64{1}, positions(got))
	require.Less(t, time.Since(start), 5*time.Second)
}
