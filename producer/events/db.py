"""Flask glue for the store: one connection per request, closed when the app context ends.

Writes need no connection of their own: they go to the store, whose group commit writes on the
process's one writer connection (producer/events/store.py).
"""

from __future__ import annotations

from flask import Flask, current_app, g

from producer.events.store import EventsDb, EventStore

EXTENSION = "events_store"


def get_store() -> EventStore:
    """The app's events store."""
    store: EventStore = current_app.extensions[EXTENSION]
    return store


def get_db() -> EventsDb:
    """This request's connection to the events database, opened on first use."""
    db: EventsDb | None = g.get("events_db")
    if db is None:
        db = g.events_db = get_store().open()
    return db


def close_db(exc: BaseException | None = None) -> None:
    """Close this request's connection, if it opened one."""
    db: EventsDb | None = g.pop("events_db", None)
    if db is not None:
        db.close()


def init_app(app: Flask, store: EventStore) -> None:
    """Attach the store to the app and close connections after each request."""
    app.extensions[EXTENSION] = store
    app.teardown_appcontext(close_db)
