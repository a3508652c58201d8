package memstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/eventstoretest"
	"github.com/accessledger/accessledger/adapters/memstore"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// TestConformance: the in-memory store gives every guarantee of the port.
func TestConformance(t *testing.T) {
	eventstoretest.Run(t, func(t *testing.T) eventlog.Store { return memstore.New() })
}

// TestRecordsAreCopies: what a reader does to a record, or a writer to
// the events it appended, never changes the log.
func TestRecordsAreCopies(t *testing.T) {
	ctx := context.Background()
	s := memstore.New(memstore.WithClock(func() time.Time { return time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC) }))
	data := []byte(`{"a":1}`)
	_, err := s.Append(ctx, "s", eventlog.NoStream, []eventlog.EventData{{ID: uuid.New(), Type: "t", Data: data}})
	require.NoError(t, err)
	data[2] = 'b'
	recs, err := s.ReadAll(ctx, eventlog.Start, 0)
	require.NoError(t, err)
	require.JSONEq(t, `{"a":1}`, string(recs[0].Data))
	require.Equal(t, time.Date(2026, 3, 1, 9, 0, 0, 123456000, time.UTC), recs[0].Meta.RecordedAt, "the clock, to the microsecond")
	recs[0].Data[2] = 'c'
	again, err := s.ReadStream(ctx, "s", 1, 0)
	require.NoError(t, err)
	require.JSONEq(t, `{"a":1}`, string(again[0].Data))
	require.Equal(t, 1, s.Len())
}
