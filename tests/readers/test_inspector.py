"""The inspector's files as the daemon serves them. The page itself runs in a real
Chromium in client/js/e2e (scripts/test-e2e.sh)."""

from __future__ import annotations

import httpx
import pytest

from tests.support.daemon import ROOT, InProcessDaemon


async def test_the_page_its_assets_and_the_js_client_are_served(daemon: InProcessDaemon) -> None:
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert '<script type="module" src="/static/inspector.js">' in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp

        app = await client.get("/static/inspector.js")
        assert app.headers["content-type"] == "text/javascript; charset=utf-8"
        assert "from '/static/livereplay.js'" in app.text
        assert (await client.get("/static/inspector.css")).status_code == 200

        # One copy of the client: the page runs exactly what client/js ships.
        served = await client.get("/static/livereplay.js")
        assert served.headers["content-type"] == "text/javascript; charset=utf-8"
        assert served.content == (ROOT / "client/js/src/index.js").read_bytes()


@pytest.mark.parametrize("path", ["/static/nothing.js", "/static/../app.py", "/index.html"])
async def test_nothing_else_is_served(daemon: InProcessDaemon, path: str) -> None:
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
