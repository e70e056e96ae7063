"""Issue 12, HTTP details and what an operator sees: 405 `Allow`, `/cursor` during the
startup grace, refusals counted alike, and the daemon's info logs."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from livereplay.protocol.constants import INGEST_SUBPROTOCOL
from tests.support.daemon import DaemonProcess, fast_settings, run_in_process
from tests.support.wire import append, open_stream, recv_until

INC = "writer-1"


async def metric(client: httpx.AsyncClient, series: str) -> float:
    text = (await client.get("/metrics")).text
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


# -- 405 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/sessions/s-1/events", "GET, HEAD, POST"),
        ("DELETE", "/v1/sessions/s-1/events", "GET, HEAD, POST"),
        ("POST", "/v1/sessions/s-1/cursor", "GET, HEAD"),
        ("GET", "/v1/sessions/s-1/trim", "POST"),
        ("GET", "/v1/sessions/s-1", "DELETE"),
        ("POST", "/healthz", "GET, HEAD"),
    ],
)
async def test_405_names_the_methods_of_the_path(method: str, path: str, allow: str) -> None:
    async with (
        run_in_process() as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        response = await client.request(method, path)
        assert response.status_code == 405
        assert response.headers["allow"] == allow
        assert response.json()["error"]["code"] == "method_not_allowed"
        assert await metric(client, 'livereplay_http_errors_total{code="method_not_allowed"}') == 1


# -- /cursor during the startup grace ----------------------------------------------


async def test_cursor_answers_starting_during_the_grace_like_a_page() -> None:
    async with (
        run_in_process(fast_settings(startup_grace_s=30)) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        cursor = await client.get("/v1/sessions/s-1/cursor")
        page = await client.get(
            "/v1/sessions/s-1/events", params={"after": f"lashsc2:{INC}:1:3:s-1"}
        )
        for response in (cursor, page):
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "starting"
            assert 1 <= int(response.headers["retry-after"]) <= 30
        # Once the writer is back, the session is there.
        await append(client, "s-1", [1, 2, 3], incarnation=INC)
        known = await client.get("/v1/sessions/s-1/cursor")
        assert known.status_code == 200 and known.json()["position"] == 3


async def test_cursor_answers_404_for_an_unknown_session_after_the_grace() -> None:
    async with (
        run_in_process(fast_settings(startup_grace_s=0)) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        response = await client.get("/v1/sessions/s-1/cursor")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "unknown_session"


# -- refusals counted alike -----------------------------------------------------------


async def test_every_append_refusal_counts_in_both_metrics_alike() -> None:
    """An HTTP append refusal is an append refused and an HTTP error, whatever refused
    it: the body's size, its shape, a payload, the batch's event count or the store."""
    settings = fast_settings(max_batch_bytes=2000, max_batch_events=3, max_event_bytes=500)
    four = {"events": [{"revision": 1, "payload": i} for i in range(4)]}
    refusals: list[tuple[Any, str]] = [
        ({"content": b"x" * 3000}, "batch_too_large"),  # bytes: refused while reading it
        ({"json": four}, "batch_too_large"),  # events: refused by the append path
        ({"content": b"{not json"}, "invalid_body"),
        ({"content": b'{"events":[{"revision":1,"payload":1e400}]}'}, "invalid_event"),
        ({"json": {"events": [{"revision": 1, "payload": "x" * 600}]}}, "event_too_large"),
        ({"json": {"incarnation": "bad inc", "events": []}}, "invalid_incarnation"),
    ]
    async with (
        run_in_process(settings) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        for kwargs, code in refusals:
            response = await client.post("/v1/sessions/s-1/events", **kwargs)
            assert response.status_code in (400, 413), response.text
            assert response.json()["error"]["code"] == code
        for code in {code for _, code in refusals}:
            expected = sum(1 for _, c in refusals if c == code)
            refused = await metric(client, f'livereplay_appends_refused_total{{code="{code}"}}')
            errors = await metric(client, f'livereplay_http_errors_total{{code="{code}"}}')
            assert (refused, errors) == (expected, expected), code
        # A route that does not exist is an HTTP error too.
        assert (await client.get("/nowhere")).status_code == 404
        assert await metric(client, 'livereplay_http_errors_total{code="not_found"}') == 1
        help_text = (await client.get("/metrics")).text
        assert "also counts in livereplay_http_errors_total" in help_text


# -- logs -----------------------------------------------------------------------------


def records(daemon: DaemonProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in daemon.logs().splitlines() if line.startswith("{")]


async def test_a_refused_origin_is_logged_by_us_not_as_an_asgi_error() -> None:
    with DaemonProcess() as daemon:
        for path in ("/v1/sessions/s-1/stream?cursor=earliest&token=s3cret", "/v1/ingest"):
            with pytest.raises(InvalidStatus) as refused:
                async with open_stream(daemon.ws_url + path, origin="http://evil.example"):
                    pass
            assert refused.value.response.status_code == 403
        await asyncio.sleep(0.3)
        daemon.stop()
        lines = records(daemon)
    assert not [r for r in lines if r["level"] in ("error", "critical")], lines
    assert not any("without completing handshake" in r["event"] for r in lines)
    ours = [r for r in lines if r["event"] == "connection_refused"]
    assert [(r["kind"], r["code"], r["level"]) for r in ours] == [
        ("reader", "origin_forbidden", "warning"),
        ("writer", "origin_forbidden", "warning"),
    ]
    assert ours[0]["origin"] == "http://evil.example"
    assert ours[0]["path"] == "/v1/sessions/s-1/stream"  # no query, so no token
    assert "s3cret" not in daemon.logs()


async def test_an_operator_sees_connections_refusals_and_a_summary() -> None:
    token = "writer-s3cret-token"
    secret = "payload-that-must-not-be-logged"
    args = ["--log-summary-s", "0.3", "--writer-token", token]
    with DaemonProcess(args=args) as daemon:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=daemon.http_url, headers=headers) as client:
            await append(client, "s-1", [{"secret": secret}], incarnation=INC)
            reader_url = daemon.stream_url("s-1", "earliest") + f"&token={token}"
            async with open_stream(reader_url) as ws:
                await recv_until(ws, "caught_up")
                async with open_stream(
                    daemon.ws_url + "/v1/ingest",
                    subprotocols=[Subprotocol(INGEST_SUBPROTOCOL)],
                    additional_headers=headers,
                ) as writer:
                    await writer.recv()  # the welcome
                    await asyncio.sleep(0.5)  # a summary while both are open
            refused = await client.post(
                "/v1/sessions/s-1/events", json={"events": []}, headers={"Authorization": "x"}
            )
            assert refused.status_code == 401
            deadline = time.monotonic() + 5
            while not any(
                r["event"] == "summary" and r["readers"] == 0 and r["refusals"] >= 1
                for r in records(daemon)
            ):
                assert time.monotonic() < deadline, daemon.logs()
                await asyncio.sleep(0.1)
        daemon.stop()
        text = daemon.logs()
        lines = records(daemon)
    by_event: dict[str, list[dict[str, Any]]] = {}
    for r in lines:
        by_event.setdefault(r["event"], []).append(r)
    opened = by_event["connection_opened"]
    closed = by_event["connection_closed"]
    assert [(r["kind"], r["session_id"]) for r in opened] == [("reader", "s-1"), ("writer", None)]
    assert sorted((r["kind"], r["session_id"]) for r in closed) == [
        ("reader", "s-1"),
        ("writer", None),
    ]
    assert all(r["level"] == "info" and r["client"].startswith("127.0.0.1:") for r in opened)
    assert all(r["duration_s"] >= 0 for r in closed)
    (request,) = by_event["request_refused"]
    assert (request["status"], request["code"], request["method"], request["level"]) == (
        401,
        "unauthenticated",
        "POST",
        "info",
    )
    summaries = by_event["summary"]
    assert any(s["readers"] == 1 and s["writers"] == 1 for s in summaries), summaries
    fields = {
        "sessions",
        "readers",
        "writers",
        "appends_per_s",
        "deliveries_per_s",
        "gaps",
        "refusals",
        "held_bytes",
        "rss_bytes",
    }
    assert all(fields <= set(s) and s["level"] == "info" for s in summaries)
    assert sum(s["deliveries_per_s"] * s["interval_s"] for s in summaries) == pytest.approx(
        1, abs=0.2
    )
    assert secret not in text and token not in text


async def test_plain_http_readers_are_logged_like_websocket_readers() -> None:
    with DaemonProcess() as daemon:
        async with httpx.AsyncClient(base_url=daemon.http_url) as client:
            await append(client, "s-2", [{"n": 1}], incarnation=INC)
            headers = {"Accept": "text/event-stream"}
            url = "/v1/sessions/s-2/stream?cursor=earliest"
            async with client.stream("GET", url, headers=headers) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line == "event: caught_up":
                        break
        deadline = time.monotonic() + 5
        while not any(r["event"] == "connection_closed" for r in records(daemon)):
            assert time.monotonic() < deadline, daemon.logs()
            await asyncio.sleep(0.05)
        lines = records(daemon)
    opened = [r for r in lines if r["event"] == "connection_opened"]
    closed = [r for r in lines if r["event"] == "connection_closed"]
    assert [(r["kind"], r["session_id"]) for r in opened] == [("reader", "s-2")]
    assert [(r["kind"], r["session_id"]) for r in closed] == [("reader", "s-2")]
