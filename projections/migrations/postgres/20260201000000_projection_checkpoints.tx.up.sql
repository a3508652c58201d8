-- One row per projection: the generation of its tables the views point at,
-- the version of the projection that built them, the position of the last
-- event applied to them, and the lease of a running rebuild. Times are
-- microseconds since the Unix epoch.
CREATE TABLE projection_checkpoints (
    name               TEXT   NOT NULL,
    generation         BIGINT NOT NULL,
    version            BIGINT NOT NULL,
    position_commit    BIGINT NOT NULL,
    position_prepare   BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    rebuild_owner      TEXT   NOT NULL DEFAULT '',
    rebuild_expires_at BIGINT NOT NULL DEFAULT 0,
    CONSTRAINT projection_checkpoints_pkey PRIMARY KEY (name),
    CONSTRAINT projection_checkpoints_generation_check CHECK (generation > 0),
    CONSTRAINT projection_checkpoints_position_check CHECK (position_commit >= 0 AND position_prepare >= 0)
);
