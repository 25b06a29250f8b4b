// Why records were rejected, most frequent first:
//   mongosh "$MONGO_URI" db/queries/reject_reasons.js
// Env: FROM, UNTIL (ISO-8601 bounds on rejected_at; default: all time), TOPIC, LIMIT (default 50).
// Prints JSON: {total, reasons: [{stage, reason, count}]}.
function isoEnv(name) {
  const text = process.env[name];
  if (!text) return null;
  const value = new Date(text);
  if (isNaN(value.getTime())) throw new Error(`${name}=${text} is not an ISO-8601 time`);
  return value;
}
const match = {};
const from = isoEnv("FROM");
const until = isoEnv("UNTIL");
if (from || until) {
  match.rejected_at = {};
  if (from) match.rejected_at.$gte = from;
  if (until) match.rejected_at.$lt = until;
}
if (process.env.TOPIC) match.topic = process.env.TOPIC;
const limit = parseInt(process.env.LIMIT || "50", 10);
const groups = db.rejected
  .aggregate([
    { $match: match },
    { $group: { _id: { stage: "$stage", reason: "$reason" }, count: { $sum: 1 } } },
    { $sort: { count: -1, "_id.stage": 1, "_id.reason": 1 } },
  ])
  .toArray();
const total = groups.reduce((n, g) => n + g.count, 0);
const reasons = groups.slice(0, limit).map((g) => ({ stage: g._id.stage, reason: g._id.reason, count: g.count }));
print(JSON.stringify({ total, reasons }, null, 2));
