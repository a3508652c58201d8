DROP TABLE keystore_master;
--bun:split
DROP TABLE subject_keys;
