package snapshotfile

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// Record names the record at a snapshot's position and the position
// before it, so that a start can check that the log still holds that
// record there (Check) before it trusts the snapshot.
type Record struct {
	Prev    eventlog.Position
	ID      uuid.UUID
	Stream  string
	Version uint64
	Type    string
}

// RecordOf is the Record of rec, folded after prev.
func RecordOf(rec *eventlog.Record, prev eventlog.Position) Record {
	return Record{Prev: prev, ID: rec.ID, Stream: rec.Stream, Version: rec.Version, Type: rec.Type}
}

// LogReader reads the log in its global order.
type LogReader interface {
	ReadAll(ctx context.Context, after eventlog.Position, limit int) ([]eventlog.Record, error)
}

// Check returns nil when log holds r at pos (the snapshot's position),
// an error wrapping mismatch when it holds another record there or none,
// and the read's error (wrapped) when the log cannot be read.
func (r Record) Check(ctx context.Context, log LogReader, pos eventlog.Position, mismatch error) error {
	recs, err := log.ReadAll(ctx, r.Prev, 1)
	if err != nil {
		return fmt.Errorf("check snapshot: read the log at %s: %w", pos, err)
	}
	if len(recs) != 1 {
		return fmt.Errorf("%w: no record after %s", mismatch, r.Prev)
	}
	got := recs[0]
	if got.Position != pos || got.ID != r.ID || got.Stream != r.Stream || got.Version != r.Version || got.Type != r.Type {
		return fmt.Errorf("%w: snapshot's record %s (%s %s@%d) at %s, log's %s (%s %s@%d) at %s", mismatch,
			r.ID, r.Type, r.Stream, r.Version, pos, got.ID, got.Type, got.Stream, got.Version, got.Position)
	}
	return nil
}
