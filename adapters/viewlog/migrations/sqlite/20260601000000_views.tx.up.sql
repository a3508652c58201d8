-- Record views (R20): one row per opening of a child's record that a
-- portal backend reported, with the access decision at viewed_at. Views
-- are observations, not decisions that change access: they are not in the
-- event log. Append-only: rows are inserted, never updated; only the
-- retention prune deletes them. Ids only, no personal data. Times are Unix
-- microseconds (UTC).
CREATE TABLE record_views (
    view_id     TEXT    NOT NULL,
    account_id  TEXT    NOT NULL,
    child_id    TEXT    NOT NULL,
    permission  TEXT    NOT NULL,
    viewed_at   INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    allowed     INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    position    TEXT    NOT NULL,
    actor_id    TEXT    NOT NULL,
    CONSTRAINT record_views_pkey PRIMARY KEY (view_id)
) STRICT;
--bun:split
CREATE INDEX record_views_child_idx ON record_views (child_id, viewed_at, view_id);
--bun:split
CREATE INDEX record_views_account_idx ON record_views (account_id, viewed_at, view_id);
--bun:split
CREATE INDEX record_views_recorded_idx ON record_views (recorded_at);
--bun:split
-- Alerts: one row per view without access (kind view_without_access).
CREATE TABLE view_alerts (
    alert_id   TEXT   NOT NULL,
    kind       TEXT   NOT NULL,
    account_id TEXT   NOT NULL,
    child_id   TEXT   NOT NULL,
    at         INTEGER NOT NULL,
    raised_at  INTEGER NOT NULL,
    detail     TEXT   NOT NULL,
    view_id    TEXT   NOT NULL,
    CONSTRAINT view_alerts_pkey PRIMARY KEY (alert_id)
) STRICT;
--bun:split
CREATE INDEX view_alerts_at_idx ON view_alerts (at, alert_id);
--bun:split
CREATE INDEX view_alerts_raised_idx ON view_alerts (raised_at);
--bun:split
CREATE INDEX view_alerts_child_idx ON view_alerts (child_id, at, alert_id);
--bun:split
CREATE INDEX view_alerts_account_idx ON view_alerts (account_id, at, alert_id);
