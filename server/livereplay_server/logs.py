"""Structured logs: structlog for our lines, the same pipeline for uvicorn's.

Never log an event payload: log lines carry ids, counts and codes only. Never log
a token either: uvicorn and websockets log request paths (with `?token=`) and, at
debug level, request headers, so every record is redacted on its way out.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import msgspec
import structlog

_encoder = msgspec.json.Encoder()


def _serialize(obj: Any, **_: Any) -> str:
    return _encoder.encode(obj).decode()


def configure(log_format: str = "auto", level: str = "info") -> None:
    if log_format == "auto":
        log_format = "console" if sys.stderr.isatty() else "json"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_serialize)
        if log_format == "json"
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn.error").addFilter(_drop_connection_chatter)


REDACTED = "[redacted]"
# Keys whose values are secrets whatever they hold.
_SECRET_KEYS = frozenset({"authorization", "token", "writer_token", "reader_key"})
# A credential runs to the next space, quote or list separator (of a header, a repr,
# a JSON text); a query value to the next `&` as well.
_VALUE = r"[^\s\"',;]+"
_PATTERNS = (
    # A header value without a scheme: `authorization: s3cret`, `(b'authorization', b's3cret')`.
    # (A scheme is left to the next pattern; the `b` of a bytes repr is never the B of Bearer.)
    re.compile(
        r"(?i)(authorization['\"]?\s*[:=,]\s*(?>(?-i:b)?['\"]?))(?!(?:bearer|basic)\s)" + _VALUE
    ),
    re.compile(r"(?i)(\b(?:bearer|basic)\s+)" + _VALUE),
    re.compile(r"(?i)(token=)" + r"[^\s&\"'#]+"),
    re.compile(r"(?i)(livereplay\.token\.)" + _VALUE),
)
_HINTS = ("token", "bearer", "basic", "authoriz")


def redact_secrets(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The last step before rendering, so it sees every record: ours, uvicorn's and
    websockets' (as their formatted message) and formatted exception text."""
    for key, value in event_dict.items():
        event_dict[key] = REDACTED if key.lower() in _SECRET_KEYS else _redact(value)
    return event_dict


def _redact(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        lowered = value.lower()
        if any(hint in lowered for hint in _HINTS):
            for pattern in _PATTERNS:
                value = pattern.sub(r"\1" + REDACTED, value)
        return value
    if isinstance(value, Mapping):
        return {
            k: REDACTED if str(k).lower() in _SECRET_KEYS else _redact(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact(v) for v in value]
    return value


_CHATTER = ("connection open", "connection closed", "[accepted]")


def _drop_connection_chatter(record: logging.LogRecord) -> bool:
    """uvicorn logs every WebSocket open and close at INFO: noise with many readers."""
    if record.levelno > logging.INFO:
        return True
    message = record.getMessage()
    return not any(part in message for part in _CHATTER)


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)
