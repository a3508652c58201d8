package accesshistory

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
)

// Reader answers the history queries on one database (the queries
// layer's History).
type Reader struct{ db bun.IDB }

// NewReader returns a Reader on db.
func NewReader(db bun.IDB) *Reader { return &Reader{db: db} }

// ChildHistory is ChildHistory on the reader's database.
func (r *Reader) ChildHistory(ctx context.Context, child uuid.UUID, k Known) ([]Interval, error) {
	return ChildHistory(ctx, r.db, child, k)
}

// WhoCouldSee is WhoCouldSee on the reader's database.
func (r *Reader) WhoCouldSee(ctx context.Context, child uuid.UUID, at time.Time, k Known) ([]Interval, error) {
	return WhoCouldSee(ctx, r.db, child, at, k)
}

// AccountHistory is AccountHistory on the reader's database.
func (r *Reader) AccountHistory(ctx context.Context, account uuid.UUID, k Known) ([]Interval, error) {
	return AccountHistory(ctx, r.db, account, k)
}

// WhatCouldSee is WhatCouldSee on the reader's database.
func (r *Reader) WhatCouldSee(ctx context.Context, account uuid.UUID, at time.Time, k Known) ([]Interval, error) {
	return WhatCouldSee(ctx, r.db, account, at, k)
}
