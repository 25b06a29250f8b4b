package dev.headwater.mongo;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;

import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.exception.MongoServerError;

/**
 * Rewrites what users type into what the library evaluates: the {@code $count} accumulator becomes
 * {@code {$sum: 1}}, and {@code $dateTrunc} with a unit of millisecond..day (UTC) becomes epoch
 * arithmetic ({@code $toDate($toLong(d) - $toLong(d) mod size)}). Other units or time zones fail
 * with a message that says what to type instead. Pure.
 */
final class PipelineRewriter {

    private static final Map<String, Long> UNIT_MILLIS = Map.of(
        "millisecond", 1L, "second", 1_000L, "minute", 60_000L, "hour", 3_600_000L, "day", 86_400_000L);

    private PipelineRewriter() {
    }

    static List<Document> rewrite(List<Document> pipeline) {
        List<Document> out = new ArrayList<>();
        for (Document stage : pipeline) {
            Document copy = new Document();
            for (Map.Entry<String, Object> e : stage.entrySet()) {
                Object body = rewriteValue(e.getValue());
                if (e.getKey().equals("$group") && body instanceof Document group) {
                    body = rewriteGroup(group);
                }
                copy.put(e.getKey(), body);
            }
            out.add(copy);
        }
        return out;
    }

    private static Document rewriteGroup(Document group) {
        Document out = new Document();
        for (Map.Entry<String, Object> e : group.entrySet()) {
            Object spec = e.getValue();
            if (!e.getKey().equals("_id") && spec instanceof Document d && d.size() == 1 && d.containsKey("$count")) {
                Object arg = d.get("$count");
                if (!(arg instanceof Document a) || !a.isEmpty()) {
                    throw new MongoServerError(40238, "$count takes no arguments, i.e. $count:{}");
                }
                spec = new Document("$sum", 1);
            }
            out.put(e.getKey(), spec);
        }
        return out;
    }

    static Object rewriteValue(Object value) {
        if (value instanceof Document d) {
            if (d.size() == 1 && d.containsKey("$dateTrunc")) {
                return dateTrunc(d.get("$dateTrunc"));
            }
            Document out = new Document();
            for (Map.Entry<String, Object> e : d.entrySet()) {
                out.put(e.getKey(), rewriteValue(e.getValue()));
            }
            return out;
        } else if (value instanceof Collection<?> c && !(value instanceof Document)) {
            List<Object> out = new ArrayList<>(c.size());
            for (Object o : c) {
                out.add(rewriteValue(o));
            }
            return out;
        }
        return value;
    }

    private static Object dateTrunc(Object spec) {
        if (!(spec instanceof Document args) || !args.containsKey("date") || !args.containsKey("unit")) {
            throw new MongoServerError(5439007, "$dateTrunc requires 'date' and 'unit'");
        }
        Object unit = args.get("unit");
        Long unitMs = unit instanceof String u ? UNIT_MILLIS.get(u) : null;
        Object tz = args.get("timezone");
        if (unitMs == null || (tz != null && !"UTC".equals(tz) && !"+00:00".equals(tz) && !"Z".equals(tz))
            || args.containsKey("startOfWeek")) {
            throw new MongoServerError(168, "InvalidPipelineOperator",
                "$dateTrunc on the embedded server supports unit millisecond/second/minute/hour/day in UTC only; "
                    + "got unit " + unit + (tz != null ? " timezone " + tz : "")
                    + ". For month or year, group on {y: {$year: d}, m: {$month: d}} instead (for weeks, "
                    + "day bins with {$dayOfWeek: d})");
        }
        long bin = 1;
        Object binSize = args.get("binSize");
        if (binSize instanceof Number n && n.longValue() > 0) {
            bin = n.longValue();
        } else if (binSize != null) {
            throw new MongoServerError(5439017, "$dateTrunc requires 'binSize' to be a positive integer");
        }
        Object date = rewriteValue(args.get("date"));
        Document millis = new Document("$toLong", date);
        long size = unitMs * bin;
        return new Document("$toDate",
            new Document("$subtract", List.of(millis, new Document("$mod", List.of(millis, size)))));
    }
}
