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

    static final int MAX_TIME_EXPIRED = 50;
    private static final int CHECK_TIME_EVERY = 4096;

    private final long limitBytes;
    private long usedBytes;
    /** System.nanoTime() after which the operation fails; Long.MAX_VALUE: never. */
    private final long deadlineNanos;
    private final long timeLimitMs;
    private int sinceTimeCheck;

    OperationBudget(long limitBytes) {
        this(limitBytes, 0);
    }

    /** {@code timeLimitMs} 0: no time limit. */
    OperationBudget(long limitBytes, long timeLimitMs) {
        this.limitBytes = limitBytes;
        this.timeLimitMs = timeLimitMs;
        this.deadlineNanos = timeLimitMs > 0 ? System.nanoTime() + timeLimitMs * 1_000_000 : Long.MAX_VALUE;
    }

    static OperationBudget perOperation() {
        return new OperationBudget(ServerContext.operationMemoryBytes());
    }

    /**
     * A budget with the server's time limit for one command, or the client's {@code maxTimeMS} when
     * that is shorter.
     */
    static OperationBudget forCommand(Object maxTimeMs) {
        long limit = ServerContext.operationTimeLimitMs();
        if (maxTimeMs instanceof Number n && n.longValue() > 0) {
            limit = limit > 0 ? Math.min(limit, n.longValue()) : n.longValue();
        }
        return new OperationBudget(ServerContext.operationMemoryBytes(), limit);
    }

    /** Called once per document a blocking stage reads; fails the operation past its time limit. */
    void tick() {
        if (++sinceTimeCheck < CHECK_TIME_EVERY) {
            return;
        }
        sinceTimeCheck = 0;
        if (System.nanoTime() > deadlineNanos) {
            throw new MongoServerError(MAX_TIME_EXPIRED, "MaxTimeMSExpired", String.format(
                "operation exceeded its time limit of %d ms (maxTimeMS, or the embedded server's "
                    + "--op-time-limit-s / MONGO_OP_TIME_LIMIT_S); narrow the query: $match on an indexed "
                    + "field first (e.g. a time range on ts)", timeLimitMs));
        }
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
