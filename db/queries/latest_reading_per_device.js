// Latest reading of every device, by device_id:
//   mongosh "$MONGO_URI" db/queries/latest_reading_per_device.js
// Env: DEVICE_PREFIX=thermostat- (only devices whose id starts with it).
// Prints JSON: [{device_id, sensor, value, unit, ts, source, readings}], readings = how many stored.
// One small $group for the device ids, then one indexed lookup per device (readings.device_ts,
// on MongoDB and on the embedded server), rather than sorting the whole collection.
const prefix = process.env.DEVICE_PREFIX || "";
const match = prefix ? [{ $match: { device_id: { $gte: prefix, $lt: prefix + "\uffff" } } }] : [];
const devices = db.readings
  .aggregate([...match, { $group: { _id: "$device_id", readings: { $sum: 1 } } }, { $sort: { _id: 1 } }])
  .toArray();
const result = devices.map((d) => {
  const latest = db.readings.find({ device_id: d._id }).sort({ ts: -1, _id: -1 }).limit(1).toArray()[0];
  return {
    device_id: d._id,
    sensor: latest.sensor,
    value: latest.value,
    unit: latest.unit,
    ts: latest.ts,
    source: latest.source,
    readings: d.readings,
  };
});
print(JSON.stringify(result, null, 2));
