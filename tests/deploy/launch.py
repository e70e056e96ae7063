"""Start a daemon from an exact command line and environment, as a container would."""

from __future__ import annotations

import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path


class Launched:
    """A child daemon: waits for /healthz (HTTP or HTTPS), stops with SIGTERM."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path,
        base_url: str,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = base_url
        self.ssl_context = ssl_context
        self.log_path = cwd / "daemon.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                list(argv), env=dict(env), cwd=cwd, stdout=log, stderr=subprocess.STDOUT
            )

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.logs()}")
            try:
                url = self.base_url + "/healthz"
                with urllib.request.urlopen(url, timeout=1, context=self.ssl_context):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"daemon did not answer /healthz:\n{self.logs()}")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then the exit status; kill -9 only if it overruns `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"no exit {timeout} s after SIGTERM:\n{self.logs()}") from None
        return self.proc.returncode
