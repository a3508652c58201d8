ALTER TABLE outbox_checkpoints DROP COLUMN lease_until;
--bun:split
ALTER TABLE outbox_checkpoints DROP COLUMN lease_owner;
