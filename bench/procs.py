"""Child processes of the benchmark: pinned to a CPU, bounded in time, stopped by their PID.

Servers go on CPU 0 and load generators on CPU 1 (perf-anchors' method), each
child dies with the benchmark (PR_SET_PDEATHSIG) even if the benchmark is
killed, and `stop` goes SIGINT, SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
# Read before `pin_self` narrows this process: the CPUs we may use, at start.
_ALLOWED = sorted(os.sched_getaffinity(0))
SERVER_CPU = _ALLOWED[0]
LOAD_CPU = _ALLOWED[-1]
PR_SET_PDEATHSIG = 1
_log_dirs: list[Path] = []


def _log_dir() -> Path:
    """One scratch folder per benchmark process for the children's output, removed at exit."""
    if not _log_dirs:
        _log_dirs.append(Path(tempfile.mkdtemp(prefix="livereplay-bench-")))
        atexit.register(shutil.rmtree, _log_dirs[0], ignore_errors=True)
    return _log_dirs[0]


def pinning() -> bool:
    """Pin only on a machine with at least two CPUs we may use."""
    return len(_ALLOWED) >= 2


def pin_self(cpu: int) -> None:
    if pinning():
        os.sched_setaffinity(0, {cpu})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when the benchmark goes away."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def cpu_seconds(pid: int) -> float:
    """CPU time of a live process, all its threads, in nanosecond resolution (schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


class Child:
    """One child process; servers log to a file, clients talk JSON lines on stdout."""

    def __init__(
        self, name: str, cmd: list[str], cpu: int | None, *, pipe: bool = False, port: int = 0
    ) -> None:
        self.name = name
        self.port = port  # where a server listens
        prefix: list[str] = []
        if cpu is not None and pinning():
            taskset = shutil.which("taskset")
            prefix = [taskset, "-c", str(cpu)] if taskset else []
        self.cmd = [*prefix, *cmd]
        self.log_path = _log_dir() / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            bufsize=0,  # unbuffered: `select` then sees every line the child wrote
            stdout=subprocess.PIPE if pipe else log,
            stderr=log,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self.pid = self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def read_json(self, timeout: float) -> dict[str, Any]:
        """The child's next stdout line, as JSON, within `timeout` seconds."""
        stdout: IO[bytes] | None = self.proc.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline() if ready else b""
        if not line:
            logs = self.logs()
            self.stop()
            raise RuntimeError(f"{self.name}: no answer within {timeout:.0f} s\n{logs}")
        result: dict[str, Any] = json.loads(line)
        return result

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"{self.name}: still running after {timeout:.0f} s") from None

    def stop(self) -> None:
        """SIGINT, then SIGTERM, then SIGKILL, a few seconds apart, to this PID only."""
        for sig, grace in ((signal.SIGINT, 3.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(sig)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                continue
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_http(child: Child, url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited {child.proc.returncode}\n{child.logs()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    logs = child.logs()
    child.stop()
    raise RuntimeError(f"{child.name} did not answer {url}\n{logs}")


def start_daemon(port: int, *flags: str) -> Child:
    """`livereplay serve` on CPU 0, as an operator would run it, plus `flags`."""
    cmd = [sys.executable, "-m", "livereplay", "serve", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--log-level", "warning", *flags]
    child = Child("daemon", cmd, SERVER_CPU, port=port)
    wait_http(child, f"http://127.0.0.1:{port}/healthz")
    return child


def start_peer(port: int) -> Child:
    """The bare broadcast app under uvicorn, on the daemon's uvicorn settings."""
    cmd = [sys.executable, "-m", "uvicorn", "bench.peer_broadcast:app", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--loop", "uvloop", "--http", "httptools"]
    cmd += [
        "--ws",
        "websockets-sansio",
        "--ws-per-message-deflate",
        "false",
        "--log-level",
        "warning",
    ]
    cmd += ["--no-access-log", "--timeout-graceful-shutdown", "3"]
    child = Child("peer", cmd, SERVER_CPU, port=port)
    wait_http(child, f"http://127.0.0.1:{port}/healthz")
    return child


def start_redis(port: int) -> Child:
    """A throw-away redis-server of our own (never the shared one on 6379)."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    child = Child("redis", cmd, SERVER_CPU, port=port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited {child.proc.returncode}\n{child.logs()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return child
        except OSError:
            pass
        time.sleep(0.05)
    logs = child.logs()
    child.stop()
    raise RuntimeError(f"redis-server did not answer on {port}\n{logs}")


class CpuWindow:
    """CPU-seconds per wall-second of some processes over one measured window."""

    def __init__(self, *children: Child) -> None:
        self.children = children
        self.started = time.monotonic()
        self.cpu = [c.cpu() for c in children]
        self.own = time.process_time()
        self.wall = 0.0

    def close(self) -> tuple[list[float], float]:
        """Per child, and for this process (the load generator)."""
        self.wall = wall = time.monotonic() - self.started
        used = [c.cpu() - before for c, before in zip(self.children, self.cpu, strict=True)]
        return [u / wall for u in used], (time.process_time() - self.own) / wall
