-- Idempotency-Key outcomes of the HTTP API: one row per (actor, key).
-- state 'pending' is a claim held by the request executing now (its lease
-- runs from created_at); 'done' holds the answer to replay. created_at is
-- Unix microseconds (UTC).
CREATE TABLE idempotency_keys (
    actor        TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    fingerprint  TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    status       INTEGER NOT NULL DEFAULT 0,
    content_type TEXT    NOT NULL DEFAULT '',
    body         BYTEA   NOT NULL DEFAULT ''::bytea,
    created_at   BIGINT  NOT NULL,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (actor, key),
    CONSTRAINT idempotency_keys_state_check CHECK (state IN ('pending', 'done'))
);
--bun:split
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
