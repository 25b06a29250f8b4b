package dev.headwater.mongo;

import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.ReentrantLock;

import org.h2.mvstore.MVStore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import de.bwaldvogel.mongo.MongoDatabase;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.exception.MongoServerError;
import io.netty.channel.Channel;

/**
 * H2Backend whose acknowledged writes are on disk.
 *
 * <p>Every client command (OP_MSG and OP_QUERY "$cmd" alike) reaches {@link #handleCommand}, and
 * the reply is written to the socket only after it returns. A command that may change data runs
 * under {@code writeLock}; before it returns, the MVStore is committed (a new chunk is written) and
 * the file is fsynced, so acknowledged == durable. One commit + fsync per write command, not per
 * document (an insert_many batch of 1000 costs one fsync). Group commit: while one thread fsyncs,
 * other writers keep executing; the next commit covers all of them at once.
 *
 * <p>Why the lock: the MVStore runs with auto-commit disabled, so only this class commits. A commit
 * snapshots every map (documents and each index are separate maps); taking it under the lock that
 * serialises writers guarantees the snapshot falls between two commands, never half-way through one
 * (e.g. a unique-index entry stored without its document). Read-only commands skip the lock.
 *
 * <p>Why housekeeping: with auto-commit disabled MVStore's background thread (which normally
 * compacts) does not run, and one small chunk per command leaves many sparsely used chunks, so the
 * file and every commit grow. A scheduled task rewrites live pages out of sparse chunks, under the
 * same lock and commit path as a write command.
 */
final class DurableH2Backend extends H2Backend {

    private static final Logger log = LoggerFactory.getLogger(DurableH2Backend.class);

    /** Commands (lower case) that never change stored data; everything else is treated as a write. */
    private static final Set<String> READ_ONLY_COMMANDS = Set.of(
        "find", "count", "distinct", "getmore", "killcursors", "listcollections", "listindexes",
        "listdatabases", "dbstats", "collstats", "explain", "hello", "ismaster", "buildinfo", "ping",
        "serverstatus", "whatsmyuri", "getlog", "hostinfo", "connectionstatus", "endsessions",
        "getcmdlineopts", "getfreemonitoringstatus", "getparameter", "getlasterror",
        "replsetgetstatus", "listcommands");

    /** Housekeeping: every 10 s rewrite up to 2 MiB of pages while chunks are < 50 % live. */
    private static final int COMPACT_EVERY_MS = 10_000;
    private static final int COMPACT_TARGET_FILL_RATE = 50;
    private static final int COMPACT_WRITE_LIMIT = 2 << 20;
    /** Compaction time allowed at clean shutdown (this is when the file shrinks). */
    private static final int CLOSE_COMPACT_MS = 3_000;

    private final MVStore store;
    /** Serialises write commands and commits. */
    private final ReentrantLock writeLock = new ReentrantLock();
    /** One committer (commit + fsync) at a time. */
    private final Object syncMonitor = new Object();
    /** Write commands executed so far; guarded by writeLock. */
    private long executed;
    /** Write commands known to be on disk; guarded by syncMonitor. */
    private long durable;
    private final ScheduledExecutorService housekeeping =
        Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "headwater-mvstore-housekeeping");
            t.setDaemon(true);
            return t;
        });

    DurableH2Backend(MVStore store) {
        super(store);
        this.store = store;
        housekeeping.scheduleWithFixedDelay(this::compact, COMPACT_EVERY_MS, COMPACT_EVERY_MS,
            TimeUnit.MILLISECONDS);
        housekeeping.scheduleWithFixedDelay(() -> HeadwaterDatabase.reapCursors(getCursorRegistry()), 60, 60,
            TimeUnit.SECONDS);
    }

    @Override
    protected MongoDatabase openOrCreateDatabase(String databaseName) {
        // Called from H2Backend's constructor too, before this class's fields are set: the store
        // comes from ServerContext.
        return new HeadwaterDatabase(databaseName, ServerContext.store(), getCursorRegistry());
    }

    @Override
    public Document handleCommand(Channel channel, String databaseName, String command, Document query) {
        try {
            return handleDurably(channel, databaseName, command, query);
        } catch (StackOverflowError e) {
            // A pathologically nested query or document: the client's error, not the server's end.
            throw new MongoServerError(2, "BadValue", "the " + command + " command is nested too deeply to evaluate");
        } catch (VirtualMachineError e) {
            // OutOfMemoryError or an internal JVM error: the heap or the JVM can no longer be trusted.
            // End the process so the supervisor restarts it (a JVM that keeps running after an OOM
            // stops accepting connections). Acknowledged writes are already on disk.
            HeadwaterMongoServer.die("fatal " + e + " in command " + command, e);
            throw e;
        }
    }

    private Document handleDurably(Channel channel, String databaseName, String command, Document query) {
        if (isReadOnly(command, query)) {
            return super.handleCommand(channel, databaseName, command, query);
        }
        long seq;
        writeLock.lock();
        try {
            return super.handleCommand(channel, databaseName, command, query);
        } finally {
            seq = ++executed;
            writeLock.unlock();
            // Also after a failed command: whatever it changed in memory is visible to readers,
            // so it must reach the disk too. If commit/fsync throws, the client gets an error.
            awaitDurable(seq);
        }
    }

    /** Returns once write command number {@code seq} is committed and fsynced. */
    private void awaitDurable(long seq) {
        synchronized (syncMonitor) {
            if (durable >= seq) {
                return; // a group commit by another thread covered it
            }
            long upTo;
            boolean committed = false;
            writeLock.lock();
            try {
                upTo = executed;
                if (store.hasUnsavedChanges()) {
                    store.commit(); // auto-commit disabled: writes the chunk synchronously
                    committed = true;
                }
            } finally {
                writeLock.unlock();
            }
            if (committed) {
                store.sync(); // FileChannel.force(true), outside writeLock so writers go on
            }
            durable = upTo;
        }
    }

    private void compact() {
        try {
            long seq;
            writeLock.lock();
            try {
                if (!store.compact(COMPACT_TARGET_FILL_RATE, COMPACT_WRITE_LIMIT)) {
                    return;
                }
                seq = ++executed;
            } finally {
                writeLock.unlock();
            }
            awaitDurable(seq);
        } catch (RuntimeException e) {
            log.warn("MVStore compaction failed", e);
        }
    }

    private static boolean isReadOnly(String command, Document query) {
        String name = command.toLowerCase(Locale.ROOT);
        if (name.equals("aggregate")) {
            return !writesOutput(query.get("pipeline"));
        }
        return READ_ONLY_COMMANDS.contains(name);
    }

    /** An aggregate with $out or $merge writes a collection. */
    private static boolean writesOutput(Object pipeline) {
        if (pipeline instanceof List<?> stages) {
            for (Object stage : stages) {
                if (stage instanceof Document d && (d.containsKey("$out") || d.containsKey("$merge"))) {
                    return true;
                }
            }
        }
        return false;
    }

    @Override
    public void close() {
        housekeeping.shutdownNow();
        synchronized (syncMonitor) {
            writeLock.lock();
            try {
                // Final commit, up to CLOSE_COMPACT_MS of compaction that also truncates the file,
                // clean-shutdown marker. H2Backend.close() then finds the store already closed.
                store.close(CLOSE_COMPACT_MS);
                super.close();
            } finally {
                writeLock.unlock();
            }
        }
    }
}
