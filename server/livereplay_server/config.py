"""Daemon settings: one dataclass, filled from flags or `LIVEREPLAY_*` environment variables."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from livereplay import Limits

MiB = 1024 * 1024


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
    ws_per_message_deflate: bool = field(
        default=False,
        metadata={"help": "negotiate permessage-deflate (costs ~16 us per frame per reader)"},
    )
    log_format: str = field(
        default="auto", metadata={"help": "json, console, or auto (json when not on a terminal)"}
    )
    log_level: str = field(default="info", metadata={"help": "debug, info, warning or error"})
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

    @property
    def limits(self) -> Limits:
        return Limits(
            max_events_per_session=self.max_events_per_session,
            max_bytes_per_session=self.max_bytes_per_session,
            max_age_ms=int(self.max_age_s * 1000),
            memory_budget_bytes=self.memory_budget_bytes,
            session_idle_ttl_ms=int(self.session_idle_ttl_s * 1000),
            max_event_bytes=self.max_event_bytes,
        )


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


_METAVARS: dict[type, str] = {int: "N", float: "SECONDS", bool: "BOOL", str: "TEXT"}


def env_name(name: str) -> str:
    return "LIVEREPLAY_" + name.upper()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; each default comes from `LIVEREPLAY_<FLAG>` when set."""
    choices = {
        "log_format": ["auto", "json", "console"],
        "log_level": ["debug", "info", "warning", "error"],
        "backend": ["memory", "redis"],
    }
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        kind: Any = type(default)
        if kind is bool:
            kind = _parse_bool
        env = os.environ.get(env_name(f.name))
        help_text = f"{f.metadata['help']} (default {default}; env {env_name(f.name)})"
        parser.add_argument(
            flag,
            dest=f.name,
            type=kind,
            default=kind(env) if env is not None else default,
            choices=choices.get(f.name),
            help=help_text,
            metavar=None if f.name in choices else _METAVARS[type(default)],
        )


def settings_from_args(args: argparse.Namespace) -> Settings:
    values = {f.name: getattr(args, f.name) for f in fields(Settings)}
    settings = Settings(**values)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    positive = [
        "max_events_per_session",
        "max_bytes_per_session",
        "max_age_s",
        "memory_budget_bytes",
        "session_idle_ttl_s",
        "max_event_bytes",
        "max_batch_bytes",
        "heartbeat_s",
        "shutdown_grace_s",
        "send_timeout_s",
        "max_frame_events",
        "max_frame_bytes",
    ]
    for name in positive:
        if getattr(settings, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    if settings.startup_grace_s < 0:
        raise ValueError("--startup-grace-s must not be negative")
    if not 0 <= settings.port <= 65535:
        raise ValueError("--port must be 0..65535")
    if settings.backend not in ("memory", "redis"):
        raise ValueError("--backend must be memory or redis")
    # Braces would move the Redis Cluster hash tag off the session id.
    if not settings.redis_key_prefix or set("{}") & set(settings.redis_key_prefix):
        raise ValueError("--redis-key-prefix must be non-empty and contain no braces")


def parse(argv: Sequence[str]) -> Settings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return settings_from_args(parser.parse_args(list(argv)))
