DELETE FROM deadlines WHERE kind IN ('account_retention', 'child_retention');
--bun:split
ALTER TABLE deadlines DROP CONSTRAINT deadlines_kind_check;
--bun:split
ALTER TABLE deadlines ADD CONSTRAINT deadlines_kind_check CHECK (kind IN ('grace', 'invitation'));
