"""The producer's command line.

`python -m producer pull <source> --since ISO --until ISO`: one window by hand, with progress.
`python -m producer check <source> [--since ISO --until ISO]`: is the entry valid, and what would
the consumer store and reject for a sample window of the live source (nothing is written).
`python -m producer reload`: create the topics, collections, validators and indexes of every valid
entry (what `make up` does; the running consumer subscribes to new topics by itself).
`python -m producer sources`: the declared sources, and what is wrong with the invalid ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from datetime import UTC, datetime, timedelta

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from headwater.settings import get_settings
from headwater.sources import ensure_utc, get_source, load_catalog, load_sources
from producer import declarations
from producer.kafka_out import ProduceError
from producer.pull import PullStats, SourceError, SourceUnavailable
from producer.service import ingest_window


def _moment(text: str) -> datetime:
    try:
        return ensure_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m producer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    pull_cmd = sub.add_parser("pull", help="pull one window of a source into its topic")
    pull_cmd.add_argument("source", choices=sorted(load_sources()))
    pull_cmd.add_argument("--since", type=_moment, required=True, help="window start (inclusive)")
    pull_cmd.add_argument("--until", type=_moment, required=True, help="window end (exclusive)")
    pull_cmd.add_argument("--run-id", default=None, help="recorded in every message's headers")
    pull_cmd.add_argument(
        "--topic", default=None, help="produce here instead of the source's topic"
    )
    sub.add_parser("sources", help="list the declared sources (and the invalid entries)")
    check_cmd = sub.add_parser(
        "check", help="validate an entry and show what a sample window would store and reject"
    )
    check_cmd.add_argument("source")
    check_cmd.add_argument(
        "--since", type=_moment, help="sample window start (default: now - interval)"
    )
    check_cmd.add_argument("--until", type=_moment, help="sample window end (default: now)")
    check_cmd.add_argument("--limit", type=int, default=1000, help="records to try at most")
    check_cmd.add_argument("--no-sample", action="store_true", help="check the entry only")
    sub.add_parser("reload", help="create topics, collections and indexes of every valid entry")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    if args.command == "sources":
        catalog = load_catalog()
        for source in catalog.sources.values():
            print(f"{source.name:<16} topic={source.topic:<16} {source.description}")
        for name, problem in sorted(catalog.problems.items()):
            print(f"{name:<16} INVALID: {problem}")
        return 0
    if args.command == "check":
        return _check(args)
    if args.command == "reload":
        return _reload()

    if args.until <= args.since:
        parser.error("--until must be after --since")
    settings = get_settings()
    source = get_source(args.source)
    if args.topic:
        source = source.model_copy(update={"topic": args.topic})
    run_id = args.run_id or f"manual__{uuid.uuid4().hex[:12]}"
    span = (args.until - args.since).total_seconds()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}% of window"),
        TextColumn("{task.fields[records]} records"),
        TimeElapsedColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task(source.name, total=span, records=0)

        def progress(count: int, stats: PullStats) -> None:
            if count % 200 == 0 and stats.last_event_time is not None:
                done = (stats.last_event_time - args.since).total_seconds()
                bar.update(task, completed=done, records=count)

        try:
            result = ingest_window(
                source, args.since, args.until, settings, run_id=run_id, progress=progress
            )
        except (SourceError, SourceUnavailable, ProduceError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        bar.update(task, completed=span, records=result.produced)
    print(json.dumps(result.as_dict()))
    return 0


def _check(args: argparse.Namespace) -> int:
    catalog = load_catalog()
    for path, problem in sorted(catalog.file_problems.items()):
        print(f"file {path}: {problem}")
    if args.source in catalog.problems:
        print(f"source {args.source} is invalid: {catalog.problems[args.source]}")
        return 1
    if args.source not in catalog.sources:
        print(f"unknown source {args.source!r}; declared: {', '.join(sorted(catalog.sources))}")
        return 1
    source = catalog.sources[args.source]
    print("\n".join(declarations.describe(source)))
    print("entry: valid")
    if args.no_sample:
        return 0
    now = datetime.now(UTC)
    until = args.until or now
    since = args.since or until - timedelta(seconds=source.interval_s)
    if until <= since:
        print("error: --until must be after --since", file=sys.stderr)
        return 2
    report = declarations.check(source, get_settings(), since, until, now, limit=args.limit)
    print(f"sample window {since.isoformat()} .. {until.isoformat()}")
    if report.pull_problem is not None:
        print(f"the source answered: {report.pull_problem}")
        return 1
    rejected = sum(report.rejected.values())
    print(f"pulled {report.pulled}: would store {report.stored}, would reject {rejected}")
    for reason, count in report.rejected.most_common():
        print(f"  rejected {count:>6} x {reason}")
    for doc in report.examples_stored:
        print("stored  " + json.dumps(doc, default=str, ensure_ascii=False))
    for item in report.examples_rejected:
        print("reject  " + json.dumps(item, default=str, ensure_ascii=False))
    if report.pulled == 0:
        print("no records in the sample window: pass --since/--until to try another one")
    return 0


def _reload() -> int:
    applied = declarations.apply(get_settings())
    print(
        f"{len(applied.topics)} topics ready ({', '.join(applied.topics_created) or 'none new'}), "
        f"collections created: {', '.join(applied.collections_created) or 'none new'}, "
        f"{applied.indexes} indexes ensured"
    )
    for path, problem in sorted(applied.file_problems.items()):
        print(f"file {path}: {problem}")
    for name, problem in sorted(applied.problems.items()):
        print(f"source {name} not applied (its topic stays paused): {problem}")
    return 1 if applied.problems or applied.file_problems else 0


if __name__ == "__main__":
    sys.exit(main())
