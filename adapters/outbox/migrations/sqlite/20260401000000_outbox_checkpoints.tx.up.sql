-- Checkpoints of the outbox publishers: one row per publisher (name), the
-- position of the last event (or change) published, in two parts: position
-- is the commit part and prepare the prepare part (equal on the SQL event
-- stores). A checkpoint only moves forward. updated_at is Unix microseconds.
CREATE TABLE outbox_checkpoints (
    name       TEXT    NOT NULL PRIMARY KEY,
    position   INTEGER NOT NULL CHECK (position >= 0),
    prepare    INTEGER NOT NULL CHECK (prepare >= 0),
    updated_at INTEGER NOT NULL
) STRICT;
