"""`make bench`: every benchmark on the running stack, each figure against its ceiling.

    python bench/run.py [--only consumer producer end_to_end flask slow_clients store sasl connect
                         archive]
                        [sizes]

Runs the parts in order (consumer, producer, end to end, flask, slow clients, store at scale, the
cost of SASL on Kafka's clients, the consumer against Kafka Connect's MongoDB sink, and archiving a
day to Parquet against reading it and exporting it as JSON), writes
bench/results/latest.json (consumer_ratio, producer_ratio, every part's raw figures and the
machine) and bench/results/latest.png (a copy of the JSON goes to bench/results/history/), and
prints the summary table. A subset (--only) writes bench/results/partial-<parts>.json/.png
instead, leaving the last full run in place. The slow-clients part starts its own events API, the
sasl part its own throwaway Kafka and, with --flask-own-api, the flask part its own events APIs:
alone they need no running stack. The connect part runs Kafka Connect from .cache/connect
(`make bench` resolves it) on the running stack. Each part first waits (bounded) for the cores to
be mostly idle and records how busy they were. A part that fails is recorded with its error and
the others still run; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import archive_bench
import connect_bench
import consumer_bench
import e2e_bench
import flask_bench
import producer_bench
import sasl_bench
import slow_clients_bench
import store_bench
from chart import write_chart
from machine import cpu_busy, describe_machine, load_average
from report import format_table, headline, summary_rows

from headwater.clients import mongo_client
from headwater.settings import REPO_ROOT, Settings, get_settings

log = logging.getLogger("bench.run")

PARTS = (
    "consumer",
    "producer",
    "end_to_end",
    "flask",
    "slow_clients",
    "store",
    "sasl",
    "connect",
    "archive",
)
# Parts that start what they measure themselves: a run of only these needs no stack.
SELF_CONTAINED = frozenset({"slow_clients", "sasl"})


def self_contained(args: argparse.Namespace) -> frozenset[str]:
    """The parts that need no stack in this run (flask too, with --flask-own-api)."""
    return SELF_CONTAINED | ({"flask"} if args.flask_own_api else set())


RESULTS_DIR = REPO_ROOT / "bench" / "results"


def part_runners(args: argparse.Namespace) -> dict[str, Callable[[Settings], dict[str, Any]]]:
    """Each part's measurement with this run's sizes."""
    return {
        "consumer": lambda s: consumer_bench.measure(
            s,
            messages=args.messages,
            events_share=args.events_share,
            trials=args.consumer_trials,
            # The write overlap off, in the same trials: what the overlap is worth today.
            peers=(consumer_bench.SEQUENTIAL,),
        ),
        "producer": lambda s: producer_bench.measure(
            s, records=args.records, trials=args.producer_trials
        ),
        "end_to_end": lambda s: e2e_bench.measure(s, windows=args.windows, window_s=args.window_s),
        "flask": lambda s: (
            flask_bench.measure_own_api(
                s,
                concurrency=args.concurrency,
                duration_s=args.duration_s,
                trials=args.flask_trials,
                baseline_root=args.flask_baseline_root,
            )
            if args.flask_own_api
            else flask_bench.measure(s, concurrency=args.concurrency, duration_s=args.duration_s)
        ),
        "slow_clients": lambda s: slow_clients_bench.measure(
            s,
            slow_sockets=args.slow_sockets,
            trials=args.slow_trials,
            trial_s=args.slow_trial_s,
            concurrency=args.concurrency,
        ),
        "store": lambda s: store_bench.measure_from_args(s, args),
        "sasl": lambda s: sasl_bench.measure(
            s, messages=args.sasl_messages, trials=args.sasl_trials, connects=args.sasl_connects
        ),
        "connect": lambda s: connect_bench.measure(
            s,
            messages=args.connect_messages,
            events_share=args.events_share,
            trials=args.connect_trials,
        ),
        "archive": lambda s: archive_bench.measure(
            s, docs=args.archive_docs, trials=args.archive_trials
        ),
    }


def wait_for_quiet(max_busy: float, max_wait_s: float) -> float:
    """Wait (bounded) until other work leaves the cores mostly idle; the last busy share seen.

    The machine may be shared (other stacks, tests): a part that starts in someone else's burst
    measures the burst. The share at the start is recorded with each part's figures.
    """
    started = time.monotonic()
    busy = cpu_busy()
    if busy > max_busy:
        log.info(
            "waiting up to %.0fs for cpu_busy=%.2f to fall to %.2f", max_wait_s, busy, max_busy
        )
        while busy > max_busy and time.monotonic() - started < max_wait_s:
            busy = cpu_busy()
        log.info("waited %.0fs, cpu_busy=%.2f", time.monotonic() - started, busy)
    return busy


def run(args: argparse.Namespace, settings: Settings) -> tuple[dict[str, Any], bool]:
    """Every selected part in order; the result and whether all of them succeeded."""
    selected = [p for p in PARTS if p in (args.only or PARTS)]
    if self_contained(args).issuperset(selected):
        machine = describe_machine(settings)  # no stack running, so no MongoDB to ask
    else:
        with mongo_client(settings) as client:
            machine = describe_machine(settings, client)
    result: dict[str, Any] = {
        "consumer_ratio": None,
        "producer_ratio": None,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "parts": selected,
        "machine": machine,
    }
    runners = part_runners(args)
    ok = True
    for i, name in enumerate(selected):
        if i:
            time.sleep(args.pause_s)  # let the previous part's backlog drain
        busy = wait_for_quiet(args.quiet_busy, args.quiet_wait_s)
        log.info("part=%s start cpu_busy=%.2f load=%s", name, busy, load_average())
        started = time.monotonic()
        try:
            figures = runners[name](settings)
        except Exception as exc:  # one failing part must not lose the others' figures
            log.exception("part=%s failed", name)
            figures = {"error": f"{type(exc).__name__}: {exc}"}
            ok = False
        figures["cpu_busy_at_start"] = busy
        figures["wall_s"] = round(time.monotonic() - started, 1)
        figures["load_average_after"] = load_average()
        result[name] = figures
        log.info("part=%s done wall_s=%.1f", name, figures["wall_s"])
    result.update(headline(result), finished_at=datetime.now(UTC).isoformat(timespec="seconds"))
    return result, ok


def output_stem(only: list[str] | None) -> str:
    """'latest' for a full run, 'partial-<parts>' for a subset."""
    if not only or set(only) >= set(PARTS):
        return "latest"
    return "partial-" + "-".join(p for p in PARTS if p in only)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, help="run only these parts")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--pause-s", type=float, default=10.0, help="pause between parts")
    parser.add_argument(
        "--quiet-busy", type=float, default=0.5, help="start a part once cores are this idle"
    )
    parser.add_argument(
        "--quiet-wait-s", type=float, default=30.0, help="longest wait for a quiet machine"
    )
    parser.add_argument("--messages", type=int, default=60_000, help="consumer: messages")
    parser.add_argument(
        "--consumer-trials",
        type=int,
        default=5,
        help="consumer: interleaved ceiling/consumer pairs",
    )
    parser.add_argument("--events-share", type=float, default=0.2, help="consumer: user events")
    parser.add_argument("--records", type=int, default=60_000, help="producer: window records")
    parser.add_argument(
        "--producer-trials", type=int, default=5, help="producer: interleaved rounds of all paths"
    )
    parser.add_argument("--windows", type=int, default=4, help="end to end: windows")
    parser.add_argument("--window-s", type=int, default=12, help="end to end: window length")
    parser.add_argument("--concurrency", type=int, default=16, help="flask: client threads")
    parser.add_argument("--duration-s", type=float, default=20.0, help="flask: load duration")
    parser.add_argument(
        "--flask-own-api",
        action="store_true",
        help="flask: start own events APIs (no stack) and compare group commit with one "
        "commit per request in interleaved trials",
    )
    parser.add_argument(
        "--flask-trials", type=int, default=5, help="flask --flask-own-api: rounds of the arms"
    )
    parser.add_argument(
        "--flask-baseline-root",
        type=Path,
        help="flask --flask-own-api: also serve this checkout of the code (e.g. the commit before)",
    )
    parser.add_argument(
        "--slow-sockets", type=int, default=200, help="slow clients: slow sockets open"
    )
    parser.add_argument(
        "--slow-trials", type=int, default=5, help="slow clients: interleaved pairs of trials"
    )
    parser.add_argument(
        "--slow-trial-s", type=float, default=20.0, help="slow clients: seconds of each trial"
    )
    store_bench.add_arguments(parser)
    parser.add_argument("--sasl-messages", type=int, default=200_000, help="sasl: per trial")
    parser.add_argument("--sasl-trials", type=int, default=6, help="sasl: interleaved pairs")
    parser.add_argument("--sasl-connects", type=int, default=10, help="sasl: clients per trial")
    parser.add_argument(
        "--connect-messages", type=int, default=60_000, help="connect: records each trial reads"
    )
    parser.add_argument(
        "--connect-trials", type=int, default=5, help="connect: interleaved pairs of trials"
    )
    parser.add_argument(
        "--archive-docs", type=int, default=200_000, help="archive: readings in the day archived"
    )
    parser.add_argument(
        "--archive-trials", type=int, default=5, help="archive: interleaved rounds of the arms"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    result, ok = run(args, settings)

    stem = output_stem(args.only)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    json_path = args.out_dir / f"{stem}.json"
    png_path = args.out_dir / f"{stem}.png"
    text = json.dumps(result, indent=2) + "\n"
    json_path.write_text(text)
    # Every run is kept too, by start time, so runs can be compared later.
    history = args.out_dir / "history" / f"{stem}-{result['started_at'].replace(':', '')}.json"
    history.parent.mkdir(parents=True, exist_ok=True)
    history.write_text(text)
    write_chart(result, png_path)
    print()
    print(format_table(summary_rows(result)))
    print()
    for name in PARTS:
        if name in result and "error" in result[name]:
            print(f"{name}: FAILED: {result[name]['error']}")
    busy = [f"{n} {result[n]['cpu_busy_at_start']:.2f}" for n in PARTS if n in result]
    print("cores busy (all processes) when each part started: " + ", ".join(busy))
    m = result["machine"]
    print(f"machine: {m['cores']} cores, {m['ram_gib']} GiB, {m['cpu_model']}")
    print(f"written: {json_path}, {png_path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
