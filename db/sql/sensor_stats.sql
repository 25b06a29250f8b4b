-- Per-sensor statistics over a time range (the twin of db/queries/sensor_stats.js). The mongosh
-- script reads MongoDB's rollups; these are recomputed here from the raw readings (archive and
-- hot days alike), cut into the same tumbling windows: epoch multiples of the window size, one
-- per device and sensor.
--   FROM=2026-11-23T00:00:00Z UNTIL=2026-11-24T00:00:00Z make duckdb ARGS="-f db/sql/sensor_stats.sql"
-- Variables: from, until (default: the 24 hours before now), window (10s or 1m, default 1m).
-- A window counts when its start is in [from, until).
-- Rows: sensor, devices, windows, count, avg, min, max. avg = sum / count over every reading of the
-- windows (as the mongosh script's sum of window sums over their counts).
WITH bounds AS (
    SELECT
        coalesce(getvariable('until'), now()) AS until_ts,
        CASE coalesce(getvariable('window'), '1m') WHEN '10s' THEN 10 WHEN '1m' THEN 60 END
            AS size_s
), win AS (
    SELECT coalesce(getvariable('from'), until_ts - INTERVAL 24 HOUR) AS from_ts, until_ts, size_s
    FROM bounds
), windows AS (
    SELECT
        device_id,
        sensor,
        to_timestamp(floor(epoch_ms(ts) / 1000 / win.size_s) * win.size_s) AS start,
        count(*) AS count,
        sum(value) AS sum,
        min(value) AS min,
        max(value) AS max
    FROM readings, win
    WHERE value IS NOT NULL
        AND ts >= win.from_ts - to_seconds(win.size_s) AND ts < win.until_ts + to_seconds(win.size_s)
    GROUP BY device_id, sensor, start
)
SELECT
    sensor,
    count(DISTINCT device_id) AS devices,
    count(*) AS windows,
    sum(count) AS count,
    CASE WHEN sum(count) > 0 THEN sum(sum) / sum(count) END AS avg,
    min(min) AS min,
    max(max) AS max
FROM windows, win
WHERE start >= win.from_ts AND start < win.until_ts
GROUP BY sensor
ORDER BY sensor;
