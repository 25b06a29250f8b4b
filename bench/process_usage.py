"""What a measured process cost: its CPU seconds and its peak resident memory (psutil)."""

from __future__ import annotations

import logging
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

MIB = 1024 * 1024
log = logging.getLogger(__name__)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float, what: str = "process") -> None:
    """SIGTERM a process the bench started (by its PID); SIGKILL it if it has not exited in
    `timeout_s`."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("%s pid=%d ignored SIGTERM for %.0fs, killing it", what, proc.pid, timeout_s)
        proc.kill()
        proc.wait(timeout_s)


@dataclass(frozen=True)
class Usage:
    """CPU seconds (user + system, the process and its children) and peak RSS in MiB."""

    cpu_s: float
    peak_rss_mib: float


def parse_vm_hwm_bytes(status: str) -> int | None:
    """VmHWM (the kernel's peak resident set) of a /proc/<pid>/status text, in bytes."""
    found = re.search(r"^VmHWM:\s+([0-9]+) kB", status, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else None


class UsageSampler:
    """Samples one process (and its children) while it runs; `usage()` is the last reading.

    The peak is the larger of the kernel's VmHWM of the process itself and the highest sum of
    resident sets seen over the tree at a sample, so a child's memory counts too.
    """

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self._cpu_s = 0.0
        self._peak_bytes = 0

    def sample(self) -> None:
        """Read the tree's CPU time and resident sets now (a process gone meanwhile is skipped)."""
        cpu = 0.0
        rss = 0
        try:
            tree = [self._process, *self._process.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for process in tree:
            try:
                times = process.cpu_times()
                cpu += times.user + times.system
                rss += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        self._cpu_s = max(self._cpu_s, cpu)
        self._peak_bytes = max(self._peak_bytes, rss)
        try:
            hwm = parse_vm_hwm_bytes(Path(f"/proc/{self._process.pid}/status").read_text())
        except OSError:
            hwm = None
        if hwm:
            self._peak_bytes = max(self._peak_bytes, hwm)

    def usage(self) -> Usage:
        return Usage(round(self._cpu_s, 2), round(self._peak_bytes / MIB, 1))
