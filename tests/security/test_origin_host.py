"""A web page the user happens to visit must not read or write the daemon (issue 9).

By default (loopback, no auth) only loopback origins and loopback host names are
served: a page on another origin can neither open a socket (reading events) nor
send a simple `text/plain` POST (cross-site request forgery), and a `Host` that
is not ours (DNS rebinding) is refused. Every check runs over a real socket.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from livereplay_server import config
from tests.support.daemon import InProcessDaemon, fast_settings, run_in_process
from tests.support.wire import open_stream, recv

EVIL = "http://evil.example"
WRITER = "writer-secret-for-tests"


async def metric(daemon: InProcessDaemon, line: str) -> float:
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        text = (await client.get("/metrics")).text
    for row in text.splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


def upgrade_headers(**extra: str) -> dict[str, str]:
    """A WebSocket handshake sent as a plain request, so any `Host` can be given."""
    return {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        **extra,
    }


def refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == code


async def seed(daemon: InProcessDaemon, headers: dict[str, str] | None = None) -> None:
    async with httpx.AsyncClient(base_url=daemon.http_url, headers=headers or {}) as client:
        answer = await client.post(
            "/v1/sessions/s-1/events", json={"events": [{"revision": 1, "payload": "private"}]}
        )
        assert answer.status_code == 200, answer.text


async def test_a_foreign_origin_cannot_open_a_socket_by_default() -> None:
    async with run_in_process() as daemon:
        await seed(daemon)
        url = daemon.stream_url("s-1", "earliest")
        for origin in (EVIL, "null", "http://localhost.evil.example", "http://127.0.0.1.nip.io"):
            with pytest.raises(InvalidStatus) as denied:
                async with open_stream(url, origin=origin):
                    pass
            response = denied.value.response
            assert response.status_code == 403
            assert json.loads(response.body)["error"]["code"] == "origin_forbidden"
            assert b"private" not in response.body
        # The ingest socket too: a page must not write through it either.
        with pytest.raises(InvalidStatus):
            async with open_stream(daemon.ws_url + "/v1/ingest", origin=EVIL):
                pass
        counted = await metric(
            daemon, 'livereplay_connections_refused_total{code="origin_forbidden"}'
        )
        assert counted == 5


async def test_a_foreign_origin_cannot_write_trim_delete_or_read_over_http() -> None:
    """A `text/plain` POST is a "simple" request: browsers send it cross-site unasked."""
    async with run_in_process() as daemon:
        await seed(daemon)
        body = json.dumps({"events": [{"revision": 1, "payload": "forged"}]})
        cross = {"Origin": EVIL, "Content-Type": "text/plain"}
        async with httpx.AsyncClient(base_url=daemon.http_url, headers=cross) as client:
            refused(await client.post("/v1/sessions/s-1/events", content=body), "origin_forbidden")
            refused(await client.post("/v1/sessions/new/events", content=body), "origin_forbidden")
            refused(await client.post("/v1/sessions/s-1/trim"), "origin_forbidden")
            refused(await client.delete("/v1/sessions/s-1"), "origin_forbidden")
            refused(await client.get("/v1/sessions/s-1/cursor"), "origin_forbidden")
            refused(await client.get("/v1/sessions"), "origin_forbidden")
        async with httpx.AsyncClient(base_url=daemon.http_url) as client:
            kept = (await client.get("/v1/sessions/s-1/cursor")).json()
            assert kept["retained_events"] == 1 and kept["position"] == 1
            assert (await client.get("/v1/sessions/new/cursor")).status_code == 404
        assert await metric(daemon, 'livereplay_http_errors_total{code="origin_forbidden"}') == 6


async def test_a_foreign_host_is_refused_by_default() -> None:
    """DNS rebinding: evil.example resolves to 127.0.0.1, and the page then calls it."""
    async with run_in_process() as daemon:
        await seed(daemon)
        host = {"Host": f"evil.example:{daemon.settings.port}"}
        async with httpx.AsyncClient(base_url=daemon.http_url, headers=host) as client:
            refused(await client.get("/v1/sessions/s-1/events?after=earliest"), "host_forbidden")
            body = {"events": [{"revision": 1, "payload": "forged"}]}
            refused(await client.post("/v1/sessions/s-1/events", json=body), "host_forbidden")
            refused(await client.get("/"), "host_forbidden")
            stream = "/v1/sessions/s-1/stream?cursor=earliest"
            answer = await client.get(stream, headers=upgrade_headers())
            refused(answer, "host_forbidden")
            assert b"private" not in answer.content
        assert await metric(daemon, 'livereplay_http_errors_total{code="host_forbidden"}') == 3
        counted = await metric(
            daemon, 'livereplay_connections_refused_total{code="host_forbidden"}'
        )
        assert counted == 1


@pytest.mark.parametrize(
    "origin",
    [
        None,
        "http://localhost",
        "http://localhost:3000",
        "https://127.0.0.1:8443",
        "http://[::1]:7447",
        "HTTP://LOCALHOST:5173",
    ],
)
async def test_loopback_origins_are_served_by_default(origin: str | None) -> None:
    async with run_in_process() as daemon:
        headers = {} if origin is None else {"Origin": origin}
        await seed(daemon, headers)
        async with open_stream(daemon.stream_url("s-1", "earliest"), origin=origin) as ws:
            assert (await recv(ws))["type"] == "hello"
            assert (await recv(ws))["events"][0]["payload"] == "private"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST."])
async def test_loopback_host_names_are_served_by_default(host: str) -> None:
    async with run_in_process() as daemon:
        for value in (host, f"{host}:{daemon.settings.port}"):
            async with httpx.AsyncClient(
                base_url=daemon.http_url, headers={"Host": value}
            ) as client:
                assert (await client.get("/healthz")).status_code == 200


async def test_the_inspector_works_from_its_own_loopback_origin() -> None:
    async with run_in_process() as daemon:
        await seed(daemon)
        origin = daemon.http_url  # http://127.0.0.1:PORT, as a browser sends it
        async with httpx.AsyncClient(base_url=daemon.http_url, headers={"Origin": origin}) as c:
            assert (await c.get("/")).status_code == 200
            assert (await c.get("/v1/sessions")).json()["sessions"][0]["session_id"] == "s-1"
        async with open_stream(daemon.stream_url("s-1", "earliest"), origin=origin) as ws:
            assert (await recv(ws))["type"] == "hello"


async def test_configured_origins_and_hosts_are_served_as_well() -> None:
    settings = fast_settings(
        allowed_origins=("https://ui.example", "http://ops.example:8080/"),
        allowed_hosts=("replay.example",),
    )
    async with run_in_process(settings) as daemon:
        await seed(daemon)
        url = daemon.stream_url("s-1", "earliest")
        for origin in ("https://ui.example", "http://ops.example:8080", "http://localhost:3000"):
            async with open_stream(url, origin=origin) as ws:
                assert (await recv(ws))["type"] == "hello"
        for origin in ("http://ui.example", "https://ui.example:8443", EVIL):
            with pytest.raises(InvalidStatus):
                async with open_stream(url, origin=origin):
                    pass
        async with httpx.AsyncClient(base_url=daemon.http_url) as client:
            for host, status in [
                ("replay.example", 200),
                (f"replay.example:{daemon.settings.port}", 200),
                ("127.0.0.1", 200),
                ("evil.example", 403),
            ]:
                answer = await client.get("/v1/sessions", headers={"Host": host})
                assert answer.status_code == status, host


async def test_a_star_allows_any_origin() -> None:
    async with run_in_process(fast_settings(allowed_origins=("*",))) as daemon:
        await seed(daemon, {"Origin": EVIL})
        async with open_stream(daemon.stream_url("s-1", "earliest"), origin=EVIL) as ws:
            assert (await recv(ws))["type"] == "hello"


@pytest.mark.parametrize(
    ("listen", "allowed_hosts", "served", "refused_hosts"),
    [
        # A wildcard address with no list: any Host (auth is mandatory there).
        ("0.0.0.0", (), ["replay.example", "10.1.2.3:7447", "whatever"], []),
        ("::", (), ["replay.example"], []),
        ("0.0.0.0", ("replay.example",), ["replay.example", "localhost"], ["whatever"]),
        # A specific address or name is a host name clients use.
        ("10.1.2.3", (), ["10.1.2.3", "10.1.2.3:7447", "127.0.0.1"], ["whatever"]),
        ("replay.internal", (), ["replay.internal:7447"], ["whatever"]),
        ("fd00::5", (), ["[fd00::5]:7447", "[FD00::5]"], ["whatever"]),
    ],
)
async def test_the_host_list_follows_the_listen_address(
    listen: str, allowed_hosts: tuple[str, ...], served: list[str], refused_hosts: list[str]
) -> None:
    # Settings for an open address; the test still binds 127.0.0.1.
    settings = fast_settings(host=listen, writer_token=WRITER, allowed_hosts=allowed_hosts)
    async with run_in_process(settings) as daemon:
        headers: dict[str, Any] = {"Authorization": f"Bearer {WRITER}"}
        async with httpx.AsyncClient(base_url=daemon.http_url, headers=headers) as client:
            for host in served:
                answer = await client.get("/v1/sessions", headers={"Host": host})
                assert answer.status_code == 200, (host, answer.text)
            for host in refused_hosts:
                refused(await client.get("/v1/sessions", headers={"Host": host}), "host_forbidden")


def test_allowed_hosts_and_origins_are_repeatable_flags_and_env_lists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = config.parse(["--allowed-host", "a.example", "--allowed-host", "b.example"])
    assert settings.allowed_hosts == ("a.example", "b.example")
    monkeypatch.setenv("LIVEREPLAY_ALLOWED_HOST", "c.example, d.example")
    monkeypatch.setenv("LIVEREPLAY_ALLOWED_ORIGIN", "*")
    settings = config.parse([])
    assert settings.allowed_hosts == ("c.example", "d.example")
    assert settings.allowed_origins == ("*",)
    for bad in (["--allowed-origin", "ui.example"], ["--allowed-host", "a.example/x"]):
        with pytest.raises(ValueError, match="--allowed-"):
            config.parse(bad)
