"""`python -m producer pull <source> --since ISO --until ISO`: one window by hand, with progress."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from datetime import datetime

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from headwater.settings import get_settings
from headwater.sources import ensure_utc, get_source, load_sources
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
    sub.add_parser("sources", help="list the declared sources")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    if args.command == "sources":
        for source in load_sources().values():
            print(f"{source.name:<16} topic={source.topic:<16} {source.description}")
        return 0

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


if __name__ == "__main__":
    sys.exit(main())
