"""The protocol's numbers and names (PROTOCOL.md), each defined once."""

from __future__ import annotations

from typing import Final

# The `hello` frame's `protocol`: the reader protocol's version.
PROTOCOL_VERSION: Final = 1
CURSOR_PREFIX: Final = "lashsc2:"
U64_MAX: Final = 2**64 - 1
MiB: Final = 1024 * 1024

# WebSocket subprotocols (sections 7 and 8; docs/INGEST.md).
JSON_SUBPROTOCOL: Final = "livereplay.v1.json"
MSGPACK_SUBPROTOCOL: Final = "livereplay.v1.msgpack"
INGEST_SUBPROTOCOL: Final = "livereplay.ingest.v1"
# Browsers cannot set headers on a WebSocket: they may offer the token as a subprotocol.
TOKEN_SUBPROTOCOL_PREFIX: Final = "livereplay.token."
INGEST_PATH: Final = "/v1/ingest"

# WebSocket close codes (section 7; docs/INGEST.md): 1013 is "try again later", with
# backoff; a 44xx is final, the client's own fault, and is not retried.
CLOSE_TRY_AGAIN: Final = 1013
CLOSE_CLIENT_FAULT: Final = 4400
CLOSE_UNAUTHENTICATED: Final = 4401
CLOSE_FORBIDDEN: Final = 4403

# A reader key shorter than this makes HS256 guessable offline.
MIN_KEY_BYTES: Final = 32

# What `invalid_session_id` says, wherever a session id is refused.
SESSION_ID_RULE: Final = "a session id is 1..256 characters of A-Z a-z 0-9 . _ ~ : @ + -"
