"""What the benchmarks ran on: cores, memory, CPU, load and the versions of every moving part."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from confluent_kafka import libversion
from pymongo import MongoClient

from headwater.clients import redact_uri
from headwater.settings import Settings

PYTHON_PACKAGES = ("apache-airflow", "confluent-kafka", "pymongo", "flask", "gunicorn")


# ---- pure parsing ------------------------------------------------------------------------------


def parse_mem_total_gib(meminfo: str) -> float | None:
    """MemTotal of /proc/meminfo in GiB."""
    found = re.search(r"^MemTotal:\s+([0-9]+) kB", meminfo, re.MULTILINE)
    return round(int(found.group(1)) / 1024 / 1024, 1) if found else None


def parse_cpu_model(cpuinfo: str) -> str | None:
    """The first 'model name' of /proc/cpuinfo."""
    found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return found.group(1).strip() if found else None


def parse_java_version(java_version_output: str) -> str | None:
    """'17.0.15' from the first line of `java -version` (which prints to stderr)."""
    found = re.search(r'version "([^"]+)"', java_version_output)
    return found.group(1) if found else None


def kafka_version_from_jars(names: list[str]) -> str | None:
    """The Kafka version from the jar names in the libs folder (kafka-clients-4.3.1.jar)."""
    for name in sorted(names):
        found = re.fullmatch(r"kafka-clients-([0-9][0-9A-Za-z.\-]*)\.jar", name)
        if found:
            return found.group(1)
    return None


def parse_cpu_times(stat: str) -> tuple[int, int]:
    """(busy, total) clock ticks of all cores from the aggregate `cpu` line of /proc/stat."""
    for line in stat.splitlines():
        if line.startswith("cpu "):
            # user nice system idle iowait irq softirq steal (guest time is inside user already)
            ticks = [int(x) for x in line.split()[1:9]]
            idle = ticks[3] + ticks[4]
            return sum(ticks) - idle, sum(ticks)
    raise ValueError("no aggregate cpu line in /proc/stat")


def busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Share of all cores busy between two /proc/stat samples (0 when no time passed)."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


# ---- I/O ---------------------------------------------------------------------------------------


def cpu_busy(sample_s: float = 2.0) -> float:
    """Share of all cores busy over the next `sample_s` seconds (whatever is running)."""
    before = parse_cpu_times(Path("/proc/stat").read_text())
    time.sleep(sample_s)
    return round(busy_fraction(before, parse_cpu_times(Path("/proc/stat").read_text())), 3)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def describe_machine(settings: Settings, client: MongoClient | None = None) -> dict[str, Any]:
    """Cores, RAM, CPU model, kernel, load and the versions of Python, Java, Kafka, MongoDB, ..."""
    try:
        java = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
    except OSError:
        java = ""
    libs = settings.stack.cache_dir / "kafka" / "libs"
    jars = [p.name for p in libs.glob("*.jar")] if libs.is_dir() else []
    versions: dict[str, str | None] = {
        "python": platform.python_version(),
        "java": parse_java_version(java),
        "kafka": kafka_version_from_jars(jars),
        "librdkafka": libversion()[0],
    }
    for package in PYTHON_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    mongo: dict[str, Any] = {
        "uri": redact_uri(settings.mongo.uri),
        "embedded": settings.mongo.embedded,
    }
    if client is not None:
        mongo["server_version"] = client.server_info().get("version")
    return {
        "cores": os.cpu_count(),
        "ram_gib": parse_mem_total_gib(_read("/proc/meminfo")),
        "cpu_model": parse_cpu_model(_read("/proc/cpuinfo")),
        "kernel": platform.release(),
        "load_average": load_average(),
        "versions": versions,
        "mongo": mongo,
    }
