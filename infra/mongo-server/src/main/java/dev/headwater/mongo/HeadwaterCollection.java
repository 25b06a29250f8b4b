package dev.headwater.mongo;

import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.List;
import java.util.PriorityQueue;
import java.util.Spliterator;
import java.util.Spliterators;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;

import org.h2.mvstore.MVMap;
import org.h2.mvstore.MVStore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import de.bwaldvogel.mongo.MongoDatabase;
import de.bwaldvogel.mongo.backend.CollectionOptions;
import de.bwaldvogel.mongo.backend.CursorRegistry;
import de.bwaldvogel.mongo.backend.DefaultQueryMatcher;
import de.bwaldvogel.mongo.backend.DocumentComparator;
import de.bwaldvogel.mongo.backend.HeadwaterBridge;
import de.bwaldvogel.mongo.backend.Index;
import de.bwaldvogel.mongo.backend.QueryParameters;
import de.bwaldvogel.mongo.backend.QueryResult;
import de.bwaldvogel.mongo.backend.h2.H2Collection;
import de.bwaldvogel.mongo.bson.Document;

/**
 * The library's H2 collection with a query path that uses {@link SecondaryIndex}es and streams:
 * documents are read from the index's key ranges (or the whole map) as they are consumed, never
 * collected up front; an unindexed sort holds only what it must and is charged to the operation's
 * {@link OperationBudget}. Reads take no collection lock: MVMap reads see a consistent snapshot
 * while writers (serialised by {@link DurableH2Backend}) go on.
 */
final class HeadwaterCollection extends H2Collection {

    private static final Logger log = LoggerFactory.getLogger(HeadwaterCollection.class);
    private static final int BUILD_COMMIT_EVERY = 20_000;

    private final MVMap<Object, Document> dataMap;
    private final DefaultQueryMatcher matcher = new DefaultQueryMatcher();

    HeadwaterCollection(MongoDatabase database, String collectionName, CollectionOptions options,
                        MVMap<Object, Document> dataMap, MVMap<String, Object> metaMap,
                        CursorRegistry cursorRegistry) {
        super(database, collectionName, options, dataMap, metaMap, cursorRegistry);
        this.dataMap = dataMap;
    }

    List<SecondaryIndex> secondaryIndexes() {
        List<SecondaryIndex> result = new ArrayList<>();
        for (Index<Object> index : getIndexes()) {
            if (index instanceof SecondaryIndex s) {
                result.add(s);
            }
        }
        return result;
    }

    QueryPlanner.Plan plan(Document query, Document orderBy) {
        return plan(query, orderBy, false);
    }

    QueryPlanner.Plan plan(Document query, Document orderBy, boolean limited) {
        if (isNaturalDescending(orderBy)) {
            return QueryPlanner.Plan.collectionScan();
        }
        try {
            return QueryPlanner.plan(query, orderBy, secondaryIndexes(), limited);
        } catch (RuntimeException e) {
            // A full scan answers every query correctly; a planning bug must not fail the query.
            log.warn("planning failed on {} for {}; scanning the collection", getFullName(), query, e);
            return QueryPlanner.Plan.collectionScan();
        }
    }

    /** The documents a plan reads (a superset of the matches), lazily. */
    Stream<Document> candidates(QueryPlanner.Plan plan, Document orderBy) {
        switch (plan.kind()) {
            case ID_LOOKUP:
                return plan.ids().stream()
                    .map(id -> dataMap.get(de.bwaldvogel.mongo.backend.Missing.ofNullable(id)))
                    .filter(d -> d != null);
            case INDEX_SCAN: {
                List<QueryPlanner.Interval> intervals = new ArrayList<>(plan.intervals());
                if (plan.reverse()) {
                    Collections.reverse(intervals);
                }
                int positionAt = plan.index().fields().size();
                SecondaryIndex index = plan.index();
                boolean reverse = plan.reverse();
                // Not Stream.flatMap: read through an iterator (as cursors do), flatMap buffers each
                // inner stream whole, i.e. every key of an interval.
                Iterator<QueryPlanner.Interval> each = intervals.iterator();
                Iterator<Object[]> keys = new Iterator<>() {
                    private Iterator<Object[]> current = Collections.emptyIterator();

                    @Override
                    public boolean hasNext() {
                        while (!current.hasNext() && each.hasNext()) {
                            QueryPlanner.Interval iv = each.next();
                            current = index.scan(iv.low(), iv.high(), reverse);
                        }
                        return current.hasNext();
                    }

                    @Override
                    public Object[] next() {
                        if (!hasNext()) {
                            throw new java.util.NoSuchElementException();
                        }
                        return current.next();
                    }
                };
                return asStream(keys)
                    .map(key -> dataMap.get(key[positionAt]))
                    .filter(d -> d != null); // deleted after the index snapshot was taken
            }
            default:
                if (isNaturalDescending(orderBy)) {
                    Object last = dataMap.lastKey();
                    if (last == null) {
                        return Stream.empty();
                    }
                    return asStream(dataMap.keyIteratorReverse(last)).map(dataMap::get).filter(d -> d != null);
                }
                return dataMap.values().stream();
        }
    }

    /** Matching documents, sorted, skipped, limited and projected, read lazily. */
    Stream<Document> stream(Document query, Document orderBy, int skip, int limit, Document projection,
                            OperationBudget budget) {
        Document filter = query == null ? new Document() : query;
        QueryPlanner.Plan plan = plan(filter, orderBy, limit > 0);
        Stream<Document> docs = candidates(plan, orderBy).filter(d -> matcher.matches(d, filter));
        Comparator<Document> comparator = plan.providesSort() ? null : deriveComparator(orderBy);
        if (plan.tieSort()) {
            docs = tieSorted(docs, orderBy, budget);
        }
        if (comparator != null) {
            docs = sorted(docs, comparator, limit > 0 ? (long) skip + limit : -1, budget, "sort");
        }
        if (skip > 0) {
            docs = docs.skip(skip);
        }
        if (limit > 0) {
            docs = docs.limit(limit);
        }
        if (projection != null && !projection.isEmpty()) {
            String idField = getIdField();
            docs = docs.map(d -> HeadwaterBridge.project(projection, idField, d));
        }
        return docs;
    }

    /**
     * A sort that holds at most {@code keep} documents (a top-k heap) when a limit is known, else
     * every input document, charged to the budget either way.
     */
    static Stream<Document> sorted(Stream<Document> input, Comparator<Document> comparator, long keep,
                                   OperationBudget budget, String stage) {
        return StreamSupport.stream(() -> {
            List<Document> out;
            if (keep > 0 && keep < Integer.MAX_VALUE) {
                PriorityQueue<Document> heap = new PriorityQueue<>(comparator.reversed());
                Iterator<Document> it = input.iterator();
                while (it.hasNext()) {
                    Document d = it.next();
                    budget.tick();
                    if (heap.size() < keep) {
                        budget.charge(OperationBudget.estimate(d), "$" + stage);
                        heap.add(d);
                    } else if (comparator.compare(d, heap.peek()) < 0) {
                        heap.poll();
                        heap.add(d);
                    }
                }
                out = new ArrayList<>(heap);
            } else {
                out = new ArrayList<>();
                Iterator<Document> it = input.iterator();
                while (it.hasNext()) {
                    Document d = it.next();
                    budget.tick();
                    budget.charge(OperationBudget.estimate(d) + 8, "$" + stage + " (no index provides this order)");
                    out.add(d);
                }
            }
            out.sort(comparator);
            return out.spliterator();
        }, Spliterator.ORDERED, false);
    }

    /**
     * Input in the order of every sort key but a trailing {@code _id}: sorts each run of documents
     * whose leading sort values are equal by the whole sort (runs are small; each is charged).
     */
    static Stream<Document> tieSorted(Stream<Document> input, Document orderBy, OperationBudget budget) {
        Document leading = new Document(orderBy);
        leading.remove("_id");
        Comparator<Document> lead = deriveComparator(leading);
        Comparator<Document> full = deriveComparator(orderBy);
        Iterator<Document> it = input.iterator();
        return asStream(new Iterator<Document>() {
            private final List<Document> run = new ArrayList<>();
            private Iterator<Document> out = Collections.emptyIterator();
            private Document pending;
            private long held;

            @Override
            public boolean hasNext() {
                if (out.hasNext()) {
                    return true;
                }
                run.clear();
                budget.release(held);
                held = 0;
                if (pending == null && it.hasNext()) {
                    pending = it.next();
                }
                if (pending == null) {
                    return false;
                }
                run.add(pending);
                pending = null;
                while (it.hasNext()) {
                    Document d = it.next();
                    if (lead.compare(d, run.get(0)) != 0) {
                        pending = d;
                        break;
                    }
                    long size = OperationBudget.estimate(d);
                    held += size;
                    budget.charge(size, "$sort");
                    run.add(d);
                }
                run.sort(full);
                out = new ArrayList<>(run).iterator();
                return true;
            }

            @Override
            public Document next() {
                if (!hasNext()) {
                    throw new java.util.NoSuchElementException();
                }
                return out.next();
            }
        });
    }

    static DocumentComparator comparator(Document orderBy) {
        return deriveComparator(orderBy);
    }

    static <T> Stream<T> asStream(Iterator<T> iterator) {
        return StreamSupport.stream(Spliterators.spliteratorUnknownSize(iterator, Spliterator.ORDERED), false);
    }

    /** Counts matches; from index keys alone when the plan is exact. */
    long countMatches(Document query) {
        Document filter = query == null ? new Document() : query;
        if (filter.isEmpty()) {
            return dataMap.sizeAsLong();
        }
        QueryPlanner.Plan plan = plan(filter, null);
        if (plan.kind() == QueryPlanner.Kind.INDEX_SCAN && plan.exact()) {
            long n = 0;
            for (QueryPlanner.Interval iv : plan.intervals()) {
                Iterator<Object[]> it = plan.index().scan(iv.low(), iv.high(), false);
                while (it.hasNext()) {
                    it.next();
                    n++;
                }
            }
            return n;
        }
        return candidates(plan, null).filter(d -> matcher.matches(d, filter)).count();
    }

    // --- the library's entry points, rerouted ---

    @Override
    protected QueryResult queryDocuments(Document query, Document orderBy, int numberToSkip, int limit,
                                         int batchSize, Document fieldSelector) {
        // Internal callers (update, delete, distinct, count, $lookup) iterate the whole result once;
        // give them every match, read lazily (the library would list them all first).
        Iterable<Document> all = () -> stream(query, orderBy, numberToSkip, limit, fieldSelector,
            OperationBudget.perOperation()).iterator();
        return new QueryResult(all);
    }

    @Override
    public QueryResult handleQuery(QueryParameters queryParameters) {
        // Not synchronized (the library's is): a long read must not block this collection's writers.
        Document selector = queryParameters.getQuerySelector();
        Document query = selector;
        Document orderBy = null;
        // The library's own callers (findAndModify) wrap the filter as {query, orderby}; legacy
        // OP_QUERY clients as {$query, $orderby}. Same reading as the library's handleQuery.
        if (selector.containsKey("query")) {
            query = (Document) selector.get("query");
            orderBy = (Document) selector.get("orderby");
        } else if (selector.containsKey("$query")) {
            query = (Document) selector.get("$query");
            orderBy = (Document) selector.get("$orderby");
        }
        return queryDocuments(query, orderBy, queryParameters.getNumberToSkip(), queryParameters.getLimit(),
            queryParameters.getBatchSize(), queryParameters.getProjection());
    }

    @Override
    public int count(Document query, int skip, int limit) {
        if (skip <= 0 && limit <= 0) {
            return (int) Math.min(Integer.MAX_VALUE, countMatches(query));
        }
        long n = stream(query, null, Math.max(skip, 0), Math.max(limit, 0), null, OperationBudget.perOperation())
            .count();
        return (int) n;
    }

    @Override
    public synchronized void addIndex(Index<Object> index) {
        if (index instanceof SecondaryIndex s && getIndexes().stream().noneMatch(i -> i.getName().equals(s.getName()))) {
            build(s);
        }
        super.addIndex(index);
    }

    /**
     * Builds {@code index} over the stored documents unless it is known complete. Commits every
     * {@link #BUILD_COMMIT_EVERY} entries so a build over millions of documents never holds them all
     * as unsaved pages; the state map says "building" until the end, so a build cut short by a crash
     * starts again from scratch at the next open.
     */
    private void build(SecondaryIndex index) {
        long total = dataMap.sizeAsLong();
        if (index.isReady() && !(index.isEmpty() && total > 0)) {
            return;
        }
        MVStore store = ServerContext.store();
        index.clear();
        index.markBuilding();
        if (total == 0) {
            index.markReady();
            return;
        }
        long started = System.nanoTime();
        log.info("building index {} on {}: {} documents", index.getName(), getFullName(), total);
        long done = 0;
        long nextReport = Math.max(total / 10, 1);
        Iterator<Object> keys = dataMap.keyIterator(null);
        while (keys.hasNext()) {
            Object position = keys.next();
            Document document = dataMap.get(position);
            if (document != null) {
                index.add(document, position, this);
            }
            done++;
            if (done % BUILD_COMMIT_EVERY == 0) {
                store.commit();
            }
            if (done >= nextReport) {
                log.info("building index {} on {}: {}/{} documents ({}%)", index.getName(), getFullName(), done,
                    total, done * 100 / total);
                nextReport += Math.max(total / 10, 1);
            }
        }
        index.markReady();
        store.commit();
        log.info("built index {} on {}: {} documents, {} entries in {} ms", index.getName(), getFullName(), done,
            index.getCount(), (System.nanoTime() - started) / 1_000_000);
    }
}
