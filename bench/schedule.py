"""When the end-to-end bench's windows run, so that they never race the scheduler's own runs (pure).

The scheduled ingest of a source pulls each whole interval (a minute for the simulator) as soon as
it ends. A bench window that reached across an interval's end, or closed right at it, would see
some of its documents written first by that scheduled run. So the bench's windows are laid out
inside one interval, with room before the interval's end for the last of them to land.
"""

from __future__ import annotations

MIN_LEAD_S = 2


def windows_in_one_interval(
    now_s: float, window_s: int, count: int, interval_s: int
) -> list[tuple[int, int]]:
    """`count` consecutive [since, until) windows of `window_s` seconds (epoch seconds) inside the
    first interval (aligned to multiples of `interval_s`) that still has room after `now_s`.

    A third of the spare time goes before the first window, two thirds after the last one.
    """
    if window_s < 1 or count < 1:
        raise ValueError(f"need positive windows, got {count} x {window_s}s")
    spare = interval_s - count * window_s
    if spare < 3 * MIN_LEAD_S:
        raise ValueError(
            f"{count} windows of {window_s}s leave {spare}s of a {interval_s}s interval: "
            "use fewer or shorter windows"
        )
    lead = max(MIN_LEAD_S, spare // 3)
    start = int(now_s // interval_s) * interval_s + lead
    if start < now_s + 1:
        start += interval_s
    return [(start + k * window_s, start + (k + 1) * window_s) for k in range(count)]
