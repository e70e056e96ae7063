"""What a daemon child process holds, read from /proc, and its metrics, scraped over HTTP."""

from __future__ import annotations

import os
import re
import time
import urllib.request
from collections.abc import Callable


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fds(pid: int, seconds: float = 0.3) -> int:
    """The fewest fds seen over `seconds`: a client that just closed may still hold one."""
    fewest = open_fds(pid)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.02)
        fewest = min(fewest, open_fds(pid))
    return fewest


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_until(check: Callable[[], bool], timeout: float, what: str | Callable[[], str]) -> float:
    """Poll `check` until it holds; the seconds it took. Fails with `what` (a message,
    or a function that tells what is wrong at that moment) after `timeout`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"after {timeout} s: {what if isinstance(what, str) else what()}")
        time.sleep(0.05)
    return time.monotonic() - start


def metric(base_url: str, name: str, **labels: str) -> float:
    """One sample of `GET /metrics` (0 when the series does not exist yet)."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    series = f"{name}{{{wanted}}}" if labels else name
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == series or _normalised(head) == series:
            return float(value)
    return 0.0


def _normalised(series: str) -> str:
    """`name{b="2",a="1"}` with its labels sorted, to compare with what a test asks for."""
    match = re.fullmatch(r"([^{]+)\{(.*)\}", series)
    if match is None:
        return series
    labels = sorted(re.findall(r'\w+="[^"]*"', match.group(2)))
    return f"{match.group(1)}{{{','.join(labels)}}}"
