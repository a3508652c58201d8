DELETE FROM deadlines WHERE kind = 'grant_expiry';
--bun:split
ALTER TABLE deadlines DROP CONSTRAINT deadlines_kind_check;
--bun:split
ALTER TABLE deadlines ADD CONSTRAINT deadlines_kind_check
    CHECK (kind IN ('grace', 'invitation', 'account_retention', 'child_retention'));
