"""Section 5: what an idle reader costs the server: its RSS with N readers connected.

Two holder processes on the load CPU open N/2 WebSocket readers each (the daemon's
from `latest` on a session that exists, the bare peer's on `/sub`) and keep them
open and quiet; the server's RSS is read before the first connects and once all
are connected and it has settled. Run as a section of `bench.run`, or

    python -m bench.idle hold --target daemon|peer --port P --count N
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import urllib.request
from pathlib import Path

import uvloop
import websockets

from bench import procs
from bench.common import batch_body, payload
from bench.harness import JSON_HEADERS, Plan, Row, Servers, url
from bench.procs import Child

SESSION = "idle"
HOLDERS = 2
SETTLE_S = 2.0


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def run(plan: Plan, servers: Servers) -> list[Row]:
    to = url(servers.daemon, f"/v1/sessions/{SESSION}/events")
    request = urllib.request.Request(
        to, data=batch_body([payload(0, 0, 0)]), headers=JSON_HEADERS, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10):
        pass
    return [
        _hold(plan.idle_readers, "daemon", servers.daemon),
        _hold(plan.idle_readers, "peer", servers.peer),
    ]


def _hold(count: int, target: str, server: Child) -> Row:
    time.sleep(SETTLE_S)
    before = rss_bytes(server.pid)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        holders = []
        for i in range(HOLDERS):
            share = count // HOLDERS + (i < count % HOLDERS)
            cmd = [sys.executable, "-m", "bench.idle", "hold", "--target", target]
            cmd += ["--port", str(server.port), "--count", str(share)]
            holders.append(stack.enter_context(Child(f"hold{i}", cmd, procs.LOAD_CPU, pipe=True)))
        held = sum(h.read_json(timeout=120)["held"] for h in holders)
        connected_s = time.monotonic() - started
        time.sleep(SETTLE_S)
        after = rss_bytes(server.pid)
    return {
        "server": target,
        "readers": held,
        "rss_before_mb": before / 2**20,
        "rss_after_mb": after / 2**20,
        "kb_per_reader": (after - before) / max(1, held) / 1024,
        "connect_s": connected_s,
        "errors": [] if held == count else [f"{count - held} readers did not connect"],
    }


async def hold(args: argparse.Namespace) -> None:
    base = f"ws://127.0.0.1:{args.port}"
    if args.target == "daemon":
        target, subprotocols = (
            f"{base}/v1/sessions/{SESSION}/stream?cursor=latest",
            ["livereplay.v1.json"],
        )
    else:
        target, subprotocols = f"{base}/sub", []
    offered = [websockets.Subprotocol(s) for s in subprotocols] or None
    sockets = []
    limit = asyncio.Semaphore(200)  # connections being opened at once

    async def one() -> None:
        async with limit:
            ws = await websockets.connect(
                target, subprotocols=offered, compression=None, open_timeout=60, ping_interval=None
            )
            await ws.recv()  # hello
            sockets.append(ws)

    results = await asyncio.gather(*(one() for _ in range(args.count)), return_exceptions=True)
    print(
        json.dumps(
            {"held": len(sockets), "failed": sum(isinstance(r, BaseException) for r in results)}
        ),
        flush=True,
    )
    # Hold them until the benchmark stops this process.
    await asyncio.sleep(600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["hold"])
    parser.add_argument("--target", choices=["daemon", "peer"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    uvloop.run(hold(parser.parse_args()))


if __name__ == "__main__":
    main()
