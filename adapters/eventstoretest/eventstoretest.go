// Package eventstoretest is the conformance suite of the event log port
// (domain/eventlog): every adapter of eventlog.Store runs Run in its tests
// and must pass all of it. The suite speaks only the port, so it runs the
// same way against SQL, EventStoreDB or an in-memory fake.
package eventstoretest

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// Timing bounds of the suite.
const (
	// WakeLatency is how soon after an append returns a caught-up
	// Subscribe must deliver the event. It is well under any sensible
	// safety-net re-check interval: an adapter passes only if appends wake
	// subscribers, not if subscribers poll.
	WakeLatency = 500 * time.Millisecond

	// receiveTimeout bounds waiting for events that must arrive.
	receiveTimeout = 20 * time.Second
)

// Options declares which of the port's adapter-dependent guarantees a store
// gives; the zero value claims all of them.
type Options struct {
	// StreamScopedIDs: the store checks event ids only as retries of the
	// same stream's appends (EventStoreDB): an append whose first event is
	// already in the stream must be an exact retry or fail with
	// ErrDuplicateEventID, but an id reused in another stream, behind a new
	// event, or appended again at the stream's current version, is not
	// refused.
	StreamScopedIDs bool
	// BulkWithoutRace: the store is slow under the race detector (SQL
	// through the pure-Go SQLite driver, gRPC to the test server), so the
	// suite's one bulk test, TenThousandEventsInOneAppend (one goroutine:
	// nothing for the detector to find), skips under it; make test runs it
	// once more without the detector (the Makefile's RACE_SKIPPED).
	BulkWithoutRace bool
}

// Run runs the conformance suite. newStore must return a new, empty store
// that no other test uses, and release it (t.Cleanup) when the test ends;
// it is called once per subtest. Subtests do not run in parallel with each
// other, so the suite measures wake-up latency on an otherwise idle
// machine.
func Run(t *testing.T, newStore func(t *testing.T) eventlog.Store) {
	RunWith(t, Options{}, newStore)
}

// RunWith runs the conformance suite for a store that gives only the
// guarantees opts declares.
func RunWith(t *testing.T, opts Options, newStore func(t *testing.T) eventlog.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, newStore func(t *testing.T) eventlog.Store)
	}{
		{"AppendNoStreamToNewStream", testAppendNoStreamToNewStream},
		{"AppendExactly", testAppendExactly},
		{"AppendAny", testAppendAny},
		{"NoStreamOnExistingStreamConflicts", testNoStreamOnExistingStream},
		{"RefusedAppendWritesNothing", testRefusedAppendWritesNothing},
		{"IdempotentRetry", func(t *testing.T, newStore func(t *testing.T) eventlog.Store) {
			testIdempotentRetry(t, opts, newStore)
		}},
		{"DuplicateEventID", func(t *testing.T, newStore func(t *testing.T) eventlog.Store) {
			testDuplicateEventID(t, opts, newStore)
		}},
		{"InvalidAppend", testInvalidAppend},
		{"StreamVersionsHaveNoGaps", testStreamVersionsHaveNoGaps},
		{"ReadStream", testReadStream},
		{"ReadAll", testReadAll},
		{"Head", testHead},
		{"MetadataRoundTrip", testMetadataRoundTrip},
		{"StoredBytesAreStable", testStoredBytesAreStable},
		{"TenThousandEventsInOneAppend", func(t *testing.T, newStore func(t *testing.T) eventlog.Store) {
			if opts.BulkWithoutRace && RaceEnabled {
				t.Skip("one goroutine appending 10,000 events: runs without the race detector (make test's RACE_SKIPPED)")
			}
			testLargeAppend(t, newStore)
		}},
		{"LargePayload", testLargePayload},
		{"UnicodePayloads", testUnicodePayloads},
		{"ConcurrentWritersAndReaders", testConcurrentWriters},
		{"SubscribeCatchesUpThenFollows", testSubscribeCatchUpThenLive},
		{"SubscribeFromMiddle", testSubscribeFromMiddle},
		{"SubscribeReturnsContextError", testSubscribeContextError},
		{"SubscribeReturnsHandlerError", testSubscribeHandlerError},
		{"SubscribeWakesPromptly", testSubscribeWakesPromptly},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newStore) })
	}
}

// --- helpers -----------------------------------------------------------------

// baseTime has microsecond precision and a non-UTC zone: adapters must keep
// the instant (time.Time.Equal), whatever zone they return.
var baseTime = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.FixedZone("UTC+2", 2*60*60))

var eventSeq atomic.Int64

// event returns an event of type typ with a fresh id, small object data and
// full metadata.
func event(typ string) eventlog.EventData {
	n := eventSeq.Add(1)
	return eventlog.EventData{
		ID:   uuid.New(),
		Type: typ,
		Data: []byte(fmt.Sprintf(`{"n":%d,"type":%q}`, n, typ)),
		Meta: eventlog.Meta{
			ActorID:       "worker-7",
			ActorRole:     "caseworker",
			Reason:        "conformance",
			EffectiveAt:   baseTime.Add(time.Duration(n) * time.Microsecond),
			RecordedAt:    baseTime.Add(time.Hour + time.Duration(n)*time.Microsecond),
			CorrelationID: uuid.New(),
			CausationID:   uuid.New(),
		},
	}
}

func events(n int, typ string) []eventlog.EventData {
	out := make([]eventlog.EventData, n)
	for i := range out {
		out[i] = event(typ)
	}
	return out
}

func mustAppend(t *testing.T, s eventlog.Store, stream string, expected eventlog.ExpectedVersion, evs ...eventlog.EventData) eventlog.AppendResult {
	t.Helper()
	res, err := s.Append(t.Context(), stream, expected, evs)
	require.NoError(t, err, "append %d events to %q", len(evs), stream)
	return res
}

func readAll(t *testing.T, s eventlog.Store) []eventlog.Record {
	t.Helper()
	recs, err := s.ReadAll(t.Context(), eventlog.Start, 0)
	require.NoError(t, err)
	return recs
}

func readStream(t *testing.T, s eventlog.Store, stream string) []eventlog.Record {
	t.Helper()
	recs, err := s.ReadStream(t.Context(), stream, 0, 0)
	require.NoError(t, err)
	return recs
}

func head(t *testing.T, s eventlog.Store) eventlog.Position {
	t.Helper()
	p, err := s.Head(t.Context())
	require.NoError(t, err)
	return p
}

// requireEvent checks that rec stores e exactly: id, type, data bytes and
// metadata (times by instant).
func requireEvent(t *testing.T, e eventlog.EventData, rec eventlog.Record) {
	t.Helper()
	require.Equal(t, e.ID, rec.ID, "id")
	require.Equal(t, e.Type, rec.Type, "type of %s", e.ID)
	require.Equal(t, string(e.Data), string(rec.Data), "data of %s", e.ID)
	requireMeta(t, e.Meta, rec.Meta)
}

func requireMeta(t *testing.T, want, got eventlog.Meta) {
	t.Helper()
	require.Equal(t, want.ActorID, got.ActorID, "actor id")
	require.Equal(t, want.ActorRole, got.ActorRole, "actor role")
	require.Equal(t, want.Reason, got.Reason, "reason")
	require.True(t, want.EffectiveAt.Equal(got.EffectiveAt), "effective at: want %s, got %s", want.EffectiveAt, got.EffectiveAt)
	if !want.RecordedAt.IsZero() {
		require.True(t, want.RecordedAt.Equal(got.RecordedAt), "recorded at: want %s, got %s", want.RecordedAt, got.RecordedAt)
	}
	require.Equal(t, want.CorrelationID, got.CorrelationID, "correlation id")
	require.Equal(t, want.CausationID, got.CausationID, "causation id")
}

// requireStream checks that stream holds exactly evs, in order, with
// versions 1..n and increasing positions.
func requireStream(t *testing.T, s eventlog.Store, stream string, evs []eventlog.EventData) {
	t.Helper()
	recs := readStream(t, s, stream)
	require.Len(t, recs, len(evs), "events in %q", stream)
	for i, rec := range recs {
		require.Equal(t, stream, rec.Stream)
		require.Equal(t, uint64(i+1), rec.Version, "version of event %d of %q", i, stream)
		if i > 0 {
			require.True(t, recs[i-1].Position.Before(rec.Position), "positions in %q increase", stream)
		}
		requireEvent(t, evs[i], rec)
	}
}

// requireOrdered checks positions strictly increase.
func requireOrdered(t *testing.T, recs []eventlog.Record) {
	t.Helper()
	for i := 1; i < len(recs); i++ {
		require.True(t, recs[i-1].Position.Before(recs[i].Position),
			"position %s at index %d is not after %s", recs[i].Position, i, recs[i-1].Position)
	}
}

type snapshot struct {
	head eventlog.Position
	all  []eventlog.Record
}

func snap(t *testing.T, s eventlog.Store) snapshot {
	t.Helper()
	return snapshot{head: head(t, s), all: readAll(t, s)}
}

// requireUnchanged checks that nothing was written since before.
func requireUnchanged(t *testing.T, s eventlog.Store, before snapshot) {
	t.Helper()
	after := snap(t, s)
	require.Equal(t, before.head, after.head, "head moved")
	require.Equal(t, ids(before.all), ids(after.all), "log changed")
}

func ids(recs []eventlog.Record) []uuid.UUID {
	out := make([]uuid.UUID, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func eventIDs(evs []eventlog.EventData) []uuid.UUID {
	out := make([]uuid.UUID, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func requireConflict(t *testing.T, err error, stream string, expected eventlog.ExpectedVersion, actual uint64) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, eventlog.ErrConflict)
	var ce *eventlog.ConflictError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, stream, ce.Stream)
	require.Equal(t, expected, ce.Expected)
	require.Equal(t, actual, ce.Actual)
}

// next receives n events or fails.
func (sub *subscription) next(t *testing.T, n int) []eventlog.Record {
	t.Helper()
	out := make([]eventlog.Record, 0, n)
	timeout := time.After(receiveTimeout)
	for len(out) < n {
		select {
		case rec := <-sub.recs:
			out = append(out, rec)
		case err := <-sub.done:
			require.FailNow(t, "Subscribe returned early", "after %d of %d events: %v", len(out), n, err)
		case <-timeout:
			require.FailNow(t, "timed out waiting for events", "got %d of %d", len(out), n)
		}
	}
	return out
}

// requireQuiet checks that no event arrives for a short while.
func (sub *subscription) requireQuiet(t *testing.T) {
	t.Helper()
	select {
	case rec := <-sub.recs:
		require.FailNow(t, "unexpected event", "%s at %s", rec.ID, rec.Position)
	case <-time.After(50 * time.Millisecond):
	}
}

// stop cancels the subscription and returns Subscribe's result.
func (sub *subscription) stop(t *testing.T) error {
	t.Helper()
	sub.cancel()
	select {
	case err := <-sub.done:
		sub.done <- err // for the cleanup
		return err
	case <-time.After(receiveTimeout):
		require.FailNow(t, "Subscribe did not return after its context was canceled")
		return nil
	}
}

// --- appends -----------------------------------------------------------------
