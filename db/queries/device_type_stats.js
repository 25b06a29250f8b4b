// Average, minimum and maximum per device type and sensor over raw readings in a time range:
//   FROM=2026-11-23T00:00:00Z UNTIL=2026-11-23T01:00:00Z mongosh "$MONGO_URI" db/queries/device_type_stats.js
// Env: FROM, UNTIL (ISO-8601; default: the hour before now). Readings with ts in [FROM, UNTIL).
// Prints JSON: [{device_type, sensor, unit, devices, count, avg, min, max}], by type then sensor.
// device_type is what the source declared (devices: thermostat, ...; machine metrics: "machine").
function isoEnv(name, fallback) {
  const text = process.env[name];
  if (!text) return fallback;
  const value = new Date(text);
  if (isNaN(value.getTime())) throw new Error(`${name}=${text} is not an ISO-8601 time`);
  return value;
}
const until = isoEnv("UNTIL", new Date());
const from = isoEnv("FROM", new Date(until.getTime() - 3600 * 1000));
const rows = db.readings
  .aggregate([
    { $match: { ts: { $gte: from, $lt: until } } },
    {
      $group: {
        _id: { device_type: "$device_type", sensor: "$sensor", unit: "$unit", device: "$device_id" },
        count: { $sum: 1 },
        sum: { $sum: "$value" },
        min: { $min: "$value" },
        max: { $max: "$value" },
      },
    },
    {
      $group: {
        _id: { device_type: "$_id.device_type", sensor: "$_id.sensor", unit: "$_id.unit" },
        devices: { $sum: 1 },
        count: { $sum: "$count" },
        sum: { $sum: "$sum" },
        min: { $min: "$min" },
        max: { $max: "$max" },
      },
    },
    { $sort: { "_id.device_type": 1, "_id.sensor": 1 } },
  ])
  .toArray();
print(
  JSON.stringify(
    rows.map((r) => ({
      device_type: r._id.device_type === undefined ? null : r._id.device_type,
      sensor: r._id.sensor,
      unit: r._id.unit,
      devices: r.devices,
      count: r.count,
      avg: r.count ? r.sum / r.count : null,
      min: r.min,
      max: r.max,
    })),
  ),
);
