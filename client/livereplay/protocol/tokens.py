"""Reader tokens (README, "Auth"): HS256 JWTs that a host's backend mints.

Made with the standard library, so the client distribution needs no JWT package;
the daemon verifies them with PyJWT (`livereplay_server.auth`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, Final

ALGORITHM: Final = "HS256"
READ_SCOPE: Final = "livereplay:read"


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def mint_reader_token(
    key: str | bytes,
    *,
    session_id: str | None = None,
    session_prefix: str | None = None,
    ttl_s: float = 3600.0,
    now: float | None = None,
) -> str:
    """A reader token for one session, or for every session whose id starts with a prefix."""
    if (session_id is None) == (session_prefix is None):
        raise ValueError("give exactly one of session_id and session_prefix")
    # An empty prefix would cover every session: a writer's view, not a reader's.
    if session_id == "" or session_prefix == "":
        raise ValueError("the session id or prefix must not be empty")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"scope": READ_SCOPE, "iat": issued, "exp": issued + int(ttl_s)}
    if session_id is not None:
        claims["sub"] = session_id
    else:
        claims["lr_prefix"] = session_prefix
    header = {"alg": ALGORITHM, "typ": "JWT"}
    signing_input = b".".join(
        _b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    secret = key.encode() if isinstance(key, str) else key
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _b64(signature)).decode()
