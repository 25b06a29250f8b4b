-- Average, minimum and maximum per device type and sensor over raw readings in a time range,
-- archive and hot days alike (the twin of db/queries/device_type_stats.js):
--   FROM=2026-11-23T00:00:00Z UNTIL=2026-11-23T01:00:00Z make duckdb ARGS="-f db/sql/device_type_stats.sql"
-- Variables: from, until (default: the hour before now). Readings with ts in [from, until).
-- Rows: device_type, sensor, unit, devices, count, avg, min, max, by type (null first) then sensor.
WITH bounds AS (
    SELECT coalesce(getvariable('until'), now()) AS until_ts
), win AS (
    SELECT coalesce(getvariable('from'), until_ts - INTERVAL 1 HOUR) AS from_ts, until_ts
    FROM bounds
)
SELECT
    device_type,
    sensor,
    unit,
    count(DISTINCT device_id) AS devices,
    count(*) AS count,
    coalesce(sum(value), 0) / count(*) AS avg,
    min(value) AS min,
    max(value) AS max
FROM readings, win
WHERE ts >= win.from_ts AND ts < win.until_ts
GROUP BY device_type, sensor, unit
ORDER BY device_type NULLS FIRST, sensor, unit;
