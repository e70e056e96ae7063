"""The inspector's files as the daemon serves them. The page itself runs in a real
Chromium in client/js/e2e (scripts/test-e2e.sh)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

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


class _Page(HTMLParser):
    """What the page's markup holds: ids, labels, form controls, scripts, inline code."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.labelled: set[str] = set()
        self.controls: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if named.get("id"):
            self.ids.add(str(named["id"]))
        if tag == "label" and named.get("for"):
            self.labelled.add(str(named["for"]))
        if tag in ("input", "select", "textarea"):
            self.controls.append((tag, named))
        if tag == "script":
            self.scripts.append(named)
        if tag == "style":
            self.inline.append("<style>")
        self.inline.extend(
            f"{tag} {name}" for name in named if name == "style" or name.startswith("on")
        )


async def test_the_page_needs_no_inline_code_and_labels_its_controls(
    daemon: InProcessDaemon,
) -> None:
    async with httpx.AsyncClient(base_url=daemon.http_url) as client:
        page = await client.get("/")
        script = (await client.get("/static/inspector.js")).text
    csp = dict(
        part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";")
    )
    for directive in ("script-src", "style-src"):
        assert "unsafe" not in csp[directive], directive
    parsed = _Page()
    parsed.feed(page.text)
    # Strict CSP: every script is a file, and no style or handler is written in the markup.
    assert parsed.scripts == [{"type": "module", "src": "/static/inspector.js"}]
    assert parsed.inline == []
    # Accessible: every control has a label.
    unlabelled = [
        named.get("id") for _, named in parsed.controls if named.get("id") not in parsed.labelled
    ]
    assert unlabelled == []
    # Every element the script looks up is on the page.
    wanted = set(re.findall(r"\$\('([a-z-]+)'\)", script))
    assert wanted and wanted <= parsed.ids, wanted - parsed.ids
    # Text only: nothing from the daemon is ever parsed as markup or code.
    for risky in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "eval(",
        "new Function",
        "setAttribute('style'",
    ):
        assert risky not in script, risky
