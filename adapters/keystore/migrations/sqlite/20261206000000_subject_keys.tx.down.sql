DROP TABLE subject_keys;
