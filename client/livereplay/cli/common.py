"""What the `livereplay` subcommands share: argument types and defaults from the environment.

A default taken from a `LIVEREPLAY_*` variable is converted when the subcommand
that uses it runs (argparse converts string defaults then), so a bad value is one
error line naming the variable, exit status 2, and never breaks another subcommand.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable
from typing import Final, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

URL_SCHEMES: Final = ("http", "https", "ws", "wss")
DEFAULT_URL: Final = "http://127.0.0.1:7447"


class FromEnv(str):
    """A default read from an environment variable, so an error can name the variable."""

    env: str

    def __new__(cls, value: str, env: str) -> FromEnv:
        text = super().__new__(cls, value)
        text.env = env
        return text


def env_default(name: str, fallback: str) -> str:
    """`$name` when set (as a `FromEnv`), else `fallback`."""
    value = os.environ.get(name)
    return fallback if value is None else FromEnv(value, name)


def argument_type(convert: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse `type` from `convert` (raising ValueError with a message), whose
    errors name the environment variable when the value came from one."""

    def typed(text: str) -> T:
        try:
            return convert(text)
        except ValueError as exc:
            if isinstance(text, FromEnv):
                raise argparse.ArgumentTypeError(f"${text.env}={text!r}: {exc}") from None
            raise argparse.ArgumentTypeError(str(exc)) from None

    typed.__name__ = convert.__name__
    return typed


def _daemon_url(text: str) -> str:
    value = text.strip()
    # `localhost:7447` has no scheme: urlsplit would read `localhost` as one.
    if "://" not in value:
        value = "http://" + value
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"not a daemon URL (bad port): {text!r}") from None
    if parts.scheme.lower() not in URL_SCHEMES or not parts.hostname or parts.query:
        raise ValueError(
            f"not a daemon URL: {text!r} (give http://host:port, https://, ws://, wss:// "
            "or host:port)"
        )
    return value.rstrip("/")


daemon_url = argument_type(_daemon_url)
"""`--url`: http(s):// or ws(s)://host[:port][/path], or `host:port` for http://host:port."""


_SIZE: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmg]i?)?b?", re.IGNORECASE)
_SIZE_UNITS: Final = {
    "": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
}


def parse_size(text: str) -> int:
    """A byte count: `8388608`, `8MiB`, `8 MiB`, `64KiB`, `1GiB` (powers of 1024),
    `8M`, `8MB`, `500k`, `1G` (powers of 1000); case does not matter."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a size: {text!r} (a byte count such as 65536, 64KiB, 8MiB, 1GiB)")
    number, unit = match.groups()
    value = float(number) * _SIZE_UNITS[(unit or "").lower()]
    if not math.isfinite(value) or value >= 2**63:
        raise ValueError(f"not a size: {text!r} (too large)")
    return round(value)


size = argument_type(parse_size)


def _integer(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"not an integer: {text!r}") from None


def _number(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


integer = argument_type(_integer)
number = argument_type(_number)
