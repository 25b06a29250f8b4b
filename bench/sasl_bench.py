"""What SASL/SCRAM-SHA-512 costs Kafka's clients: one broker, a PLAINTEXT and a SASL listener.

    python bench/sasl_bench.py [--messages 200000] [--trials 6] [--connects 10]

Needs no stack: it starts its own throwaway Kafka from the stack's jars, one KRaft node that is
broker and controller, configured as the stack's brokers are (infra.kafka_cluster.node_config:
StandardAuthorizer, SCRAM credentials written at format time, SASL/PLAIN to the controller) but
with RF 1 and a second client listener, PLAINTEXT, beside the SASL_PLAINTEXT/SCRAM-SHA-512 one.
The producer and consumer principals (SASL) and the anonymous principal (PLAINTEXT) get the same
ACLs, so the listener is the only difference. After one warm-up pair (full size, not counted),
`--trials` pairs, plaintext then sasl in even pairs and the other way round in odd ones:

1. producer: Headwater's producer config (acks=all, idempotence, lz4, linger) sends the
   simulator's readings (their real keys, values and headers) to a fresh topic; records/s from
   the first produce until every message is acknowledged, the client connected beforehand;
2. consumer: Headwater's consumer_config subscribed to that topic, read from the beginning in
   the consumer's batches, each committed synchronously as the consumer does; records/s after
   the first batch, and subscribe -> first batch (group join included). 200k messages by
   default: a 100k topic fits whole in librdkafka's prefetch queue, so its rate after the first
   batch was mostly that queue drained (2-3x a 200k topic's);
3. connection set-up: `--connects` fresh producers per pair and listener, each created -> first
   metadata -> first acknowledged message (SCRAM's handshake is paid once per connection, so it
   shows here, not in (1) and (2)). One client's times land in one of a few modes, whatever the
   listener (metadata after ~5 or ~55 ms on PLAINTEXT, the first ack ~5 or ~500 ms after it;
   librdkafka's own timers, probably), so the percentiles of every client are given too.

Each figure: median, min and max over the trials per listener, and sasl ÷ plaintext (and
sasl - plaintext) per pair. Prints one JSON object; the node is killed by its PID and its temp
dir deleted at the end.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AclBinding, AdminClient

from headwater import kafka_access
from headwater.clients import (
    SECURITY_PROTOCOL,
    KafkaConfig,
    admin_config,
    consumer_config,
    kafka_security,
    producer_config,
    redact_config,
)
from headwater.kafka_access import Grant, acl_binding
from headwater.kafka_admin import ensure_topics
from headwater.settings import KAFKA_ROLES, Settings, get_settings
from headwater.sources import get_source
from infra.kafka_cluster import (
    AUTHORIZER,
    CONTROLLER_NODE_ID,
    KAFKA_MAIN,
    STORAGE_TOOL_MAIN,
    KafkaNode,
    java_command,
    node_config,
)
from producer.kafka_out import encode_value, message_headers, message_key
from producer.simulator import readings

if __package__:  # imported as bench.sasl_bench (the unit tests)
    from bench.measures import latency_summary, rate, ratio, spread_summary
    from bench.process_usage import stop_process
else:  # run as a script, or by bench/run.py, with bench/ first on sys.path like its siblings
    from measures import latency_summary, rate, ratio, spread_summary
    from process_usage import stop_process

log = logging.getLogger("bench.sasl")

HOST = "127.0.0.1"
LISTENERS = ("plaintext", "sasl")
NODE_NAME = "sasl-bench"
TOPIC_PREFIX = "sasl-bench"
CONNECT_TOPIC = f"{TOPIC_PREFIX}-connect"
# Who the PLAINTEXT listener's clients are: nobody authenticated them.
ANONYMOUS = "User:ANONYMOUS"
# A past window of the deterministic simulator: the same records on every run.
SINCE = datetime(2026, 1, 3, tzinfo=UTC)
FORMAT_TIMEOUT_S = 120
READY_TIMEOUT_S = 180
STOP_TIMEOUT_S = 30
CLIENT_TIMEOUT_S = 30
CONSUME_TIMEOUT_S = 300
WARMUP_CONNECTS = 2
LOG_TAIL_CHARS = 3000

# figure -> (what it is, digits its values are rounded to); in the order they are reported.
FIGURES = {
    "producer_records_per_s": ("records/s, all acknowledged, client already connected", 0),
    "consumer_records_per_s": ("records/s after the first batch, each batch committed", 0),
    "consumer_first_batch_ms": ("subscribe -> first batch (group join included), ms", 1),
    "connect_metadata_ms": ("fresh producer: created -> first metadata, ms", 1),
    "connect_first_ack_ms": ("fresh producer: created -> first message acknowledged, ms", 1),
}
CONNECT_FIGURES = ("connect_metadata_ms", "connect_first_ack_ms")


# ---- the node (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchPorts:
    """The throwaway node's three listeners."""

    controller: int
    sasl: int
    plaintext: int


def parse_properties(text: str) -> dict[str, str]:
    """key=value lines (as node_config writes them) as a dict; the first '=' ends the key."""
    return dict(line.split("=", 1) for line in text.splitlines() if line and "=" in line)


def render_properties(props: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in props.items())


def bench_node_properties(settings: Settings, ports: BenchPorts, log_dir: Path) -> dict[str, str]:
    """The stack's broker config as one combined KRaft node, RF 1, with a PLAINTEXT listener
    beside the SASL one (BROKER, also the inter-broker listener, as on the stack)."""
    kafka = settings.kafka.model_copy(
        update={
            "host": HOST,
            "bootstrap_override": None,
            "controller_port": ports.controller,
            "broker1_port": ports.sasl,
            # One node: every topic, internal ones too, can have only one replica.
            "replication_factor": 1,
            "min_insync_replicas": 1,
        }
    )
    node = KafkaNode(NODE_NAME, CONTROLLER_NODE_ID, ports.sasl, "broker")
    props = parse_properties(node_config(settings.model_copy(update={"kafka": kafka}), node))
    props.update(
        {
            "process.roles": "broker,controller",
            "listeners": (
                f"BROKER://{HOST}:{ports.sasl},PLAINTEXT://{HOST}:{ports.plaintext},"
                f"CONTROLLER://{HOST}:{ports.controller}"
            ),
            "advertised.listeners": f"BROKER://{HOST}:{ports.sasl},PLAINTEXT://{HOST}:{ports.plaintext}",
            "listener.security.protocol.map": (
                props["listener.security.protocol.map"] + ",PLAINTEXT:PLAINTEXT"
            ),
            "log.dirs": str(log_dir),
        }
    )
    return props


def scram_arguments(settings: Settings) -> list[str]:
    """The storage tool's --add-scram arguments: every role's credential, as format_storage."""
    arguments: list[str] = []
    for role in KAFKA_ROLES:
        arguments += ["--add-scram", kafka_access.scram_argument(settings, role)]
    return arguments


def new_cluster_id() -> str:
    """A fresh KRaft cluster id: 22 characters of url-safe base64, never starting with '-'."""
    while True:
        # As Kafka's Uuid.randomUuid does: a leading '-' reads as an option on a command line.
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def bench_grants(settings: Settings) -> list[Grant]:
    """The producer's and the consumer's rights, on every bench topic and bench group."""
    topics = [
        Grant(role, "topic", TOPIC_PREFIX, operation, "prefixed")
        for role, operation in (
            ("producer", "write"),
            ("producer", "describe"),
            ("consumer", "read"),
            ("consumer", "describe"),
        )
    ]
    return [*topics, Grant("consumer", "group", bench_group_prefix(settings), "read", "prefixed")]


def access_bindings(settings: Settings) -> list[AclBinding]:
    """The bench grants for their SCRAM principals and the same rights for the anonymous one."""
    named = [acl_binding(settings, g) for g in bench_grants(settings)]
    # Producer and consumer both describe the topics: the anonymous principal needs that once.
    rights = {
        (b.restype, b.name, b.resource_pattern_type, b.host, b.operation, b.permission_type): None
        for b in named
    }
    anonymous = [
        AclBinding(restype, name, pattern, ANONYMOUS, host, operation, permission)
        for restype, name, pattern, host, operation, permission in rights
    ]
    return named + anonymous


def bench_group_prefix(settings: Settings) -> str:
    """Named after the pipeline's group, as every bench's group is."""
    return f"{settings.kafka.consumer_group}-{TOPIC_PREFIX}"


def listener_port(ports: BenchPorts, listener: str) -> int:
    check_listener(listener)
    return ports.sasl if listener == "sasl" else ports.plaintext


def bootstrap(ports: BenchPorts, listener: str) -> str:
    return f"{HOST}:{listener_port(ports, listener)}"


def check_listener(listener: str) -> None:
    if listener not in LISTENERS:
        raise ValueError(f"unknown listener {listener!r} (one of {', '.join(LISTENERS)})")


def listener_config(config: KafkaConfig, listener: str, ports: BenchPorts) -> KafkaConfig:
    """A Headwater client config pointed at one listener: for plaintext, no SASL keys at all."""
    check_listener(listener)
    if config.get("security.protocol") != SECURITY_PROTOCOL:
        raise ValueError(
            f"expected a Headwater client config with security.protocol={SECURITY_PROTOCOL}, got "
            f"{config.get('security.protocol')!r}"
        )
    conf: KafkaConfig = {**config, "bootstrap.servers": bootstrap(ports, listener)}
    if listener == "plaintext":
        conf = {k: v for k, v in conf.items() if not k.startswith("sasl.")}
        conf["security.protocol"] = "PLAINTEXT"
    return conf


def bench_producer_config(settings: Settings, ports: BenchPorts, listener: str) -> KafkaConfig:
    """Headwater's producer config (the producer principal's) on one listener."""
    return listener_config(producer_config(settings), listener, ports)


def bench_consumer_config(
    settings: Settings, ports: BenchPorts, listener: str, group: str
) -> KafkaConfig:
    """Headwater's consumer config (the consumer principal's) on one listener, in `group`."""
    config = consumer_config(
        bootstrap(ports, listener),
        group,
        f"headwater-{TOPIC_PREFIX}",
        settings.consumer.session_timeout_ms,
        security=kafka_security(settings, "consumer"),
    )
    return listener_config(config, listener, ports)


def topic_name(listener: str, trial: int | str) -> str:
    return f"{TOPIC_PREFIX}-{listener}-{trial}"


def pair_order(trial: int) -> tuple[str, str]:
    """Which listener runs first in a pair: plaintext in even pairs, sasl in odd ones.

    Alternated because in the first runs (with a short warm-up) the figures kept rising from
    pair to pair, the broker's JIT still warming: with a fixed order, whichever runs second gains
    from that. Alternating cancels what is left of such drift; `ratio_by_first` shows how much.
    """
    return LISTENERS if trial % 2 == 0 else (LISTENERS[1], LISTENERS[0])


def check_sizes(messages: int, trials: int, connects: int, batch: int) -> None:
    """ValueError, naming the bound, for sizes that could not give the figures."""
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    if connects < 1:
        raise ValueError(f"connects must be at least 1, got {connects}")
    if messages < 2 * batch:
        # The consumer's rate is taken after its first batch: it needs more than one.
        raise ValueError(f"messages must be at least {2 * batch} (two consumer batches)")


# ---- results (pure) ----------------------------------------------------------------------------


class _Located(Protocol):
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...


def next_offsets(messages: Sequence[_Located]) -> list[TopicPartition]:
    """The offsets to commit after `messages`: one past the last seen, per partition."""
    last: dict[tuple[str, int], int] = {}
    for msg in messages:
        key = (str(msg.topic()), int(msg.partition() or 0))
        last[key] = max(last.get(key, -1), int(msg.offset() or 0))
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]


def compare(
    plaintext: Sequence[float], sasl: Sequence[float], firsts: Sequence[str], ndigits: int
) -> dict[str, Any]:
    """Both listeners' spread, and sasl ÷ plaintext and sasl - plaintext of each pair.

    Pairs, not medians alone: trial i of each ran back to back, so load that drifts on a shared
    machine moves both. `firsts` names the listener that ran first in each pair; the ratios of
    the pairs each began are given apart too: if they differ, the order moved the figure.
    """
    if not plaintext or not len(plaintext) == len(sasl) == len(firsts):
        raise ValueError(
            f"need the same number of trials each, got {len(plaintext)}, {len(sasl)}, "
            f"{len(firsts)} orders"
        )
    plain_spread = spread_summary(plaintext, ndigits)
    sasl_spread = spread_summary(sasl, ndigits)
    ratios = [s / p for p, s in zip(plaintext, sasl, strict=True)]
    by_first = {
        name: spread_summary(picked, 3)
        for name in LISTENERS
        if (picked := [r for r, first in zip(ratios, firsts, strict=True) if first == name])
    }
    return {
        "plaintext": plain_spread,
        "sasl": sasl_spread,
        "ratio": spread_summary(ratios, 3),
        "difference": spread_summary([s - p for p, s in zip(plaintext, sasl, strict=True)], 1),
        "ratio_of_medians": ratio(sasl_spread["median"], plain_spread["median"]),
        "ratio_by_first": by_first,
    }


@dataclass(frozen=True)
class Samples:
    """What the counted pairs measured.

    per_pair: figure -> listener -> one value per pair (a connect figure: the median of that
    pair's clients); firsts: the listener that began each pair; clients: connect figure ->
    listener -> every fresh client's seconds, all pairs pooled.
    """

    per_pair: dict[str, dict[str, list[float]]]
    firsts: list[str]
    clients: dict[str, dict[str, list[float]]]


def summarise(samples: Samples) -> dict[str, Any]:
    """Every figure of FIGURES compared across the listeners; a connect figure also has the
    percentiles of every client, since one client's set-up lands in one of a few modes."""
    missing = [f for f in FIGURES if f not in samples.per_pair]
    missing += [f for f in CONNECT_FIGURES if f not in samples.clients]
    if missing:
        raise ValueError(f"no samples of {', '.join(missing)}")
    summary: dict[str, Any] = {}
    for figure, (what, ndigits) in FIGURES.items():
        values = samples.per_pair[figure]
        summary[figure] = {
            "what": what,
            **compare(values["plaintext"], values["sasl"], samples.firsts, ndigits),
        }
        if figure in CONNECT_FIGURES:
            summary[figure]["every_client"] = {
                name: latency_summary(samples.clients[figure][name]) for name in LISTENERS
            }
    return summary


# ---- the node (I/O) ----------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on HOST right now (held open together so none repeats)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in sockets]


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError:
        return ""


def _listener_ready(config: KafkaConfig, port: int) -> bool:
    """Whether a client on the listener sees the broker in the metadata."""
    # The port first: a client on a closed port logs every refused connection to stderr.
    try:
        with socket.create_connection((HOST, port), timeout=1):
            pass
    except OSError:
        return False
    try:
        return bool(AdminClient(config).list_topics(timeout=5).brokers)
    except KafkaException:
        return False


def wait_ready(
    settings: Settings, ports: BenchPorts, proc: subprocess.Popen[bytes], log_path: Path
) -> float:
    """Seconds until both listeners list the broker; RuntimeError (log tail) when it never does."""
    started = time.monotonic()
    config = admin_config(settings)
    configs = {name: listener_config(config, name, ports) for name in LISTENERS}
    waiting = list(LISTENERS)
    while waiting:
        if proc.poll() is not None:
            raise RuntimeError(f"bench Kafka exited {proc.returncode}:\n{_tail(log_path)}")
        if time.monotonic() - started > READY_TIMEOUT_S:
            raise RuntimeError(
                f"bench Kafka not ready on {', '.join(waiting)} after {READY_TIMEOUT_S}s:\n"
                f"{_tail(log_path)}"
            )
        waiting = [
            name
            for name in waiting
            if not _listener_ready(configs[name], listener_port(ports, name))
        ]
        if waiting:
            time.sleep(0.5)
    return time.monotonic() - started


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the node by its PID, SIGKILL it when it does not stop in time."""
    stop_process(proc, STOP_TIMEOUT_S, "bench Kafka")


@dataclass(frozen=True)
class BenchNode:
    ports: BenchPorts
    pid: int
    ready_s: float


@contextmanager
def throwaway_kafka(settings: Settings) -> Iterator[BenchNode]:
    """A formatted, started, ready single-node Kafka in a temp dir; killed and deleted after."""
    tmp = Path(tempfile.mkdtemp(prefix="headwater-sasl-bench-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        ports = BenchPorts(*free_ports(3))
        config_path = tmp / "server.properties"
        config_path.touch(mode=0o600)  # it holds the broker principal's password
        props = bench_node_properties(settings, ports, tmp / "data")
        config_path.write_text(render_properties(props))
        format_command = java_command(
            settings,
            STORAGE_TOOL_MAIN,
            "format",
            "--cluster-id",
            new_cluster_id(),
            "--config",
            str(config_path),
            *scram_arguments(settings),
            heap="256m",
        )
        done = subprocess.run(
            format_command, capture_output=True, text=True, timeout=FORMAT_TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            # Its output names the failing option, never the passwords of the argument list.
            raise RuntimeError(f"formatting the bench Kafka failed: {done.stdout}{done.stderr}")
        log_path = tmp / "kafka.log"
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                java_command(settings, KAFKA_MAIN, str(config_path)),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        log.info(
            "bench kafka started pid=%d controller=%d sasl=%d plaintext=%d dir=%s",
            proc.pid,
            ports.controller,
            ports.sasl,
            ports.plaintext,
            tmp,
        )
        ready_s = wait_ready(settings, ports, proc, log_path)
        log.info("bench kafka ready pid=%d seconds=%.1f", proc.pid, ready_s)
        yield BenchNode(ports, proc.pid, ready_s)
    finally:
        if proc is not None:
            stop(proc)
            log.info("bench kafka stopped pid=%d exit=%s", proc.pid, proc.returncode)
        shutil.rmtree(tmp, ignore_errors=True)


# ---- the clients (I/O) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """The simulator's readings as the producer sends them: (key, value) bytes and headers."""

    messages: list[tuple[bytes, bytes]]
    headers: list[tuple[str, bytes]]

    @property
    def avg_message_bytes(self) -> float:
        return sum(len(k) + len(v) for k, v in self.messages) / len(self.messages)


def build_workload(settings: Settings, messages: int) -> Workload:
    source = get_source("devices")
    devices = settings.services.simulator_devices
    until = SINCE + timedelta(seconds=-(-messages // devices))
    records = list(readings(SINCE, until, devices))[:messages]
    return Workload(
        [(message_key(source, r).encode(), encode_value(r)) for r in records],
        message_headers(source, SINCE, until, TOPIC_PREFIX),
    )


def send_all(
    producer: Producer, topic: str, messages: Sequence[tuple[bytes, bytes]], headers: Any
) -> None:
    """Produce every message and wait for every acknowledgement (as producer.kafka_out does)."""
    failures: list[str] = []
    delivered = 0

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        nonlocal delivered
        if err is not None:
            failures.append(f"key={msg.key()!r}: {err}")
        else:
            delivered += 1

    for key, value in messages:
        while True:
            try:
                producer.produce(
                    topic, key=key, value=value, headers=headers, on_delivery=on_delivery
                )
                break
            except BufferError:
                producer.poll(0.5)  # local queue full: serve delivery reports until there is room
        producer.poll(0)
    remaining = producer.flush(CLIENT_TIMEOUT_S * 4)
    if failures or remaining or delivered != len(messages):
        raise RuntimeError(
            f"topic={topic}: {delivered}/{len(messages)} acknowledged, {remaining} in flight, "
            f"first errors: {failures[:3]}"
        )


def produce_rate(config: KafkaConfig, topic: str, workload: Workload) -> float:
    """Records/s of the workload to `topic`, from the first produce to the last acknowledgement."""
    producer = Producer(config)
    # Connected (metadata, leaders, producer id) before the clock starts: that is (3)'s figure.
    send_all(producer, topic, workload.messages[:1], workload.headers)
    started = time.perf_counter()
    send_all(producer, topic, workload.messages, workload.headers)
    return rate(len(workload.messages), time.perf_counter() - started)


def consume_rate(config: KafkaConfig, topic: str, expected: int, batch: int) -> tuple[float, float]:
    """(records/s after the first batch, seconds from subscribe to the first batch)."""
    consumer = Consumer(config)
    try:
        started = time.perf_counter()
        consumer.subscribe([topic])
        seen = first = 0
        first_at = 0.0
        while seen < expected:
            if time.perf_counter() - started > CONSUME_TIMEOUT_S:
                raise RuntimeError(f"topic={topic}: {seen}/{expected} consumed in time")
            # Never more than is left: consume() waits its whole timeout for a batch to fill.
            wanted = min(batch, expected - seen)
            good: list[Message] = []
            for msg in consumer.consume(num_messages=wanted, timeout=0.5):
                err = msg.error()
                if err is None:
                    good.append(msg)
                elif err.fatal():
                    raise KafkaException(err)
                else:
                    log.warning("kafka error topic=%s: %s", topic, err)
            if not good:
                continue
            if not first:
                first_at, first = time.perf_counter(), len(good)
            seen += len(good)
            # As the consumer does after each batch is stored: synchronously.
            consumer.commit(offsets=next_offsets(good), asynchronous=False)
        finished = time.perf_counter()
    finally:
        consumer.close()
    return rate(seen - first, finished - first_at), first_at - started


def connect_once(config: KafkaConfig, topic: str, headers: Any) -> tuple[float, float]:
    """Seconds from creating a producer to (its first metadata, its first acknowledged message)."""
    started = time.perf_counter()
    producer = Producer(config)
    producer.list_topics(topic, timeout=CLIENT_TIMEOUT_S)
    metadata_s = time.perf_counter() - started
    send_all(producer, topic, [(b"connect", b"{}")], headers)
    return metadata_s, time.perf_counter() - started


def _median(values: Sequence[float]) -> float:
    return spread_summary(values, 6)["median"]


def run_trials(
    settings: Settings, ports: BenchPorts, workload: Workload, trials: int, connects: int
) -> Samples:
    """A warm-up pair, then `trials` interleaved pairs of every figure."""
    admin = AdminClient(admin_config(settings, **{"bootstrap.servers": bootstrap(ports, "sasl")}))
    # Rights first, then topics: no client ever sees its topic before its ACLs (kafka_access).
    futures = admin.create_acls(access_bindings(settings), request_timeout=CLIENT_TIMEOUT_S)
    for future in futures.values():
        future.result()
    rounds: list[int | str] = ["warmup", *range(trials)]
    topics = [topic_name(n, r) for r in rounds for n in LISTENERS] + [CONNECT_TOPIC]
    ensure_topics(admin, topics, settings.kafka.partitions, 1)
    producers = {n: bench_producer_config(settings, ports, n) for n in LISTENERS}
    batch = settings.consumer.batch_max_messages
    per_pair: dict[str, dict[str, list[float]]] = {f: {n: [] for n in LISTENERS} for f in FIGURES}
    firsts: list[str] = []
    clients: dict[str, dict[str, list[float]]] = {
        f: {n: [] for n in LISTENERS} for f in CONNECT_FIGURES
    }
    for r in rounds:
        warmup = r == "warmup"
        order = LISTENERS if isinstance(r, str) else pair_order(r)
        figures: dict[str, dict[str, float]] = {f: {} for f in FIGURES}
        for name in order:
            figures["producer_records_per_s"][name] = produce_rate(
                producers[name], topic_name(name, r), workload
            )
        for name in order:
            group = f"{bench_group_prefix(settings)}-{name}-{r}"
            config = bench_consumer_config(settings, ports, name, group)
            # One more than the workload: produce_rate's connecting message.
            per_s, first_s = consume_rate(
                config, topic_name(name, r), len(workload.messages) + 1, batch
            )
            figures["consumer_records_per_s"][name] = per_s
            figures["consumer_first_batch_ms"][name] = first_s * 1000
        for name in order:
            timings = [
                connect_once(producers[name], CONNECT_TOPIC, workload.headers)
                for _ in range(WARMUP_CONNECTS if warmup else connects)
            ]
            for figure, seconds in zip(CONNECT_FIGURES, zip(*timings, strict=True), strict=True):
                figures[figure][name] = _median(seconds) * 1000
                if not warmup:
                    clients[figure][name] += seconds
        log.info(
            "sasl bench round=%s first=%s %s",
            r,
            order[0],
            " ".join(f"{f}={v['plaintext']:.1f}/{v['sasl']:.1f}" for f, v in figures.items()),
        )
        if not warmup:
            firsts.append(order[0])
            for figure, values in figures.items():
                for name, value in values.items():
                    per_pair[figure][name].append(value)
    return Samples(per_pair, firsts, clients)


def measure(
    settings: Settings, messages: int = 200_000, trials: int = 6, connects: int = 10
) -> dict[str, Any]:
    """Run the SASL bench on its own throwaway Kafka; the result as a JSON-ready dict."""
    check_sizes(messages, trials, connects, settings.consumer.batch_max_messages)
    workload = build_workload(settings, messages)
    with throwaway_kafka(settings) as node:
        samples = run_trials(settings, node.ports, workload, trials, connects)
    figures = summarise(samples)
    return {
        "method": (
            f"own single KRaft node (broker,controller), the stack's broker config, RF 1, "
            f"{settings.kafka.partitions} partitions; PLAINTEXT vs SASL_PLAINTEXT SCRAM-SHA-512 "
            "listener on the same broker, same ACLs for both principals; "
            f"{trials} interleaved pairs in alternating order after a warm-up pair"
        ),
        "node": {
            "process_roles": "broker,controller",
            "ready_s": round(node.ready_s, 1),
            "heap": settings.kafka.heap,
            "authorizer": AUTHORIZER,
            "scram_iterations": settings.kafka.scram_iterations,
            "partitions": settings.kafka.partitions,
            "replication_factor": 1,
        },
        "messages": messages,
        "avg_message_bytes": round(workload.avg_message_bytes, 1),
        "header_bytes": sum(len(k) + len(v) for k, v in workload.headers),
        "trials_each": trials,
        "connects_per_trial": connects,
        "consumer_batch": settings.consumer.batch_max_messages,
        "producer_config": redact_config(
            {k: v for k, v in producer_config(settings).items() if k != "bootstrap.servers"}
        ),
        "first_in_pair": samples.firsts,
        "figures": figures,
        "samples": {
            f: {n: [round(v, 2) for v in values] for n, values in by_listener.items()}
            for f, by_listener in samples.per_pair.items()
        },
        "client_samples_ms": {
            f: {n: [round(v * 1000, 1) for v in values] for n, values in by_listener.items()}
            for f, by_listener in samples.clients.items()
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=200_000, help="messages per trial")
    parser.add_argument("--trials", type=int, default=6, help="pairs of trials")
    parser.add_argument("--connects", type=int, default=10, help="fresh clients per trial")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    result = measure(get_settings(), args.messages, args.trials, args.connects)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
