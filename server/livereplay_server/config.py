"""Daemon settings: one dataclass, filled from flags or `LIVEREPLAY_*` environment variables."""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from livereplay.cli.common import FromEnv, integer, number, size
from livereplay.protocol import Limits
from livereplay.protocol.constants import MIN_KEY_BYTES, MiB

from .origins import host_error, is_loopback_name, origin_error


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = field(default=7447, metadata={"help": "port to listen on"})
    max_events_per_session: int = field(
        default=2048, metadata={"help": "events retained per session"}
    )
    max_bytes_per_session: int = field(
        default=8 * MiB, metadata={"help": "bytes (JSON encoding) retained per session"}
    )
    max_age_s: float = field(default=120.0, metadata={"help": "age of the oldest retained event"})
    memory_budget_bytes: int = field(
        default=256 * MiB,
        metadata={"help": "bytes retained across all sessions; idlest sessions trimmed first"},
    )
    session_idle_ttl_s: float = field(
        default=3600.0, metadata={"help": "how long session metadata outlives its last append"}
    )
    max_event_bytes: int = field(
        default=1 * MiB, metadata={"help": "largest event (its JSON encoding); larger gets 413"}
    )
    max_batch_bytes: int = field(
        default=4 * MiB, metadata={"help": "largest append batch (request body); larger gets 413"}
    )
    max_batch_events: int = field(
        default=4096, metadata={"help": "events per append batch; more gets 413"}
    )
    heartbeat_s: float = field(
        default=15.0, metadata={"help": "heartbeat frame after this long without another frame"}
    )
    startup_grace_s: float = field(
        default=10.0,
        metadata={"help": "after start, wait this long for writers before unknown_session"},
    )
    shutdown_grace_s: float = field(
        default=5.0, metadata={"help": "on SIGTERM, close readers (1012) and exit within this"}
    )
    send_timeout_s: float = field(
        default=10.0, metadata={"help": "a reader that takes longer to accept a frame is cut off"}
    )
    max_frame_events: int = field(default=512, metadata={"help": "events per `events` frame"})
    max_frame_bytes: int = field(
        default=1 * MiB, metadata={"help": "bytes per `events` frame (one larger event still goes)"}
    )
    live_coalesce_ms: float = field(
        default=20.0,
        metadata={
            "help": "the latency budget of live coalescing: a flush to the readers at the live "
            "edge waits as long as the previous one took, and no longer than what is left of "
            "this after it, so a busy session goes in fewer, larger frames (an isolated change "
            "goes at once); 0 sends every change at once",
            "metavar": "MS",
        },
    )
    live_buffer_bytes: int = field(
        default=1 * MiB,
        metadata={
            "help": "a live reader with more than this queued is slow: it leaves the shared "
            "frames and is served on its own, at its pace (or cut off after --send-timeout-s)"
        },
    )
    ws_per_message_deflate: bool = field(
        default=False,
        metadata={"help": "negotiate permessage-deflate (costs ~16 us per frame per reader)"},
    )
    log_format: str = field(
        default="auto", metadata={"help": "json, console, or auto (json when not on a terminal)"}
    )
    log_level: str = field(default="info", metadata={"help": "debug, info, warning or error"})
    log_summary_s: float = field(
        default=60.0,
        metadata={
            "help": "log a summary at info every this many seconds (sessions, readers, writers, "
            "appends and deliveries per second, gaps, memory); 0 turns it off"
        },
    )
    writer_token: str = field(
        default="",
        metadata={"help": "secret a writer must present for appends, trim and delete"},
    )
    writer_token_file: str = field(
        default="", metadata={"help": "read --writer-token from this file (e.g. a mounted Secret)"}
    )
    reader_key: str = field(
        default="",
        metadata={"help": f"HMAC key that signs reader tokens (at least {MIN_KEY_BYTES} bytes)"},
    )
    reader_key_file: str = field(default="", metadata={"help": "read --reader-key from this file"})
    allowed_origins: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "a browser Origin (scheme://host[:port]) allowed besides loopback ones, or * "
            "for any (repeatable; env: comma-separated)",
            "flag": "allowed-origin",
        },
    )
    allowed_hosts: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "a Host name served besides loopback names and --host, or * for any "
            "(repeatable; env: comma-separated); with a wildcard --host and none given, any",
            "flag": "allowed-host",
        },
    )
    trusted_proxies: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "an address or network (CIDR) of a proxy whose X-Forwarded-For and "
            "X-Forwarded-Proto are believed (repeatable; env: comma-separated); none: ignored",
            "flag": "trusted-proxy",
        },
    )
    insecure: bool = field(
        default=False,
        metadata={"help": "allow a non-loopback --host with no writer token"},
    )
    max_connections: int = field(
        default=10_000, metadata={"help": "WebSocket connections in total; more get 1013"}
    )
    max_connections_per_client: int = field(
        default=256, metadata={"help": "WebSocket connections per client address; more get 1013"}
    )
    max_sessions: int = field(
        default=100_000, metadata={"help": "sessions held at once; a new one beyond gets 429"}
    )
    max_append_rate: float = field(
        default=10_000.0,
        metadata={
            "help": "events per second per writer (burst: 2 s worth); 0 for no limit",
            "metavar": "RATE",
        },
    )
    ssl_certfile: str = field(
        default="", metadata={"help": "serve TLS with this certificate chain (PEM)"}
    )
    ssl_keyfile: str = field(default="", metadata={"help": "the TLS private key (PEM)"})
    backend: str = field(
        default="memory",
        metadata={"help": "memory (this process only) or redis (several daemons share the logs)"},
    )
    redis_url: str = field(
        default="redis://127.0.0.1:6379/0",
        metadata={"help": "Redis to use with --backend redis (redis://, rediss:// or unix://)"},
    )
    redis_key_prefix: str = field(
        default="livereplay",
        metadata={"help": "prefix of every Redis key and channel (no braces)"},
    )
    # Connection hardening (docs/DEPLOY.md): bounds uvicorn leaves open, kept in protocols.py.
    http_header_timeout_s: float = field(
        default=10.0,
        metadata={"help": "a request head (also a keep-alive's next one) must arrive within this"},
    )
    http_body_timeout_s: float = field(
        default=30.0, metadata={"help": "a request body must arrive within this; else 408"}
    )
    max_http_connections: int = field(
        default=1000,
        metadata={"help": "HTTP connections at once (not WebSockets); more get 503"},
    )
    max_url_bytes: int = field(
        default=8192, metadata={"help": "longest request URL; longer gets 414"}
    )
    max_header_bytes: int = field(
        default=64 * 1024, metadata={"help": "request header bytes in total; more gets 431"}
    )

    @property
    def limits(self) -> Limits:
        return Limits(
            max_events_per_session=self.max_events_per_session,
            max_bytes_per_session=self.max_bytes_per_session,
            max_age_ms=int(self.max_age_s * 1000),
            memory_budget_bytes=self.memory_budget_bytes,
            session_idle_ttl_ms=int(self.session_idle_ttl_s * 1000),
            max_event_bytes=self.max_event_bytes,
            max_sessions=self.max_sessions,
        )


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


_FIELDS = {f.name: f for f in fields(Settings)}
_METAVARS: dict[type, str] = {int: "N", float: "SECONDS", bool: "BOOL", str: "TEXT"}
_CHOICES = {
    "log_format": ("auto", "json", "console"),
    "log_level": ("debug", "info", "warning", "error"),
    "backend": ("memory", "redis"),
}


def is_size(name: str) -> bool:
    """A setting counted in bytes: it takes `8MiB`, `64KiB`, `1GiB` or a plain integer."""
    return "bytes" in name.split("_")


def flag_name(name: str) -> str:
    """The flag of a setting, without its dashes: `allowed_origins` is `allowed-origin`."""
    f = _FIELDS[name]
    flag: str = f.metadata.get("flag", name.replace("_", "-"))
    return flag


def env_name(name: str) -> str:
    """`LIVEREPLAY_<FLAG_IN_CAPS>`."""
    return "LIVEREPLAY_" + flag_name(name).replace("-", "_").upper()


def _shown(name: str, default: object) -> object:
    if default in ("", ()):
        return "unset"
    if is_size(name) and isinstance(default, int):
        for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
            if default >= scale and default % scale == 0:
                return f"{default // scale}{unit}"
    return default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; each default comes from `LIVEREPLAY_<NAME>` when set.

    An environment value is converted (and refused, naming the variable) only when
    the flags are parsed, so a bad one never breaks building the parser.
    """
    for f in fields(Settings):
        flag = "--" + flag_name(f.name)
        default = f.default
        env_text = os.environ.get(env_name(f.name))
        env = None if env_text is None else FromEnv(env_text, env_name(f.name))
        help_text = (
            f"{f.metadata['help']} (default {_shown(f.name, default)}; env {env_name(f.name)})"
        )
        if isinstance(default, bool):
            # Converted in settings_from_args: BooleanOptionalAction takes no type.
            parser.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=env if env is not None else default,
                help=help_text,
            )
        elif isinstance(default, tuple):
            from_env = tuple(o.strip() for o in env.split(",") if o.strip()) if env else default
            parser.add_argument(
                flag, dest=f.name, action="append", default=None, metavar="TEXT", help=help_text
            )
            parser.set_defaults(**{f"{f.name}_env": from_env})
        else:
            kind: Any
            if is_size(f.name):
                kind, metavar = size, "SIZE"
            elif isinstance(default, int):
                kind, metavar = integer, _METAVARS[int]
            elif isinstance(default, float):
                kind, metavar = number, _METAVARS[float]
            else:
                kind, metavar = str, _METAVARS[str]
            choices = _CHOICES.get(f.name)
            parser.add_argument(
                flag,
                dest=f.name,
                type=kind,
                default=env if env is not None else default,
                choices=choices,
                help=help_text,
                metavar=None if choices else f.metadata.get("metavar", metavar),
            )


def settings_from_args(args: argparse.Namespace) -> Settings:
    values = {}
    for f in fields(Settings):
        value = getattr(args, f.name)
        if isinstance(f.default, tuple):
            value = tuple(value) if value is not None else getattr(args, f"{f.name}_env")
        elif isinstance(f.default, bool) and isinstance(value, str):
            try:
                value = _parse_bool(value)
            except argparse.ArgumentTypeError as exc:
                raise ValueError(f"${env_name(f.name)}: {exc}") from None
        values[f.name] = value
    settings = _read_secret_files(Settings(**values))
    validate(settings)
    return settings


def _read_secret_files(settings: Settings) -> Settings:
    """`--writer-token-file` / `--reader-key-file`: secrets kept out of argv and env."""
    updates: dict[str, Any] = {}
    for name in ("writer_token", "reader_key"):
        path = getattr(settings, name + "_file")
        if path:
            if getattr(settings, name):
                raise ValueError(f"give --{name.replace('_', '-')} or its file, not both")
            try:
                updates[name] = Path(path).read_text().strip()
            except OSError as exc:
                raise ValueError(f"cannot read --{name.replace('_', '-')}-file: {exc}") from None
    return replace(settings, **updates) if updates else settings


def validate(settings: Settings) -> None:
    positive = [
        "max_events_per_session",
        "max_bytes_per_session",
        "max_age_s",
        "memory_budget_bytes",
        "session_idle_ttl_s",
        "max_event_bytes",
        "max_batch_bytes",
        "max_batch_events",
        "heartbeat_s",
        "shutdown_grace_s",
        "send_timeout_s",
        "max_frame_events",
        "max_frame_bytes",
        "live_buffer_bytes",
    ]
    for name in positive:
        if getattr(settings, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    if settings.startup_grace_s < 0:
        raise ValueError("--startup-grace-s must not be negative")
    if settings.log_summary_s < 0:
        raise ValueError("--log-summary-s must not be negative")
    if not 0 <= settings.port <= 65535:
        raise ValueError("--port must be 0..65535")
    if settings.max_append_rate < 0:
        raise ValueError("--max-append-rate must not be negative")
    if not 0 <= settings.live_coalesce_ms <= 1000:
        raise ValueError("--live-coalesce-ms must be 0..1000")
    for name in ("max_connections", "max_connections_per_client", "max_sessions"):
        if getattr(settings, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    if settings.reader_key and len(settings.reader_key.encode()) < MIN_KEY_BYTES:
        raise ValueError(
            f"--reader-key must be at least {MIN_KEY_BYTES} bytes (HS256 needs a strong key)"
        )
    if bool(settings.ssl_certfile) != bool(settings.ssl_keyfile):
        raise ValueError("give both --ssl-certfile and --ssl-keyfile, or neither")
    # A reader key alone guards reads only: appends, trim, delete and ingest stay open.
    if not (is_loopback_name(settings.host) or settings.writer_token or settings.insecure):
        raise ValueError(
            f"refusing to listen on {settings.host} with no --writer-token: anyone who can "
            "reach it could write, trim and delete every session"
            + ("" if settings.reader_key else " and read them")
            + ". Set --writer-token (and --reader-key for readers), listen on 127.0.0.1, "
            "or pass --insecure if a proxy in front does the authentication"
        )
    for origin in settings.allowed_origins:
        if (problem := origin_error(origin)) is not None:
            raise ValueError(f"--allowed-origin: {problem}")
    for host in settings.allowed_hosts:
        if (problem := host_error(host)) is not None:
            raise ValueError(f"--allowed-host: {problem}")
    for proxy in settings.trusted_proxies:
        try:
            # Strict, as uvicorn reads it: 10.1.0.5/16 would silently trust nothing.
            ipaddress.ip_network(proxy)
        except ValueError:
            raise ValueError(f"--trusted-proxy: {proxy!r} is not an address or network") from None
    for name, allowed in _CHOICES.items():
        # A flag is checked by argparse; a value from the environment is checked here.
        if getattr(settings, name) not in allowed:
            raise ValueError(
                f"--{flag_name(name)} (${env_name(name)}) must be one of {', '.join(allowed)}"
            )
    # Braces would move the Redis Cluster hash tag off the session id.
    if not settings.redis_key_prefix or set("{}") & set(settings.redis_key_prefix):
        raise ValueError("--redis-key-prefix must be non-empty and contain no braces")
    _validate_hardening(settings)


def _validate_hardening(settings: Settings) -> None:
    for name in ("http_header_timeout_s", "http_body_timeout_s", "max_http_connections"):
        if getattr(settings, name) <= 0:
            raise ValueError(f"--{flag_name(name)} must be positive")
    # A reader URL carries a cursor (~360 bytes) and maybe a token (a few hundred).
    if settings.max_url_bytes < 1024:
        raise ValueError("--max-url-bytes must be at least 1024")
    if settings.max_header_bytes < 4096:
        raise ValueError("--max-header-bytes must be at least 4096")


def parse(argv: Sequence[str]) -> Settings:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    add_arguments(parser)
    return settings_from_args(parser.parse_args(list(argv)))
