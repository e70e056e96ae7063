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
        "livereplay",  # the `livereplay` command
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


async def run_append(stdin: bytes, *args: str) -> tuple[int, str, str]:
    """`livereplay append ARGS < stdin`, as a user runs it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "livereplay",
        "append",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_append_reaches_a_host_already_tailing_the_session(
    daemon: InProcessDaemon,
) -> None:
    """Issue 12: `livereplay append` is a plain producer by default, so it appends to
    the session as it is (no takeover): the tail sees the events live, with no gap,
    and the cursors append printed are the daemon's."""
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        await append(client, "s-1", ["from the runtime"], incarnation=INC)
        proc = await start_tail("s-1", "--json", "--url", daemon.http_url)
        try:
            lines = [json.loads(await read_line(proc)) for _ in range(2)]
            assert [line["type"] for line in lines] == ["event", "caught_up"]

            code, out, err = await run_append(
                b'{"n": 1}\n\n"two"\n', "s-1", "--revision", "5", "--url", daemon.http_url
            )
            assert code == 0, err
            printed = out.split()
            live = [json.loads(await read_line(proc)) for _ in range(2)]
            assert [line["type"] for line in live] == ["event", "event"], live
            assert [(e["position"], e["revision"], e["payload"]) for e in live] == [
                (2, 5, {"n": 1}),
                (3, 5, "two"),
            ]
            assert {e["replay_incarnation_id"] for e in live} == {INC}
            assert printed == [e["cursor"] for e in live]
            assert printed == [f"lashsc2:{INC}:5:2:s-1", f"lashsc2:{INC}:5:3:s-1"]

            # The runtime goes on appending after them, as the same writer.
            await append(client, "s-1", ["after"], incarnation=INC, first_position=4)
            after = json.loads(await read_line(proc))
            assert (after["type"], after["position"], after["payload"]) == ("event", 4, "after")
        finally:
            assert await interrupt(proc) == 0


async def test_append_as_writer_takes_the_session_over(daemon: InProcessDaemon) -> None:
    """`--as-writer` is the explicit opt-in to a new incarnation: hosts get a gap."""
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        await append(client, "s-1", ["old"], incarnation=INC)
        proc = await start_tail("s-1", "--json", "--url", daemon.http_url)
        try:
            assert [json.loads(await read_line(proc))["type"] for _ in range(2)] == [
                "event",
                "caught_up",
            ]
            code, out, err = await run_append(
                b'"new"\n', "s-1", "--revision", "1", "--as-writer", "--url", daemon.http_url
            )
            assert code == 0, err
            (cursor,) = out.split()
            assert not cursor.startswith(f"lashsc2:{INC}:")
            gap = json.loads(await read_line(proc))
            assert (gap["type"], gap["detail"]) == ("gap", "incarnation_changed")
            # The host reloads its state; it resumes after the new writer's event.
            assert gap["latest_cursor"] == cursor
        finally:
            assert await interrupt(proc) == 0


async def test_append_and_tail_take_a_url_without_a_scheme(daemon: InProcessDaemon) -> None:
    """Issue 12: `--url localhost:7447` is http://localhost:7447, not a traceback."""
    address = f"127.0.0.1:{daemon.settings.port}"
    code, out, err = await run_append(b"1\n", "s-2", "--revision", "1", "--url", address)
    assert code == 0, err
    assert out.split()[0].endswith(":1:1:s-2")
    proc = await start_tail("s-2", "--json", "--url", address)
    try:
        first = json.loads(await read_line(proc))
        assert (first["type"], first["payload"]) == ("event", 1)
    finally:
        assert await interrupt(proc) == 0


async def test_a_bad_url_is_one_error_line_not_a_traceback() -> None:
    for command in (("tail", "s"), ("append", "s", "--revision", "1")):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "livereplay",
            *command,
            "--url",
            "ftp://127.0.0.1:9",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 2, err
        text = err.decode()
        assert "Traceback" not in text
        (line,) = [row for row in text.splitlines() if "error:" in row]
        assert f"livereplay {command[0]}: error: argument --url: not a daemon URL" in line


async def test_append_sends_a_file_in_batches_the_daemon_accepts() -> None:
    """Lines that arrive together go in batches; a daemon with lower batch limits than
    the command's (413 batch_too_large) gets smaller ones, and every line once, in order."""
    settings = fast_settings(max_batch_events=50, max_events_per_session=1000)
    async with (
        run_in_process(settings) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        lines = b"".join(b'{"i": %d}\n' % i for i in range(300))
        code, out, err = await run_append(lines, "s-3", "--revision", "1", "--url", daemon.http_url)
        assert code == 0, err
        cursors = out.split()
        assert [int(c.split(":")[3]) for c in cursors] == list(range(1, 301))
        page = (
            await client.get(
                "/v1/sessions/s-3/events", params={"after": "earliest", "limit": "1000"}
            )
        ).json()
        assert [e["payload"]["i"] for e in page["events"]] == list(range(300))
        assert [e["cursor"] for e in page["events"]] == cursors


async def test_append_waits_for_a_daemon_that_is_not_listening_yet() -> None:
    settings = fast_settings()
    url = f"http://127.0.0.1:{settings.port}"
    pending = asyncio.ensure_future(
        run_append(b'"early"\n', "s-4", "--revision", "1", "--url", url)
    )
    await asyncio.sleep(1.0)  # refused connections meanwhile: nothing was sent, so retried
    async with run_in_process(settings):
        code, out, err = await pending
    assert code == 0, err
    assert out.split()[0].endswith(":1:1:s-4")
