package dev.headwater.mongo;

import java.util.Collection;
import java.util.Map;

import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.exception.MongoServerError;

/**
 * The memory one operation may hold in blocking stages (sorts without an index, $group tables,
 * $facet/$sample inputs). Past it the operation fails with MongoDB's own error code for the case
 * (292, QueryExceededMemoryLimitNoDiskUseAllowed) and a message naming the limit and how to narrow
 * the query; nothing else is affected. Sizes are estimates of the Java heap the values take.
 */
final class OperationBudget {

    static final int EXCEEDED_MEMORY_LIMIT = 292;

    private final long limitBytes;
    private long usedBytes;

    OperationBudget(long limitBytes) {
        this.limitBytes = limitBytes;
    }

    static OperationBudget perOperation() {
        return new OperationBudget(ServerContext.operationMemoryBytes());
    }

    long used() {
        return usedBytes;
    }

    void charge(long bytes, String stage) {
        usedBytes += bytes;
        if (usedBytes > limitBytes) {
            throw new MongoServerError(EXCEEDED_MEMORY_LIMIT, "QueryExceededMemoryLimitNoDiskUseAllowed",
                String.format("%s exceeded the per-operation memory limit of %d MiB (--op-memory-mib, "
                        + "MONGO_OP_MEMORY_MIB) of the embedded server; narrow the query: $match on an indexed "
                        + "field first (e.g. a time range on ts), group by fewer distinct keys, or add $limit "
                        + "after $sort", stage, limitBytes >> 20));
        }
    }

    void release(long bytes) {
        usedBytes = Math.max(0, usedBytes - bytes);
    }

    /** Rough heap size of a BSON value as the server holds it. */
    static long estimate(Object value) {
        if (value == null) {
            return 8;
        } else if (value instanceof String s) {
            return 40 + 2L * s.length();
        } else if (value instanceof Document d) {
            long size = 64;
            for (Map.Entry<String, Object> e : d.entrySet()) {
                size += 48 + 2L * e.getKey().length() + estimate(e.getValue());
            }
            return size;
        } else if (value instanceof Collection<?> c) {
            long size = 40;
            for (Object o : c) {
                size += 8 + estimate(o);
            }
            return size;
        } else if (value instanceof byte[] b) {
            return 16 + b.length;
        }
        return 24;
    }
}
