package dev.headwater.mongo;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import org.h2.mvstore.MVMap;
import org.h2.mvstore.MVStore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import de.bwaldvogel.mongo.MongoCollection;
import de.bwaldvogel.mongo.backend.CollectionOptions;
import de.bwaldvogel.mongo.backend.CursorRegistry;
import de.bwaldvogel.mongo.backend.DatabaseResolver;
import de.bwaldvogel.mongo.backend.HeadwaterBridge;
import de.bwaldvogel.mongo.backend.Index;
import de.bwaldvogel.mongo.backend.IndexKey;
import de.bwaldvogel.mongo.backend.aggregation.Aggregation;
import de.bwaldvogel.mongo.backend.h2.H2Database;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.oplog.Oplog;
import io.netty.channel.Channel;

/**
 * The library's H2 database with Headwater's collections ({@link HeadwaterCollection}), real
 * non-unique indexes ({@link SecondaryIndex}), and its own {@code find}, {@code aggregate} and
 * {@code explain}: results stream to the client batch by batch through {@link StreamingCursor}s,
 * and each operation is bounded by an {@link OperationBudget}. Slow operations are logged with the
 * plan that served them.
 */
final class HeadwaterDatabase extends H2Database {

    private static final Logger log = LoggerFactory.getLogger(HeadwaterDatabase.class);
    private static final int DEFAULT_FIRST_BATCH = 101;
    private static final long SLOW_MS = 200;
    /** Open cursors nobody has read for this long are dropped, as MongoDB does after 10 minutes. */
    static final long CURSOR_IDLE_NANOS = TimeUnit.MINUTES.toNanos(10);

    private static final Map<Long, StreamingCursor> OPEN_CURSORS = new ConcurrentHashMap<>();

    HeadwaterDatabase(String databaseName, MVStore store, CursorRegistry cursorRegistry) {
        super(databaseName, store, cursorRegistry);
    }

    @Override
    protected MongoCollection<Object> openOrCreateCollection(String collectionName, CollectionOptions options) {
        MVStore store = ServerContext.store();
        String full = getFullCollectionNamespace(collectionName);
        MVMap<Object, Document> dataMap = store.openMap("databases." + full);
        MVMap<String, Object> metaMap = store.openMap("meta." + full);
        return new HeadwaterCollection(this, collectionName, options, dataMap, metaMap, cursorRegistry);
    }

    @Override
    protected Index<Object> openOrCreateSecondaryIndex(String collectionName, String indexName, List<IndexKey> keys,
                                                       boolean sparse) {
        String mapName = getFullCollectionNamespace(collectionName) + "._hwindex_" + indexName;
        log.info("secondary index {} {} on {}.{}", indexName, keys, getDatabaseName(), collectionName);
        return new SecondaryIndex(ServerContext.store(), mapName, indexName, keys, sparse, "_id");
    }

    @Override
    public Document handleCommand(Channel channel, String command, Document query, DatabaseResolver databaseResolver,
                                  Oplog oplog) {
        if (command.equalsIgnoreCase("find")) {
            MongoCollection<Object> c = resolveCollection((String) query.get(command), false);
            if (c instanceof HeadwaterCollection hc) {
                return find(hc, query);
            }
        } else if (command.equalsIgnoreCase("aggregate") && !writesOrWatches(query)) {
            MongoCollection<Object> c = resolveCollection(String.valueOf(query.get(command)), false);
            if (c instanceof HeadwaterCollection hc) {
                return aggregate(hc, query, databaseResolver, oplog);
            }
        } else if (command.equalsIgnoreCase("explain")) {
            return explain(query);
        }
        return super.handleCommand(channel, command, query, databaseResolver, oplog);
    }

    private static boolean writesOrWatches(Document query) {
        if (query.get("pipeline") instanceof List<?> stages) {
            for (Object stage : stages) {
                if (stage instanceof Document d
                    && (d.containsKey("$out") || d.containsKey("$merge") || d.containsKey("$changeStream"))) {
                    return true;
                }
            }
        }
        return false;
    }

    private Document find(HeadwaterCollection collection, Document query) {
        long started = System.nanoTime();
        Document filter = (Document) query.getOrDefault("filter", new Document());
        Document sort = (Document) query.get("sort");
        Document projection = (Document) query.get("projection");
        int skip = ((Number) query.getOrDefault("skip", 0)).intValue();
        int limit = ((Number) query.getOrDefault("limit", 0)).intValue();
        int batchSize = ((Number) query.getOrDefault("batchSize", 0)).intValue();
        boolean singleBatch = Boolean.TRUE.equals(query.get("singleBatch"));
        if (limit < 0) {
            limit = -limit;
            singleBatch = true;
        }
        OperationBudget budget = OperationBudget.forCommand(query.get("maxTimeMS"));
        QueryPlanner.Plan plan = collection.plan(filter, sort, limit > 0);
        Stream<Document> docs = collection.stream(filter, sort, skip, limit, projection, budget);
        Document response = respond(collection.getFullName(), docs.iterator(), batchSize, limit, singleBatch);
        logIfSlow("find", collection, plan, filter, started, budget);
        return response;
    }

    private Document aggregate(HeadwaterCollection collection, Document query, DatabaseResolver resolver,
                               Oplog oplog) {
        long started = System.nanoTime();
        List<Document> pipeline = Aggregation.parse(query.get("pipeline"));
        Document cursor = (Document) query.get("cursor");
        if (cursor == null && !Boolean.TRUE.equals(query.get("explain"))) {
            throw new de.bwaldvogel.mongo.exception.FailedToParseException(
                "The 'cursor' option is required, except for aggregate with the explain argument");
        }
        OperationBudget budget = OperationBudget.forCommand(query.get("maxTimeMS"));
        StreamingAggregation.Result result = StreamingAggregation.run(collection, pipeline, this, resolver, oplog, budget);
        if (Boolean.TRUE.equals(query.get("explain"))) {
            Document out = explainDocument(collection, result.plan());
            out.put("ok", 1.0);
            return out;
        }
        int batchSize = cursor == null ? 0 : ((Number) cursor.getOrDefault("batchSize", 0)).intValue();
        Document response = respond(collection.getFullName(), result.documents().iterator(), batchSize, 0, false);
        logIfSlow("aggregate", collection, result.plan(), pipeline, started, budget);
        return response;
    }

    /** First batch now (computing it runs the blocking stages); the rest on getMore. */
    private Document respond(String ns, Iterator<Document> docs, int batchSize, int limit, boolean singleBatch) {
        int first = batchSize > 0 ? batchSize : DEFAULT_FIRST_BATCH;
        if (limit > 0 && limit <= first) {
            first = limit;
        }
        List<Document> firstBatch = StreamingCursor.take(docs, singleBatch && batchSize <= 0 && limit <= 0 ? 0 : first);
        long cursorId = 0;
        if (!singleBatch && docs.hasNext()) {
            StreamingCursor cursor = new StreamingCursor(cursorRegistry.generateCursorId(), docs);
            cursorRegistry.add(cursor);
            OPEN_CURSORS.put(cursor.getId(), cursor);
            cursorId = cursor.getId();
        }
        return HeadwaterBridge.firstBatch(ns, firstBatch, cursorId);
    }

    /** Drops cursors idle for longer than {@link #CURSOR_IDLE_NANOS} or already closed by the library. */
    static void reapCursors(CursorRegistry registry) {
        for (StreamingCursor cursor : new ArrayList<>(OPEN_CURSORS.values())) {
            boolean gone;
            try {
                registry.getCursor(cursor.getId());
                gone = false;
            } catch (RuntimeException e) {
                gone = true; // exhausted or killed: the registry no longer has it
            }
            if (gone || cursor.idleNanos() > CURSOR_IDLE_NANOS) {
                OPEN_CURSORS.remove(cursor.getId());
                if (!gone) {
                    registry.remove(cursor.getId());
                    log.info("closed cursor {} idle for over 10 minutes", cursor.getId());
                }
            }
        }
    }

    private Document explain(Document query) {
        Document inner = (Document) query.get("explain");
        String verb = inner.keySet().iterator().next();
        MongoCollection<Object> c = resolveCollection(String.valueOf(inner.get(verb)), false);
        QueryPlanner.Plan plan = QueryPlanner.Plan.collectionScan();
        if (c instanceof HeadwaterCollection hc) {
            if (verb.equalsIgnoreCase("find")) {
                Object limit = inner.get("limit");
                plan = hc.plan((Document) inner.getOrDefault("filter", new Document()), (Document) inner.get("sort"),
                    limit instanceof Number n && n.intValue() != 0);
            } else if (verb.equalsIgnoreCase("count")) {
                plan = hc.plan((Document) inner.getOrDefault("query", new Document()), null);
            } else if (verb.equalsIgnoreCase("aggregate")) {
                plan = StreamingAggregation.run(hc, Aggregation.parse(inner.get("pipeline")), this, null, null,
                    OperationBudget.perOperation()).plan();
            }
        }
        Document out = explainDocument(c, plan);
        out.put("ok", 1.0);
        return out;
    }

    private Document explainDocument(MongoCollection<Object> collection, QueryPlanner.Plan plan) {
        Document winning;
        switch (plan.kind()) {
            case ID_LOOKUP -> winning = new Document("stage", "IDHACK");
            case INDEX_SCAN -> {
                Document keyPattern = new Document();
                List<String> fields = plan.index().fields();
                int[] dirs = plan.index().directions();
                for (int i = 0; i < fields.size(); i++) {
                    keyPattern.put(fields.get(i), dirs[i]);
                }
                Document ixscan = new Document("stage", "IXSCAN")
                    .append("indexName", plan.index().getName())
                    .append("keyPattern", keyPattern)
                    .append("direction", plan.reverse() ? "backward" : "forward")
                    .append("intervals", plan.intervals().size())
                    .append("exact", plan.exact());
                winning = new Document("stage", "FETCH").append("inputStage", ixscan);
            }
            default -> winning = new Document("stage", "COLLSCAN");
        }
        Document planner = new Document("namespace", collection == null ? getDatabaseName() : collection.getFullName())
            .append("winningPlan", winning)
            .append("summary", plan.summary());
        return new Document("queryPlanner", planner);
    }

    private static void logIfSlow(String op, HeadwaterCollection collection, QueryPlanner.Plan plan, Object query,
                                  long startedNanos, OperationBudget budget) {
        long ms = (System.nanoTime() - startedNanos) / 1_000_000;
        if (ms >= SLOW_MS) {
            log.info("slow {} ns={} plan=\"{}\" ms={} memory_kib={} query={}", op, collection.getFullName(),
                plan.summary(), ms, budget.used() >> 10, abbreviate(String.valueOf(query)));
        } else if (log.isDebugEnabled()) {
            log.debug("{} ns={} plan=\"{}\" ms={}", op, collection.getFullName(), plan.summary(), ms);
        }
    }

    private static String abbreviate(String s) {
        return s.length() <= 300 ? s : s.substring(0, 300) + "...";
    }
}
