"""The ASGI application: explicit routes over one shared `AppState`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from livereplay.protocol.constants import INGEST_PATH

from . import activity, freed, http, httpstream, inspector, openapi
from .config import Settings
from .errors import DomainError
from .guard import RequestGuard
from .http import error_answer, error_response
from .ingest import ingest
from .logs import get_logger
from .memory import MemoryStore
from .metrics import Metrics
from .state import AppState
from .store import Store, StoreUnavailable
from .stream import stream

log = get_logger("livereplay.app")

SWEEP_INTERVAL_S = 1.0


def build_store(settings: Settings) -> Store:
    if settings.backend == "redis":
        # Imported here so the default (memory) daemon never imports redis.
        from .redis_store import RedisStore

        return RedisStore(settings.limits, settings.redis_url, settings.redis_key_prefix)
    return MemoryStore(settings.limits)


def create_app(settings: Settings | None = None, store: Store | None = None) -> Starlette:
    settings = settings or Settings()
    store = store or build_store(settings)
    state = AppState(settings, store, Metrics(store.stats))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.start()
        sweeper = asyncio.create_task(_sweep_forever(store))
        summary = asyncio.create_task(activity.summary_forever(state))
        log.info("started", instance=store.instance_id, host=settings.host, port=settings.port)
        if state.failpoints.armed:
            log.warning("failpoints_armed", failpoints=state.failpoints.armed)
        try:
            yield
        finally:
            state.stopping = True
            sweeper.cancel()
            summary.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            with contextlib.suppress(asyncio.CancelledError):
                await summary
            await store.close()
            log.info("stopped")

    async def domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        state.metrics.http_errors.labels(exc.code).inc()
        activity.request_refused(request.scope, exc.status, exc.code)
        return error_answer(exc)

    async def store_unavailable(request: Request, exc: Exception) -> Response:
        # A read the backend could not answer (an append's outage is already a DomainError).
        message = f"the storage backend is unavailable: {exc}"
        return await domain_error(request, DomainError("unavailable", message))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        state.metrics.http_errors.labels(code).inc()
        activity.request_refused(request.scope, exc.status_code, code)
        response = error_response(exc.status_code, code, str(exc.detail))
        if exc.status_code == 405:
            response.headers["Allow"] = allowed_methods(request.app.router.routes, request.scope)
        return response

    session = "/v1/sessions/{session_id:str}"
    sockets = [WebSocketRoute(session + "/stream", stream), WebSocketRoute(INGEST_PATH, ingest)]
    routes = [
        Route(session + "/cursor", http.get_cursor, methods=["GET"]),
        # The reader stream over plain HTTP (SSE, NDJSON); its WebSocket is in `sockets`.
        Route(session + "/stream", httpstream.get_stream, methods=["GET"]),
        Route(session + "/events", http.get_events, methods=["GET"]),
        Route(session + "/events", http.post_events, methods=["POST"]),
        Route(session + "/trim", http.post_trim, methods=["POST"]),
        Route(session, http.delete_session, methods=["DELETE"]),
        Route("/v1/sessions", http.list_sessions, methods=["GET"]),
        Route("/healthz", http.healthz, methods=["GET"]),
        Route("/readyz", http.readyz, methods=["GET"]),
        Route("/metrics", http.metrics, methods=["GET"]),
        Route("/openapi.json", openapi.openapi_json, methods=["GET"]),
        *inspector.routes(),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestGuard, state=state),
            Middleware(SocketRoutes, routes=sockets),
        ],
        lifespan=lifespan,
        exception_handlers={
            DomainError: domain_error,
            StoreUnavailable: store_unavailable,
            HTTPException: http_error,
        },
    )
    app.state.livereplay = state
    return app


class SocketRoutes:
    """The WebSocket routes, served straight from the middleware stack.

    A socket's handler runs for as long as the connection lasts, and every ASGI layer
    above it keeps a coroutine frame alive all that time: the exception middleware
    and the router cost an idle reader about 4 KB, and a daemon holds thousands. The
    handlers answer their own errors on the socket, so those layers had nothing to
    do for them.
    """

    def __init__(self, app: ASGIApp, routes: list[WebSocketRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            for route in self.routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope)
                    try:
                        await route.endpoint(WebSocket(scope, receive, send))
                    finally:
                        activity.socket_closed(scope, state_of(scope).activity)
                    return
        await self.app(scope, receive, send)


def state_of(scope: Scope) -> AppState:
    state: AppState = scope["app"].state.livereplay
    return state


def allowed_methods(routes: list[BaseRoute], scope: Scope) -> str:
    """`Allow` of a 405: the methods of every route of that path (a path may have several)."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(scope["path"]):
            methods |= route.methods
    return ", ".join(sorted(methods))


async def _sweep_forever(store: Store) -> None:
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            store.sweep()
        except Exception:
            log.exception("sweep_failed")
        freed.release()
