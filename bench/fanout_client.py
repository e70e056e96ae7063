"""Fan-out load processes: subscribers (`sub`) and the fixed-rate producer (`pub`).

    python -m bench.fanout_client sub --target daemon|peer|redis --port P --key K \
        --readers 50 --rate 1000 --warm-ms 1500 --window-ms 4000 --samples FILE
    python -m bench.fanout_client pub --target ... --port P --key K --rate 1000 \
        --warm-ms 1500 --window-ms 4000 --t0 NS

The producer sends event `seq` at `t0 + seq/rate` with its send time inside the
payload, one event per append. A subscriber records, per event sent inside the
measured window (after the warm-up), receive time minus send time; and counts
the events it received inside that window of wall time. Each process prints
JSON lines on stdout (`{"ready": ...}` once connected, then its result) and
stops by itself at its deadline.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import functools
import json
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import uvloop

from bench import lean_ws, redis_peer
from bench.common import Payload, batch_body, now_ns, payload, payload_decoder, percentile

DRAIN_S = 3.0
END = -2  # the seq of the producer's end marker
IN_FLIGHT = 4  # appends the producer may have unanswered


class _Event(msgspec.Struct):
    payload: Payload


class _Frame(msgspec.Struct):
    type: str
    events: list[_Event] = []


_frame_decoder = msgspec.json.Decoder(_Frame)


@dataclass
class Tally:
    """What one subscriber process saw, over all its readers."""

    warm_ns: int
    window_ns: int
    started: asyncio.Event = field(default_factory=asyncio.Event)
    deadline: float = 0.0  # time.monotonic(), set when every reader is connected
    samples: array.array[int] = field(default_factory=lambda: array.array("q"))
    in_window: int = 0
    received: int = 0
    gaps: int = 0
    done: int = 0

    def see(self, p: Payload, now: int) -> bool:
        """Record one event; True at the producer's end marker."""
        if p.seq < 0:
            return p.seq == END
        self.received += 1
        if self.warm_ns <= p.t - p.t0 < self.warm_ns + self.window_ns:
            self.samples.append(now - p.t)
        if self.warm_ns <= now - p.t0 < self.warm_ns + self.window_ns:
            self.in_window += 1
        return False

    async def until_deadline(self) -> float:
        """Wait for the start; the seconds left until the deadline."""
        await self.started.wait()
        return self.deadline - time.monotonic()


async def _ws_reader(
    port: int, path: str, subprotocol: str | None, framed: bool, tally: Tally, ready: asyncio.Event
) -> None:
    """`framed`: frames of the daemon's shape (events frames); else one raw event each.
    The first message (the daemon's `caught_up` from `latest`, the peer's hello) means
    connected."""
    first = True

    def on_message(message: bytes) -> bool:
        nonlocal first
        if first:
            first = False
            ready.set()
            return False
        now = now_ns()
        if not framed:
            return tally.see(payload_decoder.decode(message), now)
        frame = _frame_decoder.decode(message)
        if frame.type == "gap":
            tally.gaps += 1
        return any([tally.see(e.payload, now) for e in frame.events])

    reader = await lean_ws.connect(port, path, subprotocol, on_message)
    try:
        await asyncio.wait_for(ready.wait(), 30)
        async with asyncio.timeout(await tally.until_deadline()):
            await reader.closed
    except TimeoutError:
        return  # the deadline came first: counted as not done
    finally:
        reader.close()
    tally.done += 1


async def _redis_reader(port: int, key: str, tally: Tally, ready: asyncio.Event) -> None:
    r = redis_peer.client(port)
    try:
        await r.ping()
        ready.set()

        def on_payload(data: bytes) -> bool:
            return tally.see(payload_decoder.decode(data), now_ns())

        deadline = time.monotonic() + await tally.until_deadline()
        if await redis_peer.consume(r, key, on_payload, deadline):
            tally.done += 1
    finally:
        await r.aclose()


async def subscribe(args: argparse.Namespace) -> tuple[Tally, dict[str, object]]:
    tally = Tally(args.warm_ms * 1_000_000, args.window_ms * 1_000_000)
    readies = [asyncio.Event() for _ in range(args.readers)]
    make: Callable[[asyncio.Event], Coroutine[Any, Any, None]]
    port = args.port
    if args.target == "daemon":
        path = f"/v1/sessions/{args.key}/stream?cursor=latest"
        make = functools.partial(_ws_reader, port, path, "livereplay.v1.json", True, tally)
    elif args.target == "peer":
        make = functools.partial(_ws_reader, port, "/sub", None, False, tally)
    elif args.target == "frames":
        make = functools.partial(_ws_reader, port, "/frames", None, True, tally)
    else:
        make = functools.partial(_redis_reader, args.port, args.key, tally)
    tasks = [asyncio.create_task(make(ready)) for ready in readies]
    async with asyncio.timeout(args.connect_s):
        await asyncio.gather(*(ready.wait() for ready in readies))
    # The producer starts within a second of this line and stops a second after its
    # schedule at the latest; then its end marker, or this deadline, ends the readers.
    tally.deadline = time.monotonic() + 2 + (args.warm_ms + args.window_ms) / 1000 + DRAIN_S
    tally.started.set()
    _say({"ready": args.readers})
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    return tally, {
        "received": tally.received,
        "in_window": tally.in_window,
        "measured": len(tally.samples),
        "gaps": tally.gaps,
        "done": tally.done,
        "errors": errors[:3],
        "error_count": len(errors),
    }


async def publish(args: argparse.Namespace) -> None:
    """`batch` events per append at `rate` events/s, on schedule from `t0`, with at most
    IN_FLIGHT appends unanswered: the offered load does not depend on the round trip
    (on this VM a paced round trip to a bare server takes 2 ms), and a server that
    falls behind still gets fewer events rather than a growing queue."""
    batch = args.batch
    total = args.rate * (args.warm_ms + args.window_ms) // 1000 // batch
    step = 1_000_000_000 * batch // args.rate
    rtts: list[int] = []
    errors = 0
    late_max = 0
    r = redis_peer.client(args.port) if args.target == "redis" else None
    path = f"/v1/sessions/{args.key}/events" if args.target == "daemon" else "/append"
    url = f"http://127.0.0.1:{args.port}{path}"
    headers = {"content-type": "application/json"}
    # A server that cannot keep up gets fewer events, not a longer run.
    stop = args.t0 + total * step + 1_000_000_000
    sent = in_window = 0
    warm_ns = args.warm_ms * 1_000_000
    slots = asyncio.Semaphore(IN_FLIGHT)
    pending: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession() as http:

        async def send(data: list[bytes]) -> bool:
            if r is not None:
                async with r.pipeline(transaction=False) as pipe:
                    for d in data:
                        pipe.xadd(args.key, {redis_peer.FIELD: d}, maxlen=2048, approximate=True)
                    await pipe.execute()
                return True
            async with http.post(url, data=batch_body(data), headers=headers) as resp:
                await resp.read()
                return resp.status == 200

        async def timed(data: list[bytes], t: int) -> None:
            nonlocal errors
            try:
                errors += not await send(data)
            finally:
                rtts.append(now_ns() - t)
                slots.release()

        for n in range(total):
            if now_ns() > stop:
                break
            due = args.t0 + n * step
            wait = due - now_ns()
            if wait > 0:
                await asyncio.sleep(wait / 1e9)
            await slots.acquire()
            t = now_ns()
            late_max = max(late_max, t - due)
            data = [payload(n * batch + i, t, args.t0) for i in range(batch)]
            task = asyncio.create_task(timed(data, t))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += batch
            in_window += batch * (warm_ns <= t - args.t0 < warm_ns + args.window_ms * 1_000_000)
        await asyncio.gather(*pending)
        elapsed = (now_ns() - args.t0) / 1e9
        # The end marker tells the readers to stop once they have received everything.
        await send([payload(END, now_ns(), args.t0)])
    if r is not None:
        await r.aclose()
    rtts.sort()
    _say(
        {
            "sent": sent,
            "in_window": in_window,
            "rate": sent / elapsed,
            "errors": errors,
            "append_p50_ms": percentile(rtts, 0.5) / 1e6,
            "append_p99_ms": percentile(rtts, 0.99) / 1e6,
            "late_max_ms": late_max / 1e6,
        }
    )


def _say(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["sub", "pub"])
    parser.add_argument("--target", choices=["daemon", "peer", "frames", "redis"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", required=True, help="session id or stream key")
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1, help="events per append")
    parser.add_argument("--warm-ms", type=int, default=1500)
    parser.add_argument("--window-ms", type=int, default=4000)
    parser.add_argument("--connect-s", type=float, default=20.0)
    parser.add_argument("--samples", default="/dev/null")
    parser.add_argument("--t0", type=int, default=0)
    args = parser.parse_args()
    if args.role == "pub":
        uvloop.run(publish(args))
        return
    tally, result = uvloop.run(subscribe(args))
    Path(args.samples).write_bytes(tally.samples.tobytes())
    _say(result)


if __name__ == "__main__":
    main()
