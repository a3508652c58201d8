-- The security log: one row per refused command (R8). A refused command
-- appends no event, so this is not a projection of the log: the command
-- layer writes it directly. at is Unix microseconds (UTC).
CREATE TABLE security_log (
    id             BIGSERIAL NOT NULL,
    at             BIGINT    NOT NULL,
    actor_id       TEXT      NOT NULL,
    actor_role     TEXT      NOT NULL,
    command        TEXT      NOT NULL,
    target         TEXT      NOT NULL,
    code           TEXT      NOT NULL,
    detail         TEXT      NOT NULL,
    request_id     TEXT      NOT NULL,
    correlation_id TEXT      NOT NULL,
    CONSTRAINT security_log_pkey PRIMARY KEY (id)
);
--bun:split
CREATE INDEX security_log_at_idx ON security_log (at, id);
--bun:split
CREATE INDEX security_log_actor_idx ON security_log (actor_id, id);
