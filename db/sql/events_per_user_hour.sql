-- User events per user per hour (UTC, by the time the events API received them), archive and hot
-- days alike (the twin of db/queries/events_per_user_hour.js):
--   FROM=2026-11-23T00:00:00Z make duckdb ARGS="-f db/sql/events_per_user_hour.sql"
-- Variables: from, until (bounds on received_at; default: the 24 hours before now), user_id.
-- Rows: user_id, hour ("YYYY-MM-DDTHH:00:00Z"), events; by user_id then hour.
WITH bounds AS (
    SELECT coalesce(getvariable('until'), now()) AS until_ts
), win AS (
    SELECT coalesce(getvariable('from'), until_ts - INTERVAL 24 HOUR) AS from_ts, until_ts
    FROM bounds
)
SELECT
    user_id,
    strftime(date_trunc('hour', received_at), '%Y-%m-%dT%H:00:00Z') AS hour,
    count(*) AS events
FROM user_events, win
WHERE received_at >= win.from_ts AND received_at < win.until_ts
    AND (getvariable('user_id') IS NULL OR user_id = getvariable('user_id'))
GROUP BY user_id, hour
ORDER BY user_id, hour;
