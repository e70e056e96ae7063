"""Run the app under uvicorn from our own entry point, so logging is configured once."""

from __future__ import annotations

import gc

import uvicorn

from . import logs
from .app import create_app
from .config import Settings
from .protocols import DaemonConfig, Guard, GuardedHttp, GuardedWebSocket


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    app = create_app(settings)
    return DaemonConfig(
        app,
        Guard.from_settings(settings, app.state.livereplay.metrics),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        # httptools and websockets-sansio, with every connection bounded (protocols.py).
        http=GuardedHttp,
        ws=GuardedWebSocket,
        ws_max_size=settings.max_batch_bytes + 64 * 1024,
        ws_per_message_deflate=settings.ws_per_message_deflate,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)),
        log_config=None,
        access_log=False,
        server_header=False,
        # X-Forwarded-For decides the per-client connection limit: only a proxy the
        # operator named may set it.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies) or None,
        lifespan="on",
        ssl_certfile=settings.ssl_certfile or None,
        ssl_keyfile=settings.ssl_keyfile or None,
    )


def serve(settings: Settings) -> int:
    logs.configure(settings.log_format, settings.log_level)
    server = uvicorn.Server(uvicorn_config(settings))
    # Objects made at start-up live forever; keep them out of every GC pass.
    gc.freeze()
    server.run()
    return 0 if server.started else 1
