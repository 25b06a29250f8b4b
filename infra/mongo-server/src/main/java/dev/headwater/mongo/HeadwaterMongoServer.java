package dev.headwater.mongo;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.h2.mvstore.MVStore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;

/**
 * Headwater's local MongoDB-wire server: mongo-java-server + H2 MVStore file, durable per command.
 *
 * <pre>java -cp 'libs/*:headwater-mongo-server.jar' dev.headwater.mongo.HeadwaterMongoServer \
 *     --host 127.0.0.1 --port 27017 --data-file /path/to/mongo.mv.db</pre>
 */
public final class HeadwaterMongoServer {

    private static final Logger log = LoggerFactory.getLogger(HeadwaterMongoServer.class);

    /**
     * mongo-java-server reports 3.6 by default and its newest built-in constant (MONGO_5_0) still
     * says wire version 8; PyMongo 4.20 refuses servers below wire version 9 (MongoDB 4.4). Report
     * exactly 4.4 so drivers and mongosh assume as few newer features as possible.
     */
    private static final MongoVersion REPORTED_VERSION = new MongoVersion() {
        @Override
        public List<Integer> getVersionArray() {
            return List.of(4, 4, 0);
        }

        @Override
        public int getWireVersion() {
            return 9;
        }
    };

    private HeadwaterMongoServer() {
    }

    public static void main(String[] args) throws Exception {
        String host = "127.0.0.1";
        int port = 27017;
        Path dataFile = null;
        long opMemoryMib = 128;
        long opTimeLimitS = 110;
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (i + 1 >= args.length) {
                usage("missing value for " + arg);
            }
            switch (arg) {
                case "--host" -> host = args[++i];
                case "--port" -> port = Integer.parseInt(args[++i]);
                case "--data-file" -> dataFile = Path.of(args[++i]).toAbsolutePath();
                case "--op-memory-mib" -> opMemoryMib = Long.parseLong(args[++i]);
                case "--op-time-limit-s" -> opTimeLimitS = Long.parseLong(args[++i]);
                default -> usage("unknown argument " + arg);
            }
        }
        if (dataFile == null) {
            usage("--data-file is required");
        }
        if (opMemoryMib < 1) {
            usage("--op-memory-mib must be at least 1");
        }
        Files.createDirectories(dataFile.getParent());
        // Any Error that escapes a thread (netty's event loops, housekeeping) ends the process, so
        // the supervisor restarts a server that could otherwise linger alive but deaf.
        Thread.setDefaultUncaughtExceptionHandler((thread, e) -> {
            if (e instanceof Error) {
                die("fatal " + e + " in thread " + thread.getName(), e);
            } else {
                log.error("uncaught exception in thread {}", thread.getName(), e);
            }
        });

        // Auto-commit off: the default background commit (every ~1 s, or when the write buffer
        // fills) could persist a half-applied command and would ack before data is on disk.
        // DurableH2Backend commits + fsyncs itself after each write command instead.
        MVStore store = new MVStore.Builder()
            .fileName(dataFile.toString())
            .autoCommitDisabled()
            // Page cache (decoded documents and index pages): the default 16 MiB re-reads and
            // re-deserialises the hot hour of readings on every query.
            .cacheSize((int) Math.max(16, (Runtime.getRuntime().maxMemory() >> 20) / 4))
            .open();
        ServerContext.init(store, opMemoryMib << 20, opTimeLimitS * 1000);
        log.info("opening data file {} (per-operation memory budget {} MiB, time limit {} s, max heap {} MiB)",
            dataFile, opMemoryMib, opTimeLimitS, Runtime.getRuntime().maxMemory() >> 20);
        DurableH2Backend backend = new DurableH2Backend(store);
        backend.version(REPORTED_VERSION);

        MongoServer server = new MongoServer(backend);
        try {
            server.bind(host, port);
        } catch (Exception e) { // netty rethrows java.net.BindException unchecked-style
            log.error("cannot listen on {}:{}: {}", host, port, e.toString());
            server.shutdownNow(); // stops netty threads and closes the MVStore
            System.exit(1);
        }
        // SIGTERM/SIGINT: close client connections, let netty finish in-flight commands, then
        // MongoServer closes the backend (final commit, short compaction, clean-shutdown marker).
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            log.info("shutting down");
            server.shutdownNow();
            log.info("stopped; data file closed");
        }, "headwater-mongo-shutdown"));

        log.info("headwater mongo server listening on {}:{} data-file={} pid={}",
            host, port, dataFile, ProcessHandle.current().pid());
    }

    /** Logs why and ends the JVM at once (no shutdown hooks: they could block on a broken heap). */
    static void die(String why, Throwable cause) {
        try {
            System.err.println("headwater mongo server: " + why + "; exiting so the supervisor restarts it");
            log.error("{}; exiting so the supervisor restarts it", why, cause);
        } finally {
            Runtime.getRuntime().halt(70);
        }
    }

    private static void usage(String problem) {
        System.err.println(problem);
        System.err.println("usage: HeadwaterMongoServer [--host 127.0.0.1] [--port 27017] [--op-memory-mib 128] [--op-time-limit-s 110 (0: none)] --data-file PATH");
        System.exit(2);
    }
}
