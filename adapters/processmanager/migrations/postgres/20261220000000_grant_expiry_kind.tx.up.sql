-- Grant expiry deadlines (R19): the end of a time-limited grant
-- ("grant_expiry/<child>/<account>/<granted_at unix micros>").
ALTER TABLE deadlines DROP CONSTRAINT deadlines_kind_check;
--bun:split
ALTER TABLE deadlines ADD CONSTRAINT deadlines_kind_check
    CHECK (kind IN ('grace', 'invitation', 'account_retention', 'child_retention', 'grant_expiry'));
