"""The daemon benchmark (issue 2): ingest, backlog delivery and fan-out, beside two peers.

    python -m bench.run [--quick] [--reps N] [--only ingest,backlog,fanout,fanout-redis,idle]
                        [--loads 100x1000,1000x1000/10] [--redis-loads 100x100] [--json FILE]

Every figure is measured in the same run for the daemon (`livereplay serve`,
a child process), a bare uvicorn broadcast (`bench.peer_broadcast`) and Redis
Streams through redis-py (a throw-away `redis-server`). Servers are pinned to
CPU 0; this process and the load generators to CPU 1. Every window is a few
seconds, every child has a deadline and is stopped by its PID. Prints tables
(the median of `--reps` runs, and each run's key figure); asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

from bench import backlog, fanout, idle, ingest, procs, report
from bench.harness import Load, Plan, Row, servers

SECTIONS = ("ingest", "backlog", "fanout", "fanout-redis", "idle")
# Loads of the full run: one reader (the machine's round trip, the floor for append
# latency), the loads, and the ceiling (batched appends).
LOADS = (Load(1, 100), Load(100, 1000), Load(100, 100), Load(1000, 100), Load(1000, 1000, 10))
QUICK_LOADS = (Load(100, 1000), Load(1000, 100))
REDIS_LOADS = (Load(100, 100), Load(100, 1000), Load(1000, 100))


def _loads(text: str) -> tuple[Load, ...]:
    """`100x1000,1000x1000/10`: readers x events/s [/ events per append]."""
    loads = []
    for part in filter(None, text.split(",")):
        match = re.fullmatch(r"(\d+)x(\d+)(?:/(\d+))?", part)
        if match is None or min(int(g) for g in match.groups("1")) < 1:
            raise argparse.ArgumentTypeError(
                f"loads are READERSxRATE[/BATCH], comma-separated: {text!r}"
            )
        loads.append(Load(int(match[1]), int(match[2]), int(match[3] or 1)))
    if not loads:
        raise argparse.ArgumentTypeError("no load given")
    return tuple(loads)


def parse(argv: list[str] | None) -> tuple[Plan, tuple[str, ...], Path | None]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="1 run, short windows (< 1 min)")
    parser.add_argument("--reps", type=int, help="runs per figure (default 3; 1 with --quick)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument(
        "--loads",
        type=_loads,
        help="fan-out loads, READERSxEVENTS_PER_S[/EVENTS_PER_APPEND] "
        f"(default {','.join(map(str, LOADS))}; quick {','.join(map(str, QUICK_LOADS))})",
    )
    parser.add_argument(
        "--redis-loads",
        type=_loads,
        help="loads of the daemon on the Redis backend "
        f"(default {','.join(map(str, REDIS_LOADS))})",
    )
    parser.add_argument(
        "--idle-readers", type=int, default=10_000, help="idle readers held (default 10000)"
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args(argv)
    sections = tuple(s.strip() for s in args.only.split(",") if s.strip())
    if unknown := set(sections) - set(SECTIONS):
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.reps is not None and args.reps < 1:
        parser.error("--reps must be at least 1")
    quick = args.quick
    plan = Plan(
        reps=args.reps or (1 if quick else 3),
        ingest_s=1.5 if quick else 3.0,
        backlog_reads=10 if quick else 30,
        loads=args.loads or (QUICK_LOADS if quick else LOADS),
        redis_loads=args.redis_loads or (REDIS_LOADS[:1] if quick else REDIS_LOADS),
        warm_ms=1000 if quick else 1500,
        window_ms=2000 if quick else 4000,
        idle_readers=args.idle_readers,
    )
    return plan, sections, args.json


def measure(section: str, plan: Plan) -> list[Row]:
    """Every run of one section against one set of fresh servers; the combined rows."""
    runs: list[list[Row]] = []
    if section == "idle":  # fresh servers each run: a server keeps its peak RSS
        for _ in range(plan.reps):
            with servers() as running:
                runs.append(idle.run(plan, running))
        return report.combine(runs)
    with servers("redis" if section == "fanout-redis" else "memory") as running:
        for rep in range(plan.reps):
            if section == "fanout":
                runs.append(fanout.run(plan, rep, running, plan.loads))
            elif section == "fanout-redis":
                runs.append(fanout.run(plan, rep, running, plan.redis_loads, ("daemon",)))
            else:
                module = ingest if section == "ingest" else backlog
                runs.append(uvloop.run(module.run(plan, rep, running)))
    return report.combine(runs)


def main(argv: list[str] | None = None) -> None:
    plan, sections, json_path = parse(argv)
    # Ctrl-C and SIGTERM unwind, so every child is stopped on the way out (a shell
    # may start a background job with SIGINT ignored: take it back).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    procs.pin_self(procs.LOAD_CPU)
    env = report.environment()
    report.print_environment(env, plan.reps)
    results: dict[str, Any] = {"environment": env, "plan": plan.__dict__}
    started = time.monotonic()
    try:
        for section in sections:
            rows = measure(section, plan)
            report.print_table(section, rows)
            results[section] = rows
    except KeyboardInterrupt:
        sys.exit("interrupted; every child process was stopped")
    print(f"\ntook {time.monotonic() - started:.0f} s")
    if json_path:
        json_path.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
