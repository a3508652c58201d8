-- The lease of a checkpoint name: lease_owner is the owner string of the
-- publisher that holds it ('' when nobody does), lease_until the end of its
-- lease in Unix microseconds (0 when released). Only the holder publishes
-- and writes the checkpoint; another owner may take the lease once it is
-- free or lease_until has passed. (INTEGER: the table is STRICT, which
-- knows no BIGINT; SQLite's INTEGER is 64-bit.)
ALTER TABLE outbox_checkpoints ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
--bun:split
ALTER TABLE outbox_checkpoints ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
