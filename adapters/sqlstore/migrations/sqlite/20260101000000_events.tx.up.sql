-- The event log. position is the event's place in the one global order;
-- it is assigned by the append transaction from events_head (never
-- AUTOINCREMENT; see docs/adr/0001-global-order.md). As INTEGER PRIMARY
-- KEY it is the rowid. Times are TEXT 'YYYY-MM-DD HH:MM:SS.ffffff+00:00'
-- (UTC, microseconds, trailing zeros of the fraction trimmed).
CREATE TABLE events (
    position       INTEGER NOT NULL PRIMARY KEY CHECK (position > 0),
    event_id       TEXT    NOT NULL UNIQUE,
    stream         TEXT    NOT NULL,
    stream_version INTEGER NOT NULL CHECK (stream_version > 0),
    type           TEXT    NOT NULL,
    data           TEXT    NOT NULL,
    actor_id       TEXT    NOT NULL,
    actor_role     TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    effective_at   TEXT    NOT NULL,
    recorded_at    TEXT    NOT NULL,
    correlation_id TEXT    NOT NULL,
    causation_id   TEXT    NOT NULL,
    UNIQUE (stream, stream_version)
) STRICT;
--bun:split
-- The single counter row: the last position handed out.
CREATE TABLE events_head (
    id       INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL CHECK (position >= 0)
) STRICT;
--bun:split
INSERT INTO events_head (id, position) VALUES (1, 0);
