// Reads: streams, the whole log in its order, the head, what is stored of
// each event.

package eventstoretest

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/ledger"
)

func testReadStream(t *testing.T, newStore func(t *testing.T) eventlog.Store) {
	s := newStore(t)
	var evs []eventlog.EventData
	for i := range 5 {
		two := events(2, "a")
		mustAppend(t, s, "s", eventlog.Any, two...)
		evs = append(evs, two...)
		mustAppend(t, s, fmt.Sprintf("o%d", i), eventlog.Any, events(1, "x")...)
	}

	tests := []struct {
		name       string
		stream     string
		from       uint64
		limit      int
		wantFirst  uint64 // version of the first event; 0 = none
		wantLength int
	}{
		{"from zero", "s", 0, 0, 1, 10},
		{"from one", "s", 1, 0, 1, 10},
		{"from the middle", "s", 4, 0, 4, 7},
		{"from the middle with limit", "s", 4, 3, 4, 3},
		{"limit over the end", "s", 8, 10, 8, 3},
		{"negative limit is no limit", "s", 2, -1, 2, 9},
		{"last event", "s", 10, 0, 10, 1},
		{"after the end", "s", 11, 0, 0, 0},
		{"far after the end", "s", math.MaxUint64, 5, 0, 0},
		{"missing stream", "missing", 0, 0, 0, 0},
		{"missing stream from the middle", "missing", 3, 2, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, err := s.ReadStream(t.Context(), tt.stream, tt.from, tt.limit)
			require.NoError(t, err)
			require.Len(t, recs, tt.wantLength)
			for i, rec := range recs {
				v := tt.wantFirst + uint64(i)
				require.Equal(t, v, rec.Version)
				require.Equal(t, tt.stream, rec.Stream)
				requireEvent(t, evs[v-1], rec)
			}
		})
	}
}

func testReadAll(t *testing.T, newStore func(t *testing.T) eventlog.Store) {
	s := newStore(t)
	var order []eventlog.EventData
	for i := range 4 {
		for _, stream := range []string{"a", "b", "c"} {
			evs := events(i%2+1, stream)
			mustAppend(t, s, stream, eventlog.Any, evs...)
			order = append(order, evs...)
		}
	}
	all := readAll(t, s)
	require.Len(t, all, len(order))
	requireOrdered(t, all)
	for i := range all {
		requireEvent(t, order[i], all[i])
	}
	require.Equal(t, all[len(all)-1].Position, head(t, s))

	tests := []struct {
		name      string
		after     eventlog.Position
		limit     int
		wantFirst int // index into all; -1 = none
		wantLen   int
	}{
		{"from start", eventlog.Start, 0, 0, len(all)},
		{"from start with limit", eventlog.Start, 1, 0, 1},
		{"after the first", all[0].Position, 0, 1, len(all) - 1},
		{"from the middle", all[6].Position, 0, 7, len(all) - 7},
		{"from the middle with limit", all[6].Position, 4, 7, 4},
		{"limit over the end", all[len(all)-3].Position, 100, len(all) - 2, 2},
		{"negative limit is no limit", all[2].Position, -1, 3, len(all) - 3},
		{"after the last", all[len(all)-1].Position, 0, -1, 0},
		{"far after the end", eventlog.Position{Commit: math.MaxUint64, Prepare: math.MaxUint64}, 0, -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, err := s.ReadAll(t.Context(), tt.after, tt.limit)
			require.NoError(t, err)
			require.Len(t, recs, tt.wantLen)
			for i, rec := range recs {
				want := all[tt.wantFirst+i]
				require.Equal(t, want.ID, rec.ID)
				require.Equal(t, want.Position, rec.Position)
				require.Equal(t, want.Stream, rec.Stream)
				require.Equal(t, want.Version, rec.Version)
			}
		})
	}

	t.Run("pages cover the log", func(t *testing.T) {
		var paged []eventlog.Record
		after := eventlog.Start
		for {
			recs, err := s.ReadAll(t.Context(), after, 5)
			require.NoError(t, err)
			if len(recs) == 0 {
				break
			}
			paged = append(paged, recs...)
			after = recs[len(recs)-1].Position
		}
		require.Equal(t, ids(all), ids(paged))
	})

	t.Run("every stream event is in the log once", func(t *testing.T) {
		inLog := make(map[uuid.UUID]eventlog.Record, len(all))
		for _, r := range all {
			inLog[r.ID] = r
		}
		n := 0
		for _, stream := range []string{"a", "b", "c"} {
			for _, r := range readStream(t, s, stream) {
				l, ok := inLog[r.ID]
				require.True(t, ok, "%s of %q is in ReadAll", r.ID, stream)
				require.Equal(t, r.Position, l.Position)
				require.Equal(t, r.Version, l.Version)
				n++
			}
		}
		require.Equal(t, len(all), n)
	})
}

func testHead(t *testing.T, newStore func(t *testing.T) eventlog.Store) {
	s := newStore(t)
	require.True(t, head(t, s).IsZero(), "an empty log's head is Start")
	all, err := s.ReadAll(t.Context(), eventlog.Start, 0)
	require.NoError(t, err)
	require.Empty(t, all)

	var last eventlog.AppendResult
	for i := range 3 {
		last = mustAppend(t, s, fmt.Sprintf("s%d", i%2), eventlog.Any, events(i+1, "a")...)
		require.Equal(t, last.Position, head(t, s))
	}
	recs := readAll(t, s)
	require.Equal(t, recs[len(recs)-1].Position, head(t, s))

	_, err = s.Append(t.Context(), "s0", eventlog.NoStream, events(1, "refused"))
	require.ErrorIs(t, err, eventlog.ErrConflict)
	require.Equal(t, last.Position, head(t, s), "a refused append does not move the head")
}

// --- fidelity ----------------------------------------------------------------

func testMetadataRoundTrip(t *testing.T, newStore func(t *testing.T) eventlog.Store) {
	s := newStore(t)
	ctx := t.Context()
	full := event("meta.full.v1")
	full.Meta = eventlog.Meta{
		ActorID:       "parent:8f2c",
		ActorRole:     "parent",
		Reason:        "placement ended by court order 2026/17 — see file",
		EffectiveAt:   time.Date(2025, 12, 31, 23, 59, 59, 999999000, time.FixedZone("", -5*60*60)),
		RecordedAt:    time.Date(2026, 1, 1, 4, 0, 0, 1000, time.UTC),
		CorrelationID: uuid.New(),
		CausationID:   uuid.New(),
	}
	sparse := event("meta.sparse.v1")
	sparse.Meta = eventlog.Meta{
		ActorID:     "system",
		ActorRole:   "system",
		EffectiveAt: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC),
	}
	unrecorded := event("meta.unrecorded.v1")
	unrecorded.Meta.RecordedAt = time.Time{}

	mustAppend(t, s, "m", eventlog.NoStream, full, sparse, unrecorded)

	fromStream := readStream(t, s, "m")
	fromAll := readAll(t, s)
	for _, recs := range [][]eventlog.Record{fromStream, fromAll} {
		require.Len(t, recs, 3)
		requireEvent(t, full, recs[0])
		requireEvent(t, sparse, recs[1])
		requireEvent(t, unrecorded, recs[2])
		require.False(t, recs[2].Meta.RecordedAt.IsZero(), "a zero RecordedAt is set by the store")
	}
	// sparse had no RecordedAt either: the store set it too.
	require.False(t, fromStream[1].Meta.RecordedAt.IsZero(), "a zero RecordedAt is set by the store")
	require.Equal(t, uuid.Nil, fromStream[1].Meta.CorrelationID)
	require.Empty(t, fromStream[1].Meta.Reason)

	// The store's RecordedAt is its clock's, not something made up: it does
	// not change between reads.
	again, err := s.ReadStream(ctx, "m", 3, 1)
	require.NoError(t, err)
	require.True(t, fromStream[2].Meta.RecordedAt.Equal(again[0].Meta.RecordedAt))
}

// testStoredBytesAreStable: every way of reading an event gives the same
// stored bytes, read after read, so the ledger's leaf (which hashes them,
// projections/ledger) is the same whoever computes it: the projection that
// follows the log, a verifier reading it from the start, a stream reader.
func testStoredBytesAreStable(t *testing.T, newStore func(t *testing.T) eventlog.Store) {
	s := newStore(t)
	evs := events(5, "leaf.stable.v1")
	evs[1].Meta.EffectiveAt = time.Date(2026, 5, 6, 7, 8, 9, 123456000, time.FixedZone("", 3*60*60))
	evs[2].Meta.RecordedAt = time.Time{}
	evs[3].Data = []byte(`{"b":2, "a":"\u00e9\u2014 spaced and escaped"}`)
	mustAppend(t, s, "leaves", eventlog.NoStream, evs...)
	leaves := func(recs []eventlog.Record) [][]byte {
		out := make([][]byte, len(recs))
		for i, r := range recs {
			out[i] = ledger.LeafData(r)
		}
		return out
	}
	first := leaves(readAll(t, s))
	require.Len(t, first, 5)
	require.Equal(t, first, leaves(readAll(t, s)), "ReadAll twice")
	require.Equal(t, first, leaves(readStream(t, s, "leaves")), "ReadStream")
	sub := subscribe(t, s, eventlog.Start)
	require.Equal(t, first, leaves(sub.next(t, 5)), "Subscribe")
	_ = sub.stop(t)
	for i, l := range first {
		decoded, err := ledger.DecodeLeaf(l)
		require.NoError(t, err)
		require.Equal(t, evs[i].ID, decoded.EventID)
		require.JSONEq(t, string(evs[i].Data), string(decoded.Data))
	}
}

func testUnicodePayloads(t *testing.T, newStore func(t *testing.T) eventlog.Store) {
	s := newStore(t)
	tests := []struct {
		name string
		data string
	}{
		{"emoji and ZWJ sequences", `{"s":"😀 👩‍👩‍👧‍👦 🏳️‍🌈 🇳🇱"}`},
		{"right to left", `{"he":"שלום עולם","ar":"مرحبا بالعالم","mixed":"abc אבג 123"}`},
		{"combining characters", "{\"decomposed\":\"e\u0301 n\u0303 a\u030a\u0323\",\"composed\":\"é ñ å\"}"},
		{"escaped NUL", `{"s":"a\u0000b","only":"\u0000"}`},
		{"escaped surrogate pair", `{"s":"\ud83d\ude00 \uD834\uDD1E"}`},
		{"escaped controls and quotes", `{"s":"tab\there \"quoted\" back\\slash \/ \b\f\n\r"}`},
		{"SQL and HTML metacharacters", `{"s":"'; DROP TABLE events; -- <script>&amp;</script> $1 ? :name @p"}`},
		{"unicode keys and odd whitespace kept", "{ \"ключ\" :\t1 ,\n\"鍵\":[ ] , \"a\":{}\r\n}"},
		{"key order and duplicates kept", `{"b":1,"a":2,"b":3}`},
		{"non-BMP and noncharacters", "{\"s\":\"\U0001F9EC \U00010348 \uFFFD \uFEFF\"}"},
		{"deep nesting", strings.Repeat(`{"a":`, 64) + `"x"` + strings.Repeat(`}`, 64)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.True(t, json.Valid([]byte(tt.data)), "test data is JSON")
			e := event("unicode.v1")
			e.Data = []byte(tt.data)
			stream := "unicode-" + uuid.NewString()
			mustAppend(t, s, stream, eventlog.NoStream, e)
			recs := readStream(t, s, stream)
			require.Len(t, recs, 1)
			requireEvent(t, e, recs[0])
		})
	}

	t.Run("unicode names and metadata", func(t *testing.T) {
		e := event("événement.créé.v1 😀")
		e.Meta.ActorID = "ユーザー:42"
		e.Meta.ActorRole = "مدير"
		e.Meta.Reason = "combining e\u0301, RTL עברית, emoji 👩‍👧"
		stream := "enfant-é-👶-" + uuid.NewString()
		mustAppend(t, s, stream, eventlog.NoStream, e)
		recs := readStream(t, s, stream)
		require.Len(t, recs, 1)
		require.Equal(t, stream, recs[0].Stream)
		requireEvent(t, e, recs[0])
	})
}

// --- concurrency -------------------------------------------------------------
