"""Who may write and who may read.

Writers (runtimes) present a shared secret. Readers (host UIs) present a JWT
signed with HS256 under `--reader-key`, scoped to one session (`sub`) or to a
session-id prefix (`lr_prefix`), with an expiry; `livereplay.protocol.tokens`
mints them. A refusal is a `DomainError`: 401 (who are you?) or 403 (not this).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import jwt

from livereplay.protocol.constants import TOKEN_SUBPROTOCOL_PREFIX
from livereplay.protocol.tokens import ALGORITHM, READ_SCOPE

from .errors import DomainError


@dataclass(frozen=True, slots=True)
class ReaderGrant:
    session_id: str | None
    session_prefix: str | None

    def allows(self, session_id: str) -> bool:
        if self.session_id is not None:
            return session_id == self.session_id
        return self.session_prefix is not None and session_id.startswith(self.session_prefix)


@dataclass(frozen=True, slots=True)
class Authenticator:
    writer_token: str | None
    reader_key: bytes | None

    @property
    def enabled(self) -> bool:
        return self.writer_token is not None or self.reader_key is not None

    def is_writer(self, token: str | None) -> bool:
        return (
            self.writer_token is not None
            and token is not None
            and hmac.compare_digest(token.encode(), self.writer_token.encode())
        )

    def check_writer(self, token: str | None) -> None:
        """Appends, trim and delete: only with the writer secret (when one is set)."""
        if self.writer_token is None or self.is_writer(token):
            return
        if token is None:
            raise DomainError("unauthenticated", "this endpoint needs the writer token")
        raise DomainError("forbidden", "this endpoint needs the writer token")

    def check_reader(self, token: str | None, session_id: str) -> None:
        """Reading a session: a reader token that covers it, or the writer secret."""
        if self.reader_key is None and self.writer_token is None:
            return
        if self.is_writer(token):
            return
        if self.reader_key is None:
            raise DomainError("unauthenticated", "reading needs the writer token")
        if token is None:
            raise DomainError("unauthenticated", "reading needs a reader token")
        if not self.grant(token).allows(session_id):
            raise DomainError("forbidden", "the token does not cover this session")

    def grant(self, token: str) -> ReaderGrant:
        assert self.reader_key is not None
        try:
            claims = jwt.decode(
                token,
                self.reader_key,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "scope"]},
            )
        except jwt.ExpiredSignatureError:
            raise DomainError("token_expired", "the reader token has expired") from None
        except jwt.InvalidTokenError:
            raise DomainError("invalid_token", "the reader token is not valid") from None
        if claims.get("scope") != READ_SCOPE:
            raise DomainError("forbidden", "the token is not a reader token")
        session_id = claims.get("sub")
        prefix = claims.get("lr_prefix")
        if not isinstance(session_id, str | None) or not isinstance(prefix, str | None):
            raise DomainError("invalid_token", "the reader token is not valid")
        # An empty prefix covers everything (mintable by any JWT library): never honour it.
        if not (session_id or prefix):
            raise DomainError("invalid_token", "the reader token covers no session")
        return ReaderGrant(session_id, prefix)

    def listing_grant(self, token: str | None) -> ReaderGrant | None:
        """What a caller of the session list may see: None for everything (the writer
        token, or no auth at all), else the grant of its reader token."""
        if not self.enabled or self.is_writer(token):
            return None
        if self.reader_key is None or token is None:
            raise DomainError("unauthenticated", "listing sessions needs a token")
        return self.grant(token)


def bearer(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def token_from_subprotocols(offered: list[str]) -> str | None:
    for name in offered:
        if name.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return name[len(TOKEN_SUBPROTOCOL_PREFIX) :]
    return None
