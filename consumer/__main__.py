"""`python -m consumer`: run one consumer group member until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from consumer.bootstrap import build_consumer, ensure_database
from headwater.settings import get_settings

log = logging.getLogger("consumer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m consumer",
        description="Consume every source topic into MongoDB. Settings: HEADWATER_CONSUMER_* "
        "(topics, group, batch and retry knobs), KAFKA_*, MONGO_URI/MONGO_DB, "
        "HEADWATER_CONSUMER_PORT.",
    )
    parser.add_argument("--port", type=int, help="HTTP port of /healthz and /metrics")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    consumer = build_consumer(settings, settings.consumer, args.port)
    service = consumer.service

    def stop(signum: int, _frame: FrameType | None) -> None:
        # Only a flag: the loop finishes its batch, commits and logs the stop itself.
        service.request_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    consumer.server.start()
    try:
        if not ensure_database(consumer):
            return 0
        return service.run()
    except Exception:
        # The one catch-all: log with context and exit non-zero so the supervisor restarts us.
        log.exception("consumer failed group=%s", consumer.config.group_id)
        return 1
    finally:
        consumer.server.stop()
        consumer.client.close()


if __name__ == "__main__":
    sys.exit(main())
