package dev.headwater.mongo;

import org.h2.mvstore.MVStore;

/**
 * What the server's classes share and must know while the library's constructors run (H2Backend and
 * H2Database open databases, collections and indexes from inside their constructors, before a
 * subclass's own fields are assigned). Set once by {@link HeadwaterMongoServer#main}.
 */
final class ServerContext {

    private static volatile MVStore store;
    private static volatile long operationMemoryBytes = 128L << 20;
    private static volatile long operationTimeLimitMs = 0;

    private ServerContext() {
    }

    static void init(MVStore mvStore, long opMemoryBytes, long opTimeLimitMs) {
        store = mvStore;
        operationMemoryBytes = opMemoryBytes;
        operationTimeLimitMs = opTimeLimitMs;
    }

    static long operationTimeLimitMs() {
        return operationTimeLimitMs;
    }

    static MVStore store() {
        MVStore s = store;
        if (s == null) {
            throw new IllegalStateException("ServerContext.init was not called");
        }
        return s;
    }

    static long operationMemoryBytes() {
        return operationMemoryBytes;
    }
}
