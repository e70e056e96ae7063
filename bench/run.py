"""The daemon benchmark (issue 2): ingest, backlog delivery and fan-out, beside two peers.

    python -m bench.run [--quick] [--reps N] [--only ingest,backlog,fanout]
                        [--loads 100x1000,100x100] [--json FILE]

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
import signal
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

from bench import backlog, fanout, ingest, procs, report
from bench.harness import Plan, Row, servers

SECTIONS = ("ingest", "backlog", "fanout")


def _loads(text: str) -> tuple[tuple[int, int], ...]:
    """`100x1000,100x100`: readers x events/s."""
    try:
        pairs = [tuple(int(n) for n in part.split("x")) for part in text.split(",") if part]
    except ValueError:
        pairs = []
    if not pairs or any(len(p) != 2 or min(p) < 1 for p in pairs):
        raise argparse.ArgumentTypeError(f"loads are READERSxRATE, comma-separated: {text!r}")
    return tuple((p[0], p[1]) for p in pairs)


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
        help="fan-out loads, READERSxEVENTS_PER_S (default 100x1000,100x100; 100x1000 quick)",
    )
    parser.add_argument(
        "--daemon-backend",
        choices=("memory", "redis"),
        default="memory",
        help="the daemon's storage backend (redis: the same redis-server as the Redis rows)",
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
        loads=args.loads or (((100, 1000),) if quick else ((100, 1000), (100, 100))),
        warm_ms=1000 if quick else 1500,
        window_ms=2000 if quick else 4000,
        daemon_backend=args.daemon_backend,
    )
    return plan, sections, args.json


def measure(section: str, plan: Plan) -> list[Row]:
    """Every run of one section against one set of fresh servers; the combined rows."""
    runs: list[list[Row]] = []
    with servers(plan.daemon_backend) as running:
        for rep in range(plan.reps):
            if section == "fanout":
                runs.append(fanout.run(plan, rep, running))
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
    print(f"daemon backend: {plan.daemon_backend}")
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
