ALTER TABLE outbox_checkpoints
    DROP COLUMN lease_until,
    DROP COLUMN lease_owner;
