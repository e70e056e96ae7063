"""The session list shows, and pages through, only what the caller may read (issue 9).

A reader token for one session used to walk `next_after` through every session id
of the daemon. Each test runs against both backends over a real socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from livereplay.protocol import mint_reader_token
from tests.support.daemon import InProcessDaemon, fast_settings, run_in_process
from tests.support.redis import delete_prefix, unique_prefix

WRITER = "writer-secret-for-tests"
KEY = "k" * 40
SESSIONS = [
    "a",
    "ab",
    "b",
    "secret-team-x",
    "team-a:1",
    "team-a:2",
    "team-a:3",
    "team-b:1",
    "zz-private",
]
TEAM_A = ["team-a:1", "team-a:2", "team-a:3"]
WRITER_HEADERS = {"Authorization": f"Bearer {WRITER}"}


@pytest.fixture(params=["memory", "redis"])
async def daemon(request: pytest.FixtureRequest) -> AsyncIterator[InProcessDaemon]:
    overrides: dict[str, Any] = {"writer_token": WRITER, "reader_key": KEY}
    prefix = unique_prefix()
    url = ""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        overrides.update(backend="redis", redis_url=url, redis_key_prefix=prefix)
    try:
        async with run_in_process(fast_settings(**overrides)) as d:
            async with httpx.AsyncClient(base_url=d.http_url, headers=WRITER_HEADERS) as client:
                for session_id in SESSIONS:
                    body = {"events": [{"revision": 1, "payload": session_id}]}
                    answer = await client.post(f"/v1/sessions/{session_id}/events", json=body)
                    assert answer.status_code == 200, answer.text
            yield d
    finally:
        if url:
            await delete_prefix(url, prefix)


async def walk(
    daemon: InProcessDaemon, limit: int, *, token: str | None = None, after: str | None = None
) -> list[tuple[list[str], str | None]]:
    """Every page of the list, following `next_after` to its end: (ids, next_after)."""
    headers = WRITER_HEADERS if token is None else {"Authorization": f"Bearer {token}"}
    pages: list[tuple[list[str], str | None]] = []
    async with httpx.AsyncClient(base_url=daemon.http_url, headers=headers) as client:
        while len(pages) < 20:
            params: dict[str, Any] = {"limit": limit}
            if after is not None:
                params["after"] = after
            answer = await client.get("/v1/sessions", params=params)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            ids = [s["session_id"] for s in body["sessions"]]
            pages.append((ids, body["next_after"]))
            after = body["next_after"]
            if after is None:
                return pages
    raise AssertionError(f"next_after never ended: {pages}")


def assert_full_pages(pages: list[tuple[list[str], str | None]], limit: int) -> None:
    """Only the last page may be short, and a page that ends the range says so."""
    for ids, next_after in pages[:-1]:
        assert len(ids) == limit and next_after == ids[-1]
    assert pages[-1][1] is None


async def test_a_token_for_one_session_sees_that_session_and_no_other_id(
    daemon: InProcessDaemon,
) -> None:
    token = mint_reader_token(KEY, session_id="a")
    pages = await walk(daemon, 1, token=token)
    assert pages == [(["a"], None)]
    assert await walk(daemon, 1, token=token, after="a") == [([], None)]
    # After an id below it, the session is still the whole list.
    middle = mint_reader_token(KEY, session_id="team-a:2")
    assert await walk(daemon, 5, token=middle, after="b") == [(["team-a:2"], None)]
    assert await walk(daemon, 5, token=middle, after="team-a:3") == [([], None)]
    unknown = mint_reader_token(KEY, session_id="team-a:")
    assert await walk(daemon, 5, token=unknown) == [([], None)]


@pytest.mark.parametrize("limit", [1, 2, 3, 4])
async def test_a_prefix_token_pages_only_within_its_prefix(
    daemon: InProcessDaemon, limit: int
) -> None:
    token = mint_reader_token(KEY, session_prefix="team-a:")
    pages = await walk(daemon, limit, token=token)
    assert [i for ids, _ in pages for i in ids] == TEAM_A
    assert all(n is None or n in TEAM_A for _, n in pages)
    assert_full_pages(pages, limit)


async def test_a_prefix_token_ignores_an_after_outside_its_prefix(
    daemon: InProcessDaemon,
) -> None:
    token = mint_reader_token(KEY, session_prefix="team-a:")
    assert await walk(daemon, 2, token=token, after="a") == [
        (TEAM_A[:2], "team-a:2"),
        (TEAM_A[2:], None),
    ]
    assert await walk(daemon, 2, token=token, after="team-a:1") == [(TEAM_A[1:], None)]
    assert await walk(daemon, 2, token=token, after="team-b:") == [([], None)]
    # A prefix that matches no session, between two that exist.
    empty = mint_reader_token(KEY, session_prefix="secret-team-y")
    assert await walk(daemon, 2, token=empty) == [([], None)]


@pytest.mark.parametrize("limit", [2, 9])
async def test_the_writer_token_pages_through_every_session(
    daemon: InProcessDaemon, limit: int
) -> None:
    pages = await walk(daemon, limit)
    assert [i for ids, _ in pages for i in ids] == SESSIONS
    assert_full_pages(pages, limit)


async def test_without_auth_every_session_is_listed() -> None:
    async with (
        run_in_process(fast_settings()) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        for session_id in ("x", "y"):
            body = {"events": [{"revision": 1, "payload": 1}]}
            assert (await client.post(f"/v1/sessions/{session_id}/events", json=body)).is_success
        body = (await client.get("/v1/sessions", params={"limit": 2})).json()
        assert [s["session_id"] for s in body["sessions"]] == ["x", "y"]
        assert body["next_after"] is None
