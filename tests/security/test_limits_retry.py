"""Connection limits that cannot be dodged or turned into a final refusal, and
refusals that say when to come back (issue 9).

`X-Forwarded-For` is only believed from a configured `--trusted-proxy`; a
connection limit closes with 1013, which readers retry; 429 and 503 carry
`Retry-After`, and a retryable ingest refusal carries `retry_after_ms`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from livereplay import CaughtUp, EventOut, ReaderOptions, subscribe
from livereplay.protocol.ingest import Append, IngestEvent, Refused, encoder, server_decoder
from livereplay_server import config
from livereplay_server.server import uvicorn_config
from tests.support.daemon import InProcessDaemon, fast_settings, free_port, run_in_process
from tests.support.wire import open_stream, recv


async def metric(daemon: InProcessDaemon, line: str) -> float:
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        text = (await client.get("/metrics")).text
    for row in text.splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


def stream(daemon: InProcessDaemon, forwarded_for: str | None = None) -> Any:
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    return open_stream(daemon.stream_url("s-1", "earliest"), additional_headers=headers)


async def assert_over_limit(ws: ClientConnection) -> None:
    frame = await recv(ws)
    assert (frame["type"], frame["code"]) == ("error", "too_many_connections")
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013


# -- trusted proxies ------------------------------------------------------------------


async def test_a_forged_forwarded_for_does_not_dodge_the_per_client_limit() -> None:
    async with run_in_process(fast_settings(max_connections_per_client=2)) as daemon:
        async with stream(daemon, "10.0.0.1") as one, stream(daemon, "10.0.0.2") as two:
            for ws in (one, two):
                assert (await recv(ws))["type"] == "hello"
            async with stream(daemon, "10.0.0.3") as three:
                await assert_over_limit(three)
        counted = 'livereplay_connections_refused_total{code="too_many_connections"}'
        assert await metric(daemon, counted) == 1


async def test_behind_a_trusted_proxy_each_client_has_its_own_limit() -> None:
    settings = fast_settings(max_connections_per_client=1, trusted_proxies=("127.0.0.1",))
    async with (
        run_in_process(settings) as daemon,
        stream(daemon, "10.0.0.1") as one,
        stream(daemon, "10.0.0.2") as two,
    ):
        for ws in (one, two):
            assert (await recv(ws))["type"] == "hello"
        async with stream(daemon, "10.0.0.1") as again:
            await assert_over_limit(again)


def test_proxy_headers_are_off_unless_a_proxy_is_trusted() -> None:
    assert uvicorn_config(fast_settings()).proxy_headers is False
    trusted = config.parse(["--trusted-proxy", "10.0.0.7", "--trusted-proxy", "10.1.0.0/16"])
    assert trusted.trusted_proxies == ("10.0.0.7", "10.1.0.0/16")
    uv = uvicorn_config(trusted)
    assert uv.proxy_headers is True and uv.forwarded_allow_ips == ["10.0.0.7", "10.1.0.0/16"]
    with pytest.raises(ValueError, match="--trusted-proxy"):
        config.parse(["--trusted-proxy", "proxy.example"])
    with pytest.raises(ValueError, match="--trusted-proxy"):
        config.parse(["--trusted-proxy", "10.1.0.5/16"])


# -- 1013 -------------------------------------------------------------------------------


async def test_a_reader_over_the_limit_retries_and_gets_in_once_a_slot_frees() -> None:
    async with (
        run_in_process(fast_settings(max_connections=1)) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        body = {"events": [{"revision": 1, "payload": "hello"}]}
        assert (await client.post("/v1/sessions/s-1/events", json=body)).is_success
        options = ReaderOptions(backoff_base_s=0.05, backoff_cap_s=0.2, connect_timeout_s=2.0)
        async with stream(daemon) as holder:
            assert (await recv(holder))["type"] == "hello"
            reader = subscribe(daemon.http_url, "s-1", options=options)
            first = asyncio.ensure_future(reader.__anext__())
            counted = 'livereplay_connections_refused_total{code="too_many_connections"}'
            for _ in range(100):
                if await metric(daemon, counted) >= 3:
                    break
                await asyncio.sleep(0.05)
            # Refused three times, and still trying: 1013 is not final.
            assert await metric(daemon, counted) >= 3
            assert not first.done()
        item = await asyncio.wait_for(first, 10)
        assert isinstance(item, EventOut) and item.payload == "hello"
        assert isinstance(await asyncio.wait_for(reader.__anext__(), 5), CaughtUp)
        await reader.aclose()


# -- Retry-After ------------------------------------------------------------------------


def retry_after(response: httpx.Response, status: int, code: str) -> int:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    value = response.headers.get("retry-after", "")
    assert value.isdigit() and int(value) >= 1, response.headers
    return int(value)


def batch(count: int) -> dict[str, Any]:
    return {"events": [{"revision": 1, "payload": i} for i in range(count)]}


async def test_rate_limited_says_when_enough_tokens_are_back() -> None:
    settings = fast_settings(max_append_rate=5.0, max_events_per_session=10)
    async with (
        run_in_process(settings) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        assert (await client.post("/v1/sessions/a/events", json=batch(10))).is_success
        answer = await client.post("/v1/sessions/a/events", json=batch(10))
        # 10 events at 5 per second: two seconds (the bucket is empty).
        assert retry_after(answer, 429, "rate_limited") in (2, 3)
        small = await client.post("/v1/sessions/a/events", json=batch(1))
        assert retry_after(small, 429, "rate_limited") == 1


async def test_too_many_sessions_carries_retry_after() -> None:
    async with (
        run_in_process(fast_settings(max_sessions=1)) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        assert (await client.post("/v1/sessions/a/events", json=batch(1))).is_success
        answer = await client.post("/v1/sessions/b/events", json=batch(1))
        retry_after(answer, 429, "too_many_sessions")


async def test_starting_says_how_much_of_the_grace_is_left() -> None:
    async with (
        run_in_process(fast_settings(startup_grace_s=5.0)) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        after = "lashsc2:w:1:7:s-1"
        answer = await client.get("/v1/sessions/s-1/events", params={"after": after})
        assert 1 <= retry_after(answer, 503, "starting") <= 5


@pytest.fixture
async def no_redis() -> AsyncIterator[InProcessDaemon]:
    """A daemon on the Redis backend with nothing listening where Redis should be."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with run_in_process(fast_settings(backend="redis", redis_url=url)) as daemon:
        yield daemon


async def test_an_unavailable_backend_carries_retry_after(no_redis: InProcessDaemon) -> None:
    async with httpx.AsyncClient(base_url=no_redis.http_url) as client:
        append = await client.post("/v1/sessions/a/events", json=batch(1))
        assert retry_after(append, 503, "unavailable") <= 2
        read = await client.get("/v1/sessions/a/cursor")
        assert retry_after(read, 503, "unavailable") <= 2
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.headers.get("retry-after", "").isdigit(), ready.headers


async def test_a_retryable_ingest_refusal_carries_retry_after_ms() -> None:
    settings = fast_settings(max_append_rate=5.0, max_events_per_session=10)
    async with (
        run_in_process(settings) as daemon,
        open_stream(daemon.ws_url + "/v1/ingest") as ws,
    ):
        await asyncio.wait_for(ws.recv(), 5)  # welcome
        events = [IngestEvent(revision=1, payload=b"1", position=p) for p in range(1, 11)]
        await ws.send(encoder.encode(Append(1, "s-1", events, "w1")))
        await asyncio.wait_for(ws.recv(), 5)  # ack
        more = [IngestEvent(revision=1, payload=b"1", position=p) for p in range(11, 21)]
        await ws.send(encoder.encode(Append(2, "s-1", more, "w1")))
        answer = server_decoder.decode(await asyncio.wait_for(ws.recv(), 5))
        assert isinstance(answer, Refused) and answer.retry and answer.code == "rate_limited"
        assert answer.retry_after_ms is not None and 1000 <= answer.retry_after_ms <= 2500
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
