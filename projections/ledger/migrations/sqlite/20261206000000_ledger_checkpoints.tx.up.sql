-- Signed checkpoints of the ledger (R23): one row per published tree size,
-- the signed note as published. Copies live outside the database too (the
-- checkpoint directory, the bus); this table serves the API and replicas.
-- published_at is Unix microseconds (UTC).
CREATE TABLE ledger_checkpoints (
    tree_size    INTEGER NOT NULL PRIMARY KEY,
    root         TEXT    NOT NULL,
    note         TEXT    NOT NULL,
    published_at INTEGER NOT NULL,
    published_by TEXT    NOT NULL
) STRICT;
