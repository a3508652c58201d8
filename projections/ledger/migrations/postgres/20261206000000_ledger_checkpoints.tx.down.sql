DROP TABLE IF EXISTS ledger_checkpoints;
