// Concurrency: one global order under concurrent writers and readers.

package eventstoretest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// testConcurrentWriters runs writers on streams of their own and writers
// contending on shared streams (retrying conflicts with the actual version),
// while a reader pages through ReadAll and a subscriber follows. Neither may
// skip or repeat an event: each ends having seen exactly the final log, in
// its order (decision 2: a reader that has seen P has seen everything
// before P).
func testConcurrentWriters(t *testing.T, newStore func(t *testing.T) eventlog.Store) {
	s := newStore(t)
	ctx := t.Context()
	const (
		ownWriters    = 8
		sharedWriters = 6
		sharedStreams = 2
		appendsEach   = 12
	)

	sub := subscribe(t, s, eventlog.Start)

	var total atomic.Int64
	var conflicts atomic.Int64
	var writers sync.WaitGroup
	ownEvents := make([][]eventlog.EventData, ownWriters)
	for w := range ownWriters {
		writers.Add(1)
		go func() {
			defer writers.Done()
			stream := fmt.Sprintf("own-%d", w)
			version := uint64(0)
			for i := range appendsEach {
				evs := events(i%3+1, "own")
				res, err := s.Append(ctx, stream, eventlog.Exactly(version), evs)
				if err != nil {
					t.Errorf("writer %d append %d: %v", w, i, err)
					return
				}
				version = res.Version
				ownEvents[w] = append(ownEvents[w], evs...)
				total.Add(int64(len(evs)))
			}
		}()
	}
	for w := range sharedWriters {
		writers.Add(1)
		go func() {
			defer writers.Done()
			stream := fmt.Sprintf("shared-%d", w%sharedStreams)
			version := uint64(0)
			for i := range appendsEach {
				evs := events(i%2+1, "shared")
				for attempt := 0; ; attempt++ {
					if attempt == 10_000 {
						t.Errorf("writer %d: append %d still conflicting", w, i)
						return
					}
					res, err := s.Append(ctx, stream, eventlog.Exactly(version), evs)
					var ce *eventlog.ConflictError
					if errors.As(err, &ce) {
						conflicts.Add(1)
						version = ce.Actual
						continue
					}
					if err != nil {
						t.Errorf("writer %d append %d: %v", w, i, err)
						return
					}
					version = res.Version
					total.Add(int64(len(evs)))
					break
				}
			}
		}()
	}

	var writing atomic.Bool
	writing.Store(true)
	readerDone := make(chan []eventlog.Record)
	go func() {
		var seen []eventlog.Record
		after := eventlog.Start
		for {
			// Decide whether this is the final pass before reading, so the
			// final pass starts after every writer has returned.
			final := !writing.Load()
			recs, err := s.ReadAll(ctx, after, 7)
			if err != nil {
				t.Errorf("reader: %v", err)
				readerDone <- seen
				return
			}
			for _, r := range recs {
				if !after.Before(r.Position) {
					t.Errorf("reader: position %s after %s", r.Position, after)
				}
				after = r.Position
			}
			seen = append(seen, recs...)
			if len(recs) == 0 {
				if final {
					readerDone <- seen
					return
				}
				time.Sleep(time.Millisecond)
			}
		}
	}()

	writers.Wait()
	writing.Store(false)
	seen := <-readerDone
	require.False(t, t.Failed(), "writers or reader failed")

	all := readAll(t, s)
	require.Len(t, all, int(total.Load()), "every appended event is in the log once")
	requireOrdered(t, all)
	require.Equal(t, ids(all), ids(seen), "the concurrent reader saw exactly the log, in order")
	followed := sub.next(t, len(all))
	require.Equal(t, ids(all), ids(followed), "the subscriber saw exactly the log, in order")
	sub.requireQuiet(t)

	for w := range ownWriters {
		requireStream(t, s, fmt.Sprintf("own-%d", w), ownEvents[w])
	}
	for i := range sharedStreams {
		recs := readStream(t, s, fmt.Sprintf("shared-%d", i))
		for j, r := range recs {
			require.Equal(t, uint64(j+1), r.Version)
		}
	}
	t.Logf("%d events, %d conflicts retried", len(all), conflicts.Load())
}

// --- subscriptions -----------------------------------------------------------
