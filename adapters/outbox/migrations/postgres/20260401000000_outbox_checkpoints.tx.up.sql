-- Checkpoints of the outbox publishers: one row per publisher (name), the
-- position of the last event (or change) published, in two parts: position
-- is the commit part and prepare the prepare part (equal on the SQL event
-- stores). A checkpoint only moves forward. updated_at is Unix microseconds.
CREATE TABLE outbox_checkpoints (
    name       TEXT   NOT NULL,
    position   BIGINT NOT NULL,
    prepare    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT outbox_checkpoints_pkey PRIMARY KEY (name),
    CONSTRAINT outbox_checkpoints_position_check CHECK (position >= 0 AND prepare >= 0)
);
