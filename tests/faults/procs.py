"""Sampling the daemons' footprint during a scenario: peak RSS and peak open fds.

A thread reads /proc/<pid>/status (VmRSS) and lists /proc/<pid>/fd every few tens
of milliseconds for each watched process. Pids are looked up on every sample, so a
daemon restarted in place keeps being watched under the same name.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from tests.support.daemon import DaemonProcess
from tests.support.redis import RedisServer


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def pid_of(process: DaemonProcess | RedisServer) -> Callable[[], int | None]:
    def current() -> int | None:
        proc = process.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    return current


@dataclass
class Peak:
    rss: int = 0
    fds: int = 0


class Sampler:
    """Peak RSS and fds per watched process, sampled in a background thread."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.peaks: dict[str, Peak] = {}
        self._pids: dict[str, Callable[[], int | None]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._lock = threading.Lock()

    def watch(self, name: str, pid: Callable[[], int | None]) -> None:
        with self._lock:
            self._pids[name] = pid
            self.peaks.setdefault(name, Peak())

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(RuntimeError):
            self._thread.join(5)

    def sample(self) -> None:
        with self._lock:
            watched = list(self._pids.items())
        for name, pid_now in watched:
            pid = pid_now()
            if pid is None:
                continue
            rss, fds = rss_bytes(pid), open_fds(pid)
            peak = self.peaks[name]
            peak.rss = max(peak.rss, rss or 0)
            peak.fds = max(peak.fds, fds or 0)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    @property
    def peak_rss_mb(self) -> float:
        return max((p.rss for p in self.peaks.values()), default=0) / (1 << 20)

    @property
    def peak_fds(self) -> int:
        return max((p.fds for p in self.peaks.values()), default=0)
