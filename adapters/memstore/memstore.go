// Package memstore is an eventlog.Store in memory: the event log of unit
// tests, and of anything that wants the engine without a database. It
// gives every guarantee of the port, as the SQL store gives them, and
// passes the conformance suite (adapters/eventstoretest):
//
//   - appends are atomic, checked against the expected version and
//     idempotent on event ids (a retry of the same append returns its first
//     result; any other reuse of a stored id is ErrDuplicateEventID), under
//     one lock that also assigns positions;
//   - positions are dense (1, 2, 3, ...; eventlog.At) in one total order,
//     and a reader that has seen a position has seen every earlier one;
//   - times are kept to the microsecond in UTC, and a zero RecordedAt
//     becomes the store's clock, as on the SQL store;
//   - Subscribe catches up, then sleeps until an append wakes it.
//
// It keeps nothing on disk: a Store lives as long as the process. Records
// handed out are copies; nothing a caller does to them changes the log.
package memstore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain/eventlog"
)

var _ eventlog.Store = (*Store)(nil)

// subscribePage bounds how many records a subscriber copies out of the log
// at a time while it catches up.
const subscribePage = 512

// Store is an event log in memory. The zero value is not usable: call New.
// It is safe for concurrent use.
type Store struct {
	clock func() time.Time

	mu      sync.RWMutex
	records []eventlog.Record // in global order; records[i] has position i+1
	streams map[string][]int  // stream → indexes into records, in version order
	ids     map[uuid.UUID]int // event id → index into records
	wake    chan struct{}     // closed (and replaced) by every append that writes
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock that fills Meta.RecordedAt when an append
// leaves it zero (default time.Now).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.clock = now } }

// New returns an empty store.
func New(opts ...Option) *Store {
	s := &Store{clock: time.Now, streams: map[string][]int{}, ids: map[uuid.UUID]int{},
		wake: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Append writes events to the end of stream if the stream is at the
// expected version (see eventlog.Store).
func (s *Store) Append(ctx context.Context, stream string, expected eventlog.ExpectedVersion, events []eventlog.EventData) (eventlog.AppendResult, error) {
	if err := eventlog.Validate(stream, events); err != nil {
		return eventlog.AppendResult{}, fmt.Errorf("memstore: append to %q: %w", stream, err)
	}
	if err := eventlog.ValidateStorable(stream, events); err != nil {
		return eventlog.AppendResult{}, fmt.Errorf("memstore: append to %q: %w", stream, err)
	}
	if err := ctx.Err(); err != nil {
		return eventlog.AppendResult{}, fmt.Errorf("memstore: append to %q: %w", stream, err)
	}
	now := s.clock().UTC().Truncate(time.Microsecond)

	s.mu.Lock()
	defer s.mu.Unlock()
	if res, done, err := s.existing(stream, events); err != nil || done {
		if err != nil {
			err = fmt.Errorf("memstore: append to %q: %w", stream, err)
		}
		return res, err
	}
	actual := uint64(len(s.streams[stream]))
	if !expected.Allows(actual) {
		return eventlog.AppendResult{}, fmt.Errorf("memstore: append to %q: %w", stream,
			&eventlog.ConflictError{Stream: stream, Expected: expected, Actual: actual})
	}
	for i, e := range events {
		idx := len(s.records)
		recorded := e.Meta.RecordedAt
		if recorded.IsZero() {
			recorded = now
		}
		s.records = append(s.records, eventlog.Record{
			ID:       e.ID,
			Stream:   stream,
			Version:  actual + 1 + uint64(i),
			Position: eventlog.At(uint64(idx + 1)),
			Type:     e.Type,
			Data:     slices.Clone(e.Data),
			Meta: eventlog.Meta{
				ActorID:       e.Meta.ActorID,
				ActorRole:     e.Meta.ActorRole,
				Reason:        e.Meta.Reason,
				EffectiveAt:   e.Meta.EffectiveAt.UTC().Truncate(time.Microsecond),
				RecordedAt:    recorded.UTC().Truncate(time.Microsecond),
				CorrelationID: e.Meta.CorrelationID,
				CausationID:   e.Meta.CausationID,
			},
		})
		s.streams[stream] = append(s.streams[stream], idx)
		s.ids[e.ID] = idx
	}
	res := eventlog.AppendResult{Version: actual + uint64(len(events)), Position: eventlog.At(uint64(len(s.records)))}
	close(s.wake)
	s.wake = make(chan struct{})
	return res, nil
}

// existing implements idempotency on event ids, as the SQL store does: no
// id stored → not done; every id stored consecutively in stream in the
// same order → the first append's result, done; else ErrDuplicateEventID.
// It runs under s.mu.
func (s *Store) existing(stream string, events []eventlog.EventData) (eventlog.AppendResult, bool, error) {
	stored := -1
	for i, e := range events {
		if _, ok := s.ids[e.ID]; ok {
			stored = i
			break
		}
	}
	if stored < 0 {
		return eventlog.AppendResult{}, false, nil
	}
	base, baseFound := s.ids[events[0].ID]
	for i, e := range events {
		idx, ok := s.ids[e.ID]
		if ok && baseFound && s.records[idx].Stream == stream && idx == base+i &&
			s.records[idx].Version == s.records[base].Version+uint64(i) {
			continue
		}
		if !ok {
			r := s.records[s.ids[events[stored].ID]]
			return eventlog.AppendResult{}, false, fmt.Errorf("%w: %s is version %d of stream %q but %s is not stored",
				eventlog.ErrDuplicateEventID, r.ID, r.Version, r.Stream, e.ID)
		}
		r := s.records[idx]
		return eventlog.AppendResult{}, false, fmt.Errorf("%w: %s is already version %d of stream %q",
			eventlog.ErrDuplicateEventID, e.ID, r.Version, r.Stream)
	}
	last := s.records[s.ids[events[len(events)-1].ID]]
	return eventlog.AppendResult{Version: last.Version, Position: last.Position}, true, nil
}

// copyOf returns a copy of r that shares nothing with the log.
func copyOf(r eventlog.Record) eventlog.Record {
	r.Data = slices.Clone(r.Data)
	return r
}

// ReadStream returns up to limit events of stream with version >= from,
// in version order (limit <= 0: all).
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventlog.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: read stream %q: %w", stream, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	idxs := s.streams[stream]
	if from < 1 {
		from = 1
	}
	if from > uint64(len(idxs)) {
		return nil, nil
	}
	idxs = idxs[from-1:]
	if limit > 0 && len(idxs) > limit {
		idxs = idxs[:limit]
	}
	out := make([]eventlog.Record, len(idxs))
	for i, idx := range idxs {
		out[i] = copyOf(s.records[idx])
	}
	return out, nil
}

// ReadAll returns up to limit events after position after, in global
// order (limit <= 0: all).
func (s *Store) ReadAll(ctx context.Context, after eventlog.Position, limit int) ([]eventlog.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: read all: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.readAfter(after, limit), nil
}

// readAfter copies up to limit records after position after; it runs
// under s.mu.
func (s *Store) readAfter(after eventlog.Position, limit int) []eventlog.Record {
	start := s.indexAfter(after)
	if start >= len(s.records) {
		return nil
	}
	end := len(s.records)
	if limit > 0 && end-start > limit {
		end = start + limit
	}
	out := make([]eventlog.Record, end-start)
	for i := range out {
		out[i] = copyOf(s.records[start+i])
	}
	return out
}

// indexAfter is the index of the first record after position p. Positions
// are dense, so it is p's commit, whatever p's prepare.
func (s *Store) indexAfter(p eventlog.Position) int {
	if p.Commit > uint64(len(s.records)) {
		return len(s.records)
	}
	return int(p.Commit)
}

// Head returns the position of the last event, or Start.
func (s *Store) Head(ctx context.Context) (eventlog.Position, error) {
	if err := ctx.Err(); err != nil {
		return eventlog.Start, fmt.Errorf("memstore: head: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return eventlog.At(uint64(len(s.records))), nil
}

// Subscribe calls handle for every event after position after, in global
// order: first those stored, then each new one as it is appended (an
// append wakes the subscriber; nothing polls). It returns ctx.Err() when
// ctx is done, or handle's error.
func (s *Store) Subscribe(ctx context.Context, after eventlog.Position, handle func(context.Context, eventlog.Record) error) error {
	for {
		s.mu.RLock()
		recs := s.readAfter(after, subscribePage)
		wake := s.wake
		s.mu.RUnlock()
		for _, r := range recs {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := handle(ctx, r); err != nil {
				return err
			}
			after = r.Position
		}
		if len(recs) == subscribePage {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

// Len returns how many events the store holds.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.records)
}
