DROP TABLE outbox_checkpoints;
