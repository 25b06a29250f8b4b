-- Latest reading of every device, by device_id, archive and hot days alike (the twin of
-- db/queries/latest_reading_per_device.js):
--   DEVICE_PREFIX=thermostat- make duckdb ARGS="-f db/sql/latest_reading_per_device.sql"
-- Variables: device_prefix (only devices whose id starts with it).
-- Rows: device_id, sensor, value, unit, ts (ISO-8601, ms, Z), source, readings (how many stored).
-- "Latest" is the greatest ts, ties broken by the greatest _id, as the mongosh script sorts.
WITH picked AS (
    SELECT *
    FROM readings
    WHERE getvariable('device_prefix') IS NULL
        OR starts_with(device_id, getvariable('device_prefix'))
), ranked AS (
    SELECT
        *,
        row_number() OVER (PARTITION BY device_id ORDER BY ts DESC, _id DESC) AS rank,
        count(*) OVER (PARTITION BY device_id) AS stored
    FROM picked
)
SELECT
    device_id,
    sensor,
    value,
    unit,
    strftime(ts, '%Y-%m-%dT%H:%M:%S.%gZ') AS ts,
    source,
    stored AS readings
FROM ranked
WHERE rank = 1
ORDER BY device_id;
