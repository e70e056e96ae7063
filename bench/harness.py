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
# The per-client connection limit (256) would refuse the 1000-reader loads, which all
# come from 127.0.0.1.
DAEMON_FLAGS = (
    "--max-append-rate",
    "0",
    "--startup-grace-s",
    "0",
    "--max-connections-per-client",
    "20000",
    "--max-connections",
    "20000",
)
JSON_HEADERS = {"content-type": "application/json"}

Row = dict[str, Any]


class Load(NamedTuple):
    """A fan-out load: readers, events/s, and events per append."""

    readers: int
    rate: int
    batch: int = 1

    def __str__(self) -> str:
        return f"{self.readers}x{self.rate}" + (f"/{self.batch}" if self.batch > 1 else "")


@dataclass(frozen=True)
class Plan:
    reps: int
    ingest_s: float
    backlog_reads: int
    loads: tuple[Load, ...]  # fan-out, beside the peers
    redis_loads: tuple[Load, ...]  # fan-out of the daemon on the Redis backend
    warm_ms: int
    window_ms: int
    idle_readers: int = 10_000


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
