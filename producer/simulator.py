"""Deterministic IoT device simulator: every reading is a pure function of (device, epoch second).

Nothing here keeps state or draws random numbers, so any past window can be generated again, byte
for byte, by any process. Per-device constants and per-reading jitter come from blake2b, never from
Python's `hash()`, which is salted per process.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Out of every MALFORMED_SCALE readings (by hash bucket), MALFORMED_BUCKETS are malformed: ~1%.
MALFORMED_SCALE = 1000
MALFORMED_BUCKETS = 10
MALFORMED_KINDS = ("missing_value", "wrong_type", "null_value", "impossible_value")


@dataclass(frozen=True)
class DeviceType:
    """One kind of device: what it measures, in which unit, and its normal range."""

    name: str
    sensor: str
    unit: str
    low: float
    high: float
    # Values no working sensor of this kind can report (used for "impossible_value" readings).
    impossible: tuple[float, ...]


DEVICE_TYPES: tuple[DeviceType, ...] = (
    DeviceType("thermostat", "temperature", "C", 10.0, 30.0, (999.0,)),
    DeviceType("barometer", "pressure", "hPa", 900.0, 1100.0, (-5.0,)),
    DeviceType("hygrometer", "humidity", "%RH", 30.0, 100.0, (180.0,)),
    DeviceType("heart_rate_meter", "heart_rate", "bpm", 60.0, 100.0, (0.0, 400.0)),
)

# Each sinusoid: (share of the half-range as amplitude, shortest period s, longest period s).
# Amplitudes + centre offset + jitter stay under the half-range, so valid values never leave it.
_WAVES = ((0.50, 3600, 14400), (0.25, 900, 3600), (0.10, 180, 600))
_CENTRE_SHIFT = 0.05
_JITTER = 0.01


@dataclass(frozen=True)
class _DeviceProfile:
    index: int
    device_id: str
    kind: DeviceType
    centre: float
    half: float
    waves: tuple[tuple[float, float, float], ...]  # (amplitude, angular frequency, phase)


def _unit(*parts: object, salt: str = "") -> float:
    """A deterministic number in [0, 1) derived from the parts."""
    text = "|".join(str(p) for p in parts)
    digest = hashlib.blake2b(text.encode(), digest_size=8, person=salt.encode()[:16]).digest()
    return int.from_bytes(digest, "big") / 2**64


def device_type(device_index: int) -> DeviceType:
    """The type of device number `device_index` (types cycle by index)."""
    return DEVICE_TYPES[device_index % len(DEVICE_TYPES)]


def device_id(device_index: int) -> str:
    """The id of device number `device_index`, e.g. "thermostat-000"."""
    return f"{device_type(device_index).name}-{device_index:03d}"


def device_ids(n: int) -> list[str]:
    """The ids of the first `n` devices."""
    return [device_id(i) for i in range(n)]


@lru_cache(maxsize=4096)
def _profile(device_index: int) -> _DeviceProfile:
    # Cached because the constants are hashed once per device, not once per reading.
    if device_index < 0:
        raise ValueError(f"device index must be >= 0, got {device_index}")
    kind = device_type(device_index)
    dev = device_id(device_index)
    half = (kind.high - kind.low) / 2
    centre = kind.low + half + (2 * _unit(dev, "centre") - 1) * _CENTRE_SHIFT * half
    waves = []
    for k, (share, shortest, longest) in enumerate(_WAVES):
        period = shortest + _unit(dev, "period", k) * (longest - shortest)
        phase = _unit(dev, "phase", k) * 2 * math.pi
        waves.append((share * half, 2 * math.pi / period, phase))
    return _DeviceProfile(device_index, dev, kind, centre, half, tuple(waves))


def format_ts(epoch_s: int) -> str:
    """A whole UTC second as ISO-8601 with Z, e.g. "2026-11-23T09:00:00Z"."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


def true_value(device_index: int, epoch_s: int) -> float:
    """What device `device_index` measures at `epoch_s`: smooth drift plus a small jitter."""
    p = _profile(device_index)
    value = p.centre + sum(amp * math.sin(omega * epoch_s + phase) for amp, omega, phase in p.waves)
    value += (2 * _unit(p.device_id, epoch_s, salt="jitter") - 1) * _JITTER * p.half
    return round(value, 2)


def malformed_kind(device_id: str, ts: str) -> str | None:
    """Which way the reading of `device_id` at `ts` is malformed, or None when it is valid."""
    digest = hashlib.blake2b(f"{device_id}|{ts}".encode(), digest_size=8).digest()
    if int.from_bytes(digest[:4], "big") % MALFORMED_SCALE >= MALFORMED_BUCKETS:
        return None
    return MALFORMED_KINDS[digest[4] % len(MALFORMED_KINDS)]


def reading(device_index: int, epoch_s: int) -> dict[str, Any]:
    """The reading of device `device_index` at whole UTC second `epoch_s` (maybe malformed)."""
    p = _profile(device_index)
    ts = format_ts(epoch_s)
    value = true_value(device_index, epoch_s)
    kind = malformed_kind(p.device_id, ts)
    record: dict[str, Any] = {
        "device_id": p.device_id,
        "device_type": p.kind.name,
        "sensor": p.kind.sensor,
        "value": value,
        "unit": p.kind.unit,
        "ts": ts,
    }
    if kind == "missing_value":
        del record["value"]
    elif kind == "wrong_type":
        record["value"] = f"{value:.1f}{p.kind.unit}"
    elif kind == "null_value":
        record["value"] = None
    elif kind == "impossible_value":
        choices = p.kind.impossible
        record["value"] = choices[int(_unit(p.device_id, ts, salt="impossible") * len(choices))]
    return record


def ceil_epoch_s(moment: datetime) -> int:
    """The first whole epoch second at or after `moment` (naive is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - EPOCH
    # Integer arithmetic: a float timestamp could round x.999999 up or down across the boundary.
    whole = delta.days * 86400 + delta.seconds
    return whole + (1 if delta.microseconds else 0)


def readings(
    since: datetime,
    until: datetime,
    n_devices: int,
    start_after: tuple[int, int] | None = None,
) -> Iterator[dict[str, Any]]:
    """Lazily yield every reading with since <= ts < until, ordered by (ts, device index).

    `start_after` is the (epoch second, device index) of the last reading already consumed; the
    iteration resumes right after it (positions before the window start are ignored).
    """
    if n_devices < 0:
        raise ValueError(f"n_devices must be >= 0, got {n_devices}")
    first_s, end_s = ceil_epoch_s(since), ceil_epoch_s(until)
    if n_devices == 0 or end_s <= first_s:
        return
    second, index = first_s, 0
    if start_after is not None:
        after_s, after_i = start_after
        resume = (after_s, after_i + 1) if after_i + 1 < n_devices else (after_s + 1, 0)
        second, index = max((first_s, 0), resume)
    while second < end_s:
        for i in range(index, n_devices):
            yield reading(i, second)
        second, index = second + 1, 0
