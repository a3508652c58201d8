package accounts

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
)

// Reader answers the account queries on one database (the queries
// layer's Accounts).
type Reader struct{ db bun.IDB }

// NewReader returns a Reader on db.
func NewReader(db bun.IDB) *Reader { return &Reader{db: db} }

// Get is Get on the reader's database.
func (r *Reader) Get(ctx context.Context, id uuid.UUID, at time.Time) (View, error) {
	return Get(ctx, r.db, id, at)
}

// ByEmail is ByEmail on the reader's database.
func (r *Reader) ByEmail(ctx context.Context, email string, at time.Time) (View, error) {
	return ByEmail(ctx, r.db, email, at)
}

// ByIdentity is ByIdentity on the reader's database.
func (r *Reader) ByIdentity(ctx context.Context, subject string, at time.Time) (View, error) {
	return ByIdentity(ctx, r.db, subject, at)
}

// List is List on the reader's database.
func (r *Reader) List(ctx context.Context, f Filter) ([]View, uuid.UUID, error) {
	return List(ctx, r.db, f)
}
