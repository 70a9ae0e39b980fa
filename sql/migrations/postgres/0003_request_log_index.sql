-- Migration 3 (PostgreSQL): request_log loses its index on request_id.
-- Request ids are random, so each row went into a random page of that index: the cost of
-- every insert grew with the table (a SQLite file of a few million rows spent more on that
-- index than on the rows), and nothing reads request_log by request id. To find one
-- request, bound the time too: the timestamp index (rows arrive in time order) narrows it.
--   SELECT * FROM request_log WHERE timestamp >= '2026-12-07T10:00:00Z' AND request_id = '…';
DROP INDEX IF EXISTS idx_request_log_request_id;
