-- The event log. position is the event's place in the one global order;
-- it is assigned by the append transaction from events_head, never by a
-- sequence (see docs/adr/0001-global-order.md).
-- data is JSON, not JSONB: JSON keeps the appended bytes exactly and
-- accepts \u0000 escapes, which JSONB rejects.
CREATE TABLE events (
    position       BIGINT      NOT NULL,
    event_id       UUID        NOT NULL,
    stream         TEXT        NOT NULL,
    stream_version BIGINT      NOT NULL,
    type           TEXT        NOT NULL,
    data           JSON        NOT NULL,
    actor_id       TEXT        NOT NULL,
    actor_role     TEXT        NOT NULL,
    reason         TEXT        NOT NULL,
    effective_at   TIMESTAMPTZ NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL,
    correlation_id UUID        NOT NULL,
    causation_id   UUID        NOT NULL,
    CONSTRAINT events_pkey PRIMARY KEY (position),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream, stream_version),
    CONSTRAINT events_position_check CHECK (position > 0),
    CONSTRAINT events_stream_version_check CHECK (stream_version > 0)
);
--bun:split
-- The single counter row: the last position handed out. Appends lock it
-- first, which orders them.
CREATE TABLE events_head (
    id       SMALLINT NOT NULL,
    position BIGINT   NOT NULL,
    CONSTRAINT events_head_pkey PRIMARY KEY (id),
    CONSTRAINT events_head_one_row CHECK (id = 1),
    CONSTRAINT events_head_position_check CHECK (position >= 0)
);
--bun:split
INSERT INTO events_head (id, position) VALUES (1, 0);
