"""A real Redis for tests: a `redis-server` started on a free loopback port, or
`LIVEREPLAY_TEST_REDIS_URL` when set. Each test works under its own key prefix
and deletes only keys under it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.daemon import free_port

INSTALL_HINT = (
    "redis-server is not installed: run scripts/ensure-redis.sh "
    "(apt-get install redis-server), or point LIVEREPLAY_TEST_REDIS_URL at a Redis >= 6.2"
)
EXTERNAL_URL_ENV = "LIVEREPLAY_TEST_REDIS_URL"


def redis_server_binary() -> str:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        pytest.fail(INSTALL_HINT, pytrace=False)
    return binary


class RedisServer:
    """`redis-server` without persistence on 127.0.0.1, restartable on the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"redis-{self.port}.log"

    def start(self, timeout: float = 10.0) -> None:
        cmd = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            str(self.log_path),
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited {self.proc.returncode}: {self.logs()}")
            if self.ping():
                return
            time.sleep(0.02)
        raise TimeoutError(f"redis-server did not answer PING: {self.logs()}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def logs(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text()[-4000:]
        return ""

    def kill(self) -> None:
        """kill -9: Redis and every key in it are gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            self.log_path.unlink()


def unique_prefix() -> str:
    return "lrtest-" + uuid.uuid4().hex[:12]


async def delete_prefix(url: str, prefix: str) -> int:
    """Delete the keys under `prefix` (and nothing else); how many there were."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}:*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await client.unlink(*batch)
    finally:
        await client.aclose()
    return deleted


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis for the whole test session: the external one, or one started here."""
    external = os.environ.get(EXTERNAL_URL_ENV)
    if external:
        yield external
        return
    with RedisServer() as server:
        yield server.url


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = unique_prefix()
    yield prefix
    await delete_prefix(redis_url, prefix)
