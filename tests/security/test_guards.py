"""Every refusal of issue 6: the right code, nothing written, nothing leaked, a metric counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from livereplay.protocol import mint_reader_token
from tests.support.daemon import InProcessDaemon, fast_settings, run_in_process
from tests.support.wire import open_stream, recv

WRITER = "writer-secret-for-tests"
KEY = "k" * 40
SECRET = "payload-nobody-may-see"


def writer_headers(token: str = WRITER) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def batch(*payloads: Any) -> dict[str, Any]:
    return {"events": [{"revision": 1, "payload": p} for p in payloads]}


@pytest.fixture
async def guarded() -> AsyncIterator[InProcessDaemon]:
    settings = fast_settings(
        writer_token=WRITER, reader_key=KEY, allowed_origins=("https://ui.example",)
    )
    async with run_in_process(settings) as daemon:
        async with httpx.AsyncClient(base_url=daemon.http_url) as client:
            for session in ("team-a:1", "team-b:1"):
                answer = await client.post(
                    f"/v1/sessions/{session}/events",
                    json=batch({"secret": SECRET}),
                    headers=writer_headers(),
                )
                assert answer.status_code == 200
        yield daemon


async def metric(client: httpx.AsyncClient, line: str) -> float:
    text = (await client.get("/metrics")).text
    for row in text.splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert SECRET not in response.text and "lashsc2:" not in response.text


# -- writers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthenticated"),
        (writer_headers("wrong"), 403, "forbidden"),
        (writer_headers(mint_reader_token(KEY, session_id="s-new")), 403, "forbidden"),
    ],
)
async def test_writes_need_the_writer_token(
    guarded: InProcessDaemon, headers: dict[str, str], status: int, code: str
) -> None:
    async with httpx.AsyncClient(base_url=guarded.http_url) as client:
        before = await metric(client, f'livereplay_http_errors_total{{code="{code}"}}')
        refused(
            await client.post("/v1/sessions/s-new/events", json=batch(1), headers=headers),
            status,
            code,
        )
        refused(await client.post("/v1/sessions/team-a:1/trim", headers=headers), status, code)
        refused(await client.delete("/v1/sessions/team-a:1", headers=headers), status, code)
        after = await metric(client, f'livereplay_http_errors_total{{code="{code}"}}')
        assert after == before + 3
        # Nothing was written or removed.
        cursor = await client.get("/v1/sessions/s-new/cursor", headers=writer_headers())
        assert cursor.status_code == 404
        kept = await client.get("/v1/sessions/team-a:1/cursor", headers=writer_headers())
        assert kept.json()["retained_events"] == 1


async def test_ingest_socket_needs_the_writer_token(guarded: InProcessDaemon) -> None:
    async with open_stream(guarded.ws_url + "/v1/ingest") as ws:
        frame = await asyncio.wait_for(ws.recv(), 5)
        assert isinstance(frame, bytes) and b"unauthenticated" in frame
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


# -- readers ------------------------------------------------------------------


def reader_cases() -> list[Any]:
    return [
        pytest.param(None, 401, "unauthenticated", id="no-token"),
        pytest.param(
            mint_reader_token(KEY, session_id="team-b:1"), 403, "forbidden", id="other-session"
        ),
        pytest.param(
            mint_reader_token(KEY, session_prefix="team-b:"), 403, "forbidden", id="other-prefix"
        ),
        pytest.param(
            mint_reader_token(KEY, session_id="team-a:1", ttl_s=1, now=1_000),
            401,
            "token_expired",
            id="expired",
        ),
        pytest.param(
            mint_reader_token("x" * 40, session_id="team-a:1"),
            401,
            "invalid_token",
            id="bad-signature",
        ),
        pytest.param("not-a-jwt", 401, "invalid_token", id="garbage"),
    ]


@pytest.mark.parametrize(("token", "status", "code"), reader_cases())
async def test_http_reads_need_a_token_for_the_session(
    guarded: InProcessDaemon, token: str | None, status: int, code: str
) -> None:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=guarded.http_url) as client:
        refused(await client.get("/v1/sessions/team-a:1/cursor", headers=headers), status, code)
        refused(
            await client.get(
                "/v1/sessions/team-a:1/events", params={"after": "earliest"}, headers=headers
            ),
            status,
            code,
        )


@pytest.mark.parametrize(("token", "status", "code"), reader_cases())
async def test_socket_reads_need_a_token_for_the_session(
    guarded: InProcessDaemon, token: str | None, status: int, code: str
) -> None:
    url = guarded.stream_url("team-a:1", "earliest")
    if token is not None:
        url += f"&token={token}"
    async with open_stream(url) as ws:
        frame = await recv(ws)
        assert frame == {"type": "error", "code": code, "message": frame["message"]}
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == (4401 if status == 401 else 4403)
    async with httpx.AsyncClient(base_url=guarded.http_url) as client:
        assert await metric(client, f'livereplay_connections_refused_total{{code="{code}"}}') >= 1


@pytest.mark.parametrize("carrier", ["query", "subprotocol", "header"])
async def test_a_reader_token_opens_its_session_however_it_is_carried(
    guarded: InProcessDaemon, carrier: str
) -> None:
    token = mint_reader_token(KEY, session_prefix="team-a:")
    url = guarded.stream_url("team-a:1", "earliest")
    kwargs: dict[str, Any] = {"subprotocols": ["livereplay.v1.json"]}
    if carrier == "query":
        url += f"&token={token}"
    elif carrier == "subprotocol":
        kwargs["subprotocols"] = ["livereplay.v1.json", f"livereplay.token.{token}"]
    else:
        kwargs["additional_headers"] = {"Authorization": f"Bearer {token}"}
    async with open_stream(url, **kwargs) as ws:
        # The token is never echoed back as the chosen subprotocol.
        assert ws.subprotocol == "livereplay.v1.json"
        hello = await recv(ws)
        assert hello["type"] == "hello"
        events = await recv(ws)
        assert events["events"][0]["payload"] == {"secret": SECRET}


async def test_the_session_list_shows_only_what_a_token_covers(guarded: InProcessDaemon) -> None:
    async with httpx.AsyncClient(base_url=guarded.http_url) as client:
        refused(await client.get("/v1/sessions"), 401, "unauthenticated")
        everything = await client.get("/v1/sessions", headers=writer_headers())
        assert [s["session_id"] for s in everything.json()["sessions"]] == ["team-a:1", "team-b:1"]
        token = mint_reader_token(KEY, session_prefix="team-b:")
        scoped = await client.get("/v1/sessions", params={"token": token})
        assert [s["session_id"] for s in scoped.json()["sessions"]] == ["team-b:1"]


# -- origins --------------------------------------------------------------------


async def test_a_disallowed_origin_is_refused_before_the_handshake(
    guarded: InProcessDaemon,
) -> None:
    token = mint_reader_token(KEY, session_id="team-a:1")
    url = guarded.stream_url("team-a:1", "earliest") + f"&token={token}"
    with pytest.raises(InvalidStatus) as denied:
        async with open_stream(url, origin="https://evil.example"):
            pass
    assert denied.value.response.status_code == 403
    async with open_stream(url, origin="https://ui.example") as ws:
        assert (await recv(ws))["type"] == "hello"
    async with httpx.AsyncClient(base_url=guarded.http_url) as client:
        count = await metric(
            client, 'livereplay_connections_refused_total{code="origin_forbidden"}'
        )
        assert count == 1


# -- limits -----------------------------------------------------------------------


async def _refused_socket(url: str, code: str) -> None:
    async with open_stream(url) as ws:
        frame = await recv(ws)
        assert frame["type"] == "error" and frame["code"] == code
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        # 1013, "try again later": readers retry it (4429 was final).
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013


@pytest.mark.parametrize("limit", ["max_connections", "max_connections_per_client"])
async def test_connection_limits_refuse_with_1013(limit: str) -> None:
    async with run_in_process(fast_settings(**{limit: 2})) as daemon:
        url = daemon.stream_url("s-1", "earliest")
        async with open_stream(url) as first, open_stream(url) as second:
            for ws in (first, second):
                assert (await recv(ws))["type"] == "hello"
            await _refused_socket(url, "too_many_connections")
            await _refused_socket(daemon.ws_url + "/v1/ingest", "too_many_connections")
        # The slots are given back when readers leave.
        await asyncio.sleep(0.2)
        async with open_stream(url) as again:
            assert (await recv(again))["type"] == "hello"
        async with httpx.AsyncClient(base_url=daemon.http_url) as client:
            counted = 'livereplay_connections_refused_total{code="too_many_connections"}'
            assert await metric(client, counted) == 2


async def test_the_session_limit_refuses_a_new_session_only() -> None:
    async with (
        run_in_process(fast_settings(max_sessions=2)) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        for name in ("a", "b"):
            assert (
                await client.post(f"/v1/sessions/{name}/events", json=batch(1))
            ).status_code == 200
        refused(await client.post("/v1/sessions/c/events", json=batch(1)), 429, "too_many_sessions")
        assert (await client.post("/v1/sessions/a/events", json=batch(2))).status_code == 200
        assert (await client.get("/v1/sessions/c/cursor")).status_code == 404
        assert (
            await metric(client, 'livereplay_appends_refused_total{code="too_many_sessions"}') == 1
        )


async def test_batch_event_count_limit() -> None:
    async with (
        run_in_process(fast_settings(max_batch_events=3)) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        refused(
            await client.post("/v1/sessions/a/events", json=batch(1, 2, 3, 4)),
            413,
            "batch_too_large",
        )
        assert (await client.get("/v1/sessions/a/cursor")).status_code == 404
        assert await metric(client, 'livereplay_appends_refused_total{code="batch_too_large"}') == 1


async def test_append_rate_per_writer() -> None:
    settings = fast_settings(max_append_rate=5.0, max_events_per_session=10)
    async with (
        run_in_process(settings) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        # The burst is one full window (10 events); the next batch is over the rate.
        ok = await client.post("/v1/sessions/a/events", json=batch(*range(10)))
        assert ok.status_code == 200
        refused(
            await client.post("/v1/sessions/a/events", json=batch(*range(10))), 429, "rate_limited"
        )
        assert (await client.get("/v1/sessions/a/cursor")).json()["position"] == 10
        # Another writer (incarnation) has its own budget.
        other = {"incarnation": "w2", "events": [{"revision": 1, "position": 1, "payload": 0}]}
        assert (await client.post("/v1/sessions/b/events", json=other)).status_code == 200
        assert await metric(client, 'livereplay_appends_refused_total{code="rate_limited"}') == 1


async def test_an_oversized_socket_message_is_refused_with_1009() -> None:
    async with (
        run_in_process(fast_settings(max_batch_bytes=10_000)) as daemon,
        open_stream(daemon.ws_url + "/v1/ingest") as ws,
    ):
        await asyncio.wait_for(ws.recv(), 5)  # welcome
        await ws.send(b"\x00" * 200_000)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
