"""Cursors and identities (PROTOCOL.md section 1).

A cursor names a point in one incarnation of one session's log. Parsing follows
Rust's `u64::from_str` for the numbers, not Python's `int()`, which would also
accept spaces, underscores and non-ASCII digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from .constants import CURSOR_PREFIX, U64_MAX
from .errors import MalformedCursor, WrongSession

U64_DIGITS: Final = len(str(U64_MAX))

SESSION_ID_RE: Final = re.compile(r"[A-Za-z0-9._~:@+\-]{1,256}")
INCARNATION_RE: Final = re.compile(r"[A-Za-z0-9_\-]{1,64}")

StartWord = Literal["earliest", "latest"]


@dataclass(frozen=True, slots=True)
class Cursor:
    incarnation: str
    revision: int
    position: int
    session_id: str

    def __str__(self) -> str:
        return (
            f"{CURSOR_PREFIX}{self.incarnation}:{self.revision}:{self.position}:{self.session_id}"
        )


def parse_u64(text: str) -> int | None:
    """Rust's `u64::from_str`: an optional `+`, then one or more ASCII digits, in range.

    Leading zeros may be many; the significant digits are checked for length before
    `int()` sees them, which refuses more than 4,300 digits with an exception.
    """
    digits = text[1:] if text.startswith("+") else text
    if not digits or not (digits.isascii() and digits.isdigit()):
        return None
    significant = digits.lstrip("0") or "0"
    if len(significant) > U64_DIGITS:
        return None
    value = int(significant)
    return value if value <= U64_MAX else None


def parse_cursor(text: str) -> Cursor:
    if not text.startswith(CURSOR_PREFIX):
        raise MalformedCursor("a cursor starts with 'lashsc2:'")
    parts = text[len(CURSOR_PREFIX) :].split(":", 3)
    if len(parts) != 4:
        raise MalformedCursor("a cursor has four parts: incarnation, revision, position, session")
    incarnation, revision_text, position_text, session_id = parts
    if not incarnation:
        raise MalformedCursor("the cursor's incarnation is empty")
    revision = parse_u64(revision_text)
    if revision is None:
        raise MalformedCursor("the cursor's revision is not an unsigned 64-bit integer")
    position = parse_u64(position_text)
    if position is None:
        raise MalformedCursor("the cursor's position is not an unsigned 64-bit integer")
    if not session_id:
        raise MalformedCursor("the cursor's session id is empty")
    return Cursor(incarnation, revision, position, session_id)


def parse_start(text: str, session_id: str) -> Cursor | StartWord:
    """Where a reader starts: a cursor of `session_id`, or `earliest` / `latest`."""
    if text == "earliest":
        return "earliest"
    if text == "latest":
        return "latest"
    cursor = parse_cursor(text)
    if cursor.session_id != session_id:
        raise WrongSession(f"the cursor belongs to session {cursor.session_id!r}")
    return cursor


def valid_session_id(session_id: str) -> bool:
    return SESSION_ID_RE.fullmatch(session_id) is not None


def valid_incarnation(incarnation: str) -> bool:
    return INCARNATION_RE.fullmatch(incarnation) is not None
