"""`livereplay tail` as a user runs it: a child process printing a session live."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import httpx

from tests.support.daemon import InProcessDaemon, fast_settings, run_in_process
from tests.support.wire import append

INC = "writer-1"


async def start_tail(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "livereplay_server",  # the `livereplay` command
        "tail",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def read_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 15)
    assert line, "tail closed its output"
    return line.decode().rstrip("\n")


async def interrupt(proc: asyncio.subprocess.Process) -> int:
    proc.send_signal(signal.SIGINT)
    return await asyncio.wait_for(proc.wait(), 10)


async def test_tail_json_prints_the_backlog_caught_up_then_live_events(
    daemon: InProcessDaemon,
) -> None:
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        await append(client, "s-1", [{"n": 1}, {"n": 2}], incarnation=INC)
        proc = await start_tail("s-1", "--json", "--url", daemon.http_url)
        try:
            lines: list[dict[str, Any]] = [json.loads(await read_line(proc)) for _ in range(3)]
            assert [line["type"] for line in lines] == ["event", "event", "caught_up"]
            assert [line["payload"] for line in lines[:2]] == [{"n": 1}, {"n": 2}]
            assert lines[0]["cursor"] == f"lashsc2:{INC}:1:1:s-1"
            assert lines[2]["cursor"] == f"lashsc2:{INC}:1:2:s-1"

            await append(client, "s-1", [{"n": 3}], incarnation=INC, first_position=3)
            live = json.loads(await read_line(proc))
            assert (live["type"], live["position"], live["payload"]) == ("event", 3, {"n": 3})
        finally:
            assert await interrupt(proc) == 0


async def test_tail_text_marks_a_gap_and_resumes_after_it() -> None:
    settings = fast_settings(max_events_per_session=3)
    async with (
        run_in_process(settings) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        first = await append(client, "s-1", [1, 2, 3], incarnation=INC)
        await append(client, "s-1", [4, 5, 6], incarnation=INC, first_position=4)
        proc = await start_tail("s-1", "--cursor", first["cursors"][0], "--url", daemon.http_url)
        try:
            gap = await read_line(proc)
            assert gap == (f"-- gap: trimmed (retention); resuming after lashsc2:{INC}:1:6:s-1 --")
            assert await read_line(proc) == f"-- caught up at lashsc2:{INC}:1:6:s-1 --"
            await append(client, "s-1", ["seven"], incarnation=INC, first_position=7)
            line = await read_line(proc)
            assert line.startswith("#7 rev=1 ")
            assert line.endswith(' "seven"')
        finally:
            assert await interrupt(proc) == 0


async def test_tail_refuses_a_bad_cursor_before_connecting() -> None:
    proc = await start_tail("s-1", "--cursor", "lashsc2:i:1:1:other", "--url", "http://127.0.0.1:9")
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 2
    assert b"--cursor" in err
    assert b"another session" in err or b"other" in err


async def test_tail_exits_1_when_the_daemon_refuses_the_reader(daemon: InProcessDaemon) -> None:
    """No stream endpoint under that URL: the handshake is refused (HTTP 403), for good."""
    proc = await start_tail("s-1", "--url", daemon.http_url + "/not-here")
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 1
    assert b"refused" in err and b"403" in err


async def test_tail_says_once_that_it_reconnects_and_goes_on() -> None:
    """A daemon that is not there yet: one note on stderr, then the events when it comes."""
    settings = fast_settings()  # nothing listens on this port until the daemon starts there
    proc = await start_tail("s-1", "--json", "--url", f"http://127.0.0.1:{settings.port}")
    try:
        await asyncio.sleep(1.5)  # several failed attempts
        async with (
            run_in_process(settings) as daemon,
            httpx.AsyncClient(base_url=daemon.http_url) as client,
        ):
            await append(client, "s-1", ["b"], incarnation=INC)
            lines = [json.loads(await read_line(proc)) for _ in range(2)]
            assert [(line["type"], line.get("payload")) for line in lines] in (
                [("event", "b"), ("caught_up", None)],
                [("caught_up", None), ("event", "b")],
            )
            assert await interrupt(proc) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.stderr is not None
    err = (await proc.stderr.read()).decode()
    assert err.count("reconnecting") == 1, err
