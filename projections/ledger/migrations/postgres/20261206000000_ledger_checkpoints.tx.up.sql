-- Signed checkpoints of the ledger (R23): one row per published tree size,
-- the signed note as published. Copies live outside the database too (the
-- checkpoint directory, the bus); this table serves the API and replicas.
-- published_at is Unix microseconds (UTC).
CREATE TABLE ledger_checkpoints (
    tree_size    BIGINT NOT NULL,
    root         TEXT   NOT NULL,
    note         TEXT   NOT NULL,
    published_at BIGINT NOT NULL,
    published_by TEXT   NOT NULL,
    CONSTRAINT ledger_checkpoints_pkey PRIMARY KEY (tree_size)
);
