// User events per user per hour (UTC, by the time the events API received them):
//   FROM=2026-11-23T00:00:00Z mongosh "$MONGO_URI" db/queries/events_per_user_hour.js
// Env: FROM, UNTIL (ISO-8601 bounds on received_at; default: the 24 hours before now), USER_ID.
// Prints JSON: [{user_id, hour, events}] by user_id then hour; hour = "YYYY-MM-DDTHH:00:00Z".
// The hour is cut from the ISO text here: $dateTrunc and date-to-string $substr are not available
// on every server this runs against. The range filter runs on the server (received_at index).
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
const counts = new Map();
db.user_events.find(match, { user_id: 1, received_at: 1 }).forEach((e) => {
  const hour = e.received_at.toISOString().slice(0, 13) + ":00:00Z";
  const key = JSON.stringify([e.user_id, hour]);
  counts.set(key, (counts.get(key) || 0) + 1);
});
const result = [...counts.entries()]
  .map(([key, events]) => {
    const [user_id, hour] = JSON.parse(key);
    return { user_id, hour, events };
  })
  .sort((a, b) => (a.user_id < b.user_id ? -1 : a.user_id > b.user_id ? 1 : a.hour < b.hour ? -1 : a.hour > b.hour ? 1 : 0));
print(JSON.stringify(result, null, 2));
