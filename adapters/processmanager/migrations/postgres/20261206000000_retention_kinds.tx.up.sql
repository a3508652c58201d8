-- Retention deadlines (R22): a closed account's retention period, a
-- child's retention date ("account_retention/<account>",
-- "child_retention/<child>/<event that set the date>").
ALTER TABLE deadlines DROP CONSTRAINT deadlines_kind_check;
--bun:split
ALTER TABLE deadlines ADD CONSTRAINT deadlines_kind_check
    CHECK (kind IN ('grace', 'invitation', 'account_retention', 'child_retention'));
