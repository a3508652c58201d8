DELETE FROM deadlines WHERE kind IN ('placement_start', 'placement_end', 'grant_expiry');
--bun:split
ALTER TABLE deadlines DROP CONSTRAINT deadlines_kind_check;
--bun:split
ALTER TABLE deadlines ADD CONSTRAINT deadlines_kind_check
    CHECK (kind IN ('grace', 'invitation', 'account_retention', 'child_retention'));
