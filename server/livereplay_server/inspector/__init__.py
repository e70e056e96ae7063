"""The session inspector: a static page at `/` that reads sessions with the JavaScript client.

The files are small, so they are read once when the app is built and served
from memory. The JavaScript client is the `livereplay` distribution's package data
(`livereplay/js/livereplay.js`, a link to `client/js/src/index.js` in the source
tree), so there is one copy of it.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..logs import get_logger

log = get_logger("livereplay.inspector")

HERE: Final = Path(__file__).resolve().parent
JS_CLIENT: Final = Path(str(files("livereplay") / "js" / "livereplay.js"))

JS: Final = "text/javascript; charset=utf-8"
# Only this origin's scripts, styles and sockets; payloads are shown as text, never as markup.
HEADERS: Final = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


def _route(path: str, file: Path, media_type: str) -> Route | None:
    try:
        body = file.read_bytes()
    except OSError as exc:
        log.warning("inspector_file_missing", path=str(file), error=str(exc))
        return None

    async def serve(request: Request) -> Response:
        return Response(body, media_type=media_type, headers=HEADERS)

    return Route(path, serve, methods=["GET", "HEAD"], name=f"inspector:{path}")


def routes() -> list[Route]:
    """`/` and `/static/*`: the page, its script and style, and the JavaScript client."""
    wanted = [
        _route("/", HERE / "index.html", "text/html; charset=utf-8"),
        _route("/static/inspector.js", HERE / "inspector.js", JS),
        _route("/static/inspector.css", HERE / "inspector.css", "text/css; charset=utf-8"),
        _route("/static/livereplay.js", JS_CLIENT, JS),
    ]
    return [r for r in wanted if r is not None]
