package audit

import (
	"context"

	"github.com/uptrace/bun"
)

// Reader answers the audit trail's queries on one database (the queries
// layer's Audit).
type Reader struct{ db bun.IDB }

// NewReader returns a Reader on db.
func NewReader(db bun.IDB) *Reader { return &Reader{db: db} }

// List is List on the reader's database.
func (r *Reader) List(ctx context.Context, f Filter) ([]Entry, int64, error) {
	return List(ctx, r.db, f)
}

// Verify is Verify on the reader's database.
func (r *Reader) Verify(ctx context.Context, opts VerifyOptions) (Result, error) {
	return Verify(ctx, r.db, opts)
}
