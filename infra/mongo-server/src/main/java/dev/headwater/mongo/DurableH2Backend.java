package dev.headwater.mongo;

import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.locks.ReentrantLock;

import org.h2.mvstore.MVStore;

import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.bson.Document;
import io.netty.channel.Channel;

/**
 * H2Backend whose acknowledged writes are on disk.
 *
 * <p>Every client command (OP_MSG and OP_QUERY "$cmd" alike) reaches {@link #handleCommand}; the
 * reply is written to the socket only after it returns. So a command that may change data runs
 * under one lock and, before returning, commits the MVStore (writes a new chunk) and fsyncs the
 * file: acknowledged == durable, at the cost of one commit + fsync per write command (not per
 * document; an insert_many batch of 1000 costs one fsync).
 *
 * <p>Why a lock: the MVStore is opened with auto-commit disabled, so only this class commits. A
 * commit snapshots every map (documents and each index are separate maps); serialising the
 * writers guarantees that snapshot falls between two commands, never half-way through one (e.g. a
 * unique-index entry stored without its document). Read-only commands skip the lock.
 */
final class DurableH2Backend extends H2Backend {

    /** Commands (lower case) that never change stored data; everything else is treated as a write. */
    private static final Set<String> READ_ONLY_COMMANDS = Set.of(
        "find", "count", "distinct", "getmore", "killcursors", "listcollections", "listindexes",
        "listdatabases", "dbstats", "collstats", "explain", "hello", "ismaster", "buildinfo", "ping",
        "serverstatus", "whatsmyuri", "getlog", "hostinfo", "connectionstatus", "endsessions",
        "getcmdlineopts", "getfreemonitoringstatus", "getparameter", "getlasterror",
        "replsetgetstatus", "listcommands");

    private final MVStore store;
    private final ReentrantLock writeLock = new ReentrantLock();

    DurableH2Backend(MVStore store) {
        super(store);
        this.store = store;
    }

    @Override
    public Document handleCommand(Channel channel, String databaseName, String command, Document query) {
        if (isReadOnly(command, query)) {
            return super.handleCommand(channel, databaseName, command, query);
        }
        writeLock.lock();
        try {
            return super.handleCommand(channel, databaseName, command, query);
        } finally {
            // Also after a failed command: whatever it changed in memory is visible to readers now,
            // so it must be on disk too. If commit/sync throws, the client gets an error, not an ack.
            try {
                commitAndSync();
            } finally {
                writeLock.unlock();
            }
        }
    }

    private void commitAndSync() {
        if (store.hasUnsavedChanges()) {
            store.commit(); // with auto-commit disabled this writes the chunk synchronously
            store.sync();   // FileChannel.force(true)
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
        writeLock.lock();
        try {
            super.close(); // MVStore.close(): final commit + clean-shutdown marker
        } finally {
            writeLock.unlock();
        }
    }
}
