-- Grant expiry deadlines (R19): see the PostgreSQL migration.
-- SQLite cannot change a CHECK constraint: the table is rebuilt.
CREATE TABLE deadlines_new (
    id               TEXT    NOT NULL PRIMARY KEY,
    kind             TEXT    NOT NULL CHECK (kind IN ('grace', 'invitation', 'account_retention', 'child_retention', 'grant_expiry')),
    child_id         TEXT    NOT NULL DEFAULT '',
    placement_id     TEXT    NOT NULL DEFAULT '',
    account_id       TEXT    NOT NULL DEFAULT '',
    due_at           INTEGER NOT NULL DEFAULT 0,
    source_event_id  TEXT    NOT NULL DEFAULT '',
    correlation_id   TEXT    NOT NULL DEFAULT '',
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'resolved', 'fired')),
    resolved_through INTEGER NOT NULL DEFAULT 0,
    resolved_by      TEXT    NOT NULL DEFAULT '',
    claimed_by       TEXT    NOT NULL DEFAULT '',
    claimed_until    INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT    NOT NULL DEFAULT '',
    updated_at       INTEGER NOT NULL
) STRICT;
--bun:split
INSERT INTO deadlines_new (id, kind, child_id, placement_id, account_id, due_at, source_event_id, correlation_id, state, resolved_through, resolved_by, claimed_by, claimed_until, attempts, last_error, updated_at)
SELECT id, kind, child_id, placement_id, account_id, due_at, source_event_id, correlation_id, state, resolved_through, resolved_by, claimed_by, claimed_until, attempts, last_error, updated_at FROM deadlines;
--bun:split
DROP TABLE deadlines;
--bun:split
ALTER TABLE deadlines_new RENAME TO deadlines;
--bun:split
CREATE INDEX deadlines_pending_idx ON deadlines (due_at) WHERE state = 'pending';
