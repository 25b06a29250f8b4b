"""MongoDB helpers for integration tests that restart the stack's server."""

from __future__ import annotations

import time

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from headwater.clients import mongo_client
from headwater.settings import Settings


def wait_for_ping(settings: Settings, timeout_s: float = 120) -> MongoClient:
    """A client of the stack's MongoDB once it answers ping (after a restart); caller closes it."""
    deadline = time.monotonic() + timeout_s
    while True:
        client = mongo_client(settings, 2000)
        try:
            client.admin.command("ping")
            return client
        except PyMongoError:
            client.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
