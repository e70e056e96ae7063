"""The fault suite's writer: a child process running the real `LiveReplayClient`.

    python -m tests.faults.writer_proc --url http://127.0.0.1:PORT --session s-1 --rate 1000

It appends to one session at a steady rate and prints JSON lines on stdout:
`{"type": "start", "incarnation"}`, then `{"type": "progress", "appended", "acked"}`
whenever the acknowledged watermark grows (polled every ~20 ms), and at the end
`{"type": "stats", ...client.stats(), "flushed"}`. `acked` is
`client.current_cursor(session, revision).position`: positions 1..acked were
acknowledged by the daemon it is connected to. On stdin, `stop` (or end of input)
flushes and exits cleanly; `rate N` changes the rate. It is a separate process so
a test can kill it with -9: a new writer process is a new incarnation.

`WriterProcess` is the test's handle on one such child.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from tests.faults.history import Writers

ROOT = Path(__file__).resolve().parents[2]
REVISION = 1
POLL_S = 0.02
TICK_S = 0.005


# -- the child ---------------------------------------------------------------------


class _Deferrals(logging.Handler):
    """Counts batches the daemon deferred (refused with retry): the client logs each."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("livereplay batch deferred"):
            self.count += 1


def _print(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _commands(inbox: queue.Queue[str]) -> None:
    for line in sys.stdin:
        inbox.put(line.strip())
    inbox.put("stop")


def main(argv: list[str] | None = None) -> int:
    from livereplay import Limits, LiveReplayClient, WriterOptions

    parser = argparse.ArgumentParser(prog="writer_proc")
    parser.add_argument("--url", required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second")
    parser.add_argument("--payload-bytes", type=int, default=40)
    parser.add_argument("--count", type=int, default=0, help="stop appending after N (0: never)")
    parser.add_argument("--window-events", type=int, default=2048)
    parser.add_argument("--window-bytes", type=int, default=8 << 20)
    parser.add_argument("--batch-events", type=int, default=512)
    parser.add_argument("--flush-s", type=float, default=10.0)
    args = parser.parse_args(argv)

    deferrals = _Deferrals()
    logging.getLogger("livereplay.writer").addHandler(deferrals)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    options = WriterOptions(
        window=Limits(
            max_events_per_session=args.window_events,
            max_bytes_per_session=args.window_bytes,
            memory_budget_bytes=max(64 << 20, args.window_bytes * 2),
        ),
        max_batch_events=args.batch_events,
        backoff_base_s=0.02,
        backoff_cap_s=0.5,
        connect_timeout_s=2.0,
        ping_interval_s=2.0,
        ping_timeout_s=2.0,
    )
    client = LiveReplayClient(args.url, options=options)
    _print({"type": "start", "incarnation": client.incarnation, "pid": os.getpid()})
    inbox: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_commands, args=(inbox,), daemon=True).start()

    pad = "x" * max(0, args.payload_bytes - 20)
    rate = args.rate
    appended = 0
    acked = 0
    began = time.monotonic()
    base = 0  # appended when the current rate took effect
    next_poll = began
    while True:
        try:
            command = inbox.get_nowait()
        except queue.Empty:
            command = ""
        if command == "stop":
            break
        if command.startswith("rate "):
            rate = float(command.split()[1])
            began, base = time.monotonic(), appended
        now = time.monotonic()
        due = base + int((now - began) * rate)
        if args.count:
            due = min(due, args.count)
        for _ in range(min(due - appended, 200)):
            client.append(args.session, REVISION, {"i": appended, "pad": pad})
            appended += 1
        if now >= next_poll:
            next_poll = now + POLL_S
            position = client.current_cursor(args.session, REVISION).position
            if position > acked:
                acked = position
                _print({"type": "progress", "appended": appended, "acked": acked})
        time.sleep(TICK_S)

    flushed = client.close(args.flush_s)
    acked = max(acked, client.current_cursor(args.session, REVISION).position)
    stats = dataclasses.asdict(client.stats())
    _print(
        {
            "type": "stats",
            **stats,
            "appended": appended,
            "acked": acked,
            "flushed": flushed,
            "deferred": deferrals.count,
        }
    )
    return 0


# -- the parent's handle -------------------------------------------------------------


class WriterProcess:
    """One writer child: its incarnation, what it appended, its acknowledged watermark.

    Every watermark it prints also goes into the shared `Writers` the checker reads.
    """

    def __init__(
        self, url: str, session_id: str, writers: Writers, *args: str, rate: float = 1000.0
    ) -> None:
        self.url = url
        self.session_id = session_id
        self.writers = writers
        self.args = [*args]
        self.rate = rate
        self.proc: subprocess.Popen[str] | None = None
        self.incarnation: str | None = None
        self.appended = 0
        self.acked = 0
        self.stats: dict[str, Any] | None = None
        self._started = threading.Event()
        self._finished = threading.Event()
        self._reader: threading.Thread | None = None
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"writer-{os.getpid()}-{id(self)}"

    def start(self, timeout: float = 15.0) -> WriterProcess:
        cmd = [
            sys.executable,
            "-m",
            "tests.faults.writer_proc",
            "--url",
            self.url,
            "--session",
            self.session_id,
            "--rate",
            str(self.rate),
            *self.args,
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()
        if not self._started.wait(timeout):
            self.kill()
            raise AssertionError(f"the writer did not start in {timeout} s: {self.logs()}")
        return self

    def _read(self, stdout: IO[str] | None) -> None:
        assert stdout is not None
        for line in stdout:
            message = json.loads(line)
            kind = message.get("type")
            if kind == "start":
                self.incarnation = message["incarnation"]
                self.writers.saw(message["incarnation"], acked=0, appended=0)
                self._started.set()
            elif kind in ("progress", "stats"):
                self.appended = max(self.appended, message["appended"])
                self.acked = max(self.acked, message["acked"])
                assert self.incarnation is not None
                self.writers.saw(self.incarnation, acked=self.acked, appended=self.appended)
                if kind == "stats":
                    self.stats = message
        self._finished.set()

    def logs(self) -> str:
        try:
            return self.log_path.read_text()[-3000:]
        except OSError:
            return ""

    def _send(self, command: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def set_rate(self, rate: float) -> None:
        self._send(f"rate {rate:g}")

    def wait_acked(self, position: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.acked < position:
            if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                raise AssertionError(
                    f"the writer's watermark reached {self.acked}, not {position}, within "
                    f"{timeout:.0f} s: {self.logs()}"
                )
            time.sleep(0.02)

    def pause(self) -> None:
        """SIGSTOP: the writer neither appends nor reconnects until `resume`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """kill -9: whatever was not acknowledged is lost with the process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)

    def stop(self, timeout: float = 20.0) -> dict[str, Any]:
        """Flush and exit; the final stats line."""
        assert self.proc is not None
        self._send("stop")
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the writer did not stop in {timeout} s: {self.logs()}") from None
        self._finished.wait(5)
        if self.stats is None:
            raise AssertionError(f"the writer exited {self.proc.returncode}: {self.logs()}")
        return self.stats

    def close(self) -> None:
        """For teardown: make sure the child is gone, and drop its log."""
        self.kill()
        if self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        self.log_path.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
