"""The HTTP API over a real socket: answers, paging, and every error code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.daemon import fast_settings, run_in_process
from tests.support.wire import append

INC = "writer-1"
HUGE = "9" * 5000


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    settings = fast_settings(max_event_bytes=1000, max_batch_bytes=20_000, max_events_per_session=5)
    async with run_in_process(settings) as daemon, httpx.AsyncClient(base_url=daemon.http_url) as c:
        yield c


def error_code(response: httpx.Response) -> str:
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"} and body["error"]["message"]
    code: str = body["error"]["code"]
    return code


async def test_cursor_endpoint(client: httpx.AsyncClient) -> None:
    result = await append(client, "s-1", [1, 2, 3], incarnation=INC, revision=7)
    body = (await client.get("/v1/sessions/s-1/cursor")).json()
    assert body["cursor"] == result["tail_cursor"] == f"lashsc2:{INC}:7:3:s-1"
    assert body["earliest_cursor"] == f"lashsc2:{INC}:7:1:s-1"
    assert (body["incarnation"], body["revision"], body["position"]) == (INC, 7, 3)
    assert body["retained_events"] == 3 and body["retained_bytes"] > 0
    stamped = (await client.get("/v1/sessions/s-1/cursor", params={"revision": "42"})).json()
    assert stamped["cursor"] == f"lashsc2:{INC}:42:3:s-1"


async def test_events_pages_and_next_cursor(client: httpx.AsyncClient) -> None:
    result = await append(client, "s-1", ["a", "b", "c", "d"], incarnation=INC)
    first = (
        await client.get("/v1/sessions/s-1/events", params={"after": "earliest", "limit": "3"})
    ).json()
    assert [e["payload"] for e in first["events"]] == ["a", "b", "c"]
    assert first["next_cursor"] == result["cursors"][2]
    assert first["gap"] is None and first["caught_up"] is False
    second = (
        await client.get("/v1/sessions/s-1/events", params={"after": first["next_cursor"]})
    ).json()
    assert [e["payload"] for e in second["events"]] == ["d"]
    assert second["caught_up"] is True
    empty = (
        await client.get("/v1/sessions/s-1/events", params={"after": second["next_cursor"]})
    ).json()
    assert empty == {
        "events": [],
        "gap": None,
        "next_cursor": second["next_cursor"],
        "caught_up": True,
    }


async def test_events_page_with_a_gap(client: httpx.AsyncClient) -> None:
    result = await append(client, "s-1", list(range(8)), incarnation=INC)
    page = (
        await client.get("/v1/sessions/s-1/events", params={"after": result["cursors"][0]})
    ).json()
    assert page["events"] == []
    assert page["gap"]["reason"] == "trimmed" and page["gap"]["detail"] == "retention"
    assert page["next_cursor"] == result["tail_cursor"] == page["gap"]["latest_cursor"]
    unknown = (
        await client.get("/v1/sessions/nope/events", params={"after": f"lashsc2:{INC}:1:3:nope"})
    ).json()
    assert unknown["gap"]["detail"] == "unknown_session"
    assert unknown["next_cursor"] == "earliest"


async def test_append_answers_cursors_and_counts_duplicates(client: httpx.AsyncClient) -> None:
    first = await append(client, "s-1", ["a", "b"], incarnation=INC)
    assert (first["accepted"], first["duplicates"]) == (2, 0)
    again = await append(client, "s-1", ["a", "b", "c"], incarnation=INC)
    assert (again["accepted"], again["duplicates"]) == (1, 2)
    assert again["cursors"][:2] == first["cursors"]
    assert again["tail_cursor"] == f"lashsc2:{INC}:1:3:s-1"
    empty = await client.post("/v1/sessions/fresh/events", json={"events": []})
    assert empty.json() == {"accepted": 0, "duplicates": 0, "cursors": [], "tail_cursor": None}
    assert (await client.get("/v1/sessions/fresh/cursor")).status_code == 404


async def test_trim_delete_and_session_list(client: httpx.AsyncClient) -> None:
    for name in ["a", "b", "c"]:
        await append(client, name, [1])
    listing = (await client.get("/v1/sessions", params={"limit": "2"})).json()
    assert [s["session_id"] for s in listing["sessions"]] == ["a", "b"]
    assert listing["next_after"] == "b"
    rest = (await client.get("/v1/sessions", params={"after": "b"})).json()
    assert [s["session_id"] for s in rest["sessions"]] == ["c"]
    assert rest["next_after"] is None
    assert set(rest["sessions"][0]) == {
        "session_id",
        "incarnation",
        "tail_cursor",
        "retained_events",
        "retained_bytes",
        "readers",
    }
    assert (await client.post("/v1/sessions/a/trim")).json() == {"trimmed": 0}
    assert (await client.delete("/v1/sessions/a")).status_code == 204
    assert error_code(await client.delete("/v1/sessions/a")) == "unknown_session"


async def test_health_readiness_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).json()["status"] == "ready"
    await append(client, "s-1", [1, 2])
    await client.post("/v1/sessions/s-1/events", json={"incarnation": "bad!", "events": []})
    text = (await client.get("/metrics")).text
    assert "livereplay_events_appended_total 2.0" in text
    assert 'livereplay_appends_refused_total{code="invalid_incarnation"} 1.0' in text
    assert "livereplay_sessions 1.0" in text
    assert 'livereplay_events_trimmed_total{cause="events"}' in text


BAD_REQUESTS = [
    ("POST", "/v1/sessions/s-1/events", b"{not json", 400, "invalid_body"),
    ("POST", "/v1/sessions/s-1/events", b'{"events": 3}', 400, "invalid_body"),
    ("POST", "/v1/sessions/s-1/events", b'{"events": [{"payload": 1}]}', 400, "invalid_event"),
    (
        "POST",
        "/v1/sessions/s-1/events",
        b'{"events": [{"revision": -1, "payload": 1}]}',
        400,
        "invalid_event",
    ),
    (
        "POST",
        "/v1/sessions/s-1/events",
        b'{"events": [{"revision": 18446744073709551616, "payload": 1}]}',
        400,
        "invalid_event",
    ),
    (
        "POST",
        "/v1/sessions/s-1/events",
        b'{"events": [{"revision": 1, "position": 1, "payload": 1}]}',
        400,
        "invalid_event",
    ),
    (
        "POST",
        "/v1/sessions/s-1/events",
        b'{"incarnation": "i", "events": [{"revision": 1, "payload": 1}]}',
        400,
        "invalid_event",
    ),
    (
        "POST",
        "/v1/sessions/s-1/events",
        b'{"incarnation": "has space", "events": []}',
        400,
        "invalid_incarnation",
    ),
    (
        "POST",
        "/v1/sessions/s-1/events",
        b'{"events": [{"revision": 1, "payload": "' + b"x" * 2000 + b'"}]}',
        413,
        "event_too_large",
    ),
    (
        "POST",
        "/v1/sessions/s-1/events",
        b'{"events": ['
        + b",".join([b'{"revision":1,"payload":"' + b"x" * 500 + b'"}'] * 50)
        + b"]}",
        413,
        "batch_too_large",
    ),
    # Payloads must be I-JSON (revision 1.1): what JSON and msgpack cannot both carry exactly.
    *(
        (
            "POST",
            "/v1/sessions/s-1/events",
            b'{"events": [{"revision": 1, "payload": "ok"}, {"revision": 1, "payload": '
            + payload
            + b"}]}",
            400,
            "invalid_event",
        )
        for payload in (
            b"1e400",
            b"9" * 5000,
            b"18446744073709551616",
            b"[" * 65 + b"]" * 65,
            b'"\\ud800"',
        )
    ),
    ("POST", "/v1/sessions/bad%20id/events", b'{"events": []}', 400, "invalid_session_id"),
    ("GET", "/v1/sessions/" + "x" * 257 + "/cursor", None, 400, "invalid_session_id"),
    ("GET", "/v1/sessions/s-1/events?after=lashsc1:a:1:1:s-1", None, 400, "malformed_cursor"),
    ("GET", "/v1/sessions/s-1/events?after=lashsc2:a:%201:1:s-1", None, 400, "malformed_cursor"),
    ("GET", "/v1/sessions/s-1/events", None, 400, "malformed_cursor"),
    ("GET", "/v1/sessions/s-1/events?after=lashsc2:a:1:1:s-2", None, 400, "wrong_session"),
    ("GET", "/v1/sessions/s-1/events?after=earliest&limit=0", None, 400, "invalid_query"),
    ("GET", "/v1/sessions/s-1/events?after=earliest&limit=1001", None, 400, "invalid_query"),
    ("GET", "/v1/sessions/s-1/cursor?revision=x", None, 400, "invalid_query"),
    # Numbers longer than Python's int() takes (4,300 digits) are just out of range.
    ("GET", f"/v1/sessions/s-1/cursor?revision={HUGE}", None, 400, "invalid_query"),
    ("GET", f"/v1/sessions/s-1/events?after=earliest&limit={HUGE}", None, 400, "invalid_query"),
    ("GET", f"/v1/sessions/s-1/events?after=lashsc2:a:{HUGE}:1:s-1", None, 400, "malformed_cursor"),
    ("GET", f"/v1/sessions/s-1/events?after=lashsc2:a:1:{HUGE}:s-1", None, 400, "malformed_cursor"),
    ("GET", f"/v1/sessions?limit={HUGE}", None, 400, "invalid_query"),
    ("GET", "/v1/sessions/nope/cursor", None, 404, "unknown_session"),
    ("POST", "/v1/sessions/nope/trim", None, 404, "unknown_session"),
    ("DELETE", "/v1/sessions/nope", None, 404, "unknown_session"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), BAD_REQUESTS)
async def test_bad_requests_get_a_clear_error_and_change_nothing(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    code: str,
) -> None:
    response = await client.request(method, path, content=body)
    assert response.status_code == status
    assert error_code(response) == code
    assert (await client.get("/v1/sessions")).json()["sessions"] == []


async def test_superseded_incarnation_gets_409_and_writes_nothing(
    client: httpx.AsyncClient,
) -> None:
    await append(client, "s-1", [1], incarnation="old")
    await append(client, "s-1", [1], incarnation="new")
    response = await client.post(
        "/v1/sessions/s-1/events",
        json={"incarnation": "old", "events": [{"revision": 1, "position": 2, "payload": 2}]},
    )
    assert response.status_code == 409
    assert error_code(response) == "incarnation_superseded"
    cursor = (await client.get("/v1/sessions/s-1/cursor")).json()
    assert (cursor["incarnation"], cursor["position"]) == ("new", 1)


async def test_refused_batch_is_not_partially_written(client: httpx.AsyncClient) -> None:
    events = [
        {"revision": 1, "position": 1, "payload": "ok"},
        {"revision": 1, "position": 2, "payload": "x" * 2000},
    ]
    response = await client.post(
        "/v1/sessions/s-1/events", json={"incarnation": INC, "events": events}
    )
    assert response.status_code == 413
    assert (await client.get("/v1/sessions/s-1/cursor")).status_code == 404


async def test_unknown_routes_and_methods_answer_in_the_error_shape(
    client: httpx.AsyncClient,
) -> None:
    assert error_code(await client.get("/v1/nothing")) == "not_found"
    assert error_code(await client.put("/v1/sessions/s-1/events")) == "method_not_allowed"


async def test_startup_grace_answers_503_starting() -> None:
    async with (
        run_in_process(fast_settings(startup_grace_s=30)) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as c,
    ):
        response = await c.get(
            "/v1/sessions/s-1/events", params={"after": f"lashsc2:{INC}:1:3:s-1"}
        )
        assert response.status_code == 503 and error_code(response) == "starting"
        fresh = await c.get("/v1/sessions/s-1/events", params={"after": "earliest"})
        assert fresh.status_code == 200 and fresh.json()["caught_up"] is True
