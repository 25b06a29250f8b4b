-- Why records were rejected, most frequent first (the twin of db/queries/reject_reasons.js), over
-- the hot export's copy of `rejected` (rejects are never archived or pruned):
--   TOPIC=devices make duckdb ARGS="-f db/sql/reject_reasons.sql"
-- Variables: from, until (bounds on rejected_at; default: all time), topic, limit (default 50).
-- Rows: stage, reason, count, total (the count over every reason, also those past the limit).
WITH picked AS (
    SELECT stage, reason
    FROM rejected
    WHERE (getvariable('from') IS NULL OR rejected_at >= getvariable('from'))
        AND (getvariable('until') IS NULL OR rejected_at < getvariable('until'))
        AND (getvariable('topic') IS NULL OR topic = getvariable('topic'))
), grouped AS (
    SELECT stage, reason, count(*) AS count
    FROM picked
    GROUP BY stage, reason
)
SELECT stage, reason, count, sum(count) OVER () AS total
FROM grouped
ORDER BY count DESC, stage, reason
LIMIT coalesce(getvariable('limit'), 50);
