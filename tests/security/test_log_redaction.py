"""No log line ever carries a token (issue 9).

Browsers pass reader tokens as `?token=`, and uvicorn logs request paths with
their query (`"WebSocket /v1/...?token=..." 403`). The daemon runs as a child
process with debug logs, is used with tokens in every carrier, allowed and
refused, and its log file must not contain any of them.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import urllib.parse
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from livereplay.protocol import mint_reader_token
from tests.support.daemon import DaemonProcess
from tests.support.wire import open_stream, recv

WRITER = "writer-secret-for-the-log-test"
KEY = "k" * 40


async def test_tokens_never_reach_the_log_file() -> None:
    own = mint_reader_token(KEY, session_id="s-1")
    other = mint_reader_token(KEY, session_id="s-2")
    prefix = mint_reader_token(KEY, session_prefix="s-")
    args = ["--log-level", "debug", "--writer-token", WRITER, "--reader-key", KEY]
    args += ["--allowed-origin", "https://ui.example"]
    with DaemonProcess(args=args) as daemon:
        writer = {"Authorization": f"Bearer {WRITER}"}
        async with httpx.AsyncClient(base_url=daemon.http_url) as client:
            body = {"events": [{"revision": 1, "payload": 1}]}
            assert (
                await client.post("/v1/sessions/s-1/events", json=body, headers=writer)
            ).is_success
            # HTTP reads: allowed, refused, and a forged Authorization header.
            assert (await client.get("/v1/sessions/s-1/cursor", params={"token": own})).is_success
            denied = await client.get("/v1/sessions/s-1/cursor", params={"token": other})
            assert denied.status_code == 403
            assert (await client.get("/v1/sessions", params={"token": prefix})).is_success
            unknown = await client.get("/v1/sessions/s-1/cursor", headers={"Authorization": other})
            assert unknown.status_code == 401
            assert (await client.get("/v1/nowhere", params={"token": own})).status_code == 404

        base = daemon.stream_url("s-1", "earliest")
        # A socket that is let in, and one refused after the handshake (4403).
        async with open_stream(f"{base}&token={own}") as ws:
            assert (await recv(ws))["type"] == "hello"
        async with open_stream(f"{base}&token={other}") as ws:
            assert (await recv(ws))["code"] == "forbidden"
            with pytest.raises(ConnectionClosed):
                await ws.recv()
        # Refused before the handshake: uvicorn logs the path and its query.
        refused: list[tuple[str, dict[str, Any]]] = [
            (f"{base}&token={own}", {}),
            (f"{base}&token={urllib.parse.quote(other)}", {}),
            (base, {"subprotocols": ["livereplay.v1.json", f"livereplay.token.{prefix}"]}),
            (base, {"additional_headers": {"Authorization": f"Bearer {own}"}}),
        ]
        for url, extra in refused:
            with pytest.raises(InvalidStatus):
                async with open_stream(url, origin="https://evil.example", **extra):
                    pass
        daemon.stop()
        logs = daemon.logs()
    for secret in (own, other, prefix, WRITER):
        assert secret not in logs
        # JWTs are three dot-separated parts; no part of one may leak either.
        for part in secret.split(".")[1:]:
            assert part not in logs
    # The refused handshakes were logged, with the token taken out.
    assert "token=[redacted]" in logs


def test_every_carrier_is_redacted_in_every_kind_of_record() -> None:
    """Our structlog lines, uvicorn's stdlib lines and exception text all go through it."""
    script = textwrap.dedent(
        """
        import logging
        from livereplay_server import logs

        logs.configure("json", "debug")
        uv = logging.getLogger("uvicorn.error")
        uv.warning('%s - "WebSocket %s" 403', "127.0.0.1:5", "/x?cursor=a&token=SECRET-ONE")
        uv.warning("headers %r", [(b"authorization", b"Basic SECRET-TWO"),
                                  (b"sec-websocket-protocol",
                                   b"livereplay.v1.json, livereplay.token.SECRET-THREE")])
        log = logs.get_logger("livereplay.test")
        log.warning("refused", path="/v1/s?token=SECRET-FOUR&cursor=x",
                    token="SECRET-FIVE", authorization="SECRET-SIX")
        try:
            raise RuntimeError("upstream said Authorization: Bearer SECRET-SEVEN")
        except RuntimeError:
            log.exception("failed", headers={"Authorization": "SECRET-EIGHT"})
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "GET", "/v1/sessions?token=SECRET-NINE",
            "1.1", 200)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    assert "SECRET" not in done.stderr, done.stderr
    assert done.stderr.count("[redacted]") >= 9
    # What is not a secret is kept, so the lines stay useful.
    assert "/x?cursor=a&token=[redacted]" in done.stderr
    assert "livereplay.v1.json" in done.stderr and "RuntimeError" in done.stderr
