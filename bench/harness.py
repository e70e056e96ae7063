"""What every section of `bench.run` shares: the plan, the three servers, an HTTP post."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiohttp

from bench import procs
from bench.procs import Child

BATCH = 100
RETAINED = 2048
# Ingest must measure the daemon, not its per-writer rate limit (10,000 events/s by
# default); readers ask for `latest` at once, so no startup grace either.
DAEMON_FLAGS = ("--max-append-rate", "0", "--startup-grace-s", "0")
JSON_HEADERS = {"content-type": "application/json"}

Row = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    reps: int
    ingest_s: float
    backlog_reads: int
    loads: tuple[tuple[int, int], ...]  # fan-out (readers, events/s)
    warm_ms: int
    window_ms: int
    daemon_backend: str = "memory"


class Servers(NamedTuple):
    daemon: Child
    peer: Child
    redis: Child


@contextlib.contextmanager
def servers(backend: str = "memory") -> Iterator[Servers]:
    """A fresh daemon (on `backend`), bare peer and redis-server, stopped whatever happens.

    With the Redis backend the daemon keeps its logs in that same redis-server, so
    the daemon rows and the Redis Streams rows share one Redis.
    """
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(procs.start_redis(procs.free_port()))
        flags = list(DAEMON_FLAGS)
        if backend == "redis":
            flags += ["--backend", "redis", "--redis-url", f"redis://127.0.0.1:{redis.port}/0"]
            flags += ["--redis-key-prefix", "bench-daemon"]
        daemon = stack.enter_context(procs.start_daemon(procs.free_port(), *flags))
        peer = stack.enter_context(procs.start_peer(procs.free_port()))
        yield Servers(daemon, peer, redis)


def url(server: Child, path: str, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{server.port}{path}"


async def post(http: aiohttp.ClientSession, to: str, body: bytes) -> None:
    """POST a JSON body; anything but 200 stops the benchmark with the server's answer."""
    async with http.post(to, data=body, headers=JSON_HEADERS) as resp:
        answer = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"POST {to}: {resp.status} {answer[:300]!r}")
