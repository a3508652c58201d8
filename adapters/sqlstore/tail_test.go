package sqlstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// TestSubscribeFromTheTailAnswersAsTheDatabase: what a subscriber reads
// from the tail in memory is, record for record, what ReadAll reads from
// the database, whatever the appends were: concurrent ones committed in
// groups, conflicts left out of their group, retries (which give their
// positions back), batches, times in other zones or finer than a
// microsecond, and appends by another process in between, which the tail
// does not hold.
func TestSubscribeFromTheTailAnswersAsTheDatabase(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		u := url(t)
		ctx := t.Context()
		s, _ := openStore(t, u)
		other, err := sqlstore.NewDetached(ctx, sqltest.Open(t, u), sqlstore.WithRecheckInterval(noRecheck))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, other.Close()) })

		var mu sync.Mutex
		var got []eventlog.Record
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- s.Subscribe(sctx, eventlog.Start, func(_ context.Context, r eventlog.Record) error {
				mu.Lock()
				got = append(got, r)
				mu.Unlock()
				return nil
			})
		}()
		defer func() {
			cancel()
			require.ErrorIs(t, <-done, context.Canceled)
		}()

		zone := time.FixedZone("", -9*3600-1800)
		odd := func(i int) eventlog.EventData {
			e := event(fmt.Sprint("t", i%7))
			e.Data = []byte(fmt.Sprintf(`{"i":%d,"s":"é \u00e9 \\u0000 %s"}`, i, uuid.NewString()))
			e.Meta.EffectiveAt = time.Date(2026, 1, 2, 3, 4, 5, 123456789+i, zone)
			switch i % 4 {
			case 0:
				e.Meta.RecordedAt = time.Time{} // the store's clock
			case 1:
				e.Meta.RecordedAt = time.Date(1969, 7, 20, 20, 17, 40, 1999, time.UTC)
				e.Meta.Reason = "a reason"
			case 2:
				e.Meta.EffectiveAt = time.Time{}
				e.Meta.CorrelationID, e.Meta.CausationID = uuid.New(), uuid.New()
			}
			return e
		}

		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 40 {
					stream := fmt.Sprintf("s-%d-%d", w, i%5)
					pair := []eventlog.EventData{odd(w*1000 + i), odd(w*1000 + i + 500)}
					_, err := s.Append(ctx, stream, eventlog.Any, pair)
					if !assertNoErr(t, err) {
						return
					}
					switch i % 10 {
					case 3: // a retry, which takes no positions
						_, err = s.Append(ctx, stream, eventlog.Any, pair)
						assertNoErr(t, err)
					case 5: // a conflict, left out of its group
						_, err = s.Append(ctx, stream, eventlog.NoStream, []eventlog.EventData{odd(w*1000 + i + 900)})
						if err == nil {
							t.Errorf("conflict was accepted")
						}
					case 7: // another process appends in between
						_, err = other.Append(ctx, "other", eventlog.Any, []eventlog.EventData{odd(w*1000 + i + 700)})
						assertNoErr(t, err)
					case 9: // a batch
						_, err = s.AppendBatch(ctx, []sqlstore.StreamAppend{
							{Stream: stream + "-b", Expected: eventlog.Any, Events: []eventlog.EventData{odd(w*1000 + i + 600)}},
							{Stream: stream + "-c", Expected: eventlog.Any, Events: []eventlog.EventData{odd(w*1000 + i + 800), odd(w*1000 + i + 801)}},
						})
						assertNoErr(t, err)
					}
				}
			}()
		}
		wg.Wait()
		// A last append of this Store wakes the subscriber for what the
		// other process wrote last.
		_, err = s.Append(ctx, "last", eventlog.NoStream, []eventlog.EventData{odd(0)})
		require.NoError(t, err)

		want, err := s.ReadAll(ctx, eventlog.Start, 0)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(got) >= len(want)
		}, 10*time.Second, 10*time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, want, got)
		require.Positive(t, s.TailReads(), "no read came from the tail")
	}, "sqlite-file", "postgres")
}

func assertNoErr(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Errorf("append: %v", err)
		return false
	}
	return true
}
