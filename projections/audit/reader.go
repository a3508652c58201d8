package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// Reader answers the audit trail's queries on one database (the queries
// layer's Audit).
type Reader struct {
	db   bun.IDB
	open Opener
}

// Opener returns a stored record with its sealed personal values opened,
// or erased (adapters/personaldata's Store.Open).
type Opener func(ctx context.Context, r eventlog.Record) (eventlog.Record, error)

// NewReader returns a Reader on db. The trail holds each event's data and
// reason as stored, sealed when personal: with open, List answers them
// opened, or erased once their subject was erased; without, as stored.
func NewReader(db bun.IDB, open Opener) *Reader { return &Reader{db: db, open: open} }

// List is List on the reader's database, with personal values opened.
func (r *Reader) List(ctx context.Context, f Filter) ([]Entry, int64, error) {
	entries, total, err := List(ctx, r.db, f)
	if err != nil || r.open == nil {
		return entries, total, err
	}
	for i, e := range entries {
		rec, err := r.open(ctx, eventlog.Record{ID: e.EventID, Stream: e.Stream, Position: e.Position, Type: e.Type,
			Data: e.Data, Meta: eventlog.Meta{Reason: e.Reason}})
		if err != nil {
			return nil, 0, fmt.Errorf("audit: entry %d: %w", e.Seq, err)
		}
		entries[i].Data, entries[i].Reason = json.RawMessage(rec.Data), rec.Meta.Reason
	}
	return entries, total, nil
}

// Verify is Verify on the reader's database.
func (r *Reader) Verify(ctx context.Context, opts VerifyOptions) (Result, error) {
	return Verify(ctx, r.db, opts)
}

// KnownBy is KnownBy on the reader's database.
func (r *Reader) KnownBy(ctx context.Context, t time.Time) (eventlog.Position, bool, error) {
	return KnownBy(ctx, r.db, t)
}
