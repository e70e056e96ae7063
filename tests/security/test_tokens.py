"""A reader token must name what it covers: an empty prefix is not "everything" (issue 9)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed

from livereplay.protocol.tokens import READ_SCOPE, mint_reader_token
from tests.support.daemon import InProcessDaemon, fast_settings, run_in_process
from tests.support.wire import open_stream, recv

WRITER = "writer-secret-for-tests"
KEY = "k" * 40


def forged(**claims: Any) -> str:
    """A token any JWT library could sign with the reader key."""
    now = int(time.time())
    return jwt.encode({"scope": READ_SCOPE, "iat": now, "exp": now + 600, **claims}, KEY)


EMPTY_SCOPES = [
    pytest.param({"lr_prefix": ""}, id="empty-prefix"),
    pytest.param({"sub": ""}, id="empty-session"),
    pytest.param({"sub": "", "lr_prefix": ""}, id="both-empty"),
    pytest.param({}, id="neither"),
]


@pytest.fixture
async def daemon() -> AsyncIterator[InProcessDaemon]:
    async with run_in_process(fast_settings(writer_token=WRITER, reader_key=KEY)) as d:
        async with httpx.AsyncClient(base_url=d.http_url) as client:
            body = {"events": [{"revision": 1, "payload": "private"}]}
            answer = await client.post(
                "/v1/sessions/team-a:1/events",
                json=body,
                headers={"Authorization": f"Bearer {WRITER}"},
            )
            assert answer.status_code == 200
        yield d


@pytest.mark.parametrize("claims", EMPTY_SCOPES)
async def test_a_token_with_an_empty_scope_is_invalid_over_http(
    daemon: InProcessDaemon, claims: dict[str, Any]
) -> None:
    headers = {"Authorization": f"Bearer {forged(**claims)}"}
    async with httpx.AsyncClient(base_url=daemon.http_url, headers=headers) as client:
        for path, params in [
            ("/v1/sessions", {}),
            ("/v1/sessions/team-a:1/cursor", {}),
            ("/v1/sessions/team-a:1/events", {"after": "earliest"}),
        ]:
            answer = await client.get(path, params=params)
            assert answer.status_code == 401, (path, answer.text)
            assert answer.json()["error"]["code"] == "invalid_token"
            assert "private" not in answer.text


@pytest.mark.parametrize("claims", EMPTY_SCOPES)
async def test_a_token_with_an_empty_scope_is_invalid_on_a_socket(
    daemon: InProcessDaemon, claims: dict[str, Any]
) -> None:
    url = daemon.stream_url("team-a:1", "earliest") + f"&token={forged(**claims)}"
    async with open_stream(url) as ws:
        frame = await recv(ws)
        assert (frame["type"], frame["code"]) == ("error", "invalid_token")
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_a_real_prefix_still_reads(daemon: InProcessDaemon) -> None:
    headers = {"Authorization": f"Bearer {forged(lr_prefix='team-a:')}"}
    async with httpx.AsyncClient(base_url=daemon.http_url, headers=headers) as client:
        answer = await client.get("/v1/sessions/team-a:1/cursor")
        assert answer.status_code == 200


@pytest.mark.parametrize("scope", ["session_id", "session_prefix"])
def test_minting_refuses_an_empty_scope(scope: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        mint_reader_token(KEY, **{scope: ""})  # type: ignore[arg-type]
