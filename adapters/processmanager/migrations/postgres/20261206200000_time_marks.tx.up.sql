-- Time marks (the watch stream learns of changes time makes when they take
-- effect): a placement recorded ahead of its start or end
-- ("placement_start/<placement>", "placement_end/<placement>"), and a
-- grant's expiry (R19, "grant_expiry/<child>/<account>").
ALTER TABLE deadlines DROP CONSTRAINT deadlines_kind_check;
--bun:split
ALTER TABLE deadlines ADD CONSTRAINT deadlines_kind_check
    CHECK (kind IN ('grace', 'invitation', 'account_retention', 'child_retention', 'placement_start', 'placement_end', 'grant_expiry'));
