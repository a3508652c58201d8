-- The process manager's deadlines, derived from events (architecture
-- decision 9). One row per deadline: id is "<kind>/<subject id>" (the
-- placement for grace, the account for invitation). Times are Unix
-- microseconds (UTC); 0 means unknown/none.
--
-- due_at is the latest deadline an event set (PlacementEnded.grace_until,
-- AccountInvited.expires_at), source_event_id and correlation_id the event
-- that set it. resolved_through: every due_at up to it is settled by an
-- event (the expiry, an early end, an activation, a closure;
-- 9223372036854775807 = for good), resolved_by that event. state is
-- 'resolved' when resolved_through >= due_at, 'fired' when the command was
-- carried out for due_at, else 'pending'. A pending row may be claimed by
-- the instance claimed_by until claimed_until (a lease); with claimed_by
-- empty, claimed_until is the earliest time of the next attempt (a retry).
CREATE TABLE deadlines (
    id               TEXT    NOT NULL PRIMARY KEY,
    kind             TEXT    NOT NULL CHECK (kind IN ('grace', 'invitation')),
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
CREATE INDEX deadlines_pending_idx ON deadlines (due_at) WHERE state = 'pending';
