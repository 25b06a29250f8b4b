package dev.headwater.mongo;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.function.Supplier;
import java.util.stream.Stream;

import de.bwaldvogel.mongo.MongoDatabase;
import de.bwaldvogel.mongo.backend.DatabaseResolver;
import de.bwaldvogel.mongo.backend.Missing;
import de.bwaldvogel.mongo.backend.ValueComparator;
import de.bwaldvogel.mongo.backend.aggregation.Aggregation;
import de.bwaldvogel.mongo.backend.aggregation.Expression;
import de.bwaldvogel.mongo.backend.aggregation.accumulator.Accumulator;
import de.bwaldvogel.mongo.backend.aggregation.accumulator.AddToSetAccumulator;
import de.bwaldvogel.mongo.backend.aggregation.accumulator.PushAccumulator;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.exception.MongoServerError;
import de.bwaldvogel.mongo.oplog.Oplog;

/**
 * Runs an aggregate pipeline as one lazy stream from the store: leading {@code $match} stages (and a
 * {@code $sort} right after them) are planned on the indexes, {@code $group} keeps one accumulator
 * set per group and {@code $sort} only what it must (top-k before a {@code $limit}), both charged to
 * the operation's {@link OperationBudget}; every other stage is the library's own, applied stage by
 * stage to the stream.
 */
final class StreamingAggregation {

    /** Library stages that hold their whole input: charged to the budget as it passes. */
    private static final Set<String> BLOCKING_LIBRARY_STAGES = Set.of("$facet", "$sample", "$bucket",
        "$bucketAuto", "$sortByCount", "$graphLookup");

    record Result(Stream<Document> documents, QueryPlanner.Plan plan) {
    }

    private StreamingAggregation() {
    }

    static Result run(HeadwaterCollection collection, List<Document> rawPipeline, MongoDatabase database,
                      DatabaseResolver resolver, Oplog oplog, OperationBudget budget) {
        List<Document> pipeline = PipelineRewriter.rewrite(rawPipeline);
        int i = 0;
        List<Document> matches = new ArrayList<>();
        while (i < pipeline.size() && pipeline.get(i).containsKey("$match")) {
            Object m = pipeline.get(i).get("$match");
            if (!(m instanceof Document md)) {
                throw new MongoServerError(15959, "the match filter must be an expression in an object");
            }
            matches.add(md);
            i++;
        }
        Document query = matches.isEmpty() ? new Document()
            : matches.size() == 1 ? matches.get(0) : new Document("$and", matches);
        Document sort = null;
        if (i < pipeline.size() && pipeline.get(i).get("$sort") instanceof Document s) {
            sort = s;
        }
        boolean limited = sort != null && i + 1 < pipeline.size() && pipeline.get(i + 1).containsKey("$limit");
        QueryPlanner.Plan plan = collection.plan(query, sort, limited);
        Stream<Document> stream;
        if (isCountOfMatches(pipeline, i) && (plan.exact() || query.isEmpty())) {
            // count_documents: [$match, {$group: {_id: 1, n: {$sum: 1}}}] answered from index keys
            long n = collection.countMatches(query);
            Document group = (Document) pipeline.get(i).get("$group");
            String field = group.keySet().stream().filter(k -> !k.equals("_id")).findFirst().orElseThrow();
            stream = n == 0 ? Stream.empty()
                : Stream.of(new Document("_id", group.get("_id")).append(field, n <= Integer.MAX_VALUE ? (Object) (int) n : n));
            return new Result(applyRest(stream, pipeline, i + 1, database, resolver, oplog, collection, budget), plan);
        }
        if (query.isEmpty() && sort == null) {
            stream = collection.candidates(plan, null);
        } else {
            stream = collection.stream(query, plan.providesSort() ? sort : null, 0, limited && plan.providesSort()
                ? ((Number) pipeline.get(i + 1).get("$limit")).intValue() : 0, null, budget);
        }
        if (sort != null && plan.providesSort()) {
            i++; // the index already yields this order
        }
        return new Result(applyRest(stream, pipeline, i, database, resolver, oplog, collection, budget), plan);
    }

    private static boolean isCountOfMatches(List<Document> pipeline, int i) {
        if (i >= pipeline.size() || !(pipeline.get(i).get("$group") instanceof Document g) || g.size() != 2) {
            return false;
        }
        Object id = g.get("_id");
        if (id instanceof String s && s.startsWith("$") || id instanceof Document || id instanceof Collection) {
            return false;
        }
        for (Map.Entry<String, Object> e : g.entrySet()) {
            if (!e.getKey().equals("_id")) {
                return e.getValue() instanceof Document acc && acc.size() == 1
                    && acc.get("$sum") instanceof Number n && n.intValue() == 1 && n.doubleValue() == 1.0;
            }
        }
        return false;
    }

    private static Stream<Document> applyRest(Stream<Document> stream, List<Document> pipeline, int from,
                                              MongoDatabase database, DatabaseResolver resolver, Oplog oplog,
                                              HeadwaterCollection collection, OperationBudget budget) {
        for (int i = from; i < pipeline.size(); i++) {
            Document stage = pipeline.get(i);
            if (stage.size() != 1) {
                throw new MongoServerError(40323, "A pipeline stage specification object must contain exactly one field.");
            }
            String name = stage.keySet().iterator().next();
            Object body = stage.get(name);
            if (name.equals("$group") && body instanceof Document group) {
                stream = group(stream, group, budget);
            } else if (name.equals("$sort") && body instanceof Document orderBy) {
                long keep = -1;
                if (i + 1 < pipeline.size() && pipeline.get(i + 1).get("$limit") instanceof Number n) {
                    keep = n.longValue();
                }
                stream = HeadwaterCollection.sorted(stream, HeadwaterCollection.comparator(orderBy), keep, budget, "sort");
            } else {
                if (BLOCKING_LIBRARY_STAGES.contains(name)) {
                    stream = stream.peek(d -> {
                        budget.tick();
                        budget.charge(OperationBudget.estimate(d), name);
                    });
                }
                Aggregation one = Aggregation.fromPipeline(List.of(stage), resolver, database, collection, oplog);
                stream = one.runStagesAsStream(stream);
            }
        }
        return stream;
    }

    /** $group with memory in proportion to the number of groups, in the library's group-key order. */
    static Stream<Document> group(Stream<Document> input, Document spec, OperationBudget budget) {
        if (!spec.containsKey("_id")) {
            throw new MongoServerError(15955, "a group specification must include an _id");
        }
        Object idExpression = spec.get("_id");
        Map<String, Supplier<Accumulator>> suppliers = Accumulator.parse(spec);
        long perGroup = 96 + 80L * suppliers.size();
        return HeadwaterCollection.asStream(new Iterator<Document>() {
            private Iterator<Document> results;

            private Iterator<Document> results() {
                if (results == null) {
                    TreeMap<Object, List<Accumulator>> groups = new TreeMap<>(ValueComparator.asc());
                    Iterator<Document> it = input.iterator();
                    while (it.hasNext()) {
                        Document document = it.next();
                        budget.tick();
                        Object key = Expression.evaluateDocument(idExpression, document);
                        if (key instanceof Missing) {
                            key = null;
                        }
                        List<Accumulator> accumulators = groups.get(key);
                        if (accumulators == null) {
                            budget.charge(perGroup + OperationBudget.estimate(key), "$group");
                            accumulators = new ArrayList<>(suppliers.size());
                            for (Supplier<Accumulator> s : suppliers.values()) {
                                accumulators.add(s.get());
                            }
                            groups.put(key, accumulators);
                        }
                        for (Accumulator accumulator : accumulators) {
                            Object value = Expression.evaluateDocument(accumulator.getExpression(), document);
                            if (accumulator instanceof PushAccumulator || accumulator instanceof AddToSetAccumulator) {
                                budget.charge(16 + OperationBudget.estimate(value), "$group " + accumulator.getField());
                            }
                            accumulator.aggregate(value);
                        }
                    }
                    List<Document> out = new ArrayList<>(groups.size());
                    for (Map.Entry<Object, List<Accumulator>> e : groups.entrySet()) {
                        Document d = new Document("_id", e.getKey());
                        for (Accumulator a : e.getValue()) {
                            d.put(a.getField(), a.getResult());
                        }
                        out.add(d);
                    }
                    results = out.iterator();
                }
                return results;
            }

            @Override
            public boolean hasNext() {
                return results().hasNext();
            }

            @Override
            public Document next() {
                return results().next();
            }
        });
    }
}
