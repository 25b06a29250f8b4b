"""Kafka's producer benchmark (`ProducerPerformance`): its command line and its summary (pure)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MAIN_CLASS = "org.apache.kafka.tools.ProducerPerformance"

# The last line the tool prints, e.g. "50000 records sent, 4109.81 records/sec (0.78 MB/sec),
# 3274.85 ms avg latency, 4840.00 ms max latency, 3767 ms 50th, 4662 ms 95th, 4792 ms 99th,
# 4799 ms 99.9th." The progress lines before it lack the percentiles.
_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
SUMMARY = re.compile(
    rf"{_NUMBER} records sent, {_NUMBER} records/sec \({_NUMBER} MB/sec\), "
    rf"{_NUMBER} ms avg latency, {_NUMBER} ms max latency, {_NUMBER} ms 50th, "
    rf"{_NUMBER} ms 95th, {_NUMBER} ms 99th, {_NUMBER} ms 99\.9th"
)


class PerfToolError(RuntimeError):
    """The tool failed or printed no summary line."""


@dataclass(frozen=True)
class PerfSummary:
    """The figures of one ProducerPerformance run."""

    records: int
    records_per_s: float
    mb_per_s: float
    avg_latency_ms: float
    max_latency_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_summary(output: str) -> PerfSummary:
    """The final summary of the tool's output; PerfToolError when there is none."""
    found = SUMMARY.findall(output)
    if not found:
        tail = output.strip().splitlines()[-3:]
        raise PerfToolError(f"no summary line in the perf tool's output; last lines: {tail}")
    fields = found[-1]
    return PerfSummary(
        records=int(float(fields[0])),
        records_per_s=float(fields[1]),
        mb_per_s=float(fields[2]),
        avg_latency_ms=float(fields[3]),
        max_latency_ms=float(fields[4]),
        p50_ms=float(fields[5]),
        p95_ms=float(fields[6]),
        p99_ms=float(fields[7]),
        p999_ms=float(fields[8]),
    )


def perf_tool_props(producer_config: dict[str, Any]) -> dict[str, str]:
    """The Java producer properties that match a librdkafka producer config where both apply.

    Only the settings that decide the cost of a write are carried over (acks, idempotence,
    compression, linger); the Java client's own batching defaults stay as Kafka ships them.
    """
    props: dict[str, str] = {}
    for key in ("acks", "enable.idempotence", "compression.type", "linger.ms"):
        if key in producer_config:
            value = producer_config[key]
            props[key] = str(value).lower() if isinstance(value, bool) else str(value)
    # The same principal over the same SASL mechanism, so authentication costs both the same.
    if "sasl.username" in producer_config:
        props["security.protocol"] = str(producer_config["security.protocol"])
        props["sasl.mechanism"] = str(producer_config["sasl.mechanism"])
        props["sasl.jaas.config"] = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{producer_config["sasl.username"]}" '
            f'password="{producer_config["sasl.password"]}";'
        )
    return props


def perf_tool_command(
    *,
    java: str,
    libs_dir: Path,
    bootstrap_servers: str,
    topic: str,
    num_records: int,
    props: dict[str, str],
    record_size: int | None = None,
    payload_file: Path | None = None,
    config_file: Path | None = None,
    heap: str = "256m",
) -> list[str]:
    """argv of one unthrottled run: random payloads of `record_size` bytes, or a payload file.

    `config_file` (a properties file, see `properties_text`) carries what `--command-property`
    cannot: the tool splits each of those at every '=', so a sasl.jaas.config is refused there.
    """
    if (record_size is None) == (payload_file is None):
        raise ValueError("give exactly one of record_size and payload_file")
    if num_records < 1:
        raise ValueError(f"num_records must be positive, got {num_records}")
    payload = (
        ["--record-size", str(record_size)]
        if record_size is not None
        else ["--payload-file", str(payload_file)]
    )
    return [
        java,
        f"-Xmx{heap}",
        "-cp",
        f"{libs_dir}/*",
        MAIN_CLASS,
        "--bootstrap-server",
        bootstrap_servers,
        "--topic",
        topic,
        "--num-records",
        str(num_records),
        *payload,
        "--throughput",
        "-1",
        *(["--command-config", str(config_file)] if config_file is not None else []),
        *(["--command-property", *(f"{k}={v}" for k, v in props.items())] if props else []),
    ]


def properties_text(props: dict[str, str]) -> str:
    """A Java properties file holding `props` (values kept verbatim: quotes, spaces, '=')."""
    return "".join(f"{key}={value}\n" for key, value in props.items())
