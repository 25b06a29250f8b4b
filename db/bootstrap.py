"""Create Headwater's collections, validators and indexes: `python -m db.bootstrap`, idempotent.

Run by `make up` (and by the consumer at start, and by tests on their own databases). A second run
changes nothing; on a server without validators (the embedded one) it still creates everything
else and says the validators were not applied.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field

from pymongo.database import Database
from pymongo.errors import CollectionInvalid, OperationFailure, PyMongoError

from db.schema import Schema, current_schema
from headwater.clients import mongo_client, redact_uri
from headwater.settings import get_settings

log = logging.getLogger(__name__)

NAMESPACE_EXISTS = 48
COMMAND_NOT_FOUND = 59


@dataclass
class BootstrapReport:
    """What one bootstrap run did."""

    created: list[str] = field(default_factory=list)
    validators_updated: list[str] = field(default_factory=list)
    validators_unsupported: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)


def _create(db: Database, name: str, schema: Schema, report: BootstrapReport) -> None:
    validator = schema.validators.get(name)
    try:
        if validator is None:
            db.create_collection(name)
        else:
            db.create_collection(name, validator=validator)
        report.created.append(name)
    except CollectionInvalid:
        pass  # created by someone else since we listed the collections
    except OperationFailure as exc:
        if exc.code != NAMESPACE_EXISTS:
            raise


def _update_validator(db: Database, name: str, schema: Schema, report: BootstrapReport) -> None:
    validator = schema.validators.get(name)
    if validator is None:
        return
    try:
        db.command("collMod", name, validator=validator)
        report.validators_updated.append(name)
    except OperationFailure as exc:
        if exc.code != COMMAND_NOT_FOUND and "no such command" not in str(exc):
            raise
        report.validators_unsupported.append(name)


def bootstrap(
    db: Database, update_validators: bool = True, schema: Schema | None = None
) -> BootstrapReport:
    """Make every collection, validator and index exist in `db`; safe to run any number of times.

    `schema` defaults to the sources declared now. `update_validators=False` leaves existing
    collections' validators as they are (the consumer's start-up check: `make up` and
    `python -m producer reload` run the full bootstrap).
    """
    schema = schema or current_schema()
    report = BootstrapReport()
    existing = set(db.list_collection_names())
    for name in schema.collections:
        if name in existing:
            if update_validators:
                # Created before (or implicitly by a write): bring its validator up to date.
                _update_validator(db, name, schema, report)
        else:
            _create(db, name, schema, report)
    for index in schema.indexes:
        db[index.collection].create_index(list(index.keys), name=index.name, unique=index.unique)
        report.indexes.append(f"{index.collection}.{index.name}")
    log.info(
        "db bootstrap db=%s created=%s validators_updated=%s indexes=%d",
        db.name,
        ",".join(report.created) or "-",
        ",".join(report.validators_updated) or "-",
        len(report.indexes),
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m db.bootstrap", description=__doc__)
    parser.add_argument("--db", help="database name (default: settings.mongo.db, MONGO_DB)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    name = args.db or settings.mongo.db
    try:
        with mongo_client(settings) as client:
            report = bootstrap(client[name])
    except PyMongoError as exc:
        where = redact_uri(settings.mongo.uri)
        print(f"db bootstrap failed on {where} db {name}: {exc}", file=sys.stderr)
        return 1
    print(
        f"database {name}: created {len(report.created)} collections "
        f"({', '.join(report.created) or 'none new'}), {len(report.indexes)} indexes ensured"
    )
    if report.validators_unsupported:
        print(
            "validators not applied to existing collections (server has no collMod): "
            + ", ".join(report.validators_unsupported)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
