// Per-sensor statistics over a time range, read from the rollups (not the raw readings):
//   FROM=2026-11-23T00:00:00Z UNTIL=2026-11-24T00:00:00Z mongosh "$MONGO_URI" db/queries/sensor_stats.js
// Env: FROM, UNTIL (ISO-8601; default: the 24 hours before now), WINDOW (rollup size, default 1m).
// A window counts when its start is in [FROM, UNTIL).
// Prints JSON: {from, until, window, sensors: [{sensor, devices, windows, count, avg, min, max}]}.
// avg = sum / count over the windows' own sums (an average of window averages would weight a
// short window like a full one); min and max are the extremes of the windows' extremes.
function isoEnv(name, fallback) {
  const text = process.env[name];
  if (!text) return fallback;
  const value = new Date(text);
  if (isNaN(value.getTime())) throw new Error(`${name}=${text} is not an ISO-8601 time`);
  return value;
}
const until = isoEnv("UNTIL", new Date());
const from = isoEnv("FROM", new Date(until.getTime() - 24 * 3600 * 1000));
const windowSize = process.env.WINDOW || "1m";
const match = { window: windowSize, start: { $gte: from, $lt: until } };
const sums = db.readings_rollup
  .aggregate([
    { $match: match },
    {
      $group: {
        _id: { sensor: "$sensor", device: "$device_id" },
        windows: { $sum: 1 },
        count: { $sum: "$count" },
        sum: { $sum: "$sum" },
        min: { $min: "$min" },
        max: { $max: "$max" },
      },
    },
    {
      $group: {
        _id: "$_id.sensor",
        devices: { $sum: 1 },
        windows: { $sum: "$windows" },
        count: { $sum: "$count" },
        sum: { $sum: "$sum" },
        min: { $min: "$min" },
        max: { $max: "$max" },
      },
    },
    { $sort: { _id: 1 } },
  ])
  .toArray();
const sensors = sums.map((s) => {
  return {
    sensor: s._id,
    devices: s.devices,
    windows: s.windows,
    count: s.count,
    avg: s.count > 0 ? s.sum / s.count : null,
    min: s.min,
    max: s.max,
  };
});
print(JSON.stringify({ from, until, window: windowSize, sensors }, null, 2));
