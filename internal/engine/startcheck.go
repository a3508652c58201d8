package engine

import (
	"context"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/ledger"
)

// # The ledger's start-up check, bounded by the tail (ADR 0014)
//
// A start from snapshots reads only the log's tail: the records after the
// index's snapshot, after the access history's snapshot, and after each
// read model's checkpoint. The engine verifies that tail before it becomes
// ready (ledger.GuardTail, from tailStart), and the whole stored log in the
// background afterwards (ledger.Guard). Until the whole check has passed,
// what reads the stored log's older records itself (commands, which fold a
// stream; a child's record; the messaging) waits for it
// (GatedStreams, AfterVerified). When the whole check finds a change, the
// ledger stops: every decision answers 503 ledger_mismatch, as after a
// failed check at start.

// tailStart returns the position after which this start reads the log:
// the earliest of the index's snapshot, the access history's fold and the
// read models' checkpoints (models, read before the runner started);
// eventlog.Start (the whole log) without snapshots, or when a read model
// is missing, of another version (a rebuild reads the whole log) or its
// checkpoint could not be read. It waits for the index's snapshot
// (indexFrom) and the history's first Load.
func (e *Engine) tailStart(ctx context.Context, indexFrom <-chan eventlog.Position, models eventlog.Position) (eventlog.Position, error) {
	if e.snapshot.Dir == "" || models.IsZero() {
		return eventlog.Start, nil
	}
	var from eventlog.Position
	select {
	case <-ctx.Done():
		return eventlog.Start, ctx.Err()
	case from = <-indexFrom:
	}
	select {
	case <-ctx.Done():
		return eventlog.Start, ctx.Err()
	case <-e.History.Loaded():
	}
	return earliest(earliest(from, e.History.WarmStart()), models), nil
}

// readModelsStart returns the earliest checkpoint of the read models, from
// which the runner will read the log; eventlog.Start when a read model is
// missing or of another version (it is rebuilt from the whole log), or
// the checkpoints cannot be read (logged). Run reads it before the runner
// starts, so that no record the runner reads is after it unchecked.
func (e *Engine) readModelsStart(ctx context.Context) eventlog.Position {
	var rows []struct {
		Name    string `bun:"name"`
		Version int64  `bun:"version"`
		Commit  int64  `bun:"position_commit"`
		Prepare int64  `bun:"position_prepare"`
	}
	if err := e.ReadDB.NewSelect().Table("projection_checkpoints").Column("name", "version", "position_commit", "position_prepare").
		Scan(ctx, &rows); err != nil {
		e.log.Warn("ledger: the read models' checkpoints could not be read; the whole log is checked before ready", "err", err)
		return eventlog.Start
	}
	from := eventlog.Position{Commit: ^uint64(0), Prepare: ^uint64(0)}
	for _, p := range ReadModels() {
		found := false
		for _, r := range rows {
			if r.Name != p.Name() {
				continue
			}
			if r.Version != int64(p.Version()) {
				return eventlog.Start
			}
			found = true
			from = earliest(from, eventlog.Position{Commit: uint64(r.Commit), Prepare: uint64(r.Prepare)})
		}
		if !found {
			return eventlog.Start
		}
	}
	return from
}

// earliest returns the earlier of a and b.
func earliest(a, b eventlog.Position) eventlog.Position {
	if b.Before(a) {
		return b
	}
	return a
}

// StreamLog is what commands and the queries read of the event log
// themselves (commands.Store, queries.StreamReader).
type StreamLog interface {
	Append(ctx context.Context, stream string, expected eventlog.ExpectedVersion, events []eventlog.EventData) (eventlog.AppendResult, error)
	ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventlog.Record, error)
}

// GatedStreams returns the event log (Stores.Log) for commands and the
// queries that read streams of the log themselves: its reads fail with an
// error wrapping ledger.ErrNotVerified (503 stale; ledger.ErrMismatch once
// the ledger has found the log changed: 503 ledger_mismatch) until the
// ledger has verified the whole stored log, not only its tail. Appends
// are not held (an append reads nothing). Without a ledger it is
// Stores.Log itself.
func (e *Engine) GatedStreams() StreamLog {
	if e.Ledger == nil {
		return e.Stores.Log
	}
	return gatedStreams{log: e.Stores.Log, ledger: e.Ledger}
}

// gatedStreams is GatedStreams' log.
type gatedStreams struct {
	log interface {
		StreamLog
		eventlog.StreamsReader
		eventlog.StreamTailsReader
		eventlog.BatchAppender
	}
	ledger *ledger.Ledger
}

func (g gatedStreams) Append(ctx context.Context, stream string, expected eventlog.ExpectedVersion, events []eventlog.EventData) (eventlog.AppendResult, error) {
	return g.log.Append(ctx, stream, expected, events)
}

// AppendBatch implements eventlog.BatchAppender.
func (g gatedStreams) AppendBatch(ctx context.Context, batch []eventlog.StreamAppend) ([]eventlog.AppendResult, error) {
	return g.log.AppendBatch(ctx, batch)
}

func (g gatedStreams) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventlog.Record, error) {
	if err := g.ledger.ErrWhole(); err != nil {
		return nil, err
	}
	return g.log.ReadStream(ctx, stream, from, limit)
}

// ReadStreams implements eventlog.StreamsReader.
func (g gatedStreams) ReadStreams(ctx context.Context, streams []string) (map[string][]eventlog.Record, error) {
	if err := g.ledger.ErrWhole(); err != nil {
		return nil, err
	}
	return g.log.ReadStreams(ctx, streams)
}

// ReadStreamsFrom implements eventlog.StreamTailsReader.
func (g gatedStreams) ReadStreamsFrom(ctx context.Context, from []eventlog.StreamFrom) (map[string][]eventlog.Record, error) {
	if err := g.ledger.ErrWhole(); err != nil {
		return nil, err
	}
	return g.log.ReadStreamsFrom(ctx, from)
}
