"""The embedded MongoDB-wire server the stack runs when `MONGO_URI` is unset.

It is mongo-java-server on a durable H2 MVStore file (infra/mongo-server); FerretDB v1 cannot be
fetched from the Go module proxy here (see infra/mongo-server/README.md).
"""

from __future__ import annotations

from pathlib import Path

from headwater.settings import Settings

MAIN_CLASS = "dev.headwater.mongo.HeadwaterMongoServer"
JAR_NAME = "headwater-mongo-server.jar"


def build_dir(settings: Settings) -> Path:
    return settings.stack.cache_dir / "mongo-server"


def is_built(settings: Settings) -> bool:
    return (build_dir(settings) / JAR_NAME).is_file()


def data_file(settings: Settings) -> Path:
    return settings.stack.data_dir / "mongo" / "headwater.mv.db"


def server_command(settings: Settings) -> list[str]:
    """argv of the server process."""
    heap = settings.mongo.heap
    classpath = f"{build_dir(settings) / JAR_NAME}:{build_dir(settings) / 'libs'}/*"
    return [
        "java",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        # An OutOfMemoryError can leave the server alive but wedged (a thread dead, a lock held):
        # end the JVM instead, so supervisord restarts it on the durable data file.
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        "-cp",
        classpath,
        MAIN_CLASS,
        "--host",
        settings.mongo.host,
        "--port",
        str(settings.mongo.port),
        "--data-file",
        str(data_file(settings)),
        "--op-memory-mib",
        str(settings.mongo.op_memory_mib),
        "--op-time-limit-s",
        str(settings.mongo.op_time_limit_s),
    ]
