-- The data keys of the data subjects (R22): one row per subject ("account:"
-- or "child:" and the id), its 32-byte AES-256 key wrapped (AES-256-GCM) by
-- the master key named by master_key_id. Erasure zeroes wrapped and sets
-- erased_at (Unix microseconds; 0 while the key lives): the row stays so
-- that the subject is known to be erased and never gets a new key.
CREATE TABLE subject_keys (
    subject        TEXT   NOT NULL,
    wrapped        BLOB   NOT NULL,
    master_key_id  TEXT   NOT NULL,
    created_at     BIGINT NOT NULL,
    erased_at      BIGINT NOT NULL DEFAULT 0,
    CONSTRAINT subject_keys_pkey PRIMARY KEY (subject)
);
--bun:split
-- The master key every replica must use, by id: the first start records
-- it, and a replica with another master key refuses to start.
CREATE TABLE keystore_master (
    singleton      INTEGER NOT NULL,
    master_key_id  TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    CONSTRAINT keystore_master_pkey PRIMARY KEY (singleton),
    CONSTRAINT keystore_master_one CHECK (singleton = 1)
);
