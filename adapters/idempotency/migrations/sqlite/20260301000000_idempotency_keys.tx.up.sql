-- Idempotency-Key outcomes of the HTTP API: one row per (actor, key).
-- state 'pending' is a claim held by the request executing now (its lease
-- runs from created_at); 'done' holds the answer to replay. created_at is
-- Unix microseconds (UTC).
CREATE TABLE idempotency_keys (
    actor        TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    fingerprint  TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'done')),
    status       INTEGER NOT NULL DEFAULT 0,
    content_type TEXT    NOT NULL DEFAULT '',
    body         BLOB    NOT NULL DEFAULT x'',
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (actor, key)
) STRICT;
--bun:split
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
