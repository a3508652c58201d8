package eventstoretest_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/accessledger/accessledger/adapters/eventstoretest"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// TestSuiteAgainstReferenceStore runs the suite against a minimal in-memory
// store written from the port's contract alone, to show the suite asks for
// nothing beyond the port.
func TestSuiteAgainstReferenceStore(t *testing.T) {
	eventstoretest.Run(t, func(t *testing.T) eventlog.Store { return newMemStore() })
}

// memStore is a reference eventlog.Store: one mutex, one slice.
type memStore struct {
	mu      sync.Mutex
	log     []eventlog.Record
	streams map[string][]int // stream -> indexes into log
	byID    map[[16]byte]int
	wake    chan struct{}
}

func newMemStore() *memStore {
	return &memStore{streams: map[string][]int{}, byID: map[[16]byte]int{}, wake: make(chan struct{})}
}

func (m *memStore) Append(_ context.Context, stream string, expected eventlog.ExpectedVersion, events []eventlog.EventData) (eventlog.AppendResult, error) {
	if err := eventlog.Validate(stream, events); err != nil {
		return eventlog.AppendResult{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if i, ok := m.byID[events[0].ID]; ok {
		first := m.log[i]
		for k, e := range events {
			j, ok := m.byID[e.ID]
			if !ok || m.log[j].Stream != stream || m.log[j].Version != first.Version+uint64(k) {
				return eventlog.AppendResult{}, fmt.Errorf("%w: %s", eventlog.ErrDuplicateEventID, e.ID)
			}
		}
		last := m.log[m.byID[events[len(events)-1].ID]]
		return eventlog.AppendResult{Version: last.Version, Position: last.Position}, nil
	}
	for _, e := range events {
		if _, ok := m.byID[e.ID]; ok {
			return eventlog.AppendResult{}, fmt.Errorf("%w: %s", eventlog.ErrDuplicateEventID, e.ID)
		}
	}
	actual := uint64(len(m.streams[stream]))
	if !expected.Allows(actual) {
		return eventlog.AppendResult{}, &eventlog.ConflictError{Stream: stream, Expected: expected, Actual: actual}
	}
	now := time.Now().UTC()
	for i, e := range events {
		meta := e.Meta
		if meta.RecordedAt.IsZero() {
			meta.RecordedAt = now
		}
		rec := eventlog.Record{
			ID: e.ID, Stream: stream, Version: actual + uint64(i) + 1,
			Position: eventlog.At(uint64(len(m.log)) + 1),
			Type:     e.Type, Data: append([]byte(nil), e.Data...), Meta: meta,
		}
		m.byID[e.ID] = len(m.log)
		m.streams[stream] = append(m.streams[stream], len(m.log))
		m.log = append(m.log, rec)
	}
	close(m.wake)
	m.wake = make(chan struct{})
	return eventlog.AppendResult{Version: actual + uint64(len(events)), Position: m.log[len(m.log)-1].Position}, nil
}

func (m *memStore) ReadStream(_ context.Context, stream string, from uint64, limit int) ([]eventlog.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []eventlog.Record
	for _, i := range m.streams[stream] {
		if m.log[i].Version >= from && (limit <= 0 || len(out) < limit) {
			out = append(out, m.log[i])
		}
	}
	return out, nil
}

func (m *memStore) ReadAll(_ context.Context, after eventlog.Position, limit int) ([]eventlog.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []eventlog.Record
	for _, r := range m.log {
		if after.Before(r.Position) && (limit <= 0 || len(out) < limit) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *memStore) Head(context.Context) (eventlog.Position, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.log) == 0 {
		return eventlog.Start, nil
	}
	return m.log[len(m.log)-1].Position, nil
}

func (m *memStore) Subscribe(ctx context.Context, after eventlog.Position, handle func(context.Context, eventlog.Record) error) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		m.mu.Lock()
		wake := m.wake
		m.mu.Unlock()
		recs, _ := m.ReadAll(ctx, after, 100)
		for _, r := range recs {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := handle(ctx, r); err != nil {
				return err
			}
			after = r.Position
		}
		if len(recs) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}
