package dev.headwater.mongo;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

import org.h2.mvstore.MVMap;
import org.h2.mvstore.MVStore;

import de.bwaldvogel.mongo.MongoCollection;
import de.bwaldvogel.mongo.backend.Index;
import de.bwaldvogel.mongo.backend.IndexKey;
import de.bwaldvogel.mongo.backend.Missing;
import de.bwaldvogel.mongo.backend.Utils;
import de.bwaldvogel.mongo.bson.Document;

/**
 * A non-unique (single or compound) index stored in its own MVMap next to the documents, so it is
 * committed and fsynced with them by {@link DurableH2Backend}: key = indexed values + position,
 * value = a marker. An array value makes one entry per element (MongoDB's multikey index) and marks
 * the index multikey; the planner does not use a multikey index (its bounds would need MongoDB's
 * array semantics), so such an index is maintained but queries on it scan.
 *
 * <p>The library's query path is not used ({@link #canHandle} is false): {@link QueryPlanner}
 * chooses among these indexes and {@link HeadwaterCollection} scans them.
 */
final class SecondaryIndex extends Index<Object> {

    private static final Boolean PRESENT = Boolean.TRUE;

    private final MVStore store;
    private final MVMap<Object[], Boolean> entries;
    private final MVMap<String, Object> state;
    private final String mapName;
    private final String idField;
    private final int[] directions;
    private volatile boolean multikey;

    SecondaryIndex(MVStore store, String mapName, String indexName, List<IndexKey> keys, boolean sparse,
                   String idField) {
        super(indexName, keys, sparse);
        this.store = store;
        this.mapName = mapName;
        this.idField = idField;
        this.directions = keys.stream().mapToInt(k -> k.isAscending() ? 1 : -1).toArray();
        this.entries = store.openMap(mapName, new MVMap.Builder<Object[], Boolean>()
            .keyType(new IndexKeyType(directions)));
        this.state = IndexState.map(store);
        this.multikey = Boolean.TRUE.equals(state.get(IndexState.multikeyKey(mapName)));
    }

    MVMap<Object[], Boolean> entries() {
        return entries;
    }

    int[] directions() {
        return directions.clone();
    }

    List<String> fields() {
        return keys();
    }

    boolean sparse() {
        return isSparse();
    }

    boolean isMultikey() {
        return multikey;
    }

    /** True once every document of the collection is in the index (set after a build). */
    boolean isReady() {
        return IndexState.READY.equals(state.get(mapName));
    }

    void markBuilding() {
        state.put(mapName, IndexState.BUILDING);
    }

    void markReady() {
        state.put(mapName, IndexState.READY);
    }

    void clear() {
        entries.clear();
        multikey = false;
        state.remove(IndexState.multikeyKey(mapName));
    }

    private Object position(Document document) {
        return Missing.ofNullable(document.get(idField));
    }

    /** One key tuple per index entry of {@code document} (several for array values). */
    private List<Object[]> keyTuples(Document document, Object position) {
        List<List<Object>> perField = new ArrayList<>();
        boolean array = false;
        for (String field : keys()) {
            Object value = Utils.getSubdocumentValueCollectionAware(document, field);
            if (value instanceof Collection<?> values && !values.isEmpty()) {
                array = true;
                Set<Object> distinct = new LinkedHashSet<>(values);
                perField.add(new ArrayList<>(distinct));
            } else if (value instanceof Collection<?>) {
                array = true;
                perField.add(List.of(Missing.getInstance()));
            } else {
                perField.add(java.util.Collections.singletonList(value));
            }
        }
        if (array && !multikey) {
            multikey = true;
            state.put(IndexState.multikeyKey(mapName), Boolean.TRUE);
        }
        List<Object[]> tuples = new ArrayList<>();
        expand(perField, 0, new Object[perField.size() + 1], position, tuples);
        return tuples;
    }

    private static void expand(List<List<Object>> perField, int i, Object[] prefix, Object position,
                               List<Object[]> out) {
        if (i == perField.size()) {
            Object[] key = prefix.clone();
            key[i] = position;
            for (int j = 0; j < i; j++) {
                if (key[j] instanceof Missing) {
                    key[j] = null;
                }
            }
            out.add(key);
            return;
        }
        for (Object value : perField.get(i)) {
            prefix[i] = value;
            expand(perField, i + 1, prefix, position, out);
        }
    }

    private boolean skipForSparse(Document document) {
        if (!isSparse()) {
            return false;
        }
        for (String field : keys()) {
            if (!(Utils.getSubdocumentValue(document, field) instanceof Missing)) {
                return false;
            }
        }
        return true;
    }

    @Override
    public Object getPosition(Document document) {
        return null; // non-unique: the _id index answers where a document is
    }

    @Override
    public void checkAdd(Document document, MongoCollection<Object> collection) {
        // non-unique: nothing can conflict
    }

    @Override
    public void add(Document document, Object position, MongoCollection<Object> collection) {
        if (skipForSparse(document)) {
            return;
        }
        for (Object[] key : keyTuples(document, position)) {
            entries.put(key, PRESENT);
        }
    }

    @Override
    public Object remove(Document document) {
        Object position = position(document);
        if (!skipForSparse(document)) {
            for (Object[] key : keyTuples(document, position)) {
                entries.remove(key);
            }
        }
        return position;
    }

    @Override
    public boolean canHandle(Document query) {
        return false;
    }

    @Override
    public Iterable<Object> getPositions(Document query) {
        throw new UnsupportedOperationException("planned by QueryPlanner");
    }

    @Override
    public long getCount() {
        return entries.sizeAsLong();
    }

    @Override
    public boolean isEmpty() {
        return entries.isEmpty();
    }

    @Override
    public long getDataSize() {
        return getCount();
    }

    @Override
    public void checkUpdate(Document oldDocument, Document newDocument, MongoCollection<Object> collection) {
        // non-unique: nothing can conflict
    }

    @Override
    public void updateInPlace(Document oldDocument, Document newDocument, Object position,
                              MongoCollection<Object> collection) {
        if (nullAwareEqualsKeys(oldDocument, newDocument)) {
            return;
        }
        if (!skipForSparse(oldDocument)) {
            for (Object[] key : keyTuples(oldDocument, position)) {
                entries.remove(key);
            }
        }
        add(newDocument, position, collection);
    }

    @Override
    public void drop() {
        store.removeMap(entries);
        state.remove(mapName);
        state.remove(IndexState.multikeyKey(mapName));
    }

    /** Positions of the entries in [low, high] (key order, or reversed), lazily. */
    Iterator<Object[]> scan(Object[] low, Object[] high, boolean reverse) {
        IndexKeyType type = new IndexKeyType(directions);
        Iterator<Object[]> keys = reverse ? entries.keyIteratorReverse(high) : entries.keyIterator(low);
        return new Iterator<>() {
            private Object[] next = advance();

            private Object[] advance() {
                if (!keys.hasNext()) {
                    return null;
                }
                Object[] key = keys.next();
                if (reverse ? type.compare(key, low) < 0 : type.compare(key, high) > 0) {
                    return null;
                }
                return key;
            }

            @Override
            public boolean hasNext() {
                return next != null;
            }

            @Override
            public Object[] next() {
                Object[] result = next;
                if (result == null) {
                    throw new java.util.NoSuchElementException();
                }
                next = advance();
                return result;
            }
        };
    }
}
