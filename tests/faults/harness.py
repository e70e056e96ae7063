"""What every scenario shares: its scale, its processes, the ending and the verdict.

A scenario starts daemons, a writer and readers through a `FaultRun`, injects its
faults (noting each with `run.fault(...)`), then calls `run.finish(...)`: the
writers flush, the readers catch up (bounded) with the session's final tail, the
checker runs on every reader, a summary row is recorded, and duplicates,
out-of-order deliveries and unreported holes fail the test with a diagnosis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.faults.history import Report, Totals, Writers
from tests.faults.procs import Sampler, pid_of
from tests.faults.readers import Reader, wait_caught_up
from tests.faults.writer_proc import WriterProcess
from tests.support.daemon import DaemonProcess
from tests.support.redis import RedisServer

SOAK = os.environ.get("LIVEREPLAY_SOAK", "") not in ("", "0")
# Quiet daemons: a thousand connections at info level is a lot of log.
QUIET = ["--log-level", "warning"]


@dataclass(frozen=True)
class Scale:
    """Short (in `make test`) or soak (`make soak`, LIVEREPLAY_SOAK=1)."""

    name: str

    @property
    def soak(self) -> bool:
        return self.name == "soak"

    def pick(self, short: Any, soak: Any) -> Any:
        return soak if self.soak else short


def scales() -> list[Scale]:
    return [Scale("soak")] if SOAK else [Scale("short")]


def deadline_wait(
    condition: Callable[[], bool], timeout: float, message: Callable[[], str]
) -> None:
    """Poll `condition` until true; fail with `message()` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:.0f} s: {message()}")
        time.sleep(0.02)


async def async_wait(
    condition: Callable[[], bool], timeout: float, message: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:.0f} s: {message()}")
        await asyncio.sleep(0.02)


def http_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    """(status, decoded body) of a GET; the status of an HTTP error too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        with contextlib.suppress(ValueError):
            return exc.code, json.loads(body)
        return exc.code, body.decode(errors="replace")


def tail_of(base_url: str, session_id: str, timeout: float = 15.0) -> tuple[str, int]:
    """(incarnation, position) of the session's tail (`GET .../cursor`), retried while
    the daemon answers 503 or is unreachable."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, body = http_json(f"{base_url}/v1/sessions/{session_id}/cursor")
        except OSError as exc:
            last = exc
        else:
            if status == 200:
                return body["incarnation"], body["position"]
            last = (status, body)
        time.sleep(0.1)
    raise AssertionError(f"no tail for {session_id} within {timeout:.0f} s: {last}")


def metric(base_url: str, name: str, labels: str = "") -> float:
    """One sample of the daemon's /metrics (0 when absent), e.g.
    `metric(url, "livereplay_appends_refused_total", 'code="rate_limited"')`."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    wanted = name + ("{" + labels + "}" if labels else "")
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == wanted or (not labels and re.fullmatch(re.escape(name) + r"\{.*\}", key)):
            total += float(value)
    return total


@dataclass
class Row:
    """One line of the summary table (and of artifacts/faults.json)."""

    scenario: str
    scale: str
    faults: list[str] = field(default_factory=list)
    acknowledged: int = 0
    sent: int = 0
    readers: int = 0
    deliveries: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    holes: int = 0
    gaps: dict[str, int] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    peak_fds: int = 0
    outcome: str = "unfinished"


class FaultRun:
    """One scenario's processes and records; cleans every process up at the end."""

    def __init__(self, scenario: str, scale: Scale) -> None:
        self.scenario = scenario
        self.scale = scale
        self.writers = Writers()
        self.readers: list[Reader] = []
        self.daemons: list[DaemonProcess] = []
        self.redis: list[RedisServer] = []
        self.writer_procs: list[WriterProcess] = []
        self.faults: Counter[str] = Counter()
        self.sampler = Sampler().start()
        self.reports: list[Report] = []
        self.row = Row(scenario, scale.name)

    # -- processes ---------------------------------------------------------------

    def daemon(self, *args: str, env: dict[str, str] | None = None) -> DaemonProcess:
        daemon = DaemonProcess(args=[*QUIET, *args], env=env)
        daemon.start()
        self.daemons.append(daemon)
        self.sampler.watch(f"daemon-{len(self.daemons)}", pid_of(daemon))
        return daemon

    def redis_server(self) -> RedisServer:
        server = RedisServer()
        server.start()
        self.redis.append(server)
        return server

    def writer(self, url: str, session_id: str, *args: str, rate: float = 1000.0) -> WriterProcess:
        proc = WriterProcess(url, session_id, self.writers, *args, rate=rate)
        self.writer_procs.append(proc)
        return proc.start()

    def reader(self, name: str, base_url: str, session_id: str, **kwargs: Any) -> Reader:
        reader = Reader(name, base_url, session_id, **kwargs)
        self.readers.append(reader)
        return reader.start()

    def fault(self, what: str) -> None:
        self.faults[what] += 1

    def kill_daemon(self, daemon: DaemonProcess, pause_s: float = 0.2) -> None:
        """kill -9, a short outage, a restart on the same port."""
        daemon.kill()
        self.fault("daemon kill -9")
        time.sleep(pause_s)
        daemon.start()

    # -- the end -----------------------------------------------------------------

    async def finish(
        self,
        base_url: str,
        session_id: str,
        readers: list[Reader] | None = None,
        catch_up_s: float = 30.0,
    ) -> list[Report]:
        """Flush the writers, let the readers catch up with the final tail, check them all."""
        for proc in self.writer_procs:
            if proc.proc is not None and proc.proc.poll() is None:
                await asyncio.to_thread(proc.stop)
        readers = self.readers if readers is None else readers
        incarnation, position = await asyncio.to_thread(tail_of, base_url, session_id)
        try:
            await wait_caught_up(readers, incarnation, position, catch_up_s)
        finally:
            for reader in self.readers:
                await reader.stop()
            self.reports = [r.history.check(self.writers) for r in readers]
            self._fill_row()
        return self.reports

    def _fill_row(self) -> None:
        totals = Totals.of(self.reports)
        row = self.row
        row.faults = [f"{what} x{n}" if n > 1 else what for what, n in self.faults.items()]
        row.acknowledged = self.writers.acknowledged
        row.sent = self.writers.sent
        row.readers = totals.readers
        row.deliveries = totals.deliveries
        row.duplicates = totals.duplicates
        row.out_of_order = totals.out_of_order
        row.holes = totals.holes
        row.gaps = dict(sorted(totals.gaps.items()))
        ok = not (totals.duplicates or totals.out_of_order or totals.holes or totals.failures)
        row.outcome = "ok" if ok else "broken promise"

    def assert_clean(self) -> None:
        """0 duplicates, 0 out-of-order, 0 unreported holes, no reader refused."""
        bad = [r for r in self.reports if not r.ok]
        if bad:
            totals = Totals.of(self.reports)
            shown = "\n".join(r.describe() for r in bad[:4])
            raise AssertionError(
                f"{len(bad)} of {len(self.reports)} readers saw broken promises "
                f"(duplicates {totals.duplicates}, out of order {totals.out_of_order}, "
                f"unreported holes {totals.holes}, gaps {dict(totals.gaps)}):\n{shown}"
            )

    def assert_no_gaps(self, why: str) -> None:
        gapped = [r for r in self.reports if r.gaps]
        if gapped:
            totals = Totals.of(self.reports)
            shown = "\n".join(r.describe() for r in gapped[:3])
            raise AssertionError(
                f"{len(gapped)} readers got gaps {dict(totals.gaps)} although {why}:\n{shown}"
            )

    async def aclose(self, outcome: str | None) -> None:
        for reader in self.readers:
            await reader.stop()
        if not self.reports:
            # It failed before the end: the writers' figures still say how far it got.
            self.row.faults = [f"{w} x{n}" if n > 1 else w for w, n in self.faults.items()]
            self.row.acknowledged = self.writers.acknowledged
            self.row.sent = self.writers.sent
        self.sampler.sample()
        self.sampler.stop()
        self.row.peak_rss_mb = round(self.sampler.peak_rss_mb, 1)
        self.row.peak_fds = self.sampler.peak_fds
        if outcome is not None:
            self.row.outcome = outcome
        for proc in self.writer_procs:
            await asyncio.to_thread(proc.close)
        for daemon in self.daemons:
            with contextlib.suppress(Exception):
                if daemon.proc is not None and daemon.proc.poll() is None:
                    await asyncio.to_thread(daemon.stop, 5)
            with contextlib.suppress(OSError):
                daemon.log_path.unlink()
        for server in self.redis:
            with contextlib.suppress(Exception):
                server.stop()
            with contextlib.suppress(OSError):
                server.log_path.unlink()
