"""The events API with slow clients: accepted POST /events/s with 0 vs N slow sockets open.

    python bench/slow_clients_bench.py [--slow-sockets 200] [--trials 5] [--trial-s 20]

Starts its own events API (the stack's gunicorn argv, infra/stack.gunicorn_command, on a free
loopback port with a scratch database, deleted afterwards), so it needs no running stack. Then
interleaved trials: normal clients (flask_bench's keep-alive threads posting single events) for
`trial_s`, once with no slow sockets and once while `slow_sockets` sockets trickle one byte a
second each (half inside their headers, half inside a POST body) and are reopened as soon as the
server cuts them off. Reports accepted/s of each arm and slow ÷ none per trial as medians with
their range, and how and when the slow sockets were cut off. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import selectors
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from events_server import HOST, ApiServer, start_api
from flask_bench import normal_load
from measures import ratio, spread_summary
from slow_clients_plan import (
    NO_SLOW,
    SLOW,
    cutoff_outcome,
    paired_ratios,
    slow_byte,
    slow_kind,
    slow_request_start,
    trial_order,
)

from headwater.settings import Settings, get_settings

log = logging.getLogger("bench.slow_clients")

OPEN_TIMEOUT_S = 30.0
TICK_S = 1.0


@dataclass
class SlowSocket:
    sock: socket.socket
    kind: str
    opened_at: float
    received: bytes = b""


@dataclass
class SlowTally:
    """What the slow sockets saw: how each was cut off, and after how long."""

    opened: int = 0
    cutoffs: Counter[str] = field(default_factory=Counter)
    lifetimes_s: dict[str, list[float]] = field(default_factory=dict)
    connect_errors: Counter[str] = field(default_factory=Counter)


class SlowSockets:
    """`count` sockets trickling requests one byte a tick; each one cut off is opened again."""

    def __init__(self, port: int, count: int, api_key: str, tally: SlowTally) -> None:
        self.port = port
        self.count = count
        self.api_key = api_key
        self.tally = tally
        self._stop = threading.Event()
        self._open: dict[int, SlowSocket] = {}
        self._selector = selectors.DefaultSelector()
        self._thread = threading.Thread(target=self._run, name="slow-sockets", daemon=True)
        self._next_index = 0
        self.all_open = threading.Event()

    @property
    def open_count(self) -> int:
        """How many are open right now."""
        return len(self._open)

    def start(self) -> None:
        """Open them all and keep them trickling on a thread of their own."""
        self._thread.start()

    def stop(self) -> None:
        """Stop trickling and close every socket."""
        self._stop.set()
        self._thread.join(timeout=30)

    def _open_one(self) -> None:
        kind = slow_kind(self._next_index)
        self._next_index += 1
        try:
            sock = socket.create_connection((HOST, self.port), timeout=5)
            sock.sendall(slow_request_start(kind, self.api_key))
        except OSError as exc:
            self.tally.connect_errors[type(exc).__name__] += 1
            return
        sock.setblocking(False)
        self._open[sock.fileno()] = SlowSocket(sock, kind, time.monotonic())
        self._selector.register(sock, selectors.EVENT_READ)
        self.tally.opened += 1

    def _cut(self, slow: SlowSocket) -> None:
        self.tally.cutoffs[f"{slow.kind}:{cutoff_outcome(slow.received)}"] += 1
        lifetime = time.monotonic() - slow.opened_at
        self.tally.lifetimes_s.setdefault(slow.kind, []).append(lifetime)
        self._close(slow)

    def _close(self, slow: SlowSocket) -> None:
        self._open.pop(slow.sock.fileno(), None)
        self._selector.unregister(slow.sock)
        slow.sock.close()

    def _receive(self, slow: SlowSocket) -> None:
        try:
            data = slow.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            slow.received += data
        else:
            self._cut(slow)

    def _trickle(self) -> None:
        for slow in list(self._open.values()):
            try:
                slow.sock.send(slow_byte(slow.kind))
            except BlockingIOError:
                pass
            except OSError:
                self._receive(slow)  # an answer may still be there to read
                if slow.sock.fileno() in self._open:
                    self._cut(slow)

    def _run(self) -> None:
        next_tick = time.monotonic() + TICK_S
        try:
            while not self._stop.is_set():
                while len(self._open) < self.count and not self._stop.is_set():
                    self._open_one()
                if len(self._open) >= self.count:
                    self.all_open.set()
                if time.monotonic() >= next_tick:
                    self._trickle()
                    next_tick += TICK_S
                wait = max(0.0, min(next_tick - time.monotonic(), 0.2))
                for key, _ in self._selector.select(timeout=wait):
                    slow = self._open.get(key.fd)
                    if slow is not None:
                        self._receive(slow)
        finally:
            for slow in list(self._open.values()):
                self._close(slow)
            self._selector.close()


def run_trial(
    arm: str, server: ApiServer, api_key: str, args: dict[str, Any], tally: SlowTally
) -> dict[str, Any]:
    """One arm: the normal load, with the slow sockets open throughout for the slow arm."""
    if arm == NO_SLOW:
        figures = normal_load(HOST, server.port, api_key, args["concurrency"], args["trial_s"])
    else:
        slow = SlowSockets(server.port, args["slow_sockets"], api_key, tally)
        slow.start()
        try:
            if not slow.all_open.wait(OPEN_TIMEOUT_S):
                raise RuntimeError(f"slow sockets not all open after {OPEN_TIMEOUT_S:.0f}s")
            figures = normal_load(HOST, server.port, api_key, args["concurrency"], args["trial_s"])
            figures["slow_open_at_end"] = slow.open_count
        finally:
            slow.stop()
    log.info("slow clients trial arm=%s %s", arm, figures)
    return {"arm": arm, **figures}


def measure(
    settings: Settings,
    slow_sockets: int = 200,
    trials: int = 5,
    trial_s: float = 20.0,
    concurrency: int = 16,
) -> dict[str, Any]:
    """Interleaved trials with and without slow sockets on a fresh events API."""
    order = trial_order(trials)
    api_key = settings.services.api_key.get_secret_value()
    args = {"slow_sockets": slow_sockets, "trial_s": trial_s, "concurrency": concurrency}
    tally = SlowTally()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="headwater-slow-bench-") as scratch:
        run_dir = Path(scratch)
        server = start_api(settings, run_dir / "run", run_dir / "gunicorn.log")
        try:
            for arm in order:
                runs.append(run_trial(arm, server, api_key, args, tally))
        finally:
            server.stop()
    rates = {arm: [r["accepted_per_s"] for r in runs if r["arm"] == arm] for arm in (NO_SLOW, SLOW)}
    ratios = paired_ratios(rates[NO_SLOW], rates[SLOW])
    worker = server.argv[server.argv.index("--worker-class") + 1]
    svc = settings.services
    return {
        "method": (
            f"{concurrency} keep-alive clients posting single events for {trial_s:g} s, "
            f"with 0 and with {slow_sockets} slow sockets (1 byte/s, half in headers, half in a "
            f"body; reopened when cut off); {trials} interleaved pairs"
        ),
        "worker_class": worker,
        "header_timeout_s": svc.events_header_timeout_s,
        "body_timeout_s": svc.events_body_timeout_s,
        "slow_sockets": slow_sockets,
        "concurrency": concurrency,
        "trial_s": trial_s,
        "trials_each": trials,
        "no_slow_accepted_per_s": spread_summary(rates[NO_SLOW], 1),
        "slow_accepted_per_s": spread_summary(rates[SLOW], 1),
        # slow ÷ no_slow of each interleaved pair (drift between pairs cancels), and of the medians.
        "ratio": spread_summary(ratios),
        "ratio_of_medians": ratio(
            spread_summary(rates[SLOW])["median"], spread_summary(rates[NO_SLOW])["median"]
        ),
        "slow_opened": tally.opened,
        "slow_cutoffs": dict(tally.cutoffs),
        "slow_lifetime_s": {
            kind: spread_summary(values, 1) for kind, values in tally.lifetimes_s.items()
        },
        "slow_connect_errors": dict(tally.connect_errors),
        "trials": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--slow-sockets", type=int, default=200)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--trial-s", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    result = measure(get_settings(), args.slow_sockets, args.trials, args.trial_s, args.concurrency)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
