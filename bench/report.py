"""Printing `bench.run`'s figures: the environment first, then one table per section."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from importlib import metadata
from typing import Any

from bench import calibrate, procs
from bench.harness import BATCH, RETAINED, Row

Column = tuple[str, str, str]  # header, row key, format
BUSY_WARNING = 0.3


class Table:
    def __init__(self, title: str, columns: list[Column], key: str) -> None:
        self.title = title
        self.columns = columns
        self.key = key  # the figure shown for every run
        self.key_fmt = next(fmt for _, k, fmt in columns if k == key)


FANOUT_COLUMNS: list[Column] = [
    ("server", "server", "s"),
    ("load", "load", "s"),
    ("events/s in", "rate_in", ",.0f"),
    ("deliveries/s", "delivered_per_s", ",.0f"),
    ("p50 ms", "p50_ms", ".2f"),
    ("p99 ms", "p99_ms", ".2f"),
    ("max ms", "max_ms", ".1f"),
    ("missing", "missing", "d"),
    ("gaps", "gaps", "d"),
    ("append p99 ms", "append_p99_ms", ".2f"),
    ("server CPU", "server_cpu", ".2f"),
    ("subscr. CPU", "sub_cpu", ".2f"),
]

TABLES = {
    "ingest": Table(
        f"1. HTTP batch ingest: batches of {BATCH} events (~200-byte payloads) for a fixed time",
        [
            ("server", "server", "s"),
            ("in flight", "in_flight", "d"),
            ("events/s", "events_per_s", ",.0f"),
            ("req p50 ms", "req_p50_ms", ".2f"),
            ("req p99 ms", "req_p99_ms", ".2f"),
            ("server CPU", "server_cpu", ".2f"),
            ("client CPU", "client_cpu", ".2f"),
        ],
        "events_per_s",
    ),
    "backlog": Table(
        f"2. Backlog: a new reader receives {RETAINED} retained events (median of the reads)",
        [
            ("server", "server", "s"),
            ("events", "events", "s"),
            ("connect->caught_up ms", "total_ms", ".2f"),
            ("p90 ms", "total_p90_ms", ".2f"),
            ("after handshake ms", "after_open_ms", ".2f"),
            ("events/s", "events_per_s", ",.0f"),
            ("server CPU ms/read", "server_cpu_ms", ".2f"),
        ],
        "total_ms",
    ),
    "fanout": Table(
        "3. Fan-out: load = readers x events/s [/ events per append]; latency = receive - "
        "send time (CLOCK_MONOTONIC); with batched appends the peer is the bare server "
        "sending each append as one frame (the readers' ceiling)",
        FANOUT_COLUMNS,
        "p99_ms",
    ),
    "fanout-redis": Table(
        "4. Fan-out of the daemon on the Redis backend (compare the daemon rows of 3)",
        FANOUT_COLUMNS,
        "p99_ms",
    ),
    "idle": Table(
        "5. Idle readers: the server's RSS with them all connected",
        [
            ("server", "server", "s"),
            ("readers", "readers", "d"),
            ("RSS before MB", "rss_before_mb", ".1f"),
            ("RSS after MB", "rss_after_mb", ".1f"),
            ("KB per reader", "kb_per_reader", ".1f"),
            ("connect s", "connect_s", ".1f"),
        ],
        "kb_per_reader",
    ),
}


def combine(runs: list[list[Row]]) -> list[Row]:
    """Row by row, the median of each number over the runs; `runs` keeps every run's row."""
    combined = []
    for rows in zip(*runs, strict=True):
        row: Row = dict(rows[0])
        for key, value in rows[0].items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                middle = statistics.median(r[key] for r in rows)
                row[key] = round(middle) if isinstance(value, int) else middle
        row["runs"] = list(rows)
        row["errors"] = [e for r in rows for e in r.get("errors", [])]
        combined.append(row)
    return combined


def _cell(value: Any, fmt: str) -> str:
    if fmt == "s":
        return str(value)
    return format(round(value) if fmt == "d" else value, fmt)


def _line(cells: list[str], widths: list[int]) -> str:
    """The first column left-aligned, the numbers right-aligned."""
    return "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def print_table(section: str, rows: list[Row]) -> None:
    table = TABLES[section]
    headers = [c[0] for c in table.columns] + ["each run"]
    body = [
        [_cell(row[key], fmt) for _, key, fmt in table.columns]
        + ["/".join(_cell(r[table.key], table.key_fmt) for r in row["runs"])]
        for row in rows
    ]
    widths = [max(len(h), *(len(cells[i]) for cells in body)) for i, h in enumerate(headers)]
    print(f"\n{table.title}")
    print(_line(headers, widths))
    for cells in body:
        print(_line(cells, widths))
    for row in rows:
        for error in row["errors"][:2]:
            print(f"  ! {row['server']}: {error}")
    sys.stdout.flush()


def busy_cpus(seconds: float = 1.0) -> float:
    """How many CPUs something else keeps busy right now (from /proc/stat), before we start."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(n) for n in f.readline().split()[1:]]
        return sum(ticks), ticks[3] + ticks[4]  # all, idle + iowait

    total, idle = sample()
    time.sleep(seconds)
    total2, idle2 = sample()
    cpus = os.cpu_count() or 1
    return cpus * (1 - (idle2 - idle) / max(1, total2 - total))


def environment() -> dict[str, Any]:
    """Machine, date, load, versions and the loopback cost: what every figure depends on."""
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    versions = {}
    for name in ("uvicorn", "starlette", "websockets", "msgspec", "uvloop", "httptools",
                 "redis", "hiredis", "aiohttp"):  # fmt: skip
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    answer = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    burst_us, paced_us = calibrate.loopback_send_us()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} x {cpu}, {platform.system()} {platform.release()}",
        "loadavg_before": os.getloadavg()[0],
        "busy_cpus_before": busy_cpus(),
        "python": platform.python_version(),
        "versions": versions,
        "redis_server": answer.stdout.split(" v=")[-1].split()[0] if answer.stdout else "?",
        "pinned": procs.pinning(),
        "send_us": (burst_us, paced_us),
    }


def print_environment(env: dict[str, Any], reps: int) -> None:
    print(f"livereplay daemon benchmark, {env['date']}")
    print(f"machine: {env['machine']}; load average before: {env['loadavg_before']:.2f}")
    busy = env["busy_cpus_before"]
    print(f"CPUs busy with other work just before: {busy:.2f}")
    if busy > BUSY_WARNING:
        print("  ! the machine is busy: figures will be lower and noisier than on an idle one")
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    print(f"python {env['python']}, redis-server {env['redis_server']}, {versions}")
    burst, paced = env["send_us"]
    print(f"loopback send() of 200 bytes: {burst:.1f} us back to back, {paced:.1f} us paced")
    print("servers on CPU 0, load generators on CPU 1" if env["pinned"] else "not pinned")
    print(f"every figure is the median of {reps} run(s)")
    sys.stdout.flush()
