// Package sqllease is the engine's one SQL lease: a named row says who
// holds it (owner) and until when (until, in Unix microseconds), and every
// change is a single compare-and-set UPDATE, so that it is atomic on
// PostgreSQL and SQLite alike without explicit locks.
//
// A Table names the table and its key, owner and until columns; the
// components keep their own tables (outbox_checkpoints, projection
// checkpoints, ...). The row of a key must exist before Acquire: the
// primitive never creates rows, which stay the component's business.
//
// Rules, for one key:
//
//   - the lease is free when owner is empty or until is before now; a
//     lease holds through its until instant;
//   - Acquire takes a free lease, or extends owner's own, and reports false
//     (changing nothing) when another owner's lease still holds;
//   - Renew and Release succeed only while the row is still owner's
//     (whether or not until has passed: nobody took it); otherwise they
//     change nothing and return ErrNotHeld. A holder whose lease was taken
//     over therefore cannot renew it;
//   - times come from the caller (now, until): the primitive reads no clock.
//
// Every method takes ctx first and a bun.IDB, so it runs inside the
// caller's transaction when given one. Owners must not be empty.
package sqllease

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

var (
	// ErrNotHeld is returned (wrapped) by Renew and Release when the row is
	// not the owner's (taken over, released, or missing).
	ErrNotHeld = errors.New("sqllease: lease not held")
	// ErrEmptyOwner is returned (wrapped) when an owner is empty.
	ErrEmptyOwner = errors.New("sqllease: empty owner")
)

// Table names a lease table and its columns. The names are written into
// SQL as they are: they must be trusted identifiers, never input.
type Table struct {
	Name  string // the table
	Key   string // the column that names the lease (unique)
	Owner string // text column, '' when free
	Until string // integer column, Unix microseconds, 0 when free
}

// Holder is who holds a lease, as the row says: Owner "" when nobody, and
// Until the zero time when the column is 0. An Until in the past is
// returned as it is: the lease is free to take.
type Holder struct {
	Owner string
	Until time.Time
}

// Acquire takes key's lease for owner until `until` when it is free at now
// or already owner's. It reports whether owner holds it now; false means
// another owner's lease holds (or the row does not exist).
func (t Table) Acquire(ctx context.Context, db bun.IDB, key, owner string, now, until time.Time) (bool, error) {
	if owner == "" {
		return false, fmt.Errorf("acquire lease %q: %w", key, ErrEmptyOwner)
	}
	res, err := db.NewRaw("UPDATE ? SET ? = ?, ? = ? WHERE ? = ? AND (? = ? OR ? = '' OR ? < ?)",
		bun.Ident(t.Name), bun.Ident(t.Owner), owner, bun.Ident(t.Until), until.UnixMicro(),
		bun.Ident(t.Key), key, bun.Ident(t.Owner), owner, bun.Ident(t.Owner), bun.Ident(t.Until), now.UnixMicro()).Exec(ctx)
	n, err := affected(res, err)
	if err != nil {
		return false, fmt.Errorf("acquire lease %q for %q: %w", key, owner, err)
	}
	return n > 0, nil
}

// Renew extends owner's lease of key to `until`, or returns ErrNotHeld
// (wrapped) when the row is not owner's.
func (t Table) Renew(ctx context.Context, db bun.IDB, key, owner string, until time.Time) error {
	if owner == "" {
		return fmt.Errorf("renew lease %q: %w", key, ErrEmptyOwner)
	}
	res, err := db.NewRaw("UPDATE ? SET ? = ? WHERE ? = ? AND ? = ?",
		bun.Ident(t.Name), bun.Ident(t.Until), until.UnixMicro(), bun.Ident(t.Key), key, bun.Ident(t.Owner), owner).Exec(ctx)
	return held(res, err, "renew lease %q for %q", key, owner)
}

// Release frees owner's lease of key (owner ”, until 0) so another owner
// takes it at once, or returns ErrNotHeld (wrapped) when the row is not
// owner's.
func (t Table) Release(ctx context.Context, db bun.IDB, key, owner string) error {
	if owner == "" {
		return fmt.Errorf("release lease %q: %w", key, ErrEmptyOwner)
	}
	res, err := db.NewRaw("UPDATE ? SET ? = '', ? = 0 WHERE ? = ? AND ? = ?",
		bun.Ident(t.Name), bun.Ident(t.Owner), bun.Ident(t.Until), bun.Ident(t.Key), key, bun.Ident(t.Owner), owner).Exec(ctx)
	return held(res, err, "release lease %q of %q", key, owner)
}

// Holder reads who holds key's lease; found is false when there is no row.
func (t Table) Holder(ctx context.Context, db bun.IDB, key string) (h Holder, found bool, err error) {
	var micros int64
	err = db.NewRaw("SELECT ?, ? FROM ? WHERE ? = ?",
		bun.Ident(t.Owner), bun.Ident(t.Until), bun.Ident(t.Name), bun.Ident(t.Key), key).Scan(ctx, &h.Owner, &micros)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Holder{}, false, nil
	case err != nil:
		return Holder{}, false, fmt.Errorf("read lease %q: %w", key, err)
	}
	if micros != 0 {
		h.Until = time.UnixMicro(micros)
	}
	return h, true, nil
}

func affected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func held(res sql.Result, err error, format string, args ...any) error {
	n, err := affected(res, err)
	if err == nil && n == 0 {
		err = ErrNotHeld
	}
	if err != nil {
		return fmt.Errorf(format+": %w", append(args, err)...)
	}
	return nil
}
