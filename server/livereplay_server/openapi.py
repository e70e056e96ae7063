"""The daemon's OpenAPI 3.1 document, served at `/openapi.json`.

It describes the HTTP API of PROTOCOL.md section 6 exactly as `http.py` answers it,
error codes included, so a generic tool (schemathesis in tests/fuzz) can fuzz the
daemon against it. OpenAPI cannot model WebSockets: the reader stream and the
ingest socket are described in `description` and in `x-websockets`.
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from livereplay.protocol.constants import (
    INGEST_PATH,
    INGEST_SUBPROTOCOL,
    JSON_SUBPROTOCOL,
    MSGPACK_SUBPROTOCOL,
    TOKEN_SUBPROTOCOL_PREFIX,
    U64_MAX,
)
from livereplay.protocol.cursor import INCARNATION_RE, SESSION_ID_RE

from .http import DEFAULT_PAGE, MAX_PAGE, MAX_WAIT_MS, JSONResponse

Schema = dict[str, Any]

SESSION_ID_PATTERN: Final = f"^{SESSION_ID_RE.pattern}$"
INCARNATION_PATTERN: Final = f"^{INCARNATION_RE.pattern}$"
# The words and a `lashsc2:` cursor; the daemon answers anything else with 400.
START_DESCRIPTION: Final = (
    "`earliest`, `latest`, or a cursor `lashsc2:{incarnation}:{revision}:{position}:{session_id}`"
    " of this session (PROTOCOL.md section 1)"
)

# Codes of failures any route can answer, whatever its own rules.
AUTH_401: Final = ["unauthenticated", "invalid_token", "token_expired"]
# Origin and Host are checked before any route (guard.py), sockets included.
AUTH_403: Final = ["forbidden", "origin_forbidden", "host_forbidden"]
# The router's own answer when a percent-encoded `/` in a session id leaves no route.
NOT_ROUTED: Final = ["not_found"]
UNAVAILABLE: Final = ["unavailable"]

WEBSOCKETS: Final[Schema] = {
    "/v1/sessions/{session_id}/stream": {
        "summary": "reader stream: backlog after `cursor`, `caught_up`, then live events",
        "query": {"cursor": START_DESCRIPTION, "token": "reader token (or writer token)"},
        "subprotocols": [
            JSON_SUBPROTOCOL,
            MSGPACK_SUBPROTOCOL,
            f"{TOKEN_SUBPROTOCOL_PREFIX}<token>",
        ],
        "frames": ["hello", "events", "caught_up", "gap", "heartbeat", "error"],
        "close_codes": {
            "4400": "malformed or wrong cursor, invalid session id, missing cursor",
            "4401": "unauthenticated",
            "4403": "forbidden (token scope)",
            "1013": "over a connection limit: try again later",
            "1011": "internal error",
            "1012": "server restarting",
            "1001": "going away",
        },
        "spec": "PROTOCOL.md section 7",
        "plain_http": "the same stream without an upgrade: `paths` (SSE or NDJSON)",
    },
    INGEST_PATH: {
        "summary": "writer ingest: MessagePack `append` batches in, `ack` / `refused` out",
        "subprotocols": [INGEST_SUBPROTOCOL],
        "frames": ["welcome", "ack", "refused", "error"],
        "close_codes": {
            "4400": "a frame that is not an `append` with an `id`",
            "4401": "unauthenticated",
            "4403": "forbidden",
            "1009": "frame larger than max_batch_bytes plus 64 KiB",
            "1013": "over a connection limit, or refused with retry: reconnect after a backoff",
        },
        "spec": "docs/INGEST.md",
    },
}

DESCRIPTION: Final = """\
Bounded, resumable live replay of agent-runtime sessions (PROTOCOL.md section 6).

Every error is `{"error": {"code", "message"}}`; each response below lists the
codes it can carry.

Two WebSocket endpoints are not modelled by OpenAPI (see `x-websockets`):

- `GET /v1/sessions/{session_id}/stream?cursor=C`: the reader stream
  (PROTOCOL.md section 7). Subprotocols `livereplay.v1.json` or
  `livereplay.v1.msgpack`; frames `hello`, `events`, `caught_up`, `gap`,
  `heartbeat`, `error`; a client fault gets one `error` frame and close 4400.
  A disallowed `Origin` or `Host` gets HTTP 403 (`origin_forbidden`,
  `host_forbidden`) before the handshake, on sockets and HTTP alike.
  The same path without an upgrade streams the same frames over plain HTTP,
  as SSE (`Accept: text/event-stream`, PROTOCOL.md section 8) or NDJSON
  (`Accept: application/x-ndjson`): documented in `paths`, marked
  `x-long-lived` (the response lasts as long as the reader stays).
- `GET /v1/ingest`: the writer's MessagePack channel (docs/INGEST.md),
  subprotocol `livereplay.ingest.v1`; `welcome`, then one `ack` or `refused`
  per `append`; a frame that is not a batch gets an `error` frame and close 4400.
"""


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    """A closed object: the daemon sends exactly these fields."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


STRING: Final[Schema] = {"type": "string"}
U64: Final[Schema] = {"type": "integer", "minimum": 0, "maximum": U64_MAX}
COUNT: Final[Schema] = {"type": "integer", "minimum": 0}
# A start word or a cursor; the numbers' u64 bound and the session match are the daemon's
# to check (400 `malformed_cursor` / `wrong_session`).
START: Final[Schema] = {
    "anyOf": [
        {"enum": ["earliest", "latest"]},
        {"type": "string", "pattern": r"^lashsc2:[^:]+:\+?[0-9]+:\+?[0-9]+:.+$"},
    ]
}

SCHEMAS: Final[dict[str, Schema]] = {
    "Event": _obj(
        {
            "session_id": STRING,
            "replay_incarnation_id": STRING,
            "turn_id": _nullable(STRING),
            "revision": U64,
            "position": {"type": "integer", "minimum": 1, "maximum": U64_MAX},
            "cursor": STRING,
            "ts": {"type": "integer", "description": "receive time, Unix milliseconds"},
            "payload": {"description": "any JSON value, passed through unchanged"},
        }
    ),
    "Gap": _obj(
        {
            "session_id": STRING,
            "requested_cursor": STRING,
            "latest_cursor": _nullable(STRING),
            "latest_revision": _nullable(U64),
            "reason": {"enum": ["trimmed", "unavailable"]},
            "detail": {
                "enum": [
                    "retention",
                    "lagged",
                    "writer_overflow",
                    "incarnation_changed",
                    "ahead_of_tail",
                    "unknown_session",
                    "session_deleted",
                ]
            },
            "earliest_cursor": _nullable(STRING),
        }
    ),
    "Page": _obj(
        {
            "events": {"type": "array", "items": _ref("Event")},
            "gap": _nullable(_ref("Gap")),
            "next_cursor": STRING,
            "caught_up": {"type": "boolean"},
        }
    ),
    "SessionCursor": _obj(
        {
            "session_id": STRING,
            "cursor": STRING,
            "incarnation": STRING,
            "revision": U64,
            "position": U64,
            "earliest_cursor": _nullable(STRING),
            "retained_events": COUNT,
            "retained_bytes": COUNT,
        }
    ),
    "EventIn": _obj(
        {
            "revision": U64,
            "payload": {"description": "any JSON value"},
            "position": _nullable({"type": "integer", "minimum": 1, "maximum": U64_MAX}),
            "turn_id": _nullable(STRING),
        },
        required=["revision", "payload"],
    ),
    "Batch": {
        **_obj(
            {
                "incarnation": _nullable({"type": "string", "pattern": INCARNATION_PATTERN}),
                "events": {"type": "array", "items": _ref("EventIn")},
            },
            required=["events"],
        ),
        "description": (
            "With `incarnation`, every event carries a `position`; without it, none does"
            " (PROTOCOL.md section 5). Accepted or refused whole."
        ),
    },
    "AppendResult": _obj(
        {
            "accepted": COUNT,
            "duplicates": COUNT,
            "cursors": {"type": "array", "items": STRING},
            "tail_cursor": _nullable(STRING),
        }
    ),
    "SessionSummary": _obj(
        {
            "session_id": STRING,
            "incarnation": STRING,
            "tail_cursor": STRING,
            "retained_events": COUNT,
            "retained_bytes": COUNT,
            "readers": COUNT,
        }
    ),
    "SessionList": _obj(
        {
            "sessions": {"type": "array", "items": _ref("SessionSummary")},
            "next_after": {
                **_nullable(STRING),
                "description": "pass as `after` for the next page; null on the last one",
            },
        }
    ),
}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_STATUS_TEXT: Final = {
    400: "bad request",
    401: "no valid token",
    403: "the token, the Origin or the Host is not allowed",
    404: "not found",
    406: "not an acceptable form",
    409: "conflict",
    413: "too large",
    429: "over a limit",
    503: "unavailable",
}


def _error(description: str, codes: list[str]) -> Schema:
    """An error response whose `code` is one of `codes`."""
    schema = _obj({"error": _obj({"code": {"type": "string", "enum": codes}, "message": STRING})})
    return _json(schema, f"{description}: " + ", ".join(f"`{c}`" for c in codes))


RETRY_AFTER: Final[Schema] = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}


def _errors(by_status: dict[int, list[str]]) -> dict[str, Schema]:
    """The failures of an API route: its own codes plus auth, routing and backend ones."""
    merged: dict[int, list[str]] = {401: AUTH_401, 403: AUTH_403, 503: UNAVAILABLE}
    for status, codes in by_status.items():
        merged[status] = [*codes, *(c for c in merged.get(status, []) if c not in codes)]
    responses = {str(s): _error(_STATUS_TEXT[s], merged[s]) for s in sorted(merged)}
    for limited in ("429", "503"):
        if limited in responses:
            responses[limited]["headers"] = RETRY_AFTER
    return responses


SESSION_ID_PARAM: Final[Schema] = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "description": "1..256 characters of `A-Z a-z 0-9 . _ ~ : @ + -`",
    "schema": {"type": "string", "pattern": SESSION_ID_PATTERN, "minLength": 1, "maxLength": 256},
}
TOKEN_PARAM: Final[Schema] = {
    "name": "token",
    "in": "query",
    "required": False,
    "description": "a reader token (or the writer token), for clients that cannot set headers",
    "schema": STRING,
}

# `{}`: a daemon started without a writer token or reader key takes no credentials.
READERS: Final[list[dict[str, list[str]]]] = [
    {"readerBearer": []},
    {"readerQuery": []},
    {"writerBearer": []},
    {},
]
WRITERS: Final[list[dict[str, list[str]]]] = [{"writerBearer": []}, {}]
SECURITY_SCHEMES: Final[Schema] = {
    "writerBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "the writer token (`--writer-token`): appends, trim, delete, and any read",
    },
    "readerBearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "an HS256 reader token (`--reader-key`) covering the session",
    },
    "readerQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "the reader token as `?token=`",
    },
}


def _limit_param(default: int) -> Schema:
    return {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": default},
    }


def _read_op(
    summary: str, params: list[Schema], ok: Schema, errors: dict[int, list[str]]
) -> Schema:
    return {
        "summary": summary,
        "security": READERS,
        "parameters": [*params, TOKEN_PARAM],
        "responses": {"200": ok, **_errors(errors)},
    }


INVALID_SESSION: Final = ["invalid_session_id"]
SESSION_ERRORS: Final[dict[int, list[str]]] = {
    400: INVALID_SESSION,
    404: ["unknown_session", *NOT_ROUTED],
}

PATHS: Final[Schema] = {
    "/v1/sessions/{session_id}/cursor": {
        "parameters": [SESSION_ID_PARAM],
        "get": _read_op(
            "the session's tail cursor, optionally carrying another revision",
            [
                {
                    "name": "revision",
                    "in": "query",
                    "required": False,
                    "description": "the revision the returned `cursor` carries",
                    "schema": U64,
                }
            ],
            _json(_ref("SessionCursor"), "the tail"),
            # 503 `starting`: an unknown session during the startup grace.
            {
                400: [*INVALID_SESSION, "invalid_query"],
                404: SESSION_ERRORS[404],
                503: ["starting"],
            },
        ),
    },
    "/v1/sessions/{session_id}/events": {
        "parameters": [SESSION_ID_PARAM],
        "get": _read_op(
            "one replay page after a cursor (the rule table, PROTOCOL.md section 4)",
            [
                {
                    "name": "after",
                    "in": "query",
                    "required": True,
                    "description": START_DESCRIPTION,
                    "schema": START,
                },
                _limit_param(DEFAULT_PAGE),
                {
                    "name": "wait_ms",
                    "in": "query",
                    "required": False,
                    "description": (
                        "long-poll: a page that would be empty and caught up waits up to this"
                        " long for the session's next change, then is answered"
                    ),
                    "schema": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": MAX_WAIT_MS,
                        "default": 0,
                    },
                },
            ],
            _json(_ref("Page"), "events, or a gap in their place"),
            {
                400: [*INVALID_SESSION, "malformed_cursor", "wrong_session", "invalid_query"],
                404: NOT_ROUTED,
                503: ["starting"],
            },
        ),
        "post": {
            "summary": "append a batch, accepted or refused whole",
            "security": WRITERS,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("Batch")}},
            },
            "responses": {
                "200": _json(_ref("AppendResult"), "the batch was accepted"),
                **_errors(
                    {
                        400: [
                            *INVALID_SESSION,
                            "invalid_body",
                            "invalid_event",
                            "invalid_incarnation",
                        ],
                        404: NOT_ROUTED,
                        409: ["incarnation_superseded"],
                        413: ["batch_too_large", "event_too_large"],
                        429: ["rate_limited", "too_many_sessions"],
                    }
                ),
            },
        },
    },
    "/v1/sessions/{session_id}/stream": {
        "parameters": [SESSION_ID_PARAM],
        "get": {
            **_read_op(
                "the reader stream over plain HTTP, SSE or NDJSON by `Accept` (PROTOCOL.md"
                " sections 6 and 8); a WebSocket upgrade of this path is in `x-websockets`",
                [
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "description": f"{START_DESCRIPTION}; required unless `Last-Event-ID`",
                        "schema": START,
                    },
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "description": "where a reconnecting EventSource resumes: wins over"
                        " `cursor`",
                        "schema": START,
                    },
                ],
                {
                    "description": "`hello`, the backlog, `caught_up`, then live events, for"
                    " as long as the reader stays",
                    "content": {
                        "text/event-stream": {"schema": STRING},
                        "application/x-ndjson": {"schema": STRING},
                    },
                },
                {
                    400: [*INVALID_SESSION, "malformed_cursor", "wrong_session"],
                    404: NOT_ROUTED,
                    406: ["not_acceptable"],
                    429: ["too_many_connections"],
                },
            ),
            "x-long-lived": True,
        },
    },
    "/v1/sessions/{session_id}/trim": {
        "parameters": [SESSION_ID_PARAM],
        "post": {
            "summary": "apply retention now",
            "security": WRITERS,
            "responses": {
                "200": _json(_obj({"trimmed": COUNT}), "events dropped"),
                **_errors(SESSION_ERRORS),
            },
        },
    },
    "/v1/sessions/{session_id}": {
        "parameters": [SESSION_ID_PARAM],
        "delete": {
            "summary": "drop the session and its metadata; readers get gap `session_deleted`",
            "security": WRITERS,
            "responses": {"204": {"description": "deleted"}, **_errors(SESSION_ERRORS)},
        },
    },
    "/v1/sessions": {
        "get": _read_op(
            "the sessions a token may read, paged by session id",
            [
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "description": "the `next_after` of the previous page",
                    "schema": STRING,
                },
                _limit_param(100),
            ],
            _json(_ref("SessionList"), "one page"),
            {400: ["invalid_query"]},
        ),
    },
    "/healthz": {
        "get": {
            "summary": "liveness",
            "responses": {"200": _json(_obj({"status": {"const": "ok"}}), "alive")},
        }
    },
    "/readyz": {
        "get": {
            "summary": "readiness: the store answers and the daemon is not stopping",
            "responses": {
                "200": _json(
                    _obj({"status": {"const": "ready"}, "instance": STRING}), "ready for traffic"
                ),
                "503": {
                    **_json(_obj({"status": {"const": "unavailable"}}), "not ready"),
                    "headers": RETRY_AFTER,
                },
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics",
            "responses": {
                "200": {
                    "description": "text exposition",
                    "content": {"text/plain": {"schema": STRING}},
                }
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "this document",
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
        }
    },
    "/": {
        "get": {
            "summary": "the session inspector page",
            "responses": {
                "200": {"description": "HTML", "content": {"text/html": {"schema": STRING}}}
            },
        }
    },
}


def build_document() -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {"title": "livereplay", "version": "1", "description": DESCRIPTION},
        "paths": PATHS,
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
        "x-websockets": WEBSOCKETS,
    }


DOCUMENT: Final = build_document()


async def openapi_json(request: Request) -> Response:
    return JSONResponse(DOCUMENT)
