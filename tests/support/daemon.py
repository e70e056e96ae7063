"""Real daemons for tests: a uvicorn server in the test's own loop, or a child process.

Concurrency and fault tests run against a real socket, never only the
in-process test client: a child process can be killed (-9), stopped
(SIGSTOP) and restarted on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn

from livereplay_server.config import Settings
from livereplay_server.server import uvicorn_config

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fast_settings(**overrides: Any) -> Settings:
    """Settings for tests: loopback, a free port, no startup grace unless asked."""
    base = Settings(host="127.0.0.1", port=free_port(), startup_grace_s=0.0, log_level="warning")
    return replace(base, **overrides)


class InProcessDaemon:
    def __init__(self, server: uvicorn.Server, settings: Settings) -> None:
        self.server = server
        self.settings = settings
        self.http_url = f"http://127.0.0.1:{settings.port}"
        self.ws_url = f"ws://127.0.0.1:{settings.port}"

    @property
    def state(self) -> Any:
        app: Any = self.server.config.app
        return app.state.livereplay

    def stream_url(self, session_id: str, cursor: str) -> str:
        return f"{self.ws_url}/v1/sessions/{session_id}/stream?cursor={cursor}"


@contextlib.asynccontextmanager
async def run_in_process(
    settings: Settings | None = None, uvicorn_overrides: Mapping[str, Any] | None = None
) -> AsyncIterator[InProcessDaemon]:
    """A real uvicorn (uvloop aside: the test's loop) serving on a free loopback port;
    `uvicorn_overrides` sets uvicorn settings the daemon has no flag for (ping timing)."""
    settings = settings or fast_settings()
    config = uvicorn_config(settings)
    config.loop = "none"
    # Tests bind loopback whatever address the settings describe.
    config.host = "127.0.0.1"
    for name, value in (uvicorn_overrides or {}).items():
        assert hasattr(config, name), name
        setattr(config, name, value)
    async with serving(config) as server:
        yield InProcessDaemon(server, settings)


@contextlib.asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[uvicorn.Server]:
    """`config` served by uvicorn in the test's loop, from start-up to exit."""
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped during start-up")
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start")
        await asyncio.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)


class DaemonProcess:
    """`livereplay serve` as a child process on a fixed port, restartable in place."""

    def __init__(
        self,
        port: int | None = None,
        args: list[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.args = args or []
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.http_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"livereplay-{self.port}.log"

    def stream_url(self, session_id: str, cursor: str) -> str:
        return f"{self.ws_url}/v1/sessions/{session_id}/stream?cursor={cursor}"

    def start(self, timeout: float = 15.0) -> None:
        env = {**os.environ, "LIVEREPLAY_LOG_FORMAT": "json", **self.env}
        cmd = [
            sys.executable,
            "-m",
            "livereplay",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.args,
        ]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.logs()[-4000:]}")
            try:
                with urllib.request.urlopen(self.http_url + "/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"daemon did not answer /healthz: {self.logs()[-4000:]}")

    def logs(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """kill -9: the daemon loses its memory at once."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def restart(self) -> None:
        self.kill()
        self.start()

    def __enter__(self) -> DaemonProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            self.log_path.unlink()
