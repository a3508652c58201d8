-- One row per projection: the generation of its tables the views point at,
-- the version of the projection that built them, the position of the last
-- event applied to them, and the lease of a running rebuild. Times are
-- microseconds since the Unix epoch.
CREATE TABLE projection_checkpoints (
    name               TEXT    NOT NULL PRIMARY KEY,
    generation         INTEGER NOT NULL CHECK (generation > 0),
    version            INTEGER NOT NULL,
    position_commit    INTEGER NOT NULL CHECK (position_commit >= 0),
    position_prepare   INTEGER NOT NULL CHECK (position_prepare >= 0),
    updated_at         INTEGER NOT NULL,
    rebuild_owner      TEXT    NOT NULL DEFAULT '',
    rebuild_expires_at INTEGER NOT NULL DEFAULT 0
) STRICT;
