package accesshistory

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/accessmodel"
)

// loadState reads what the fold keeps besides its model from the table as
// it stood at position at: every pair's current rows (recorded at or before
// at, not superseded at or before it), in id order, which is the order the
// fold keeps them in, and the next row id. It also returns the largest id
// in the table, whatever its position.
//
// A loaded row holds only what the fold compares and writes for rows it
// has not made itself: the id and the interval (same).
func loadState(ctx context.Context, db bun.IDB, t projections.Tables, at eventlog.Position) (map[accessmodel.Pair][]keptRow, int64, int64, error) {
	c, p := int64(at.Commit), int64(at.Prepare)
	out := map[accessmodel.Pair][]keptRow{}
	var next, maxID sql.NullInt64
	if err := db.NewRaw("SELECT MAX(id) FROM ? WHERE recorded_commit < ? OR (recorded_commit = ? AND recorded_prepare <= ?)",
		t.Ident(table), c, c, p).Scan(ctx, &next); err != nil {
		return nil, 0, 0, fmt.Errorf("next id: %w", err)
	}
	if err := db.NewRaw("SELECT MAX(id) FROM ?", t.Ident(table)).Scan(ctx, &maxID); err != nil {
		return nil, 0, 0, fmt.Errorf("max id: %w", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT id, account_id, child_id, permissions, reason, valid_from, valid_to,
	opened_event_id, closed_event_id FROM ?
WHERE (recorded_commit < ? OR (recorded_commit = ? AND recorded_prepare <= ?))
  AND (superseded_commit IS NULL OR superseded_commit > ? OR (superseded_commit = ? AND superseded_prepare > ?))
ORDER BY id`, t.Ident(table), c, c, p, c, c, p)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("current rows: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var (
		id, perms, from  int64
		acct, child      sql.RawBytes
		reason           sql.RawBytes
		to               sql.NullInt64
		opened, closed   sql.NullString
		reasons          = map[string]string{}
		pair             accessmodel.Pair
		lastAcct, lastCh []byte
	)
	for rows.Next() {
		if err := rows.Scan(&id, &acct, &child, &perms, &reason, &from, &to, &opened, &closed); err != nil {
			return nil, 0, 0, fmt.Errorf("current rows: %w", err)
		}
		if string(acct) != string(lastAcct) || string(child) != string(lastCh) {
			if pair.Account, err = uuid.ParseBytes(acct); err != nil {
				return nil, 0, 0, fmt.Errorf("row %d: account_id: %w", id, err)
			}
			if pair.Child, err = uuid.ParseBytes(child); err != nil {
				return nil, 0, 0, fmt.Errorf("row %d: child_id: %w", id, err)
			}
			lastAcct, lastCh = append(lastAcct[:0], acct...), append(lastCh[:0], child...)
		}
		rs, ok := reasons[string(reason)]
		if !ok {
			rs = string(reason)
			reasons[rs] = rs
		}
		k := keptRow{ID: id, Permissions: perms, Reason: rs, ValidFrom: from, ValidTo: to}
		if k.Opened, err = eventIDOf(opened); err != nil {
			return nil, 0, 0, fmt.Errorf("row %d: opened_event_id: %w", id, err)
		}
		if k.Closed, err = eventIDOf(closed); err != nil {
			return nil, 0, 0, fmt.Errorf("row %d: closed_event_id: %w", id, err)
		}
		out[pair] = append(out[pair], k)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, 0, fmt.Errorf("current rows: %w", err)
	}
	return out, next.Int64 + 1, maxID.Int64, nil
}

// eventIDOf is the id in a row's event id column (uuid.Nil for NULL).
func eventIDOf(s sql.NullString) (uuid.UUID, error) {
	if !s.Valid {
		return uuid.Nil, nil
	}
	return uuid.Parse(s.String)
}
