"""A writer the daemon refuses for good (its token) stops at once and says so (issue 12,
first hour 2); reading the local window from a start word (first hour 6)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from livereplay import LiveReplayClient, WriterOptions, WriterRefused
from livereplay_server.config import Settings
from tests.support.daemon import fast_settings, run_in_process
from tests.writer.test_daemon import FAST, run_python

TOKEN = "w" * 40


async def refused_within(client: LiveReplayClient, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while (refusal := client.stats().refusal) is None:
        assert time.monotonic() < deadline, client.stats()
        await asyncio.sleep(0.01)
    return refusal


def guarded() -> Settings:
    return replace(fast_settings(), writer_token=TOKEN)


@pytest.mark.parametrize("token", [None, "not-the-token-" + "x" * 30])
async def test_a_refused_token_stops_the_writer_at_once_and_raises(token: str | None) -> None:
    seen: list[WriterRefused] = []
    options = replace(FAST, on_refused=seen.append)
    async with run_in_process(guarded()) as daemon:
        client = await asyncio.to_thread(
            LiveReplayClient, daemon.http_url, options=options, token=token
        )
        client.append("s", 1, {"n": 1})  # taken locally: the refusal is not known yet
        code = await refused_within(client)
        assert code in ("unauthenticated", "forbidden")
        assert [r.code for r in seen] == [code]  # the callback, once
        with pytest.raises(WriterRefused) as raised:
            client.append("s", 1, {"n": 2})
        assert raised.value.code == code
        attempts = client.stats().connect_failures + client.stats().reconnects
        await asyncio.sleep(0.5)  # no retrying: the sender has stopped
        after = client.stats()
        assert after.connect_failures + after.reconnects == attempts and not after.connected
        assert not await asyncio.to_thread(client.close, 1.0)  # the event stays unsent


async def test_the_right_token_is_taken() -> None:
    async with run_in_process(guarded()) as daemon:
        client = await asyncio.to_thread(
            LiveReplayClient, daemon.http_url, options=FAST, token=TOKEN
        )
        client.append("s", 1, {"n": 1})
        assert await asyncio.to_thread(client.close, 10.0)
        assert client.stats().refusal is None and client.stats().acknowledged == 1


async def test_append_as_a_writer_without_the_token_fails_at_once_with_one_line() -> None:
    async with run_in_process(guarded()) as daemon:
        started = time.monotonic()
        args = ["append", "--as-writer", "--revision", "1", "--url", daemon.http_url, "s"]
        code, out, err = await run_python(
            ["-m", "livereplay", *args],
            b'{"n": 1}\n{"n": 2}\n',
        )
        took = time.monotonic() - started
    assert code == 1
    assert out == ""  # no cursor that would look like success
    lines = [line for line in err.splitlines() if line.startswith("livereplay append")]
    assert len(lines) == 1 and "unauthenticated" in lines[0], err
    assert "reconnecting" not in err
    assert took < 8, took  # a bound for hanging or retrying, not a timing claim


def test_the_local_window_reads_from_start_words() -> None:
    client = LiveReplayClient("http://127.0.0.1:9", options=WriterOptions())
    try:
        for i in range(3):
            client.append("s", 1, {"n": i})
        replay = client.replay_after_cursor("earliest", session_id="s")
        assert isinstance(replay, list) and [e.payload for e in replay] == [
            {"n": 0},
            {"n": 1},
            {"n": 2},
        ]
        assert client.replay_after_cursor("latest", session_id="s") == []
        with pytest.raises(ValueError, match="session_id"):
            client.replay_after_cursor("earliest")
        subscription = client.subscribe_after_cursor("latest", session_id="s")
        assert not isinstance(subscription, type(replay)) and hasattr(subscription, "get")
        client.append("s", 1, {"n": 3})
        event = subscription.get(timeout=5)
        assert event is not None and event.payload == {"n": 3}
    finally:
        client.close(0)
