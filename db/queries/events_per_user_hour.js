// User events per user per hour (UTC, by the time the events API received them):
//   FROM=2026-11-23T00:00:00Z mongosh "$MONGO_URI" db/queries/events_per_user_hour.js
// Env: FROM, UNTIL (ISO-8601 bounds on received_at; default: the 24 hours before now), USER_ID.
// Prints JSON: [{user_id, hour, events}] by user_id then hour; hour = "YYYY-MM-DDTHH:00:00Z".
// Grouped on the server: the received_at index bounds the range, $dateTrunc cuts the hour
// (MongoDB 5.0+ and the embedded server).
function isoEnv(name, fallback) {
  const text = process.env[name];
  if (!text) return fallback;
  const value = new Date(text);
  if (isNaN(value.getTime())) throw new Error(`${name}=${text} is not an ISO-8601 time`);
  return value;
}
const until = isoEnv("UNTIL", new Date());
const from = isoEnv("FROM", new Date(until.getTime() - 24 * 3600 * 1000));
const match = { received_at: { $gte: from, $lt: until } };
if (process.env.USER_ID) match.user_id = process.env.USER_ID;
const result = db.user_events
  .aggregate([
    { $match: match },
    {
      $group: {
        _id: { user_id: "$user_id", hour: { $dateTrunc: { date: "$received_at", unit: "hour" } } },
        events: { $count: {} },
      },
    },
    { $sort: { "_id.user_id": 1, "_id.hour": 1 } },
  ])
  .toArray()
  .map((g) => ({ user_id: g._id.user_id, hour: g._id.hour.toISOString().replace(".000Z", "Z"), events: g.events }));
print(JSON.stringify(result, null, 2));
