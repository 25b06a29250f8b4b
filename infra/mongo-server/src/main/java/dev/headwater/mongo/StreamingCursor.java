package dev.headwater.mongo;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;

import de.bwaldvogel.mongo.backend.AbstractCursor;
import de.bwaldvogel.mongo.bson.Document;

/**
 * A cursor that reads its documents from the store as the client asks for them (getMore), instead
 * of the library's in-memory list of every match. A batch holds at most the requested number of
 * documents, and without one at most {@link #DEFAULT_BATCH} documents or about 8 MiB.
 */
final class StreamingCursor extends AbstractCursor {

    static final int DEFAULT_BATCH = 1000;
    private static final long MAX_BATCH_BYTES = 8L << 20;

    private final Iterator<Document> documents;
    private volatile long lastUsedNanos = System.nanoTime();

    StreamingCursor(long id, Iterator<Document> documents) {
        super(id);
        this.documents = documents;
    }

    /** Takes up to {@code limit} documents (0: the default batch) from {@code documents}. */
    static List<Document> take(Iterator<Document> documents, int limit) {
        int max = limit > 0 ? limit : DEFAULT_BATCH;
        List<Document> batch = new ArrayList<>();
        long bytes = 0;
        while (batch.size() < max && documents.hasNext() && (limit > 0 || bytes < MAX_BATCH_BYTES)) {
            Document d = documents.next();
            batch.add(d);
            if (limit <= 0) {
                bytes += OperationBudget.estimate(d);
            }
        }
        return batch;
    }

    @Override
    public synchronized boolean isEmpty() {
        return !documents.hasNext();
    }

    @Override
    public synchronized List<Document> takeDocuments(int numberToReturn) {
        lastUsedNanos = System.nanoTime();
        return take(documents, numberToReturn);
    }

    long idleNanos() {
        return System.nanoTime() - lastUsedNanos;
    }
}
