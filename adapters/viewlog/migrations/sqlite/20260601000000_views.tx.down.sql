DROP TABLE view_alerts;
--bun:split
DROP TABLE record_views;
