"""The one refusal every transport answers: `DomainError`.

It carries what each answer needs: the protocol `code` and `message`, the HTTP
`status` the protocol gives the code (an HTTP error, http.py), whether trying
again can succeed and when (`Retry-After`; an ingest `refused` with `retry`,
ingest.py; close 1013 rather than a final 44xx, admission.py). No transport keeps
its own table of statuses or of what is worth retrying.
"""

from __future__ import annotations

from typing import Final

from livereplay.protocol.errors import ProtocolError

# The HTTP status the protocol gives each code (PROTOCOL.md section 6); 400 otherwise.
STATUS: Final = {
    "unauthenticated": 401,
    "invalid_token": 401,
    "token_expired": 401,
    "forbidden": 403,
    "unknown_session": 404,
    "not_acceptable": 406,
    "incarnation_superseded": 409,
    "event_too_large": 413,
    "batch_too_large": 413,
    "rate_limited": 429,
    "too_many_sessions": 429,
    "too_many_connections": 429,
    "starting": 503,
    "unavailable": 503,
}
# Over a limit, or not ready yet: the same request can succeed after a pause.
TRY_LATER_STATUSES: Final = frozenset({429, 503})
# When to try again where nothing better is known: sessions free up only as idle ones
# expire; a backend outage is usually short (and readiness tells the rest).
RETRY_AFTER_S: Final = {"too_many_sessions": 5.0, "unavailable": 1.0}


class DomainError(ProtocolError):
    """A refusal, as every transport answers it: the protocol `code` and `message`, the
    HTTP `status` the protocol gives the code, and `retry_after_s`, when trying again
    can succeed (if known). `status` is given only where a refusal is injected."""

    def __init__(
        self,
        code: str,
        message: str,
        retry_after_s: float | None = None,
        *,
        status: int | None = None,
    ) -> None:
        super().__init__(code, message)
        self.status = STATUS.get(code, 400) if status is None else status
        self.retry_after_s = RETRY_AFTER_S.get(code) if retry_after_s is None else retry_after_s

    @property
    def retryable(self) -> bool:
        """Whether a client should send the same again after a pause (not a final no)."""
        return self.status in TRY_LATER_STATUSES
