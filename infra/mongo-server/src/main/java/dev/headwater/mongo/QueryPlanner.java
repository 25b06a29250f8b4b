package dev.headwater.mongo;

import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

import de.bwaldvogel.mongo.bson.BsonRegularExpression;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.bson.MaxKey;
import de.bwaldvogel.mongo.bson.MinKey;
import de.bwaldvogel.mongo.bson.ObjectId;

/**
 * Chooses how a query reads a collection: an {@code _id} lookup, a scan of key ranges of one
 * {@link SecondaryIndex}, or a full scan. Pure: query, sort and index descriptions in, plan out.
 *
 * <p>Index bounds follow MongoDB's rule: equality (or {@code $in}) on the leading fields, then at
 * most one range ({@code $gt/$gte/$lt/$lte}) on the next field. Every plan returns a superset of the
 * matching documents; the caller still applies the whole query to each document, so bounds only
 * need to be safe, not exact. A plan is "exact" when the ranges hold exactly the matching documents,
 * which lets {@code count} answer from the index alone.
 */
final class QueryPlanner {

    /** Cartesian products of $in lists beyond this are not worth a plan of point ranges. */
    static final int MAX_INTERVALS = 4096;

    private static final Set<String> RANGE_OPS = Set.of("$gt", "$gte", "$lt", "$lte");

    enum Kind { ID_LOOKUP, INDEX_SCAN, COLLECTION_SCAN }

    /** One contiguous range of index keys, both ends inclusive (exclusive ends are encoded in the keys). */
    record Interval(Object[] low, Object[] high) {
    }

    /**
     * {@code tieSort}: the index yields the sort's order except for a trailing {@code _id} in the
     * other direction; the caller sorts each run of equal leading sort values (small) by {@code _id}.
     */
    record Plan(Kind kind, SecondaryIndex index, List<Interval> intervals, boolean reverse,
                boolean providesSort, boolean tieSort, boolean exact, List<Object> ids, String summary) {

        static Plan collectionScan() {
            return new Plan(Kind.COLLECTION_SCAN, null, List.of(), false, false, false, false, List.of(), "COLLSCAN");
        }

        String indexName() {
            return index == null ? (kind == Kind.ID_LOOKUP ? "_id_" : null) : index.getName();
        }
    }

    /** What a query says about one field, as far as index bounds are concerned. */
    static final class FieldBounds {
        List<Object> points; // equality or $in values; null = none
        Object lower;
        boolean lowerInclusive;
        boolean hasLower;
        Object upper;
        boolean upperInclusive;
        boolean hasUpper;
        boolean unusable; // some condition on this field that bounds cannot express
        boolean inexact; // bounds are a strict superset of what the conditions match

        boolean hasRange() {
            return hasLower || hasUpper;
        }
    }

    private QueryPlanner() {
    }

    static Plan plan(Document query, Document sort, List<SecondaryIndex> indexes) {
        return plan(query, sort, indexes, false);
    }

    /**
     * {@code limited}: the caller stops after a few documents (sort + limit), so an index that
     * yields the sort order wins over one with tighter bounds that would need a blocking sort.
     */
    static Plan plan(Document query, Document sort, List<SecondaryIndex> indexes, boolean limited) {
        Map<String, FieldBounds> fields = new LinkedHashMap<>();
        boolean queryFullyAnalysed = collect(query == null ? new Document() : query, fields);

        FieldBounds id = fields.get("_id");
        if (id != null && id.points != null && !id.unusable) {
            return new Plan(Kind.ID_LOOKUP, null, List.of(), false, false, false, false, dedupe(id.points),
                "IDHACK");
        }

        List<SortKey> sortKeys = sortKeys(sort);
        Plan best = null;
        double bestScore = 0;
        for (SecondaryIndex index : indexes) {
            if (index.isMultikey() || !index.isReady()) {
                continue;
            }
            Candidate c = score(index, fields, sortKeys);
            if (c == null) {
                continue;
            }
            double score = c.score + (c.providesSort ? (limited ? 100 : 0.5) : 0);
            if (score > bestScore) {
                bestScore = score;
                best = build(index, fields, c, queryFullyAnalysed);
            }
        }
        return best != null ? best : Plan.collectionScan();
    }

    private record SortKey(String field, int direction) {
    }

    private record Candidate(int equalityFields, boolean range, long combos, boolean providesSort,
                             boolean reverse, boolean tieSort, double score) {
    }

    private static List<SortKey> sortKeys(Document sort) {
        List<SortKey> keys = new ArrayList<>();
        if (sort == null) {
            return keys;
        }
        for (Map.Entry<String, Object> e : sort.entrySet()) {
            if (!(e.getValue() instanceof Number n)) {
                return null; // $meta or other: never satisfied by an index
            }
            keys.add(new SortKey(e.getKey(), n.doubleValue() < 0 ? -1 : 1));
        }
        return keys;
    }

    private static Candidate score(SecondaryIndex index, Map<String, FieldBounds> fields, List<SortKey> sortKeys) {
        List<String> names = index.fields();
        int[] dirs = index.directions();
        int eq = 0;
        long combos = 1;
        int firstMulti = -1;
        while (eq < names.size()) {
            FieldBounds b = fields.get(names.get(eq));
            if (b == null || b.unusable || b.points == null) {
                break;
            }
            int n = dedupe(b.points).size();
            if (n > 1 && firstMulti < 0) {
                firstMulti = eq;
            }
            combos *= n;
            if (combos > MAX_INTERVALS) {
                return null;
            }
            eq++;
        }
        boolean range = false;
        if (eq < names.size()) {
            FieldBounds b = fields.get(names.get(eq));
            range = b != null && !b.unusable && b.points == null && b.hasRange();
        }

        boolean providesSort = false;
        boolean reverse = false;
        boolean tieSort = false;
        if (sortKeys != null && !sortKeys.isEmpty()) {
            // The sort must be the index order (or its reverse) from some field s on, every field
            // before s fixed to one value; the _id position is the index's last, ascending, part.
            int limit = firstMulti < 0 ? eq : firstMulti;
            for (int s = 0; s <= limit && !providesSort; s++) {
                int fit = sortMatches(names, dirs, s, sortKeys);
                if (fit >= 0) {
                    providesSort = true;
                    reverse = (fit & 1) != 0;
                    tieSort = (fit & 2) != 0;
                }
            }
        }
        int score = eq * 2 + (range ? 1 : 0);
        if (score == 0 && !providesSort) {
            return null;
        }
        return new Candidate(eq, range, combos, providesSort, reverse, tieSort, score);
    }

    /** -1: no match; otherwise bit 0 = read the index in reverse, bit 1 = tie sort by _id needed. */
    private static int sortMatches(List<String> names, int[] dirs, int start, List<SortKey> sortKeys) {
        Boolean reverse = null;
        boolean tie = false;
        for (int i = 0; i < sortKeys.size(); i++) {
            int pos = start + i;
            SortKey key = sortKeys.get(i);
            int dir;
            if (pos < names.size()) {
                if (!names.get(pos).equals(key.field())) {
                    return -1;
                }
                dir = dirs[pos];
            } else if (pos == names.size() && key.field().equals("_id") && i == sortKeys.size() - 1) {
                dir = 1;
            } else {
                return -1;
            }
            boolean flipped = dir != key.direction();
            if (reverse == null) {
                reverse = flipped;
            } else if (reverse != flipped) {
                if (pos == names.size() && i > 0) {
                    tie = true; // only the trailing _id disagrees
                } else {
                    return -1;
                }
            }
        }
        return (Boolean.TRUE.equals(reverse) ? 1 : 0) | (tie ? 2 : 0);
    }

    private static Plan build(SecondaryIndex index, Map<String, FieldBounds> fields, Candidate c,
                              boolean queryFullyAnalysed) {
        List<String> names = index.fields();
        int[] dirs = index.directions();
        int width = names.size() + 1;
        int[] allDirs = new int[width];
        System.arraycopy(dirs, 0, allDirs, 0, dirs.length);
        allDirs[width - 1] = 1;

        List<List<Object>> pointLists = new ArrayList<>();
        for (int i = 0; i < c.equalityFields(); i++) {
            List<Object> points = new ArrayList<>(dedupe(fields.get(names.get(i)).points));
            int dir = dirs[i];
            points.sort((a, b) -> dir * IndexKeyType.compareValues(a, b));
            pointLists.add(points);
        }
        List<Object[]> prefixes = new ArrayList<>();
        cartesian(pointLists, 0, new Object[c.equalityFields()], prefixes);

        FieldBounds range = c.range() ? fields.get(names.get(c.equalityFields())) : null;
        List<Interval> intervals = new ArrayList<>();
        for (Object[] prefix : prefixes) {
            Object[] low = new Object[width];
            Object[] high = new Object[width];
            System.arraycopy(prefix, 0, low, 0, prefix.length);
            System.arraycopy(prefix, 0, high, 0, prefix.length);
            int p = prefix.length;
            if (range == null) {
                fill(low, p, allDirs, false);
                fill(high, p, allDirs, true);
            } else {
                boolean asc = allDirs[p] > 0;
                boolean hasLo = asc ? range.hasLower : range.hasUpper;
                Object lo = asc ? range.lower : range.upper;
                boolean loIncl = asc ? range.lowerInclusive : range.upperInclusive;
                boolean hasHi = asc ? range.hasUpper : range.hasLower;
                Object hi = asc ? range.upper : range.lower;
                boolean hiIncl = asc ? range.upperInclusive : range.lowerInclusive;
                if (hasLo) {
                    low[p] = lo;
                    fill(low, p + 1, allDirs, !loIncl);
                } else {
                    fill(low, p, allDirs, false);
                }
                if (hasHi) {
                    high[p] = hi;
                    fill(high, p + 1, allDirs, hiIncl);
                } else {
                    fill(high, p, allDirs, true);
                }
            }
            intervals.add(new Interval(low, high));
        }

        boolean exact = queryFullyAnalysed;
        int used = c.equalityFields() + (c.range() ? 1 : 0);
        for (Map.Entry<String, FieldBounds> e : fields.entrySet()) {
            int at = names.indexOf(e.getKey());
            FieldBounds b = e.getValue();
            if (at < 0 || at >= used || b.unusable || b.inexact || (b.points != null && b.hasRange())) {
                exact = false;
            } else if (b.points != null) {
                for (Object point : b.points) {
                    if (point != null && typeClass(point) == null) {
                        exact = false; // e.g. a subdocument: key order equality is not BSON equality
                    }
                }
            } else if (!(b.hasLower && b.hasUpper && sameTypeClass(b.lower, b.upper))) {
                // a one-sided range spans other BSON types too (MongoDB brackets by type, this scan
                // does not), so only a two-sided range of one type class holds exactly the matches
                exact = false;
            }
        }
        if (index.sparse()) {
            exact = false;
        }
        StringBuilder summary = new StringBuilder("IXSCAN ").append(index.getName())
            .append(" intervals=").append(intervals.size());
        if (c.providesSort()) {
            summary.append(c.reverse() ? " sort=index-reverse" : " sort=index");
        }
        if (c.tieSort()) {
            summary.append("+_id-tie-sort");
        }
        return new Plan(Kind.INDEX_SCAN, index, intervals, c.reverse(), c.providesSort(), c.tieSort(), exact, List.of(),
            summary.toString());
    }

    /** Fills key components from {@code from} with the smallest (or largest) value in key order. */
    private static void fill(Object[] key, int from, int[] dirs, boolean largest) {
        for (int i = from; i < key.length; i++) {
            boolean max = largest == (dirs[i] > 0);
            key[i] = max ? MaxKey.getInstance() : MinKey.getInstance();
        }
    }

    private static void cartesian(List<List<Object>> lists, int i, Object[] current, List<Object[]> out) {
        if (i == lists.size()) {
            out.add(current.clone());
            return;
        }
        for (Object value : lists.get(i)) {
            current[i] = value;
            cartesian(lists, i + 1, current, out);
        }
    }

    private static List<Object> dedupe(List<Object> values) {
        List<Object> out = new ArrayList<>();
        for (Object v : values) {
            boolean seen = false;
            for (Object o : out) {
                if (IndexKeyType.compareValues(o, v) == 0 && sameTypeClass(o, v)) {
                    seen = true;
                    break;
                }
            }
            if (!seen) {
                out.add(v);
            }
        }
        return out;
    }

    /**
     * Reads the top level of a query (and of nested {@code $and}s) into per-field bounds. Returns
     * false when some part of the query is not a plain field condition ($or, $expr, ...), which makes
     * no plan exact.
     */
    static boolean collect(Document query, Map<String, FieldBounds> fields) {
        boolean full = true;
        for (Map.Entry<String, Object> e : query.entrySet()) {
            String key = e.getKey();
            Object value = e.getValue();
            if (key.equals("$and") && value instanceof Collection<?> parts) {
                for (Object part : parts) {
                    if (part instanceof Document d) {
                        full &= collect(d, fields);
                    } else {
                        full = false;
                    }
                }
                continue;
            }
            if (key.startsWith("$")) {
                full = false;
                continue;
            }
            FieldBounds b = fields.computeIfAbsent(key, k -> new FieldBounds());
            addCondition(b, value);
        }
        return full;
    }

    private static void addCondition(FieldBounds b, Object value) {
        if (value instanceof Document d && !d.isEmpty() && d.keySet().iterator().next().startsWith("$")) {
            for (Map.Entry<String, Object> op : d.entrySet()) {
                String name = op.getKey();
                Object operand = op.getValue();
                if (name.equals("$eq")) {
                    addPoints(b, Collections.singletonList(operand));
                } else if (name.equals("$in") && operand instanceof Collection<?> list) {
                    addPoints(b, new ArrayList<>(list));
                } else if (RANGE_OPS.contains(name) && isBoundValue(operand)) {
                    addRange(b, name, operand);
                } else {
                    b.unusable = true;
                }
            }
        } else {
            addPoints(b, Collections.singletonList(value));
        }
    }

    private static void addPoints(FieldBounds b, List<Object> values) {
        for (Object v : values) {
            if (!isPointValue(v)) {
                b.unusable = true;
                return;
            }
        }
        if (b.points != null) {
            // two equality conditions on one field: keep the first as bounds, the matcher does the rest
            b.inexact = true;
            return;
        }
        b.points = values;
    }

    private static void addRange(FieldBounds b, String op, Object operand) {
        boolean lower = op.startsWith("$g");
        boolean inclusive = op.endsWith("e");
        if (lower) {
            if (b.hasLower) {
                b.inexact = true; // keep the first bound; the matcher applies both
                return;
            }
            b.hasLower = true;
            b.lower = operand;
            b.lowerInclusive = inclusive;
        } else {
            if (b.hasUpper) {
                b.inexact = true;
                return;
            }
            b.hasUpper = true;
            b.upper = operand;
            b.upperInclusive = inclusive;
        }
    }

    private static boolean isPointValue(Object v) {
        return !(v instanceof Collection) && !(v instanceof Pattern) && !(v instanceof BsonRegularExpression)
            && !(v instanceof MinKey) && !(v instanceof MaxKey)
            && !(v instanceof Document d && !d.isEmpty() && d.keySet().iterator().next().startsWith("$"));
    }

    private static boolean isBoundValue(Object v) {
        return v != null && typeClass(v) != null;
    }

    private static String typeClass(Object v) {
        if (v instanceof Number) {
            return "number";
        } else if (v instanceof String) {
            return "string";
        } else if (v instanceof Instant) {
            return "date";
        } else if (v instanceof Boolean) {
            return "bool";
        } else if (v instanceof ObjectId) {
            return "oid";
        }
        return null;
    }

    private static boolean sameTypeClass(Object a, Object b) {
        String ta = a == null ? "null" : typeClass(a);
        String tb = b == null ? "null" : typeClass(b);
        return ta != null && ta.equals(tb);
    }
}
