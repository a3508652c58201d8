package datagen

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// writer collects appends into batches and hands full ones over; it keeps
// the running totals of the summary.
type writer struct {
	ctx     context.Context
	out     chan<- []Append
	size    int
	batch   []Append
	events  int64
	appends int64
	byType  map[string]int64
	// from and to are the smallest and largest effective times, in Unix
	// microseconds.
	from, to int64
}

func (w *writer) add(a Append) error {
	if w.batch == nil {
		w.batch = make([]Append, 0, w.size)
	}
	w.batch = append(w.batch, a)
	w.appends++
	w.events += int64(len(a.Events))
	if len(w.batch) >= w.size {
		return w.flush()
	}
	return nil
}

// flush hands the batch over, if it holds anything.
func (w *writer) flush() error {
	if len(w.batch) == 0 {
		return nil
	}
	select {
	case w.out <- w.batch:
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
	w.batch = nil
	return nil
}

// newID returns a new id as the command path makes them
// (commands.Config.NewID's default): a version 7 UUID whose timestamp is
// the current decision time, its random bits from the region's generator.
func (r *region) newID() uuid.UUID { return r.idAt(r.now) }

// idAt returns a version 7 UUID of time t (Unix microseconds).
func (r *region) idAt(t int64) uuid.UUID {
	var u uuid.UUID
	ms := uint64(t / 1000)
	for i := range 6 {
		u[i] = byte(ms >> (40 - 8*i))
	}
	a, b := r.rng.Uint64(), r.rng.Uint64()
	u[6], u[7] = 0x70|byte(a)&0x0f, byte(a>>8)
	u[8] = 0x80 | byte(a>>16)&0x3f
	for i := 9; i < 16; i++ {
		u[i] = byte(b >> (8 * (i - 9)))
	}
	return u
}

// deadlineNamespace names the ids of the process manager's expiry events.
var deadlineNamespace = uuid.MustParse("5b0c7e2a-41d3-4f86-9a7e-2c6d8f1b3e90")

// deadlineIDs returns the ids of an expiry's events: derived (version 5)
// from the deadline, as the engine derives them from the process manager's
// idempotency key, so a repeated firing appends nothing.
func deadlineIDs(deadline uuid.UUID, due int64) func(int) uuid.UUID {
	key := fmt.Appendf(nil, "deadline/%s/%d/", deadline, due)
	return func(i int) uuid.UUID {
		return uuid.NewSHA1(deadlineNamespace, fmt.Appendf(key, "%d", i))
	}
}

// cause is the metadata of a command by by at the current time, with a new
// correlation id; reason "" takes each event type's default (R14).
func (r *region) cause(by domain.Actor, reason string) domain.Cause {
	return domain.Cause{Actor: by, Reason: reason, RecordedAt: r.time(r.now), CorrelationID: r.newID()}
}

// emit encodes events decided on stream (at version, before them) with
// cause, as the command handlers do, applies them to their aggregate, and
// appends them as one stream append expecting version. No events: nothing.
func (r *region) emit(stream string, version uint64, c domain.Cause, apply func(domain.Event) error, events []domain.Event) ([]eventlog.EventData, error) {
	return r.emitIDs(stream, version, c, apply, events, nil)
}

// emitIDs is emit with the events' ids from ids (nil: new ones).
func (r *region) emitIDs(stream string, version uint64, c domain.Cause, apply func(domain.Event) error, events []domain.Event, ids func(int) uuid.UUID) ([]eventlog.EventData, error) {
	if len(events) == 0 {
		return nil, nil
	}
	data := make([]eventlog.EventData, len(events))
	for i, e := range events {
		ec := c
		if ec.Reason == "" {
			ec.Reason = commands.DefaultReason(e.EventType())
		}
		var id uuid.UUID
		if ids != nil {
			id = ids(i)
		} else {
			id = r.newID()
		}
		d, err := ec.EventData(id, e)
		if err != nil {
			return nil, fmt.Errorf("encode %s for %s: %w", e.EventType(), stream, err)
		}
		if err := apply(e); err != nil {
			return nil, fmt.Errorf("apply %s to %s: %w", e.EventType(), stream, err)
		}
		data[i] = d
		r.w.byType[d.Type]++
		eff := d.Meta.EffectiveAt.UnixMicro()
		r.w.from, r.w.to = min(r.w.from, eff), max(r.w.to, eff)
	}
	return data, r.w.add(Append{Stream: stream, Expected: eventlog.Exactly(version), Events: data})
}
