"""The Host and Origin checks (origins.py) on every request, before any route runs.

Pure ASGI middleware, because starlette's BaseHTTPMiddleware never sees
WebSockets. A refused socket gets the 403 as an HTTP denial response before the
handshake, with the same JSON error body as HTTP.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from . import activity
from .http import error_response
from .origins import HostPolicy, OriginPolicy
from .state import AppState


class RequestGuard:
    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state
        settings = state.settings
        self.hosts = HostPolicy.of(settings.host, settings.allowed_hosts)
        self.origins = OriginPolicy.of(settings.allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not self.hosts.allows(headers.get("host")):
            code, message = "host_forbidden", "this Host is not one of the daemon's names"
            refused = {"host": headers.get("host"), "reason": message}
        elif not self.origins.allows(headers.get("origin")):
            code, message = "origin_forbidden", "this Origin is not allowed"
            refused = {"origin": headers.get("origin"), "reason": message}
        else:
            await self.app(scope, receive, send)
            return
        response = error_response(403, code, message)
        activity.request_refused(scope, 403, code, **refused)
        metrics = self.state.metrics
        if scope["type"] == "http":
            metrics.http_errors.labels(code).inc()
            await response(scope, receive, send)
        else:
            metrics.connections_refused.labels(code).inc()
            await WebSocket(scope, receive, send).send_denial_response(response)
