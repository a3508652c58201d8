DROP TABLE events_head;
--bun:split
DROP TABLE events;
