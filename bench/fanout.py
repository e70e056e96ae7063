"""Section 3: fan-out latency and deliveries/s, N readers at R events/s.

Per server and load: two subscriber processes (N/2 readers each) and one
producer process, all on the load CPU (see `bench.fanout_client`). The server's
and the subscribers' CPU are read over the measured window only. A load with
batched appends (`1000x1000/10`: 10 events per append) is the ceiling; the peer
there is the bare server sending each append as one frame of the daemon's shape
(`/frames`): the least a server can do, so its row shows what the readers
themselves can take on this machine.
"""

from __future__ import annotations

import array
import contextlib
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import procs
from bench.common import batch_body, now_ns, payload, percentile
from bench.harness import JSON_HEADERS, Load, Plan, Row, Servers, url
from bench.procs import Child, CpuWindow

START_DELAY_NS = 300_000_000


TARGETS = ("daemon", "peer", "redis")


def run(
    plan: Plan,
    rep: int,
    servers: Servers,
    loads: tuple[Load, ...],
    targets: tuple[str, ...] = TARGETS,
) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="livereplay-fanout-") as scratch:
        for load in loads:
            for name, server in zip(TARGETS, servers, strict=True):
                if name in targets:
                    key = f"fan-{rep}-{load.readers}-{load.rate}-{load.batch}"
                    rows.append(_window(plan, load, name, server, key, Path(scratch)))
    return rows


def _cmd(role: str, target: str, server: Child, key: str, load: Load, plan: Plan) -> list[str]:
    if target == "peer" and load.batch > 1:
        target = "frames"  # the bare server, each append one frame: the readers' ceiling
    return [
        sys.executable, "-m", "bench.fanout_client", role, "--target", target,
        "--port", str(server.port), "--key", key, "--rate", str(load.rate),
        "--batch", str(load.batch),
        "--warm-ms", str(plan.warm_ms), "--window-ms", str(plan.window_ms),
    ]  # fmt: skip


def _sleep_until(t_ns: int) -> None:
    time.sleep(max(0.0, (t_ns - now_ns()) / 1e9))


def _create_session(daemon: Child, key: str) -> None:
    """Readers ask for `latest`, so the session exists first (its event is not counted)."""
    body = batch_body([payload(-1, 0, 0)])
    to = url(daemon, f"/v1/sessions/{key}/events")
    request = urllib.request.Request(to, data=body, headers=JSON_HEADERS, method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


def _window(plan: Plan, load: Load, target: str, server: Child, key: str, scratch: Path) -> Row:
    readers = load.readers
    if target == "daemon":
        _create_session(server, key)
    run_ns = (plan.warm_ms + plan.window_ms) * 1_000_000
    sample_files = [scratch / f"{target}-{key}-{i}.bin" for i in range(2)]
    with contextlib.ExitStack() as stack:
        subs = []
        for i, count in enumerate((readers // 2, readers - readers // 2)):
            cmd = _cmd("sub", target, server, key, load, plan)
            cmd += ["--readers", str(count), "--samples", str(sample_files[i])]
            subs.append(stack.enter_context(Child(f"sub{i}", cmd, procs.LOAD_CPU, pipe=True)))
        for sub in subs:
            sub.read_json(timeout=30)  # {"ready": n}: every reader connected
        t0 = now_ns() + START_DELAY_NS
        cmd = [*_cmd("pub", target, server, key, load, plan), "--t0", str(t0)]
        pub = stack.enter_context(Child("pub", cmd, procs.LOAD_CPU, pipe=True))
        _sleep_until(t0 + plan.warm_ms * 1_000_000)
        cpu = CpuWindow(server, *subs)
        _sleep_until(t0 + run_ns)
        (server_cpu, *sub_cpu), _ = cpu.close()
        produced = pub.read_json(timeout=run_ns / 1e9 + 15)
        seen = [sub.read_json(timeout=30) for sub in subs]
        for child in (pub, *subs):
            child.wait(10)
    samples = array.array("q")
    for path in sample_files:
        samples.frombytes(path.read_bytes())
        path.unlink()
    ordered = sorted(samples)
    expected = readers * produced["in_window"]  # sent inside the window, to every reader
    return {
        "server": target,
        "load": str(load),
        "readers": readers,
        "rate_in": produced["rate"],
        "delivered_per_s": sum(s["in_window"] for s in seen) / (plan.window_ms / 1000),
        "p50_ms": percentile(ordered, 0.5) / 1e6,
        "p99_ms": percentile(ordered, 0.99) / 1e6,
        "max_ms": ordered[-1] / 1e6 if ordered else 0.0,
        "missing": expected - len(ordered),
        "gaps": sum(s["gaps"] for s in seen),
        "append_p99_ms": produced["append_p99_ms"],
        "server_cpu": server_cpu,
        "sub_cpu": sum(sub_cpu),
        "errors": [e for s in seen for e in s["errors"]][:2],
    }
